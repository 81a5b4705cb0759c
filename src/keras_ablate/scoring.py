"""One rule for a run's recorded values: which direction is better, what a diverged run keeps.

Shared by training (writing the records), tuning and analysis (reading them), so the records and
every table, figure, effect, claim and tuning objective read the values the same way. Imports
neither TensorFlow nor any other module of the project.

What a diverged run keeps. Step k (0-based, `diverged_step`) is the first step whose loss or
gradient norm was not finite; the weights that step started from, and every later weight, are
the diverged weights. With n steps per epoch:

- training values of epoch e (1-based: train/loss, train/<metric>, train/clip_fraction, averaged
  over the epoch's steps (e-1)n .. en-1) are kept when all those steps came before k: e*n <= k;
- end-of-epoch measurements of epoch e (val/..., test/... after the last epoch, and the probe
  tables, whose epoch 0 is the initialization) are taken on the weights after step en-1, the weights step en starts from:
  they are kept when en < k.

Everything else of those epochs becomes NaN, so a diverged run has no final value (the epoch it
stopped in always contains step k). Keras still evaluates the validation set after
StopOnDivergence ends fit; on NaN weights every prediction is the same class, which scores
the share of that class: a finite accuracy that no longer measures anything.

A diverged run's score (the comparison metric at the last epoch) is therefore missing, and it
takes the worst finite value of that metric among the experiment's finished runs; its
divergence is counted separately (analysis.metrics.score, claims.evaluation).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

# Substrings of a metric name for which a higher value is better; everything else is lower-better.
HIGHER_IS_BETTER = ("accuracy", "auc", "precision", "recall", "f1", "cosine", "t0_ratio")
# Prefixes that make a name lower-better whatever it contains (gap/accuracy: overfitting).
LOWER_IS_BETTER_PREFIXES = ("gap/",)
# Columns of a probe table that locate a measurement rather than hold one.
PROBE_KEYS = ("epoch", "layer", "quantity", "t", "distance", "n_examples", "position", "kind")


def higher_is_better(name: str) -> bool:
    """Whether a larger value of the metric `name` is better (accuracy, cosine, ...)."""
    name = name.lower()
    if name.startswith(LOWER_IS_BETTER_PREFIXES):
        return False
    return any(word in name for word in HIGHER_IS_BETTER)


# Substrings of a metric name whose values are fractions in [0, 1].
FRACTIONS = (
    "accuracy",
    "auc",
    "precision",
    "recall",
    "f1",
    "clip_rate",
    "plateau/",
    "reached_target",
)
# Substrings of a metric name whose values are never negative (errors and losses).
NON_NEGATIVE = ("loss", "mse", "mae")


def metric_range(name: str) -> tuple[float, float] | None:
    """The values a metric can take, (low, high), or None when it is unbounded or unknown.

    Accuracies and other fractions lie in [0, 1], cosines and accuracy gaps (train - val) in
    [-1, 1], losses and squared / absolute errors (not their gaps or ratios) in [0, inf). Intervals are kept inside this range
    (analysis.stats): a t interval on a bounded metric can leave it.
    """
    name = name.lower()
    if name.startswith(LOWER_IS_BETTER_PREFIXES):
        return (-1.0, 1.0) if any(word in name for word in FRACTIONS) else None
    if "cosine" in name:
        return (-1.0, 1.0)
    if any(word in name for word in FRACTIONS):
        return (0.0, 1.0)
    if any(word in name for word in NON_NEGATIVE) and "ratio" not in name:
        return (0.0, math.inf)
    return None


def kept_epochs(diverged_step: int | None, steps_per_epoch: int | None) -> tuple[float, float]:
    """(last epoch whose training values are kept, last epoch whose end-of-epoch measurements are kept).

    Both are inf for a run that did not diverge. For a diverged run: k // n and (k - 1) // n,
    where -1 means that not even the initialization was measured on finite-loss weights.
    """
    if diverged_step is None or _missing(diverged_step):
        return math.inf, math.inf
    k, n = int(diverged_step), int(steps_per_epoch or 1)
    return float(k // n), float((k - 1) // n)


def is_end_of_epoch(column: str) -> bool:
    """History columns measured on the weights after an epoch (validation, and the held-out test
    score after the last one) rather than during it."""
    return column.startswith(("val/", "test/"))


def blank_history(
    history: pd.DataFrame, diverged_step: int | None, steps_per_epoch: int | None
) -> pd.DataFrame:
    """A wide history (epoch, train/..., val/...) with the values of the diverged weights set to NaN."""
    last_train, last_end = kept_epochs(diverged_step, steps_per_epoch)
    if math.isinf(last_train) or history.empty or "epoch" not in history.columns:
        return history
    history = history.copy()
    epoch = history["epoch"].to_numpy(dtype=float)
    for column in history.columns:
        if column == "epoch":
            continue
        last = last_end if is_end_of_epoch(column) else last_train
        history[column] = history[column].astype(float).where(epoch <= last)
    return history


def blank_probe_table(
    table: pd.DataFrame, diverged_step: int | None, steps_per_epoch: int | None
) -> pd.DataFrame:
    """A probe table (epoch 0 = initialization, then after every epoch) with the measurements taken on
    the diverged weights set to NaN (every float column that is not a key)."""
    _, last_end = kept_epochs(diverged_step, steps_per_epoch)
    if math.isinf(last_end) or table.empty or "epoch" not in table.columns:
        return table
    table = table.copy()
    bad = table["epoch"].to_numpy(dtype=float) > last_end
    for column in value_columns(table):
        table.loc[bad, column] = np.nan
    return table


def value_columns(table: pd.DataFrame) -> list[str]:
    """The float columns of a probe table that hold measurements (not run_id, epoch, layer, ...)."""
    return [
        c
        for c in table.columns
        if c not in PROBE_KEYS and c != "run_id" and pd.api.types.is_float_dtype(table[c])
    ]


def final_values(history: pd.DataFrame) -> dict:
    """Each history metric at the last epoch (None where it is not finite)."""
    if history.empty:
        return {}
    return {k: _clean(v) for k, v in history.iloc[-1].items() if k != "epoch"}


def best_values(history: pd.DataFrame) -> dict:
    """Each history metric at its best epoch (max where higher is better, else min; None if no finite value)."""
    out = {}
    for column in history.columns:
        if column == "epoch":
            continue
        values = history[column].to_numpy(dtype=float)
        values = values[np.isfinite(values)]
        if not len(values):
            out[column] = None
            continue
        out[column] = float(values.max() if higher_is_better(column) else values.min())
    return out


def _clean(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _missing(value) -> bool:
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return True
