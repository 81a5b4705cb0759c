"""Accuracy levels that need no learning (chance, majority class) and words for where an accuracy sits.

Every run records them in its summary (`baseline`: `n_classes`, `n_val`, `chance` = 1/n_classes,
`majority_val` and `majority_train`, the share of the commonest class in each split); analysis.tables
turns them into the columns `baseline/<key>`. An accuracy is "at" a level when it is within
`tolerance(n_val)` = 1/sqrt(n_val) of it: two binomial standard errors of an accuracy measured on
n_val examples at p = 0.5 (0.0625 for 256 validation examples).

Words, from the value a (a group mean or one run's), chance c, majority share m and tolerance t:

- `below chance`: a < c - t;
- `at chance`: |a - c| <= t;
- `at the majority share`: |a - m| <= t (predicting the commonest class does that);
- `between chance and the majority share`: above chance, below m - t;
- `plateau above chance`: above both, below 1 - t, and flat: every run's last epochs (the last
  half, at least 2) stay within t of each other;
- `above chance`: above both otherwise (still rising, or at 1).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from keras_ablate.analysis.tables import Tables

COLUMNS = ("baseline/chance", "baseline/majority_val", "baseline/majority_train", "baseline/n_val")


def is_accuracy(metric: str) -> bool:
    """Accuracy-valued metrics (final/val/accuracy, epoch1/val/accuracy, ...), not gaps between two."""
    return "accuracy" in metric and not metric.startswith("gap/")


def tolerance(n_val: float) -> float:
    """How close an accuracy on n_val examples must be to a level to count as at it: 1/sqrt(n_val)."""
    return 1.0 / math.sqrt(n_val) if n_val and n_val > 0 else math.nan


def plateaued(values, n_val: float) -> bool | None:
    """Whether a run's per-epoch accuracies (in epoch order) end flat: the last half of the epochs,
    at least 2, within 1/sqrt(n_val) of each other; None with fewer than 2 finite epochs."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) < 2:
        return None
    tail = values[-max(2, math.ceil(len(values) / 2)) :]
    return bool(tail.max() - tail.min() <= tolerance(n_val))


def describe(
    value: float, chance: float, majority: float, n_val: float, plateau: bool | None = None
) -> str:
    """Where an accuracy sits relative to chance and the majority share (see the module docstring)."""
    t = tolerance(n_val)
    if not all(math.isfinite(x) for x in (value, chance, majority, t)):
        return ""
    if value < chance - t:
        return "below chance"
    if abs(value - chance) <= t:
        return "at chance"
    if abs(value - majority) <= t:
        return "at the majority share"
    if value < majority:
        return "between chance and the majority share"
    if plateau and value < 1 - t:
        return "plateau above chance"
    return "above chance"


def levels_text(chance: float, majority: float, split: str = "val") -> str:
    """'chance 0.25, majority 0.27' (the majority share of the given split)."""
    if not (math.isfinite(chance) and math.isfinite(majority)):
        return ""
    return f"chance {chance:.3g}, majority {majority:.3g}" + (
        " (train)" if split == "train" else ""
    )


def split_of(runs: pd.DataFrame, metric: str) -> str:
    """'train', 'test' (when the runs recorded the test split's majority share) or 'val'."""
    path = f"/{metric}"
    if "/train/" in path:
        return "train"
    if "/test/" in path and "baseline/majority_test" in runs.columns:
        return "test"
    return "val"


def group_text(runs: pd.DataFrame, metric: str, value: float) -> str:
    """'chance 0.25, majority 0.27: plateau above chance' for a group of runs and an accuracy of it
    (their mean); '' when the runs recorded no baseline or the metric is not an accuracy."""
    if not is_accuracy(metric) or runs.empty or "baseline/chance" not in runs.columns:
        return ""
    split = split_of(runs, metric)
    chance = _mean(runs, "baseline/chance")
    majority = _mean(runs, f"baseline/majority_{split}")
    n_val = _mean(runs, f"baseline/n_{'val' if split == 'train' else split}")
    plateau = None
    flags = runs.get(f"plateau/{metric.split('/', 1)[-1]}")
    if metric.startswith("final/") and flags is not None:
        flags = flags.dropna()
        plateau = bool(len(flags)) and bool(flags.astype(bool).all())
    levels = levels_text(chance, majority, split)
    words = describe(value, chance, majority, n_val, plateau) if math.isfinite(value) else ""
    return f"{levels}: {words}" if levels and words else levels


def plateau_flags(tables: Tables, metric: str) -> pd.Series:
    """run_id -> 1.0 / 0.0 whether the run's `metric` history ends flat (NaN below 2 epochs)."""
    h = tables.history
    runs = tables.runs
    if h.empty or runs.empty or "baseline/n_val" not in runs.columns:
        return pd.Series(dtype=float)
    n_val = runs.set_index(runs["run_id"].astype(str))["baseline/n_val"]
    rows = h[(h["metric"] == metric).to_numpy()]
    out = {}
    for run_id, part in rows.groupby("run_id", observed=True):
        flag = plateaued(part.sort_values("epoch")["value"], n_val.get(str(run_id), math.nan))
        out[str(run_id)] = math.nan if flag is None else float(flag)
    return pd.Series(out, dtype=float)


def _mean(runs: pd.DataFrame, column: str) -> float:
    if column not in runs.columns:
        return math.nan
    values = pd.to_numeric(runs[column], errors="coerce").dropna()
    return float(values.mean()) if len(values) else math.nan
