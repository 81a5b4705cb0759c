"""Validate one setting (a base entry, an axis level, an exclude entry, a tuned value) with a located error."""

from __future__ import annotations

import itertools
import json

from pydantic import ValidationError

from keras_ablate import data as data_registry
from keras_ablate.config.levels import DATASET_AXIS_PREFIX
from keras_ablate.config.locate import Locator, pydantic_message
from keras_ablate.config.schema import PARAMS_PREFIX, SETTING_KEYS, Experiment, RunSettings
from keras_ablate.errors import suggest

MAX_DATASET_CONTEXTS = 64  # combinations of other dataset-option levels tried per value


def validate_setting(
    loc: Locator, path: tuple, key: str, value, dataset_name, dataset_contexts=None
):
    """Validate one key=value (a base entry, an axis level, an exclude entry); return it normalized.

    A dataset option is validated together with the rest of the dataset's options, in each of
    `dataset_contexts` (see dataset_contexts) until one accepts it: alone it would miss required
    options such as a csv file's path, and checks that span options.
    """
    if key.startswith(DATASET_AXIS_PREFIX):
        option = key[len(DATASET_AXIS_PREFIX) :]
        model = data_registry.get_entry(dataset_name).options_model()
        user_options = model.model_config.get("extra") == "allow"  # a user loader's keywords
        if option not in model.model_fields and not user_options:
            raise loc.error(
                path,
                f"unknown option '{option}' of dataset '{dataset_name}'{suggest(option, model.model_fields)}; "
                f"valid: {', '.join(model.model_fields)}",
            )
        errors = []
        for context in dataset_contexts or [{}]:
            try:
                options = model.model_validate({**context, option: value})
                return options.model_dump(mode="json")[option]
            except ValidationError as exc:
                errors.append(exc.errors())
        # Report what this option itself got wrong when some context says so.
        mine = [e for errs in errors for e in errs if tuple(e["loc"][:1]) == (option,)]
        raise loc.error(path, pydantic_message((mine or errors[0])[0], model)) from None
    check_key(loc, path, key)
    if key.startswith(PARAMS_PREFIX):
        return _param_value(loc, path, key, value)
    try:
        return RunSettings.model_validate({key: value}).model_dump(mode="json")[key]
    except ValidationError as exc:
        raise loc.error(path, pydantic_message(exc.errors()[0], RunSettings)) from None


def _param_value(loc: Locator, path: tuple, key: str, value):
    """A user param: a name that is an identifier, and a plain YAML value (JSON-able, not a mapping)."""
    name = key[len(PARAMS_PREFIX) :]
    if not name.isidentifier():
        raise loc.error(
            path, f"param name '{name}' must be a Python identifier (letters, digits, _)"
        )
    if isinstance(value, dict) or not _plain(value):
        raise loc.error(
            path,
            f"param {name} = {value!r}: a param level is a number, string, boolean, null or a "
            "list of those",
        )
    return value


def _plain(value) -> bool:
    if isinstance(value, list):
        return all(_plain(v) and not isinstance(v, list) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


def check_key(loc: Locator, path: tuple, key: str) -> None:
    """A setting name, dataset.<option> or params.<name>, else an error listing the valid settings."""
    if (
        key not in SETTING_KEYS
        and not key.startswith(DATASET_AXIS_PREFIX)
        and not key.startswith(PARAMS_PREFIX)
    ):
        raise loc.error(
            path,
            f"unknown setting '{key}'{suggest(key, SETTING_KEYS)}; valid settings: {', '.join(SETTING_KEYS)}"
            f", dataset.<option>, or params.<name> (your own builder's settings)",
        )


def freeze(value) -> str:
    """A hashable, order-free key for a normalized value (levels are compared by it)."""
    return json.dumps(value, sort_keys=True)


def dataset_levels(exp: Experiment) -> dict[str, list]:
    """option -> the values given for it outside dataset.options: base `dataset.<option>`, grid axes."""
    out: dict[str, list] = {}
    for key, value in exp.base.items():
        if key.startswith(DATASET_AXIS_PREFIX):
            out[key[len(DATASET_AXIS_PREFIX) :]] = [value]
    for key, levels in exp.grid.items():
        if key.startswith(DATASET_AXIS_PREFIX) and levels:
            out[key[len(DATASET_AXIS_PREFIX) :]] = list(levels)
    return out


def dataset_contexts(exp: Experiment, option: str | None) -> list[dict]:
    """The dataset options a value of `option` can meet: dataset.options with one level of every
    other dataset option that base or grid sets (each combination, up to MAX_DATASET_CONTEXTS)."""
    others = {k: v for k, v in dataset_levels(exp).items() if k != option}
    combos = itertools.islice(itertools.product(*others.values()), MAX_DATASET_CONTEXTS)
    return [{**exp.dataset.options, **dict(zip(others, combo, strict=True))} for combo in combos]
