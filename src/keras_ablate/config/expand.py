"""Read an experiment file and expand its design into RunSpecs, in named stages, with located errors.

The design itself (seeds, plan size, axis combinations) is config/design.py; your own
architectures and params are config/usermodels.py.

Stages, in the order their errors are reported: the dataset, base, grid axes, exclude rules,
reference levels, the tune: section, seeds and plan size, then the design points, each merged
(defaults < base < base_from (tuned) < grid), validated and given a run_id.
Over 400 lines because the stages are one pipeline read top to bottom, each with its located errors.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from keras_ablate import data as data_registry
from keras_ablate import yaml_input
from keras_ablate.config import tuning
from keras_ablate.config.design import check_plan_size, check_seeds, design_points
from keras_ablate.config.levels import DATASET_AXIS_PREFIX
from keras_ablate.config.locate import Locator, raise_validation
from keras_ablate.config.schema import (
    PARAMS_PREFIX,
    SETTING_KEYS,
    USER_MODELS,
    AdaptiveSeeds,
    AnalysisSection,
    DatasetSection,
    Experiment,
    ProtocolSection,
    ResourcesSection,
    RunSettings,
    RunSpec,
    TuneSection,
    make_run_id,
)
from keras_ablate.config.usermodels import (
    base_dir_of,
    builders_stage,
    flatten_params,
    models_stage,
)
from keras_ablate.config.validate import (
    check_key,
    dataset_contexts,
    dataset_levels,
    freeze,
    validate_setting,
)
from keras_ablate.errors import ConfigError, UserError
from keras_ablate.yaml_input import format_path


def load_experiment(
    path: str | Path, results_dir: str | Path = "results", use_base_from: bool = True
) -> tuple[Experiment, list[RunSpec]]:
    """Read, validate and expand an experiment file.

    Raises:
        ConfigError: with file, line, key path and the valid choices.
    """
    text = yaml_input.read_text(path)
    return parse_experiment(
        text, source=str(path), results_dir=results_dir, use_base_from=use_base_from
    )


def parse_experiment(
    text: str,
    source: str = "<string>",
    results_dir: str | Path = "results",
    use_base_from: bool = True,
    base_dir: str | Path | None = None,
) -> tuple[Experiment, list[RunSpec]]:
    """Validate and expand experiment YAML text (see load_experiment).

    `results_dir` is where `base_from: tuning` looks; `use_base_from=False` ignores base_from
    (the tune command itself starts from base). `base_dir` is where relative paths and the
    user's modules are looked up: by default the folder of `source` when that is a file, else
    the working directory.
    """
    raw, lines = yaml_input.load(text, source)
    loc = Locator(source, lines=lines)
    if not isinstance(raw, dict):
        raise loc.error((), "the file must be a mapping with at least 'name' and 'dataset'")
    raw = flatten_params(raw, loc)
    if isinstance(raw.get("seeds"), dict):
        # Checked on its own, so an error names seeds.<key> and the valid keys, not the union.
        try:
            AdaptiveSeeds.model_validate(raw["seeds"])
        except ValidationError as exc:
            raise_validation(loc, ("seeds",), exc, AdaptiveSeeds)
    try:
        exp = Experiment.model_validate(raw)
    except ValidationError as exc:
        raise_validation(loc, (), exc, _model_for_loc(exc))
    if base_dir is None and Path(source).is_file():
        base_dir = Path(source).resolve().parent
    specs = expand(
        exp, loc, results_dir=results_dir, use_base_from=use_base_from, base_dir=base_dir
    )
    return exp, specs


def _model_for_loc(exc: ValidationError):
    # Extra keys at the top level or in nested sections: pick the model whose fields to list.
    loc = exc.errors()[0]["loc"]
    sections = {
        ("dataset",): DatasetSection,
        ("analysis",): AnalysisSection,
        ("tune",): TuneSection,
        ("resources",): ResourcesSection,
        ("protocol",): ProtocolSection,
    }
    return {(): Experiment, **sections}.get(tuple(loc[:-1]), Experiment)


def expand(
    exp: Experiment,
    loc: Locator | None = None,
    results_dir: str | Path = "results",
    use_base_from: bool = True,
    base_dir: str | Path | None = None,
) -> list[RunSpec]:
    """Expand the design into RunSpecs (factorial or one-at-a-time), minus exclusions.

    Values merge as defaults < base < base_from (tuned) < grid: tuned values replace the
    base they were tuned from, and the scientific axes always come from the grid.
    """
    loc = loc or Locator("<experiment>", "")
    exp._locator = loc
    exp._base_dir = None if base_dir is None else str(base_dir)
    token = USER_MODELS.set(frozenset(models_stage(exp, loc)))
    try:
        return _expand(exp, loc, results_dir, use_base_from, base_dir)
    finally:
        USER_MODELS.reset(token)


def _expand(exp, loc, results_dir, use_base_from, base_dir) -> list[RunSpec]:
    ds_entry = _dataset_stage(exp, loc)
    base = _base_stage(exp, loc)
    axes = _grid_stage(exp, loc)
    excludes = _exclude_stage(exp, loc, axes, base)
    _reference_stage(exp, loc, axes)
    if exp.tune is not None:
        tuning.search_space(exp, loc)
    rates = _protocol_stage(exp, loc, axes)
    seeds = check_seeds(exp, loc)
    # An adaptive plan is checked at its largest: every arm at `max` seeds.
    most = exp.adaptive.max if exp.adaptive else len(seeds)
    check_plan_size(axes, exp.design, most * max(len(rates), 1), loc)
    combos = list(design_points(axes, exp.design))
    tuned = (
        tuning.tuned_values(exp, combos, loc, results_dir)
        if exp.base_from and use_base_from
        else None
    )
    builders = builders_stage(exp, loc, base, axes, base_dir)
    specs, small_data = _specs_stage(
        exp, loc, ds_entry, base, combos, excludes, tuned, seeds, rates, builders, base_dir
    )
    if not specs:
        raise loc.error(("exclude",), "every run of the grid is excluded: nothing to run")
    exp._warnings = [_batch_warning(loc, exp, batch, n) for batch, n in sorted(small_data)]
    return specs


def expand_seeds(
    exp: Experiment, seeds: list[int], results_dir: str | Path = "results"
) -> list[RunSpec]:
    """The plan with these seeds in place of the file's (adaptive seeds plan up to their max)."""
    return expand(exp.model_copy(update={"seeds": list(seeds)}), results_dir=results_dir)


