"""The experiment file's schema (pydantic) and the RunSpec every later stage receives.

Over 400 lines because every section of the file (seeds: {min, max, until} included) is one
model here, so that one file is the whole schema a user can write.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationInfo, field_validator

from keras_ablate import store
from keras_ablate.config.levels import (
    ACTIVATIONS,
    ARCHITECTURES,
    NORMALIZATIONS,
    OPTIMIZERS,
    parse_clip,
    parse_init,
    parse_kernel_init,
    spell_level,
)
from keras_ablate.config.usermodels import PARAMS_PREFIX, USER_MODELS, check_architecture
from keras_ablate.errors import unknown_name

# Seeds go to keras.utils.set_random_seed, whose NumPy part takes 0 <= seed < 2**32.
MAX_SEED = 2**32 - 1


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
        description="cnn | rnn | lstm | gru | mlp | lstm_nig | lstm_nfg | lstm_nog | lstm_cifg | "
        "lstm_as_rnn, a name from models:, or MODULE:FUNCTION (docs/USER_MODELS.md)",
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
        if info.field_name == "architecture":
            return check_architecture(v)
        return _check_name(info.field_name, v, _REGISTRIES[info.field_name])

    @field_validator("clip", mode="before")
    @classmethod
    def _clip(cls, v: Any) -> str:
        # One spelling per level, so 'norm:1' and 'norm:1.0' give the same run_id.
        return spell_level(*parse_clip(v))

    @field_validator("init", mode="before")
    @classmethod
    def _init(cls, v: Any) -> str:
        return spell_level(*parse_init(v))

    @field_validator("kernel_init", mode="before")
    @classmethod
    def _kernel_init(cls, v: Any) -> str:
        return spell_level(*parse_kernel_init(v))

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


class ProtocolSection(BaseModel):
    """The fair-comparison protocol: every arm trained at each rate, compared at its own best."""

    model_config = ConfigDict(extra="forbid")

    learning_rate: list[float] = Field(
        min_length=1, description="every arm is trained at each rate (the grid's runs x rates)"
    )
    select_on: str = Field(
        "val/loss",
        description="validation metric that picks each arm's rate (mean over its seeds)",
    )

    @field_validator("learning_rate")
    @classmethod
    def _rates(cls, v: list[float]) -> list[float]:
        if any(not r > 0 for r in v):
            raise ValueError("every learning rate must be > 0")
        if len({float(r) for r in v}) != len(v):
            raise ValueError("a learning rate appears twice")
        return [float(r) for r in v]

    @field_validator("select_on")
    @classmethod
    def _validation_only(cls, v: str) -> str:
        if not v.startswith("val/"):
            raise ValueError(
                f"select_on must be a validation metric (val/loss, val/accuracy, ...), got "
                f"{v!r}: the test split is never used to select anything"
            )
        return v


class AnalysisSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metric: str | None = Field(
        None, description="history metric to compare, default val/<task metric>"
    )
    target_fraction: float = Field(
        0.9, gt=0, le=1, description="target = this x best run's final metric"
    )
    target: float | None = Field(None, description="absolute target (overrides target_fraction)")
    interval: Literal["bootstrap", "t"] = Field(
        "bootstrap",
        description="confidence intervals: bootstrap over runs (BCa, expanded) or Student t (analysis.stats)",
    )
    resamples: int = Field(2000, ge=100, le=1_000_000, description="bootstrap resamples")
    min_effect: float | None = Field(
        None,
        gt=0,
        description="smallest difference of the score worth resolving: the report says how many seeds it needs",
    )


class AdaptiveSeeds(BaseModel):
    """`seeds: {min: 3, max: 10, until: resolved}`: run `min` seeds, then add `step` seeds per round
    to the arms of unresolved comparisons until all are resolved or `max` is reached (adaptive.py;
    the error-control rule is in analysis/sequential.py)."""

    model_config = ConfigDict(extra="forbid")

    min: int = Field(3, ge=2, le=1000, description="seeds every arm gets before the first look")
    max: int = Field(10, ge=2, le=1000, description="most seeds an arm gets")
    until: Literal["resolved"] = Field(
        "resolved", description="stop when every comparison is resolved (the only rule)"
    )
    step: int = Field(1, ge=1, le=100, description="seeds added per round to an unresolved arm")

    @field_validator("max")
    @classmethod
    def _max_at_least_min(cls, v: int, info: ValidationInfo) -> int:
        low = info.data.get("min")
        if low is not None and v < low:
            raise ValueError(f"max ({v}) must be at least min ({low})")
        return v


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
    """The `tune:` section: search nuisance settings per arm with keras-tuner (config/tuning.py, tuning/)."""

    model_config = ConfigDict(extra="forbid")

    tuner: Literal["random", "bayesian", "hyperband", "grid"] = "random"
    objective: str = Field(
        "val_loss", description="a name in keras_ablate.tuning.objectives.OBJECTIVES"
    )
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
    """The `claim:` section: a statement tested by this experiment (rules in claims/rules.py)."""

    model_config = ConfigDict(extra="forbid")

    id: int = Field(ge=1, description="claim number; `keras-ablate claims --only ID`")
    statement: str = Field(min_length=1, description="the claim, in words")
    metrics: list[str] = Field(
        default_factory=list, description="per-run columns the rule reads (for the report)"
    )
    rule: dict[str, Any] = Field(
        description="compare | threshold | equivalent | all | any (claims/rules.py)"
    )
    notes: str = Field("", description="what the rule cannot say, or where the claim is imprecise")
    revised: str | None = Field(
        None, description="how and why the rule changed after a result was seen"
    )
    # The verdict again at this many times the epochs (each arm at its selected rate); a verdict
    # that changes is reported as budget-sensitive (claims/running.py). 1: no check.
    budget_check: float = Field(2.0, ge=1.0, le=10.0, description="budget check: x the epochs")


class Experiment(BaseModel):
    """The whole experiment file."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    description: str = ""
    dataset: DatasetSection
    base: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    seeds: list[int] | int | AdaptiveSeeds = Field(
        default_factory=lambda: [0],
        description="a list of seeds, a count N (seeds 0 .. N-1) or {min, max, until: resolved}",
    )
    exclude: list[dict[str, Any]] = Field(default_factory=list)
    design: Literal["factorial", "one_at_a_time"] = "factorial"
    reference: dict[str, Any] = Field(default_factory=dict, description="reference level per axis")
    analysis: AnalysisSection = Field(default_factory=AnalysisSection)
    resources: ResourcesSection = Field(default_factory=ResourcesSection)
    tune: TuneSection | None = None
    protocol: ProtocolSection | None = Field(
        None, description="each arm at its own learning rate, selected on validation"
    )
    # `tuning` (results/<experiment>/tuning/<arm>/best.yaml) or a best.yaml / tuning folder path.
    base_from: str | None = Field(
        None, description="take tuned settings: defaults < base < base_from < grid"
    )
    claim: ClaimSection | None = Field(None, description="a study-note claim this experiment tests")
    models: dict[str, str] = Field(
        default_factory=dict,
        description="your own architectures: name -> MODULE:FUNCTION, usable as architecture levels",
    )
    # Things worth saying that do not stop a plan (expand fills it): the CLI prints them.
    _warnings: list[str] = PrivateAttr(default_factory=list)
    # Set by expand: the file's Locator (later checks, e.g. `run` building a user model, point
    # at the key that named it) and the folder user code and relative paths are looked up in.
    _locator: Any = PrivateAttr(None)
    _base_dir: str | None = PrivateAttr(None)

    @property
    def locator(self):
        return self._locator

    @property
    def base_dir(self) -> str | None:
        return self._base_dir

    @property
    def warnings(self) -> list[str]:
        return list(self._warnings)

    @property
    def seed_list(self) -> list[int]:
        """The seeds every arm runs (for adaptive seeds, the first `min`)."""
        if isinstance(self.seeds, AdaptiveSeeds):
            return list(range(self.seeds.min))
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)

    @property
    def adaptive(self) -> AdaptiveSeeds | None:
        """The adaptive-seeds rule of `seeds: {min, max, until}`, else None."""
        return self.seeds if isinstance(self.seeds, AdaptiveSeeds) else None

    @property
    def slug(self) -> str:
        """The results folder name (store.slug_of): the name itself when it is folder-safe."""
        return store.slug_of(self.name)

    def folder(self, results_dir: str | Path) -> Path:
        """results_dir/<slug>, or the folder an earlier version named (store.experiment_folder)."""
        return store.experiment_folder(results_dir, self.name)


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
    # The experiment file's folder, where the user's modules and relative data paths are looked
    # up; not part of the run id (a moved checkout keeps its runs). None: nothing to look up.
    base_dir: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = {
            "experiment": self.experiment,
            "run_id": self.run_id,
            "settings": self.settings,
            "dataset": self.dataset,
            "seed": self.seed,
            "axes": self.axes,
            "origins": self.origins,
        }
        if self.base_dir is not None:
            out["base_dir"] = self.base_dir
        return out

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


__all__ = ["PARAMS_PREFIX", "USER_MODELS"]
