"""The `tune:` search space and `base_from:` tuned settings: validation with located errors (no TensorFlow)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from keras_ablate import store, yaml_input
from keras_ablate.config.levels import DATASET_AXIS_PREFIX
from keras_ablate.config.locate import Locator, raise_validation
from keras_ablate.config.schema import Experiment, RunSettings, RunSpec
from keras_ablate.config.select import filter_specs
from keras_ablate.config.validate import check_key, freeze, validate_setting
from keras_ablate.errors import UserError, unknown_name

KINDS = ("int", "float", "choice", "boolean")
SAMPLINGS = ("linear", "log", "reverse_log")
# keras-tuner's own argument names (hp.Int / hp.Float), accepted next to this file's shorter ones so
# that a keras-tuner user can paste a range: {type: Float, min_value: 1e-4, max_value: 1e-2,
# sampling: log}. The short name is the one stored.
ALIASES = {"min_value": "min", "max_value": "max"}


class _IntDim(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["int"]
    min: int
    max: int
    step: int | None = Field(
        None, ge=1, description="spacing (a factor > 1 with log sampling); default 1 when linear"
    )
    sampling: Literal["linear", "log", "reverse_log"] = "linear"
    default: int | None = None


class _FloatDim(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["float"]
    min: float
    max: float
    step: float | None = Field(
        None, gt=0, description="grid spacing; without it grid search samples 10 points"
    )
    sampling: Literal["linear", "log", "reverse_log"] = "linear"
    default: float | None = None


class _ChoiceDim(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["choice"]
    values: list[Any]
    ordered: bool | None = None
    default: Any = None


class _BooleanDim(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["boolean"]
    default: bool = False


_MODELS = {"int": _IntDim, "float": _FloatDim, "choice": _ChoiceDim, "boolean": _BooleanDim}


@dataclass(frozen=True)
class SearchDim:
    """One tuned setting; `name` is the setting, the keras-tuner hp name and the trials-table column.

    The fields are keras-tuner's arguments (hp.Int, hp.Float, hp.Choice, hp.Boolean): `sampling`
    linear, log or reverse_log; `step` the spacing (a factor with log sampling); `default` the value
    keras-tuner starts from (None: its own default).
    """

    name: str
    kind: Literal["int", "float", "choice", "boolean"]
    min: float | None = None
    max: float | None = None
    step: float | None = None
    sampling: str = "linear"
    values: tuple = ()
    default: Any = None
    ordered: bool | None = None

    def record(self) -> dict[str, Any]:
        """The dimension as search.json records it: the earlier form ({..., log, values}) with each
        newer argument only where it is set, so a search recorded before them still resumes."""
        out = {
            "name": self.name,
            "kind": self.kind,
            "min": self.min,
            "max": self.max,
            "step": self.step,
            "log": self.sampling == "log",
            "values": list(self.values),
        }
        if self.sampling == "reverse_log":
            out["sampling"] = self.sampling
        if self.default is not None:
            out["default"] = self.default
        if self.ordered is not None:
            out["ordered"] = self.ordered
        return out


def search_space(exp: Experiment, loc: Locator | None = None) -> dict[str, SearchDim]:
    """Validate `tune:` and return its search space, one SearchDim per tuned setting.

    Raises:
        ConfigError: naming the file, line and key, with the valid choices.
    """
    from keras_ablate.tuning.objectives import OBJECTIVES

    loc = loc or Locator("<experiment>", "")
    tune = exp.tune
    if tune is None:
        raise loc.error((), "no 'tune:' section: add one with a search space to tune")
    if tune.objective not in OBJECTIVES:
        raise loc.error(
            ("tune", "objective"), unknown_name("objective", tune.objective, OBJECTIVES)
        )
    if tune.tuner == "hyperband" and tune.max_trials is not None:
        raise loc.error(
            ("tune", "max_trials"),
            "hyperband's budget is max_epochs (and factor); max_trials is not used",
        )
    if tune.tuner != "hyperband" and tune.max_epochs is not None:
        raise loc.error(
            ("tune", "max_epochs"),
            f"only the hyperband tuner uses max_epochs (tuner is '{tune.tuner}')",
        )
    if not tune.space:
        raise loc.error(("tune", "space"), "empty search space: name at least one setting to tune")
    return {
        key: _dimension(loc, ("tune", "space", key), key, spec, exp)
        for key, spec in tune.space.items()
    }


def _dimension(loc: Locator, path: tuple, key: str, spec: Any, exp: Experiment) -> SearchDim:
    if key.startswith(DATASET_AXIS_PREFIX):
        raise loc.error(
            path,
            "dataset options cannot be tuned (every trial must see the same data); tune settings",
        )
    check_key(loc, path, key)
    if key in exp.grid:
        raise loc.error(
            path,
            f"'{key}' is a grid axis: the scientific axes stay fixed in each arm; tune it or vary it, not both",
        )
    if exp.tune.tuner == "hyperband" and key == "epochs":
        raise loc.error(
            path,
            "hyperband chooses the epochs itself (up to max_epochs): remove epochs from the space",
        )
    if isinstance(spec, list):  # Shorthand: `activation: [relu, elu]` is a choice.
        spec = {"type": "choice", "values": spec}
    if not isinstance(spec, dict):
        raise loc.error(
            path,
            "give {type: int, min, max[, step]}, {type: float, min, max[, sampling]}, "
            "{type: choice, values} or {type: boolean} (keras-tuner's min_value, max_value, "
            "sampling: linear | log | reverse_log, step and default work too)",
        )
    spec, said = _keras_tuner_spelling(loc, path, spec)

    def at(field: str) -> tuple:
        """The path of a field as the file spells it (min_value where it says min_value)."""
        return path + (said.get(field, field),)

    kind = spec.get("type")
    if kind not in KINDS:
        raise loc.error(at("type"), unknown_name("search type", kind, KINDS))
    model = _MODELS[kind]
    try:
        dim = model.model_validate(spec)
    except ValidationError as exc:
        errors = [{**e, "loc": tuple(said.get(p, p) for p in e["loc"])} for e in exc.errors()]
        raise_validation(loc, path, exc, model, errors)
    ds_name = exp.dataset.name
    if kind == "boolean":
        annotation = RunSettings.model_fields[key].annotation
        if bool not in (annotation, *get_args(annotation)):
            raise loc.error(
                at("type"), f"'{key}' is not a true/false setting: use type int, float or choice"
            )
        for value in (False, True):
            validate_setting(loc, at("type"), key, value, ds_name)
        return SearchDim(key, "boolean", values=(False, True), default=dim.default)
    if kind == "choice":
        if not dim.values:
            raise loc.error(at("values"), "empty choice: give at least one value")
        values = [
            validate_setting(loc, at("values") + (i,), key, v, ds_name)
            for i, v in enumerate(dim.values)
        ]
        seen: set[str] = set()
        for i, v in enumerate(values):
            if isinstance(v, (list, dict)):
                raise loc.error(
                    at("values") + (i,),
                    "a choice must be a single value (a number, a name or true/false)",
                )
            if freeze(v) in seen:
                raise loc.error(at("values") + (i,), f"value {v!r} appears twice")
            seen.add(freeze(v))
        default = None
        if dim.default is not None:
            default = validate_setting(loc, at("default"), key, dim.default, ds_name)
            if freeze(default) not in seen:
                raise loc.error(
                    at("default"), f"default {default!r} is not one of the values {values}"
                )
        return SearchDim(key, "choice", values=tuple(values), default=default, ordered=dim.ordered)
    annotation = RunSettings.model_fields[key].annotation
    if annotation is not {"int": int, "float": float}[kind]:
        what = {
            int: "an integer setting: use type int or choice",
            float: "a float setting: use type float or choice",
        }
        raise loc.error(
            at("type"), f"'{key}' is {what.get(annotation, 'not numeric: use type choice')}"
        )
    if not dim.min < dim.max:
        raise loc.error(at("min"), f"min ({dim.min}) must be < max ({dim.max})")
    logarithmic = dim.sampling != "linear"
    if logarithmic and dim.min <= 0:
        raise loc.error(at("min"), f"{dim.sampling} sampling needs min > 0, got {dim.min}")
    if logarithmic and dim.step is not None and dim.step <= 1:
        # keras-tuner multiplies by the step between samples on a log scale.
        raise loc.error(
            at("step"),
            f"with {dim.sampling} sampling the step is a factor between samples and must be > 1, "
            f"got {dim.step}",
        )
    for bound in (
        "min",
        "max",
    ):  # The bounds must be valid values of the setting (e.g. dropout < 1).
        validate_setting(loc, at(bound), key, getattr(dim, bound), ds_name)
    if dim.default is not None and not dim.min <= dim.default <= dim.max:
        raise loc.error(
            at("default"),
            f"default ({dim.default}) must lie in [min, max] = [{dim.min}, {dim.max}]",
        )
    # keras-tuner's hp.Int steps by 1 on a linear scale when no step is given (and samples freely
    # on a log scale); the step is recorded as used.
    step = 1 if kind == "int" and dim.step is None and not logarithmic else dim.step
    return SearchDim(
        key,
        kind,
        min=dim.min,
        max=dim.max,
        step=step,
        sampling=dim.sampling,
        default=dim.default,
    )


def _keras_tuner_spelling(loc: Locator, path: tuple, spec: dict) -> tuple[dict, dict[str, str]]:
    """The entry in this file's own names, and which of them the file spelled otherwise.

    keras-tuner's names map onto the short ones: type Int / Float / Choice / Boolean (any case),
    min_value / max_value, sampling; `log: true` is sampling log. Two spellings of one argument
    that disagree (`log: true` with `sampling: linear`, min with min_value) are an error.
    """
    out, said = dict(spec), {}
    if isinstance(out.get("type"), str):
        out["type"] = out["type"].lower()
    for long, short in ALIASES.items():
        if long in out:
            if short in out:
                raise loc.error(
                    path + (long,),
                    f"give {short} or keras-tuner's {long}, not both ({short}: {out[short]}, "
                    f"{long}: {out[long]})",
                )
            out[short] = out.pop(long)
            said[short] = long
    if "log" in out:
        log = out.pop("log")
        if not isinstance(log, bool):
            raise loc.error(path + ("log",), f"log must be true or false, got {log!r}")
        if "sampling" in out:
            sampling = out["sampling"]
            if (sampling == "log") != log:
                raise loc.error(
                    path + ("log",),
                    f"log: {str(log).lower()} contradicts sampling: {sampling}; give one of them "
                    "(sampling: linear | log | reverse_log)",
                )
        else:
            out["sampling"] = "log" if log else "linear"
            said["sampling"] = "log"
    return out, said


def arm_name(axes: dict[str, Any]) -> str:
    """Folder name of one arm (one combination of the grid's axes, seeds excluded)."""
    if not axes:
        return "all"
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", "__".join(f"{k}={v}" for k, v in axes.items()))


def tuning_root(exp: Experiment, results_dir: str | Path) -> Path:
    return exp.folder(results_dir) / store.TUNING


def tuned_values(
    exp: Experiment, combos: list[dict], loc: Locator, results_dir: str | Path
) -> Callable[[dict], tuple[dict, str]]:
    """Resolve `base_from` for every arm up front; return combo -> (tuned settings, the file they came from).

    A file applies to every arm; a folder (`tuning` = results/<experiment>/tuning) holds one
    <arm>/best.yaml per arm, and an arm without one is an error (a fair comparison tunes every arm).
    """
    if exp.base_from == store.TUNING:
        root = tuning_root(exp, results_dir)
        how = " (this experiment's tuning folder under the results folder)"
    else:
        # Relative to the experiment file's folder (expand sets it), as every path of the file.
        root = Path(exp.base_from).expanduser()
        if root.is_absolute():
            how = ""
        elif exp.base_dir is not None:
            root = Path(exp.base_dir) / root
            how = f" (resolved relative to the experiment file's folder {exp.base_dir})"
        else:
            how = f" (resolved relative to the working directory {Path.cwd()})"
    if root.is_file():
        single = (_read_best(root), str(root))
        return lambda combo: single
    if not root.is_dir():
        raise loc.error(
            ("base_from",),
            f"no tuned settings at {root}{how}: run `keras-ablate tune {loc.source}` first, or "
            "remove base_from",
        )
    found: dict[str, tuple[dict, str]] = {}
    tuned_arms = sorted(p.parent.name for p in root.glob(f"*/{store.BEST_FILE}"))
    for combo in combos:
        name = arm_name(combo)
        path = root / name / store.BEST_FILE
        if not path.is_file():
            flags = " ".join(f"--arm {k}={v}" for k, v in combo.items())
            raise loc.error(
                ("base_from",),
                f"no tuned settings for arm '{name}' (expected {path}); tuned arms: {', '.join(tuned_arms) or 'none'}. "
                f"Tune it with `keras-ablate tune {loc.source} {flags}`".rstrip(),
            )
        found[name] = (_read_best(path), str(path))
    return lambda combo: found[arm_name(combo)]


def _read_best(path: Path) -> dict[str, Any]:
    """The `settings:` of a best.yaml, validated like base entries (errors name that file)."""
    raw, lines = yaml_input.load(yaml_input.read_text(path), str(path))
    loc = Locator(str(path), lines=lines)
    if not isinstance(raw, dict) or not isinstance(raw.get("settings"), dict):
        raise loc.error((), "a best-settings file needs a 'settings:' mapping (setting: value)")
    out = {}
    for key, value in raw["settings"].items():
        if str(key).startswith(DATASET_AXIS_PREFIX):
            raise loc.error(("settings", key), "dataset options cannot come from tuning")
        out[key] = validate_setting(loc, ("settings", key), key, value, None)
    return out


@dataclass(frozen=True)
class Arm:
    """One arm to tune: the grid's axis levels, with the base settings and data its runs use."""

    name: str
    axes: dict
    settings: dict
    dataset: dict
    # The experiment file's folder (user code, relative data paths), as RunSpec.base_dir.
    base_dir: str | None = None


def select_arms(specs: list[RunSpec], filters: list[str]) -> list[Arm]:
    """The distinct axis combinations of the grid (seeds excluded), optionally only those matching `--arm`."""
    chosen = filter_specs(specs, filters, source="--arm") if filters else specs
    if not chosen:
        raise UserError(f"--arm {' '.join(filters)}: no arm of the grid matches")
    arms: dict[str, Arm] = {}
    for spec in chosen:
        name = arm_name(spec.axes)
        arms.setdefault(
            name,
            Arm(name, dict(spec.axes), dict(spec.settings), dict(spec.dataset), spec.base_dir),
        )
    return list(arms.values())