def _contexts(exp: Experiment, key: str) -> list[dict] | None:
    """The dataset options a `dataset.<option>` value is validated in (None for a setting)."""
    if not key.startswith(DATASET_AXIS_PREFIX):
        return None
    return dataset_contexts(exp, key[len(DATASET_AXIS_PREFIX) :])


def _dataset_stage(exp: Experiment, loc: Locator):
    """The dataset's registry entry, with dataset.options checked (but for options set elsewhere)."""
    try:
        ds_entry = data_registry.get_entry(exp.dataset.name)
    except ConfigError as exc:
        raise loc.error(("dataset", "name"), str(exc)) from None
    varied = dataset_levels(exp)
    try:
        ds_entry.options_model().model_validate(exp.dataset.options)
    except ValidationError as exc:
        # Options that base or grid set are checked with their values below (a csv `path` may
        # be an axis); so are checks across options when any of them is set there.
        errors = [
            e for e in exc.errors() if (e["loc"][0] not in varied if e["loc"] else not varied)
        ]
        if errors:
            raise_validation(loc, ("dataset", "options"), exc, ds_entry.options_model(), errors)
    return ds_entry


def _base_stage(exp: Experiment, loc: Locator) -> dict:
    """`base:` entries, each validated and normalized."""
    return {
        key: validate_setting(loc, ("base", key), key, value, exp.dataset.name, _contexts(exp, key))
        for key, value in exp.base.items()
    }


def _grid_stage(exp: Experiment, loc: Locator) -> dict[str, list]:
    """`grid:` axes: known keys, at least one level each, levels normalized and distinct."""
    axes: dict[str, list] = {}
    for key, levels in exp.grid.items():
        check_key(loc, ("grid", key), key)
        if not levels:
            raise loc.error(("grid", key), "empty axis: give at least one level")
        normalized = [
            validate_setting(loc, ("grid", key, i), key, v, exp.dataset.name, _contexts(exp, key))
            for i, v in enumerate(levels)
        ]
        seen = set()
        for i, v in enumerate(normalized):
            if freeze(v) in seen:
                raise loc.error(("grid", key, i), f"level {v!r} appears twice")
            seen.add(freeze(v))
        axes[key] = normalized
    return axes


def _exclude_stage(exp: Experiment, loc: Locator, axes: dict, base: dict) -> list[dict]:
    """`exclude:` rules: partial settings, each key an axis or setting, each value normalized."""
    excludes = []
    for j, rule in enumerate(exp.exclude):
        if not rule:
            raise loc.error(("exclude", j), "an exclude entry needs at least one key: level")
        norm_rule = {}
        for key, value in rule.items():
            if key not in axes and key not in base and key not in SETTING_KEYS:
                raise loc.error(
                    ("exclude", j, key), f"'{key}' is not an axis or setting of this grid"
                )
            norm_rule[key] = validate_setting(
                loc, ("exclude", j, key), key, value, exp.dataset.name, _contexts(exp, key)
            )
        excludes.append(norm_rule)
    return excludes


def _reference_stage(exp: Experiment, loc: Locator, axes: dict) -> None:
    """`reference:` names a grid axis and one of its levels."""
    for key, value in exp.reference.items():
        if key not in axes:
            raise loc.error(
                ("reference", key), f"'{key}' is not a grid axis; axes: {', '.join(axes)}"
            )
        level = validate_setting(
            loc, ("reference", key), key, value, exp.dataset.name, _contexts(exp, key)
        )
        if freeze(level) not in {freeze(v) for v in axes[key]}:
            raise loc.error(
                ("reference", key), f"{value!r} is not a level of axis '{key}': {axes[key]}"
            )


