"""Every derived per-run metric, one name per quantity, computed once for `load(dir).runs`.

`GLOSSARY` lists every name with its definition. The rules behind the main ones ("the metric"
is YAML `analysis.metric`, default val/<task metric>):

- `final/<m>`, `best/<m>`: last and best epoch value of every history metric (from the summary).
- `target`: YAML `analysis.target`, else `analysis.target_fraction` (default 0.9) of the best
  finished run's final metric when higher is better (accuracy), or the best final value divided by
  the fraction when lower is better (loss: within 1/0.9 of the best).
- `epochs_to_target`: first epoch (1-based) whose metric meets the target; NaN when never met.
  `steps_to_target` = that epoch x steps per epoch (the metric is measured once per epoch).
  `reached_target`: 1 when a run met the target and did not diverge (a diverged run's last
  weights are no solution, as in analysis.budgets), 0 for any other finished run, NaN for a
  failed one; its mean over seeds is the fraction of seeds that solved it.
- `train_loss_auc`: area under the per-step training loss with x in epochs (trapezoid rule),
  from the history's train/loss when a run recorded no steps; NaN when any loss is not finite.
- `diverged`, `diverged_step`: the run's status and the first step with a non-finite loss or norm.
- `grad/log10_norm_std`: sample std (ddof 1) of log10 of the global gradient norm (before
  clipping) over the steps with a finite positive norm; `grad/log10_norm_std_ddof0` is the
  population std (ddof 0) of the same logs, in float32 as the steps were recorded, NaN below
  two steps (the claims' measure of steadiness); `grad/max_median_ratio`: max / median of those
  norms; `grad/clip_rate`: fraction of steps where clipping changed the gradient.
- `plateau/<m>` (every accuracy metric): 1 when the run's last epochs are flat (analysis.baselines).
- `init/<quantity>`, `epoch1/<m>`, `gap/...`, `mean/train/loss`, `loss_ratio`: read from the
  run's own tables as written (`record_metrics`), with scoring's rule for diverged runs applied
  to its history (blank_history's rule, on columns).
- `<instrument>/init` and `<instrument>/final`: the probe tables at initialization (epoch 0) and
  at the run's last probed epoch (analysis.instruments.run_metrics).
- `score`: the final metric used in every comparison. Diverged runs are results, not gaps: a
  diverged run has no final value (nothing measured on its diverged weights is kept, see
  keras_ablate.scoring), so it scores the worst finite final value of the experiment's finished
  runs (worst case), whatever its records say, and its divergence is counted separately
  (divergence rate). Failed runs score NaN: they never enter a mean but are counted wherever runs
  are counted.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from keras_ablate.analysis import baselines, instruments
from keras_ablate.scoring import higher_is_better, is_end_of_epoch, kept_epochs
from keras_ablate.store import DONE_STATUSES

if TYPE_CHECKING:
    from keras_ablate.analysis.tables import Tables

# The run tables record_metrics reads, as the run wrote them (analysis.tables passes them).
RECORD_TABLES = ("steps", "history", "units")

# The derived columns averaged per configuration (tables of means and confidence intervals).
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

# Every per-run column analysis adds to `runs`, one name per quantity (<m>: a history metric such
# as val/accuracy; <q>: a steps column; <layer>: a stable layer name such as rnn_0).
GLOSSARY: dict[str, str] = {
    "score": "final metric, a diverged run at the worst finished run's final value, NaN if failed",
    "diverged": "the run diverged (True / False; claim tables hold it as 1.0 / 0.0)",
    "epochs_to_target": "first epoch whose metric meets the target (NaN when never)",
    "steps_to_target": "epochs_to_target x steps per epoch",
    "reached_target": "1 if a run met the target and did not diverge, else 0; NaN if it failed",
    "train_loss_auc": "area under the per-step training loss, x in epochs (trapezoid rule)",
    "grad/log10_norm_std": "sample std (ddof 1) of log10 global gradient norm over steps",
    "grad/log10_norm_std_ddof0": "population std (ddof 0) of log10 global gradient norm, float32",
    "grad/max_median_ratio": "largest / median global gradient norm over steps",
    "grad/clip_rate": "fraction of steps where clipping changed the gradient",
    "plateau/<m>": "1 if an accuracy's last epochs are flat (analysis.baselines), else 0",
    "init/<q>": "a per-step quantity at the first step (loss, grad/global_norm, grad/norm/<layer>)",
    "init/grad/depth_ratio": "grad norm of the first hidden layer / the last one, at the first step",
    "max/grad/global_norm": "largest global gradient norm before clipping (inf if any is not finite)",
    "min/grad/cosine": "smallest cosine between raw and clipped gradient over training",
    "loss_ratio": "mean loss over the last 10 % of steps / mean loss over the first 5 steps",
    "mean/train/loss": "mean of the epochs' training losses (the history's values averaged)",
    "epoch1/<m>": "a history metric after the first epoch",
    "gap/accuracy": "final train accuracy - final val accuracy (overfitting)",
    "gap/loss": "final val loss - final train loss (overfitting)",
    "gate_mean/<gate>/init|final": "first recurrent layer: mean gate value on the probe batch",
    "decay_factor/<layer>/init|final": "per-step factor of ||dL/dh_t|| per example, going back in time",
    "t0_ratio/<layer>/init|final": "||dL/dh_0|| / ||dL/dh_T-1|| on the probe batch",
    "depth_ratio/init|final": "probe-batch grad norm of the first body layer / the last one",
    "saturated/final, dead/final": "mean over layers of saturated / dead units after training",
    "cosine_clipped": "mean cosine between raw and clipped gradient over the clipped steps",
}


def chosen_metric(tables: Tables) -> str:
    """YAML analysis.metric, else test/<the task metric the runs recorded> when the runs have a
    held-out test score (nothing is selected on it), else val/<that metric>, else val/loss."""
    configured = (tables.info.get("analysis") or {}).get("metric")
    if configured:
        return configured
    runs = tables.runs
    if "metric" in runs.columns and runs["metric"].notna().any():
        metric = runs["metric"].dropna().iloc[0]
        held_out = f"final/test/{metric}"
        if held_out in runs.columns and runs[held_out].notna().any():
            return f"test/{metric}"
        return f"val/{metric}"
    return "val/loss"


def curve_metric(metric: str) -> str:
    """The per-epoch series that stands for `metric`: the test split is scored only after the
    last epoch, so curves, epochs-to-target and plateaus of test/<m> read val/<m>."""
    return "val/" + metric[len("test/") :] if metric.startswith("test/") else metric


def add_derived(tables: Tables, records: dict[str, dict] | None = None) -> None:
    """Add the derived columns to tables.runs and the analysis settings to tables.info['derived'].

    Args:
        records: run_id -> record_metrics of that run (analysis.tables.load reads them while it
            has the run's own tables open).
    """
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
    finished = status.isin(DONE_STATUSES).to_numpy()
    final = _column(runs, f"final/{metric}")
    runs["diverged"] = (status == "diverged").to_numpy()
    runs["score"] = score(final, runs["diverged"].to_numpy(), finished, higher)
    curve = curve_metric(metric)
    curve_final = final if curve == metric else _column(runs, f"final/{curve}")
    target = target_value(
        curve_final[finished & (status == "ok").to_numpy()],
        tables.info.get("analysis") or {},
        higher,
    )
    epochs = epochs_to_target(tables.history, curve, target, higher)
    by_run = runs["run_id"].astype(str)
    runs["epochs_to_target"] = by_run.map(epochs).astype(float).to_numpy()
    runs["steps_to_target"] = runs["epochs_to_target"] * _column(runs, "steps_per_epoch")
    met = np.isfinite(runs["epochs_to_target"].to_numpy(float)) & ~runs["diverged"].to_numpy(bool)
    runs["reached_target"] = np.where(finished, met.astype(float), np.nan)
    runs["train_loss_auc"] = _loss_auc(tables, by_run)
    stability = gradient_stability(tables.steps)
    for col in stability.columns:
        runs[col] = by_run.map(stability[col]).astype(float).to_numpy()
    if baselines.is_accuracy(metric):
        flags = baselines.plateau_flags(tables, curve)
        runs[f"plateau/{metric}"] = by_run.map(flags).astype(float).to_numpy()
    tables.info["derived"] = {
        "metric": metric,
        "curve_metric": curve,
        "higher_is_better": higher,
        "target": target,
    }
    # One concat: dozens of columns added one at a time would fragment the frame.
    tables.runs = pd.concat([runs, _per_run_columns(tables, by_run, records or {})], axis=1)


def _per_run_columns(tables: Tables, by_run: pd.Series, records: dict[str, dict]) -> pd.DataFrame:
    """The run's own records, the other accuracy plateaus and the probe instruments, by row of runs."""
    parts = []
    if records:
        parts.append(pd.DataFrame([records.get(run_id, {}) for run_id in by_run]))
    history = tables.history
    accuracies = [] if history.empty else list(history["metric"].cat.categories)
    plateaus = {
        f"plateau/{m}": by_run.map(baselines.plateau_flags(tables, m)).astype(float).to_numpy()
        for m in accuracies
        if baselines.is_accuracy(m) and f"plateau/{m}" not in tables.runs.columns
    }
    if plateaus:
        parts.append(pd.DataFrame(plateaus))
    probes = instruments.run_metrics(tables)
    if len(probes.columns) > 1:
        probes = probes.set_index(probes["run_id"].astype(str)).drop(columns="run_id")
        parts.append(probes.reindex(by_run.to_numpy()).reset_index(drop=True))
    if not parts:
        return pd.DataFrame(index=tables.runs.index)
    out = pd.concat(parts, axis=1)
    out.index = tables.runs.index
    clash = sorted(set(out.columns) & set(tables.runs.columns))
    if clash or out.columns.duplicated().any():
        raise ValueError(f"two derived metrics share a name: {clash or list(out.columns)}")
    return out


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


# ---------------------------------------------------------------------------------------------
# Metrics read from one run's own tables, as the run wrote them (wide, in their recorded dtype).

# Hidden layers with a weight-gradient column in steps.parquet, input side first.
_HIDDEN = re.compile(r"^grad/norm/((?:dense|rnn|conv_k\d+)_?\d*)$")


def record_metrics(summary: dict, raw: dict) -> dict:
    """init/..., max/..., min/..., grad/log10_norm_std_ddof0, init/grad/depth_ratio, loss_ratio,
    gate_mean/.../init|final, gap/..., epoch1/... and mean/train/loss of one run (see GLOSSARY).

    Args:
        summary: the run's summary.json (diverged_step and steps_per_epoch are read).
        raw: the run's tables by name (RECORD_TABLES) as read from its folder: steps and
            history as dicts of numpy columns in their recorded dtype, units as a DataFrame
            (analysis.tables: converting every run's tables to pandas cost a 1000-run report
            seconds).
    """
    out: dict = {}
    steps = raw.get("steps")
    if steps and len(next(iter(steps.values()))):
        out.update(_step_metrics(steps))
    units = raw.get("units")
    if units is not None and not units.empty:
        out.update(_gate_metrics(units))
    history = raw.get("history")
    if history and len(next(iter(history.values()))):
        out.update(_history_metrics(history, summary))
    return out


def _history_metrics(history: dict[str, np.ndarray], summary: dict) -> dict:
    """gap/..., epoch1/<m> and mean/train/loss, with nothing measured on diverged weights."""
    columns = {c: np.asarray(v, dtype=float) for c, v in history.items() if c != "epoch"}
    # scoring.blank_history's rule, on columns: whatever wrote the folder, nothing measured on
    # diverged weights counts.
    last_train, last_end = kept_epochs(summary.get("diverged_step"), summary.get("steps_per_epoch"))
    if not math.isinf(last_train) and "epoch" in history:
        epoch = np.asarray(history["epoch"], dtype=float)
        for name, values in columns.items():
            last = last_end if is_end_of_epoch(name) else last_train
            columns[name] = np.where(epoch <= last, values, np.nan)
    out = {}
    for kind, (train, val) in {
        "accuracy": ("train/accuracy", "val/accuracy"),
        "loss": ("train/loss", "val/loss"),
    }.items():
        if train in columns and val in columns:
            out[f"gap/{kind}"] = float(columns[train][-1] - columns[val][-1]) * (
                1 if kind == "accuracy" else -1
            )
    for name, values in columns.items():
        out[f"epoch1/{name}"] = float(values[0])
        if name == "train/loss":
            # NaN when any epoch has no finite loss (a diverged run): never a mean over fewer epochs.
            out["mean/train/loss"] = float(np.mean(values))
    return out


def _step_metrics(steps: dict[str, np.ndarray]) -> dict:
    """From the steps columns as recorded (float32): first-step values, extremes, log-norm spread,
    depth ratio at the first step and the late / early loss ratio."""
    out = {}
    columns = [c for c in steps if c not in ("step", "epoch", "run_id")]
    for col in columns:
        out[f"init/{col}"] = float(steps[col][0])
    if "grad/global_norm" in steps:
        norm = steps["grad/global_norm"]
        finite = norm[np.isfinite(norm) & (norm > 0)]
        out["max/grad/global_norm"] = float(norm.max()) if np.isfinite(norm).all() else np.inf
        # pandas' std, as this number was always computed (float32 logs, float32 result).
        out["grad/log10_norm_std_ddof0"] = (
            float(pd.Series(np.log10(finite)).std(ddof=0)) if len(finite) > 1 else np.nan
        )
    if "grad/cosine" in steps:
        cos = steps["grad/cosine"]
        out["min/grad/cosine"] = float(np.nanmin(cos)) if (~np.isnan(cos)).any() else np.nan
    hidden = [c for c in columns if _HIDDEN.match(c)]
    if len(hidden) >= 2:
        lo, hi = float(steps[hidden[0]][0]), float(steps[hidden[-1]][0])
        out["init/grad/depth_ratio"] = lo / hi if hi > 0 else np.nan
    if "loss" in steps:
        loss = np.asarray(steps["loss"], dtype=float)
        tail = loss[-max(1, len(loss) // 10) :]
        out["loss_ratio"] = (
            float(np.mean(tail) / np.mean(loss[:5])) if np.mean(loss[:5]) > 0 else np.nan
        )
    return out


def _gate_metrics(units: pd.DataFrame) -> dict:
    gates = units[units["quantity"].astype(str).str.startswith("gate_mean/")]
    if gates.empty:
        return {}
    layer = sorted(gates["layer"].unique())[0]
    gates = gates[gates["layer"] == layer]
    epochs = sorted(gates["epoch"].unique())
    out = {}
    for label, epoch in (("init", epochs[0]), ("final", epochs[-1])):
        for row in gates[gates["epoch"] == epoch].itertuples():
            out[f"{row.quantity}/{label}"] = float(row.value)
    return out
