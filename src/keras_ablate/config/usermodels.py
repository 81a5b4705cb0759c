"""Your own architectures in an experiment file: `models:`, MODULE:FUNCTION levels and `params:`.

Checked at plan time without importing the user's code (usercode.check_defined reads it with
`ast`); models/user.py builds them when a run trains.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING

from keras_ablate.config.levels import ARCHITECTURES
from keras_ablate.config.locate import Locator
from keras_ablate.errors import unknown_name
from keras_ablate.usercode import UserCodeError, check_defined, is_ref, split_ref

if TYPE_CHECKING:  # schema imports this module
    from keras_ablate.config.schema import Experiment

# The names of the experiment's `models:` section while config.expand validates its settings:
# each is an architecture level next to the built-ins (models/user.py builds them).
USER_MODELS: ContextVar[frozenset[str]] = ContextVar("user_models", default=frozenset())


def check_architecture(value: str) -> str:
    if value in ARCHITECTURES or value in USER_MODELS.get():
        return value
    if is_ref(value):
        try:
            split_ref(value)
        except UserCodeError as exc:
            raise ValueError(str(exc)) from None
        return value
    known = [*ARCHITECTURES, *USER_MODELS.get()]
    raise ValueError(
        unknown_name("architecture", value, known)
        + ", a name from the models: section, or MODULE:FUNCTION (your own builder)"
    )


# A user builder's own settings: `params: {name: value}` in base, `params: {name: [levels]}` in
# grid, read as `params.<name>` keys (axes, exclude and reference use that spelling too). A run's
# settings hold them as one `params` mapping, which joins the run id.
PARAMS_PREFIX = "params."


def flatten_params(raw: dict, loc: Locator) -> dict:
    """`params: {name: value}` in base and `params: {name: [levels]}` in grid become `params.<name>`
    keys (their lines kept, so errors still point at them)."""
    raw = dict(raw)
    for section in ("base", "grid"):
        block = raw.get(section)
        if not isinstance(block, dict) or "params" not in block:
            continue
        params = block["params"]
        if not isinstance(params, dict):
            raise loc.error(
                (section, "params"),
                "params is a mapping of your own settings (name: "
                + ("value" if section == "base" else "[levels]")
                + "), passed to your model builder as settings['params']",
            )
        flat = {k: v for k, v in block.items() if k != "params"}
        for name, value in params.items():
            key = f"{PARAMS_PREFIX}{name}"
            if key in flat:
                raise loc.error((section, "params", name), f"'{key}' is set twice in {section}")
            flat[key] = value
            for path, line in list(loc.lines.items()):
                if path[:3] == (section, "params", name):
                    loc.lines[(section, key, *path[3:])] = line
        raw[section] = flat
    return raw


def models_stage(exp: Experiment, loc: Locator) -> dict[str, str]:
    """`models:` names: new names (not built-ins), each mapped to MODULE:FUNCTION."""
    for name, ref in exp.models.items():
        if name in ARCHITECTURES:
            raise loc.error(
                ("models", name),
                f"'{name}' is a built-in architecture; give your model another name",
            )
        if is_ref(name) or name.startswith(PARAMS_PREFIX):
            raise loc.error(("models", name), f"'{name}': a model name is a plain name (no ':')")
        if not is_ref(ref):
            raise loc.error(
                ("models", name),
                f"'{ref}' is not MODULE:FUNCTION (e.g. 'my_models:build_bilstm')",
            )
    return dict(exp.models)


def user_builder(exp: Experiment, architecture: str) -> str | None:
    """The MODULE:FUNCTION that builds an architecture level, or None for a built-in."""
    if architecture in exp.models:
        return exp.models[architecture]
    return architecture if is_ref(architecture) else None


def architecture_path(exp: Experiment, architecture: str) -> tuple:
    """Where the file names this architecture's code: its models: entry, else the grid level or
    base entry that spells MODULE:FUNCTION."""
    if architecture in exp.models:
        return ("models", architecture)
    levels = exp.grid.get("architecture") or []
    if architecture in levels:
        return ("grid", "architecture", levels.index(architecture))
    if exp.base.get("architecture") == architecture:
        return ("base", "architecture")
    return ("grid", "architecture")


def builders_stage(exp, loc, base: dict, axes: dict, base_dir) -> dict[str, dict]:
    """architecture level -> {builder, builder_sha256} for each user architecture the grid uses,
    checked without importing it (the module is found and read with `ast`)."""
    used = list(axes.get("architecture", [])) + [base.get("architecture", "lstm")]
    out = {}
    for architecture in used:
        ref = user_builder(exp, architecture)
        if ref is None or architecture in out:
            continue
        path = architecture_path(exp, architecture)
        try:
            found = check_defined(ref, base_dir)
        except UserCodeError as exc:
            raise loc.error(path, str(exc)) from None
        out[architecture] = {"builder": ref, "builder_sha256": found.sha256[:16]}
    return out


def base_dir_of(settings: dict, ds_entry, base_dir) -> str | None:
    """The experiment folder a run needs (user code, relative data paths), else None: built-in
    runs keep the spec.json they always had."""
    if base_dir is None or not ("builder" in settings or ds_entry.located):
        return None
    return str(base_dir)