def _protocol_stage(exp: Experiment, loc: Locator, axes: dict) -> list[float]:
    """`protocol:` rates (none without a protocol); the rate it chooses cannot also be an axis."""
    if exp.protocol is None:
        return []
    if "learning_rate" in axes:
        raise loc.error(
            ("grid", "learning_rate"),
            "learning_rate is both a grid axis and chosen per arm by protocol.learning_rate: "
            "keep one (an axis compares rates; the protocol gives each arm its best one)",
        )
    return [
        validate_setting(
            loc, ("protocol", "learning_rate", i), "learning_rate", r, exp.dataset.name
        )
        for i, r in enumerate(exp.protocol.learning_rate)
    ]


def _specs_stage(
    exp: Experiment,
    loc: Locator,
    ds_entry,
    base: dict,
    combos,
    excludes,
    tuned,
    seeds,
    rates,
    builders: dict | None = None,
    base_dir=None,
) -> tuple[list[RunSpec], set[tuple[int, int]]]:
    """Merge, validate and fingerprint every design point; one RunSpec per point, protocol rate
    (if any) and seed. A protocol rate is not an axis: the arm is the design point.

    Returns the specs and the (batch_size, training examples) pairs where a batch is larger
    than the training set (a warning, not an error).
    """
    ds_name = exp.dataset.name
    specs: list[RunSpec] = []
    fingerprints: dict[str, dict | None] = {}
    train_sizes: dict[str, int | None] = {}
    small_data: set[tuple[int, int]] = set()
    points = [(combo, rate) for combo in combos for rate in (rates or [None])]
    for combo, rate in points:
        tuned_here, tuned_from = tuned(combo) if tuned else ({}, "")
        protocol = {} if rate is None else {"learning_rate": rate}
        merged = {**base, **tuned_here, **combo, **protocol}
        origins = {
            **dict.fromkeys(base, "base"),
            **dict.fromkeys(tuned_here, tuned_from),
            **dict.fromkeys(combo, "grid"),
            **dict.fromkeys(protocol, "protocol"),
        }
        if any(
            all(freeze(merged.get(k)) == freeze(v) for k, v in rule.items()) for rule in excludes
        ):
            continue
        settings_in = {
            k: v
            for k, v in merged.items()
            if not k.startswith(DATASET_AXIS_PREFIX) and not k.startswith(PARAMS_PREFIX)
        }
        params = {
            k[len(PARAMS_PREFIX) :]: v for k, v in merged.items() if k.startswith(PARAMS_PREFIX)
        }
        options_in = {
            **exp.dataset.options,
            **{
                k[len(DATASET_AXIS_PREFIX) :]: v
                for k, v in merged.items()
                if k.startswith(DATASET_AXIS_PREFIX)
            },
        }
        try:
            settings = RunSettings.model_validate(settings_in).model_dump(mode="json")
            options = ds_entry.options_model().model_validate(options_in).model_dump(mode="json")
        except ValidationError as exc:
            raise loc.error(
                ("grid",), f"the combination {combo} is invalid: {exc.errors()[0]['msg']}"
            ) from None
        # A user builder's settings: its own params, and which code builds it (the module's hash
        # joins the run id, so an edited model never reuses runs of the old one).
        if params:
            settings["params"] = dict(sorted(params.items()))
        settings.update((builders or {}).get(settings["architecture"], {}))
        dataset = {"name": ds_name, "options": options}
        key = freeze(options)
        if key not in fingerprints:
            validated = ds_entry.options_model().model_validate(options)
            try:
                fingerprints[key] = ds_entry.fingerprint_of(validated, base_dir)
                train_sizes[key] = ds_entry.check_of(validated, base_dir)
            except UserError as exc:
                path = ("dataset", "name") if ds_entry.ref else ("dataset", "options")
                raise loc.error(path, str(exc)) from None
        n_train = train_sizes[key]
        if n_train is not None and settings["batch_size"] > n_train:
            small_data.add((settings["batch_size"], n_train))
        if fingerprints[key]:
            dataset["fingerprint"] = fingerprints[key]
        for seed in seeds:
            specs.append(
                RunSpec(
                    experiment=exp.name,
                    run_id=make_run_id(settings, dataset, seed),
                    settings=settings,
                    dataset=dataset,
                    seed=int(seed),
                    axes=dict(combo),
                    origins=origins,
                    base_dir=base_dir_of(settings, ds_entry, base_dir),
                )
            )
    return specs, small_data


def _batch_warning(loc: Locator, exp: Experiment, batch_size: int, n_train: int) -> str:
    # Point at the grid axis or base entry that set batch_size (else the default applied).
    path = next(
        (p for p in (("grid", "batch_size"), ("base", "batch_size")) if p[1] in getattr(exp, p[0])),
        (),
    )
    where = loc.where(path) + (f": {format_path(path)}" if path else "")
    return (
        f"{where}: batch_size {batch_size} is larger than the {n_train} training examples of "
        f"dataset '{exp.dataset.name}': every epoch is a single step of {n_train} examples; "
        f"use batch_size <= {n_train} or more training data"
    )
