"""Tuning objectives: one number per trial, computed from its epoch history and step records (no TensorFlow)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from keras_ablate.errors import ConfigError, unknown_name


@dataclass(frozen=True)
class Objective:
    """A named score with a direction. `compute(history, steps)` returns a float (NaN when undefined).

    `history` has one row per epoch with slash names (`val/loss`, `train/accuracy`);
    `steps` has one row per train step (`epoch`, `grad/global_norm`, ...), as a run records them.
    """

    name: str
    direction: Literal["min", "max"]
    compute: Callable[[pd.DataFrame, pd.DataFrame], float]
    description: str
    # The history column it reads, if any: checked against the dataset's task before tuning.
    needs: str | None = None

    def worst(self) -> float:
        return math.inf if self.direction == "min" else -math.inf

    def better(self, a: float, b: float) -> bool:
        return a < b if self.direction == "min" else a > b


OBJECTIVES: dict[str, Objective] = {}


def register_objective(
    name: str, direction: Literal["min", "max"], description: str, needs: str | None = None
):
    """Decorator: add `compute(history, steps) -> float` to the registry under `name`."""

    def decorate(compute):
        OBJECTIVES[name] = Objective(name, direction, compute, description, needs)
        return compute

    return decorate


def get_objective(name: str) -> Objective:
    if name not in OBJECTIVES:
        raise ConfigError(unknown_name("objective", name, OBJECTIVES))
    return OBJECTIVES[name]


def last_value(history: pd.DataFrame, column: str) -> float:
    """The last epoch's value of a history column (NaN when missing): last-epoch, not best-epoch, semantics."""
    if history.empty or column not in history.columns:
        return math.nan
    return float(history[column].iloc[-1])


def _history_objective(
    name: str, column: str, direction: Literal["min", "max"], description: str
) -> None:
    register_objective(name, direction, description, needs=column)(
        lambda history, steps: last_value(history, column)
    )


_history_objective("val_loss", "val/loss", "min", "validation loss after the last epoch")
_history_objective(
    "val_accuracy", "val/accuracy", "max", "validation accuracy after the last epoch"
)
_history_objective(
    "val_mse", "val/mse", "min", "validation mean squared error after the last epoch"
)
_history_objective("train_loss", "train/loss", "min", "training loss averaged over the last epoch")


@register_objective(
    "grad_log_std",
    "min",
    "standard deviation (ddof=1) of the natural log of the global gradient norm over the last epoch's "
    "steps: low means steady gradients, high means spikes or collapse",
)
def grad_log_std(history: pd.DataFrame, steps: pd.DataFrame) -> float:
    if steps.empty or "grad/global_norm" not in steps.columns:
        return math.nan
    last = steps[steps["epoch"] == steps["epoch"].max()]["grad/global_norm"].to_numpy(dtype=float)
    # A zero or non-finite norm has no finite log: the trial is scored as undefined (worst).
    if len(last) < 2 or not np.all(np.isfinite(last)) or np.any(last <= 0):
        return math.nan
    return float(np.std(np.log(last), ddof=1))
