"""Experiment files: schema (pydantic), loading with located errors, and expansion into RunSpecs."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from keras_ablate import data as data_registry
from keras_ablate import yaml_input
from keras_ablate.errors import ConfigError, DataError, suggest, unknown_name
from keras_ablate.models.names import (
    ACTIVATIONS,
    ARCHITECTURES,
    CLIP_KINDS,
    NORMALIZATIONS,
    OPTIMIZERS,
)

# Grid axes may also vary a dataset option: `dataset.seq_len: [10, 50]`.
DATASET_AXIS_PREFIX = "dataset."
# The most runs one file may plan (the default grid has 96): enough for a cluster, and a bound
# that a mistyped `seeds: 1e9` or a runaway factorial hits at once instead of exhausting memory.
MAX_RUNS = 100_000
# Seeds go to keras.utils.set_random_seed, whose NumPy part takes 0 <= seed < 2**32.
MAX_SEED = 2**32 - 1
# Folder names longer than this are cut and given a hash (most file systems allow 255 bytes).
MAX_SLUG = 80


def parse_clip(text: str) -> tuple[str, float | None]:
    """Parse a clip level: 'none', 'value:0.5', 'norm:1.0' or 'global_norm:5'.

    Returns:
        (kind, threshold) with kind in {'none', 'value', 'norm', 'global_norm'}.
    """
    text = str(text).strip()
    if text == "none":
        return "none", None
    kind, sep, value = text.partition(":")
    if not sep or kind not in CLIP_KINDS:
        raise ValueError(
            f"clip must be 'none' or KIND:THRESHOLD with KIND in {', '.join(CLIP_KINDS)} "
            f"(e.g. 'norm:1.0'), got '{text}'{suggest(kind, CLIP_KINDS)}"
        )
    try:
        threshold = float(value)
    except ValueError:
        raise ValueError(f"clip threshold must be a number, got '{value}' in '{text}'") from None
    if not threshold > 0:
        raise ValueError(f"clip threshold must be > 0, got {threshold} in '{text}'")
    return kind, threshold


# Recurrent-kernel initializations (`init`) and dense/conv kernel initializations (`kernel_init`).
INIT_KINDS: tuple[str, ...] = ("glorot_uniform", "orthogonal", "identity", "spectral_radius")
KERNEL_INIT_KINDS: tuple[str, ...] = ("glorot_uniform", "he_normal", "normal")


def _parse_scaled(
    text: str, setting: str, plain: tuple[str, ...], scaled: str, what: str, example: str
):
    """Shared parser for 'name' or 'scaled:VALUE' levels; returns (name, value or None)."""
    text = str(text).strip()
    if text in plain:
        return text, None
    kind, sep, value = text.partition(":")
    choices = (*plain, scaled)
    if kind != scaled or not sep:
        raise ValueError(
            f"{setting} must be one of {', '.join(plain)} or {scaled}:{what} (e.g. '{example}'), "
            f"got '{text}'{suggest(kind, choices)}"
        )
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{setting} {what} must be a number, got '{value}' in '{text}'") from None
    if not number > 0 or number == float("inf"):
        raise ValueError(f"{setting} {what} must be a finite number > 0, got {number} in '{text}'")
    return kind, number


def parse_init(text: str) -> tuple[str, float | None]:
    """Parse a recurrent `init` level: 'glorot_uniform', 'orthogonal', 'identity' or 'spectral_radius:R'.

    Returns:
        (kind, radius) with radius None except for 'spectral_radius'.
    """
    return _parse_scaled(
        text, "init", INIT_KINDS[:3], "spectral_radius", "RADIUS", "spectral_radius:1.1"
    )


def parse_kernel_init(text: str) -> tuple[str, float | None]:
    """Parse a dense/conv `kernel_init` level: 'glorot_uniform', 'he_normal' or 'normal:SIGMA'.

    Returns:
        (kind, sigma) with sigma None except for 'normal'.
    """
    return _parse_scaled(
        text, "kernel_init", KERNEL_INIT_KINDS[:2], "normal", "SIGMA", "normal:0.05"
    )


def _check_name(kind: str, value: str, choices) -> str:
    if value not in choices:
        raise ValueError(unknown_name(kind, value, choices))
    return value


# Settings whose value must be a name from a registry (the error lists the known names).
_REGISTRIES = {
    "architecture": ARCHITECTURES,
    "activation": ACTIVATIONS,
    "normalization": NORMALIZATIONS,
    "optimizer": OPTIMIZERS,
}


# Settings that change how a model is trained, not the model: runs that differ only in these
# build the same model (training/loop.py reuses it, compiled again for the new settings).
TRAINING_ONLY = (
    "optimizer",
    "learning_rate",
    "clip",
    "batch_size",
    "epochs",
    "jit_compile",
    "steps_per_execution",
)


class RunSettings(BaseModel):
    """Every setting of one run. Each field name is the YAML key, the column and the hp name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The scientific axes.
    architecture: str = Field(
        "lstm",
        description="cnn | rnn | lstm | gru | mlp | lstm_nig | lstm_nfg | lstm_nog | lstm_cifg | lstm_as_rnn",
    )
    activation: str = Field("tanh", description="main nonlinearity; gates stay sigmoid")
    normalization: str = Field(
        "none",
        description="none | batch | layer | layer_sum; inside the cell for recurrent models (layer: Ba et al. LN(Wx) + LN(Uh), layer_sum: LN(Wx + Uh)), per layer for cnn/mlp",
    )
    clip: str = Field("none", description="none | value:X | norm:X | global_norm:X")
    # Model size.
    units: int = Field(32, ge=1, description="recurrent units / dense width")
    depth: int = Field(1, ge=1, description="stacked recurrent layers, conv blocks or dense layers")
    embed_dim: int = Field(32, ge=1, description="token embedding width")
    filters: int = Field(32, ge=1, description="feature maps per CNN window")
    kernel_sizes: tuple[int, ...] = Field((3, 4, 5), description="CNN n-gram windows (Kim 2014)")
    pooling: Literal["max", "average"] = Field("max", description="CNN pooling over time")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout before the output layer")
    leaky_relu_slope: float = Field(0.2, ge=0.0, description="negative slope of leaky_relu")
    maxout_pieces: int = Field(
        2, ge=2, description="linear pieces k of a maxout unit (layer width x k)"
    )
    norm_position: Literal["pre", "post"] = Field(
        "pre", description="cnn/mlp: normalization before (pre) or after (post) the activation"
    )
    bn_gamma_init: float = Field(
        0.1, gt=0.0, description="recurrent batch norm scale init (Cooijmans 2016)"
    )
    # Initialization: Keras's own defaults, so the standard models are unchanged.
    init: str = Field(
        "orthogonal",
        description="recurrent kernels: glorot_uniform | orthogonal | identity | spectral_radius:R",
    )
    kernel_init: str = Field(
        "glorot_uniform", description="dense/conv kernels: glorot_uniform | he_normal | normal:S"
    )
    forget_bias: float = Field(
        1.0, description="LSTM forget-gate bias init: 1 (Keras unit_forget_bias) or 0"
    )
    # Optimization.
    optimizer: str = Field("adam", description="adam | sgd | rmsprop | adamw")
    learning_rate: float = Field(1e-3, gt=0.0)
    batch_size: int = Field(64, ge=1)
    epochs: int = Field(3, ge=1)
    # Speed: XLA pays back its compile time only on long runs (training/compile_policy.py).
    jit_compile: bool | Literal["auto"] = Field(
        "auto",
        description="compile the train step with XLA: auto (when the run is long enough to pay "
        "back the compile time; training/compile_policy.py), true or false",
    )
    steps_per_execution: int = Field(1, ge=1, description="train steps per tf.function call")

    @field_validator("architecture", "activation", "normalization", "optimizer")
    @classmethod
    def _registered(cls, v: str, info: ValidationInfo) -> str:
        return _check_name(info.field_name, v, _REGISTRIES[info.field_name])

    @field_validator("clip", mode="before")
    @classmethod
    def _clip(cls, v: Any) -> str:
        kind, threshold = parse_clip(v)
        # One spelling per level, so 'norm:1' and 'norm:1.0' give the same run_id.
        return "none" if kind == "none" else f"{kind}:{threshold!r}"

    @field_validator("init", mode="before")
    @classmethod
    def _init(cls, v: Any) -> str:
        kind, radius = parse_init(v)
        return kind if radius is None else f"{kind}:{radius!r}"

    @field_validator("kernel_init", mode="before")
    @classmethod
    def _kernel_init(cls, v: Any) -> str:
        kind, sigma = parse_kernel_init(v)
        return kind if sigma is None else f"{kind}:{sigma!r}"

    @field_validator("forget_bias")
    @classmethod
    def _forget_bias(cls, v: float) -> float:
        if v not in (0.0, 1.0):
            raise ValueError(
                f"forget_bias must be 0 or 1 (the two initializations compared), got {v}"
            )
        return float(v)

    @field_validator("kernel_sizes")
    @classmethod
    def _kernel_sizes(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or any(k < 1 for k in v):
            raise ValueError("kernel_sizes must be a non-empty list of positive window sizes")
        return v


SETTING_KEYS: tuple[str, ...] = tuple(RunSettings.model_fields)


class DatasetSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    options: dict[str, Any] = Field(default_factory=dict)


class AnalysisSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metric: str | None = Field(
        None, description="history metric to compare, default val/<task metric>"
    )
    target_fraction: float = Field(
        0.9, gt=0, le=1, description="target = this x best run's final metric"
    )
    target: float | None = Field(None, description="absolute target (overrides target_fraction)")


class ResourcesSection(BaseModel):
    """The `resources:` section: what one run needs (runner.py, executors.py)."""

    model_config = ConfigDict(extra="forbid")

    # Also the intra/inter-op thread count of every run in every executor: without XLA, oneDNN
    # convolutions give different bits with 1 and 2 threads, so it must not depend on --workers.
    num_cpus: int = Field(1, ge=1, description="CPU threads per run (and Ray num_cpus per task)")
    num_gpus: float = Field(
        0.0, ge=0.0, description="GPUs per run (Ray num_gpus per task; fractions share a GPU)"
    )


class TuneSection(BaseModel):
    """The `tune:` section: search nuisance settings per arm with keras-tuner (tuning_config.py, tuning.py)."""

    model_config = ConfigDict(extra="forbid")

    tuner: Literal["random", "bayesian", "hyperband", "grid"] = "random"
    objective: str = Field("val_loss", description="a name in keras_ablate.objectives.OBJECTIVES")
    max_trials: int | None = Field(
        None, ge=1, description="trials per arm (random/bayesian: 10; grid: all points)"
    )
    max_epochs: int | None = Field(
        None, ge=1, description="hyperband: most epochs of one trial (default: epochs)"
    )
    factor: int = Field(3, ge=2, description="hyperband: reduction factor between rounds")
    seed: int = Field(
        0, ge=0, le=MAX_SEED, description="seeds the search and every trial's weights and shuffling"
    )
    space: dict[str, Any] = Field(
        default_factory=dict, description="setting -> {type: int|float|choice, ...}"
    )


class ClaimSection(BaseModel):
    """The `claim:` section: a statement tested by this experiment (rule checked in analysis/claims.py)."""

    model_config = ConfigDict(extra="forbid")

    id: int = Field(ge=1, description="claim number; `keras-ablate claims --only ID`")
    statement: str = Field(min_length=1, description="the claim, in words")
    metrics: list[str] = Field(
        default_factory=list, description="per-run columns the rule reads (for the report)"
    )
    rule: dict[str, Any] = Field(
        description="compare | threshold | equivalent | all | any (analysis/claims.py)"
    )
    notes: str = Field("", description="what the rule cannot say, or where the claim is imprecise")
    revised: str | None = Field(
        None, description="how and why the rule changed after a result was seen"
    )


class Experiment(BaseModel):
    """The whole experiment file."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    description: str = ""
    dataset: DatasetSection
    base: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    seeds: list[int] | int = Field(default_factory=lambda: [0])
    exclude: list[dict[str, Any]] = Field(default_factory=list)
    design: Literal["factorial", "one_at_a_time"] = "factorial"
    reference: dict[str, Any] = Field(default_factory=dict, description="reference level per axis")
    analysis: AnalysisSection = Field(default_factory=AnalysisSection)
    resources: ResourcesSection = Field(default_factory=ResourcesSection)
    tune: TuneSection | None = None
    # `tuning` (results/<experiment>/tuning/<arm>/best.yaml) or a best.yaml / tuning folder path.
    base_from: str | None = Field(
        None, description="take tuned settings: defaults < base < base_from < grid"
    )
    claim: ClaimSection | None = Field(None, description="a study-note claim this experiment tests")
    # Things worth saying that do not stop a plan (expand fills it): the CLI prints them.
    _warnings: list[str] = PrivateAttr(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        return list(self._warnings)

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)

    @property
    def slug(self) -> str:
        """The results folder name: the name itself when it is folder-safe, else a safe prefix plus
        a hash of the name, so that two names never share a folder ('a/b' and 'a b' differ)."""
        return slug_of(self.name)

    def folder(self, results_dir: str | Path) -> Path:
        """results_dir/<slug>. A folder named by the earlier, non-injective slug (the bare safe
        name) is still used while its experiment.json says it holds this very experiment."""
        root = Path(results_dir)
        current, legacy = root / self.slug, root / _safe_name(self.name)
        if legacy != current and not current.exists():
            try:
                owner = json.loads((legacy / "experiment.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                owner = None
            if isinstance(owner, dict) and owner.get("name") == self.name:
                return legacy
        return current


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "experiment"


def slug_of(name: str) -> str:
    """Folder-safe, injective name of an experiment (see Experiment.slug)."""
    safe = _safe_name(name)
    if safe == name and len(name) <= MAX_SLUG:
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{safe[:MAX_SLUG]}-{digest}"


@dataclass(frozen=True)
class RunSpec:
    """One run: normalized settings, dataset and seed; run_id is a hash of exactly these."""

    experiment: str
    run_id: str
    settings: dict[str, Any]
    dataset: dict[str, Any]
    seed: int
    axes: dict[str, Any] = field(default_factory=dict)
    # Where each explicitly set value came from: 'base', 'grid' or the best.yaml it was tuned in.
    origins: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment,
            "run_id": self.run_id,
            "settings": self.settings,
            "dataset": self.dataset,
            "seed": self.seed,
            "axes": self.axes,
            "origins": self.origins,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RunSpec:
        return cls(**d)

    def model_key(self) -> str:
        """Equal for runs that build the same model on the same data: everything but the seed
        and the settings that only say how it is trained (TRAINING_ONLY)."""
        model = {k: v for k, v in self.settings.items() if k not in TRAINING_ONLY}
        return json.dumps([model, self.dataset], sort_keys=True, default=str)

    def label(self) -> str:
        """Short human label: the axis levels that vary, then the seed."""
        parts = [f"{k}={v}" for k, v in self.axes.items()]
        return " ".join(parts + [f"seed={self.seed}"])


def make_run_id(settings: dict[str, Any], dataset: dict[str, Any], seed: int) -> str:
    """Stable id: key order and float spelling do not change it (inputs are normalized)."""
    blob = json.dumps(
        {"settings": settings, "dataset": dataset, "seed": int(seed)},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


# ---------------------------------------------------------------------------------------------
# Loading with errors that say where.


def _line_map(text: str) -> dict[tuple, int]:
    """Map key paths ('grid', 'activation', 2) to 1-based line numbers in the YAML text."""
    try:
        return yaml_input.load(text, "<text>")[1]
    except ConfigError:
        return {}


class _Locator:
    def __init__(self, source: str, text: str = "", lines: dict[tuple, int] | None = None):
        self.source = source
        self.lines = lines if lines is not None else _line_map(text)

    def where(self, path: tuple) -> str:
        # Use the deepest prefix of the path that has a line.
        for cut in range(len(path), -1, -1):
            if path[:cut] in self.lines:
                return f"{self.source}:{self.lines[path[:cut]]}"
        return self.source

    def error(self, path: tuple, message: str) -> ConfigError:
        key = _format_path(path)
        return ConfigError(
            f"{self.where(path)}: {key}: {message}" if key else f"{self.where(path)}: {message}"
        )


def _format_path(path: tuple) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _pydantic_message(err: dict, model: type[BaseModel] | None) -> str:
    if err["type"] == "extra_forbidden" and model is not None:
        bad = err["loc"][-1]
        valid = list(model.model_fields)
        return f"unknown key '{bad}'{suggest(str(bad), valid)}; valid keys: {', '.join(valid)}"
    msg = err["msg"]
    # pydantic prefixes messages from our validators with "Value error, ".
    return msg.removeprefix("Value error, ")


def _raise_validation(
    loc: _Locator, prefix: tuple, exc: ValidationError, model, errors: list | None = None
) -> None:
    messages = []
    for err in exc.errors() if errors is None else errors:
        path = prefix + tuple(err["loc"])
        messages.append(loc.error(path, _pydantic_message(err, model)).args[0])
    raise ConfigError("\n".join(messages))


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
) -> tuple[Experiment, list[RunSpec]]:
    """Validate and expand experiment YAML text (see load_experiment).

    `results_dir` is where `base_from: tuning` looks; `use_base_from=False` ignores base_from
    (the tune command itself starts from base).
    """
    raw, lines = yaml_input.load(text, source)
    loc = _Locator(source, lines=lines)
    if not isinstance(raw, dict):
        raise loc.error((), "the file must be a mapping with at least 'name' and 'dataset'")
    try:
        exp = Experiment.model_validate(raw)
    except ValidationError as exc:
        _raise_validation(loc, (), exc, _model_for_loc(exc))
    return exp, expand(exp, loc, results_dir=results_dir, use_base_from=use_base_from)


def _model_for_loc(exc: ValidationError):
    # Extra keys at the top level or in nested sections: pick the model whose fields to list.
    loc = exc.errors()[0]["loc"]
    sections = {
        ("dataset",): DatasetSection,
        ("analysis",): AnalysisSection,
        ("tune",): TuneSection,
        ("resources",): ResourcesSection,
    }
    return {(): Experiment, **sections}.get(tuple(loc[:-1]), Experiment)


def _validate_setting(loc, path, key, value, dataset_name, dataset_contexts=None):
    """Validate one key=value (a base entry, an axis level, an exclude entry); return it normalized.

    A dataset option is validated together with the rest of the dataset's options, in each of
    `dataset_contexts` (see _dataset_contexts) until one accepts it: alone it would miss required
    options such as a csv file's path, and checks that span options.
    """
    if key.startswith(DATASET_AXIS_PREFIX):
        option = key[len(DATASET_AXIS_PREFIX) :]
        model = data_registry.get_entry(dataset_name).options_model()
        if option not in model.model_fields:
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
        raise loc.error(path, _pydantic_message((mine or errors[0])[0], model)) from None
    _check_key(loc, path, key)
    try:
        return RunSettings.model_validate({key: value}).model_dump(mode="json")[key]
    except ValidationError as exc:
        raise loc.error(path, _pydantic_message(exc.errors()[0], RunSettings)) from None


def _dataset_levels(exp: Experiment) -> dict[str, list]:
    """option -> the values given for it outside dataset.options: base `dataset.<option>`, grid axes."""
    out: dict[str, list] = {}
    for key, value in exp.base.items():
        if key.startswith(DATASET_AXIS_PREFIX):
            out[key[len(DATASET_AXIS_PREFIX) :]] = [value]
    for key, levels in exp.grid.items():
        if key.startswith(DATASET_AXIS_PREFIX) and levels:
            out[key[len(DATASET_AXIS_PREFIX) :]] = list(levels)
    return out


MAX_DATASET_CONTEXTS = 64  # combinations of other dataset-option levels tried per value


def _dataset_contexts(exp: Experiment, option: str | None) -> list[dict]:
    """The dataset options a value of `option` can meet: dataset.options with one level of every
    other dataset option that base or grid sets (each combination, up to MAX_DATASET_CONTEXTS)."""
    others = {k: v for k, v in _dataset_levels(exp).items() if k != option}
    combos = itertools.islice(itertools.product(*others.values()), MAX_DATASET_CONTEXTS)
    return [{**exp.dataset.options, **dict(zip(others, combo, strict=True))} for combo in combos]


def _check_key(loc, path, key):
    if key not in SETTING_KEYS and not key.startswith(DATASET_AXIS_PREFIX):
        raise loc.error(
            path,
            f"unknown setting '{key}'{suggest(key, SETTING_KEYS)}; valid settings: {', '.join(SETTING_KEYS)}"
            f", or dataset.<option>",
        )


def _freeze(v):
    return json.dumps(v, sort_keys=True)


def expand(
    exp: Experiment,
    loc: _Locator | None = None,
    results_dir: str | Path = "results",
    use_base_from: bool = True,
) -> list[RunSpec]:
    """Expand the design into RunSpecs (factorial or one-at-a-time), minus exclusions.

    Values merge as defaults < base < base_from (tuned) < grid: tuned values replace the
    base they were tuned from, and the scientific axes always come from the grid.
    """
    loc = loc or _Locator("<experiment>", "")
    ds_name = exp.dataset.name
    try:
        ds_entry = data_registry.get_entry(ds_name)
    except ConfigError as exc:
        raise loc.error(("dataset", "name"), str(exc)) from None
    varied = _dataset_levels(exp)
    try:
        ds_entry.options_model().model_validate(exp.dataset.options)
    except ValidationError as exc:
        # Options that base or grid set are checked with their values below (a csv `path` may
        # be an axis); so are checks across options when any of them is set there.
        errors = [
            e for e in exc.errors() if (e["loc"][0] not in varied if e["loc"] else not varied)
        ]
        if errors:
            _raise_validation(loc, ("dataset", "options"), exc, ds_entry.options_model(), errors)

    def contexts(key: str) -> list[dict] | None:
        if not key.startswith(DATASET_AXIS_PREFIX):
            return None
        return _dataset_contexts(exp, key[len(DATASET_AXIS_PREFIX) :])

    base = {}
    for key, value in exp.base.items():
        base[key] = _validate_setting(loc, ("base", key), key, value, ds_name, contexts(key))

    axes: dict[str, list] = {}
    for key, levels in exp.grid.items():
        _check_key(loc, ("grid", key), key)
        if not levels:
            raise loc.error(("grid", key), "empty axis: give at least one level")
        normalized = [
            _validate_setting(loc, ("grid", key, i), key, v, ds_name, contexts(key))
            for i, v in enumerate(levels)
        ]
        seen = set()
        for i, v in enumerate(normalized):
            if _freeze(v) in seen:
                raise loc.error(("grid", key, i), f"level {v!r} appears twice")
            seen.add(_freeze(v))
        axes[key] = normalized

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
            norm_rule[key] = _validate_setting(
                loc, ("exclude", j, key), key, value, ds_name, contexts(key)
            )
        excludes.append(norm_rule)

    for key, value in exp.reference.items():
        if key not in axes:
            raise loc.error(
                ("reference", key), f"'{key}' is not a grid axis; axes: {', '.join(axes)}"
            )
        level = _validate_setting(loc, ("reference", key), key, value, ds_name, contexts(key))
        if _freeze(level) not in {_freeze(v) for v in axes[key]}:
            raise loc.error(
                ("reference", key), f"{value!r} is not a level of axis '{key}': {axes[key]}"
            )

    from keras_ablate import tuning_config

    if exp.tune is not None:
        tuning_config.search_space(exp, loc)
    seeds = _check_seeds(exp, loc)
    _check_plan_size(axes, exp.design, len(seeds), loc)
    combos = list(_design(axes, exp.design))
    tuned = (
        tuning_config.tuned_values(exp, combos, loc, results_dir)
        if exp.base_from and use_base_from
        else None
    )
    specs: list[RunSpec] = []
    fingerprints: dict[str, dict | None] = {}
    train_sizes: dict[str, int | None] = {}
    small_data: set[tuple[int, int]] = set()
    for combo in combos:
        tuned_here, tuned_from = tuned(combo) if tuned else ({}, "")
        merged = {**base, **tuned_here, **combo}
        origins = {
            **dict.fromkeys(base, "base"),
            **dict.fromkeys(tuned_here, tuned_from),
            **dict.fromkeys(combo, "grid"),
        }
        if any(
            all(_freeze(merged.get(k)) == _freeze(v) for k, v in rule.items()) for rule in excludes
        ):
            continue
        settings_in = {k: v for k, v in merged.items() if not k.startswith(DATASET_AXIS_PREFIX)}
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
        dataset = {"name": ds_name, "options": options}
        key = _freeze(options)
        if key not in fingerprints:
            validated = ds_entry.options_model().model_validate(options)
            try:
                fingerprints[key] = ds_entry.fingerprint_of(validated)
                train_sizes[key] = ds_entry.check_of(validated)
            except DataError as exc:
                raise loc.error(("dataset", "options"), str(exc)) from None
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
                )
            )
    if not specs:
        raise loc.error(("exclude",), "every run of the grid is excluded: nothing to run")
    exp._warnings = [_batch_warning(loc, exp, batch, n) for batch, n in sorted(small_data)]
    return specs


def _batch_warning(loc: _Locator, exp: Experiment, batch_size: int, n_train: int) -> str:
    # Point at the grid axis or base entry that set batch_size (else the default applied).
    path = next(
        (p for p in (("grid", "batch_size"), ("base", "batch_size")) if p[1] in getattr(exp, p[0])),
        (),
    )
    where = loc.where(path) + (f": {_format_path(path)}" if path else "")
    return (
        f"{where}: batch_size {batch_size} is larger than the {n_train} training examples of "
        f"dataset '{exp.dataset.name}': every epoch is a single step of {n_train} examples; "
        f"use batch_size <= {n_train} or more training data"
    )


def _check_seeds(exp: Experiment, loc: _Locator) -> list[int]:
    """The seed list, each a valid Keras/NumPy seed, none twice (checked before any run exists)."""
    if isinstance(exp.seeds, int):
        if not 1 <= exp.seeds <= MAX_RUNS:
            raise loc.error(
                ("seeds",),
                f"a count N means seeds 0 .. N-1: give N from 1 to {MAX_RUNS:,} (got "
                f"{exp.seeds}), or a list of seeds",
            )
        return exp.seed_list
    if not exp.seeds:
        raise loc.error(("seeds",), "give at least one seed")
    first: dict[int, int] = {}
    for i, seed in enumerate(exp.seeds):
        if not 0 <= seed <= MAX_SEED:
            raise loc.error(
                ("seeds", i),
                f"seed {seed} is out of range: a seed is an integer from 0 to {MAX_SEED} "
                "(what NumPy and Keras accept)",
            )
        if seed in first:
            raise loc.error(
                ("seeds", i),
                f"seed {seed} appears twice (also seeds[{first[seed]}]): each seed is one run",
            )
        first[seed] = i
    return list(exp.seeds)


def _check_plan_size(axes: dict[str, list], design: str, n_seeds: int, loc: _Locator) -> None:
    """Refuse a plan too large to list before listing it (a typo can multiply a grid by 1000)."""
    sizes = [len(levels) for levels in axes.values()]
    if design == "factorial":
        combos = math.prod(sizes)
        shape = " x ".join(f"{len(v)} {k}" for k, v in axes.items()) or "1 configuration"
    else:
        combos = 1 + sum(n - 1 for n in sizes)
        shape = f"{combos} configurations (one at a time)"
    if combos * n_seeds > MAX_RUNS:
        raise loc.error(
            ("grid",),
            f"{combos * n_seeds:,} runs ({shape} x {n_seeds} seed(s)); one experiment holds at "
            f"most {MAX_RUNS:,}: split it into several files",
        )


def _design(axes: dict[str, list], design: str):
    if not axes:
        yield {}
        return
    keys = list(axes)
    if design == "factorial":
        for values in itertools.product(*(axes[k] for k in keys)):
            yield dict(zip(keys, values, strict=True))
        return
    baseline = {k: axes[k][0] for k in keys}
    yield dict(baseline)
    for k in keys:
        for level in axes[k][1:]:
            yield {**baseline, k: level}


def filter_specs(
    specs: list[RunSpec], filters: list[str], source: str = "--filter"
) -> list[RunSpec]:
    """Keep runs whose axis/setting values match every 'key=level' filter (levels compared as text)."""
    wanted: dict[str, set[str]] = {}
    for f in filters:
        key, sep, value = f.partition("=")
        if not sep or not key:
            raise ConfigError(f"{source}: '{f}' must look like axis=level")
        if key not in SETTING_KEYS and not key.startswith(DATASET_AXIS_PREFIX):
            axes = list(dict.fromkeys(a for s in specs for a in s.axes))
            raise ConfigError(
                f"{source}: unknown key '{key}'{suggest(key, [*axes, *SETTING_KEYS])}; "
                f"axes of this grid: {', '.join(axes) or 'none'} (or any setting: "
                f"{', '.join(SETTING_KEYS)}, or dataset.<option>)"
            )
        wanted.setdefault(key, set()).add(value)

    def value_of(spec: RunSpec, key: str) -> str:
        if key.startswith(DATASET_AXIS_PREFIX):
            return str(spec.dataset["options"].get(key[len(DATASET_AXIS_PREFIX) :]))
        return str(spec.settings[key])

    def matches(spec: RunSpec) -> bool:
        for key, values in wanted.items():
            normalized = set(values)
            if key == "clip":
                try:
                    normalized = {RunSettings(clip=v).clip for v in values}
                except ValidationError as exc:
                    raise ConfigError(
                        f"{source}: {_pydantic_message(exc.errors()[0], None)}"
                    ) from None
            if value_of(spec, key) not in normalized:
                return False
        return True

    return [s for s in specs if matches(s)]


def planned_levels_text(specs: list[RunSpec], filters: list[str]) -> str:
    """'architecture: cnn, lstm; units: 8' for the keys of these filters (what would match)."""
    parts = []
    for key in dict.fromkeys(f.partition("=")[0] for f in filters):
        if key.startswith(DATASET_AXIS_PREFIX):
            values = [s.dataset["options"].get(key[len(DATASET_AXIS_PREFIX) :]) for s in specs]
        else:
            values = [s.settings.get(key) for s in specs]
        levels = list(dict.fromkeys(str(v) for v in values))
        parts.append(f"{key}: {', '.join(levels[:20])}{' ...' if len(levels) > 20 else ''}")
    return "; ".join(parts)
