"""Derived per-run metrics: target reached, loss area, divergence, gradient stability, clip rate, score.

Definitions (all per run; "the metric" is YAML `analysis.metric`, default val/<task metric>):

- `final/<m>`, `best/<m>`: last and best epoch value of every history metric (from the summary).
- `target`: YAML `analysis.target`, else `analysis.target_fraction` (default 0.9) of the best
  finished run's final metric when higher is better (accuracy), or the best final value divided by
  the fraction when lower is better (loss: within 1/0.9 of the best).
- `epochs_to_target`: first epoch (1-based) whose metric meets the target; NaN when never met.
  `steps_to_target` = that epoch x steps per epoch (the metric is measured once per epoch).
- `train_loss_auc`: area under the per-step training loss with x in epochs (trapezoid rule),
  from the history's train/loss when a run recorded no steps; NaN when any loss is not finite.
- `diverged`, `diverged_step`: the run's status and the first step with a non-finite loss or norm.
- `grad/log10_norm_std`: sample std of log10 of the global gradient norm (before clipping) over
  the steps with a finite positive norm; `grad/max_median_ratio`: max / median of those norms;
  `grad/clip_rate`: fraction of steps where clipping changed the gradient.
- `plateau/<metric>` (accuracy metrics): 1 when the run's last epochs are flat (analysis.baselines).
- `score`: the final metric used in every comparison. Diverged runs are results, not gaps: a
  diverged run has no final value (nothing measured on its diverged weights is kept, see
  keras_ablate.scoring), so it scores the worst finite final value of the experiment's finished
  runs (worst case), whatever its records say, and its divergence is counted separately
  (divergence rate). Failed runs score NaN: they never enter a mean but are counted wherever runs
  are counted.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from keras_ablate.analysis import baselines
from keras_ablate.analysis.aggregate import Tables
from keras_ablate.scoring import higher_is_better

FINISHED = ("ok", "diverged")

# Every derived column, for tables of means and confidence intervals.
DERIVED = (
    "score",
    "epochs_to_target",
    "steps_to_target",
    "train_loss_auc",
    "grad/log10_norm_std",
    "grad/max_median_ratio",
    "grad/clip_rate",
    "diverged",
)


def chosen_metric(tables: Tables) -> str:
    """YAML analysis.metric, else val/<the task metric the runs recorded>, else val/loss."""
    configured = (tables.info.get("analysis") or {}).get("metric")
    if configured:
        return configured
    runs = tables.runs
    if "metric" in runs.columns and runs["metric"].notna().any():
        return f"val/{runs['metric'].dropna().iloc[0]}"
    return "val/loss"


def add_derived(tables: Tables) -> None:
    """Add the derived columns to tables.runs and the analysis settings to tables.info['derived']."""
    runs = tables.runs
    if runs.empty:
        for col in DERIVED:
            runs[col] = pd.Series(dtype=bool if col == "diverged" else float)
        tables.info["derived"] = {
            "metric": chosen_metric(tables),
            "higher_is_better": False,
            "target": None,
        }
        return
    metric = chosen_metric(tables)
    higher = higher_is_better(metric)
    status = runs["status"].astype(str)
    finished = status.isin(FINISHED).to_numpy()
    final = _column(runs, f"final/{metric}")
    runs["diverged"] = (status == "diverged").to_numpy()
    runs["score"] = score(final, runs["diverged"].to_numpy(), finished, higher)
    target = target_value(
        final[finished & (status == "ok").to_numpy()], tables.info.get("analysis") or {}, higher
    )
    epochs = epochs_to_target(tables.history, metric, target, higher)
    by_run = runs["run_id"].astype(str)
    runs["epochs_to_target"] = by_run.map(epochs).astype(float).to_numpy()
    runs["steps_to_target"] = runs["epochs_to_target"] * _column(runs, "steps_per_epoch")
    runs["train_loss_auc"] = _loss_auc(tables, by_run)
    stability = gradient_stability(tables.steps)
    for col in stability.columns:
        runs[col] = by_run.map(stability[col]).astype(float).to_numpy()
    if baselines.is_accuracy(metric):
        flags = baselines.plateau_flags(tables, metric)
        runs[f"plateau/{metric}"] = by_run.map(flags).astype(float).to_numpy()
    tables.info["derived"] = {"metric": metric, "higher_is_better": higher, "target": target}


def _column(runs: pd.DataFrame, name: str) -> np.ndarray:
    return runs[name].to_numpy(dtype=float) if name in runs.columns else np.full(len(runs), np.nan)


def score(
    final: np.ndarray, diverged: np.ndarray, finished: np.ndarray, higher: bool
) -> np.ndarray:
    """Final metric of each finished run; every diverged run takes the worst finite final value of
    the runs that finished without diverging (NaN when there is none), even if its own record holds
    a finite one; NaN for failed runs."""
    final = np.asarray(final, dtype=float)
    diverged = np.asarray(diverged, dtype=bool)
    usable = np.isfinite(final) & finished & ~diverged
    out = np.where(usable, final, np.nan)
    if usable.any():
        worst = final[usable].min() if higher else final[usable].max()
        out = np.where(diverged, worst, out)
    return out


def target_value(finals: np.ndarray, analysis: dict, higher: bool) -> float | None:
    if analysis.get("target") is not None:
        return float(analysis["target"])
    finals = finals[np.isfinite(finals)]
    if not len(finals):
        return None
    fraction = float(analysis.get("target_fraction") or 0.9)
    return float(finals.max() * fraction if higher else finals.min() / fraction)


def epochs_to_target(
    history: pd.DataFrame, metric: str, target: float | None, higher: bool
) -> pd.Series:
    """run_id -> first epoch whose metric meets the target (runs that never meet it are absent)."""
    if target is None or history.empty:
        return pd.Series(dtype=float)
    rows = history[history["metric"] == metric]
    met = rows["value"] >= target if higher else rows["value"] <= target
    first = rows[met.to_numpy()].groupby("run_id", observed=True)["epoch"].min()
    first.index = first.index.astype(str)
    return first.astype(float)


def _loss_auc(tables: Tables, by_run: pd.Series) -> np.ndarray:
    per_epoch = _column(tables.runs, "steps_per_epoch")
    from_steps = loss_auc(tables.quantity("loss"), "step")
    auc = by_run.map(from_steps).astype(float).to_numpy() / per_epoch
    history = tables.history
    from_history = loss_auc(
        history.loc[history["metric"] == "train/loss", ["run_id", "epoch", "value"]].rename(
            columns={"epoch": "step"}
        ),
        "step",
    )
    return np.where(
        by_run.isin(from_steps.index).to_numpy(),
        auc,
        by_run.map(from_history).astype(float).to_numpy(),
    )


def loss_auc(frame: pd.DataFrame, x: str) -> pd.Series:
    """run_id -> trapezoid area under value over consecutive x (unit spacing); NaN if any value is not finite."""
    if frame.empty:
        return pd.Series(dtype=float)
    frame = frame.sort_values(["run_id", x], kind="stable")
    values = frame["value"].astype(float)
    grouped = values.groupby(frame["run_id"], observed=True)
    area = grouped.sum() - (grouped.first() + grouped.last()) / 2
    finite = np.isfinite(values).groupby(frame["run_id"], observed=True).all()
    area[~finite] = np.nan
    area.index = area.index.astype(str)
    return area


def gradient_stability(steps: pd.DataFrame) -> pd.DataFrame:
    """run_id -> grad/log10_norm_std, grad/max_median_ratio, grad/clip_rate (from the long step table)."""
    columns = ["grad/log10_norm_std", "grad/max_median_ratio", "grad/clip_rate"]
    if steps.empty:
        return pd.DataFrame(columns=columns, dtype=float)
    whole = steps[steps["layer"] == ""]
    norms = whole[(whole["quantity"] == "grad/global_norm").to_numpy()]
    norms = norms[np.isfinite(norms["value"].to_numpy()) & (norms["value"].to_numpy() > 0)]
    value = norms["value"].astype(float)
    grouped = value.groupby(norms["run_id"], observed=True)
    log_std = np.log10(value).groupby(norms["run_id"], observed=True).std()
    ratio = grouped.max() / grouped.median()
    clipped = whole[(whole["quantity"] == "grad/clipped").to_numpy()]
    clipped = clipped[np.isfinite(clipped["value"].to_numpy())]
    clip_rate = clipped["value"].astype(float).groupby(clipped["run_id"], observed=True).mean()
    out = pd.DataFrame({columns[0]: log_std, columns[1]: ratio, columns[2]: clip_rate})
    out.index = out.index.astype(str)
    return out
