"""The per-run table claim rules read: runs + derived per-run metrics from steps, history and instruments."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from keras_ablate import store
from keras_ablate.analysis.aggregate import load
from keras_ablate.analysis.baselines import is_accuracy, plateaued
from keras_ablate.scoring import blank_history

# Derived columns this module adds (besides final/..., best/... from aggregate.load):
DERIVED = {
    "n_params": "trainable + fixed parameters of the model",
    "diverged": "1 if the run diverged, else 0",
    "init/<quantity>": "a per-step quantity at the first step (loss, grad/global_norm, grad/norm/<layer>)",
    "max/grad/global_norm": "largest global gradient norm before clipping over training",
    "min/grad/cosine": "smallest cosine between raw and clipped gradient over training",
    "clip_rate": "fraction of steps where clipping changed the gradient",
    "grad/log10_std": "std over steps of log10 global gradient norm (lower = steadier)",
    "init/grad/depth_ratio": "grad norm of the first hidden layer / the last one, at the first step",
    "loss_ratio": "mean loss over the last 10 % of steps / mean loss over the first 5 steps",
    "mean/train/loss": "mean over epochs of the training loss (area under the curve / epochs)",
    "epoch1/<metric>": "a history metric after the first epoch",
    "gap/accuracy": "final train accuracy - final val accuracy (overfitting)",
    "gap/loss": "final val loss - final train loss (overfitting)",
    "plateau/<metric>": "1 if an accuracy's last epochs are flat (analysis.baselines), else 0",
    "baseline/chance, baseline/majority_val": "accuracy without learning (from the run summary)",
    # decay_factor/<layer>/{init,final}, t0_ratio/<layer>/{init,final}, depth_ratio/...: from
    # analysis/instruments.run_metrics, merged in below.
    "gate_mean/<gate>/init|final": "first recurrent layer: mean gate value on the probe batch",
}

_HIDDEN = re.compile(r"^grad/norm/((?:dense|rnn|conv_k\d+)_?\d*)$")


def claim_table(
    exp_dir: str | Path, run_ids: list[str] | None = None, axes: dict[str, list] | None = None
) -> pd.DataFrame:
    """One row per planned run: settings, status ('missing' when not run yet), metrics.

    Args:
        run_ids: the runs of the current plan; other run folders (older plans) are ignored.
        axes: axis -> levels, used to fill setting columns of missing runs.
    """
    exp_dir = Path(exp_dir)
    tables = load(exp_dir)
    runs = tables.runs.copy()
    if runs.empty:
        runs = pd.DataFrame(columns=["run_id", "status"])
    # Categorical columns (aggregate may return them) would refuse the 'missing' status and new levels.
    runs = runs.astype(
        {c: object for c in runs.columns if isinstance(runs[c].dtype, pd.CategoricalDtype)}
    )
    if run_ids is not None:
        runs = runs[runs["run_id"].astype(str).isin(run_ids)]
    derived = [
        _from_records(path, spec, summary)
        for path, spec, summary in store.iter_runs(exp_dir)
        if run_ids is None or spec["run_id"] in run_ids
    ]
    if derived:
        extra = pd.DataFrame(derived)
        # Columns aggregate already gives (e.g. n_params) are kept from there.
        extra = extra[[c for c in extra.columns if c == "run_id" or c not in runs.columns]]
        runs = runs.merge(extra, on="run_id", how="left")
    runs = _merge_optional(runs, exp_dir)
    if "status" in runs.columns:
        runs["diverged"] = (runs["status"] == "diverged").astype(float)
    return runs.reset_index(drop=True)


def add_missing(runs: pd.DataFrame, specs) -> pd.DataFrame:
    """Add a 'missing' row for each planned spec without a run folder (settings filled from the spec)."""
    have = set(runs["run_id"]) if "run_id" in runs.columns else set()
    rows = []
    for spec in specs:
        if spec.run_id in have:
            continue
        row = {"run_id": spec.run_id, "seed": spec.seed, "status": "missing"}
        row.update(
            {
                k: (",".join(map(str, v)) if isinstance(v, list) else v)
                for k, v in spec.settings.items()
            }
        )
        row.update({f"dataset.{k}": v for k, v in spec.dataset["options"].items()})
        rows.append(row)
    return pd.concat([runs, pd.DataFrame(rows)], ignore_index=True) if rows else runs


def _from_records(path: Path, spec: dict, summary: dict) -> dict:
    out: dict = {"run_id": spec["run_id"], "n_params": summary.get("n_params")}
    steps = store.read_table(path, "steps")
    if steps is not None and not steps.empty:
        out.update(_step_metrics(steps))
    units = store.read_table(path, "units")
    if units is not None and not units.empty:
        out.update(_gate_metrics(units))
    history = store.read_table(path, "history")
    if history is not None and not history.empty:
        # Whatever wrote the folder, nothing measured on diverged weights counts (scoring.py).
        history = blank_history(
            history, summary.get("diverged_step"), summary.get("steps_per_epoch")
        )
        for kind, (train, val) in {
            "accuracy": ("train/accuracy", "val/accuracy"),
            "loss": ("train/loss", "val/loss"),
        }.items():
            if train in history and val in history:
                last = history.iloc[-1]
                out[f"gap/{kind}"] = float(last[train] - last[val]) * (
                    1 if kind == "accuracy" else -1
                )
        for col in history.columns:
            if col == "epoch":
                continue
            values = pd.to_numeric(history[col], errors="coerce")
            out[f"epoch1/{col}"] = float(values.iloc[0])
            if is_accuracy(col):
                n_val = (summary.get("baseline") or {}).get("n_val")
                flag = plateaued(values.to_numpy(dtype=float), n_val or math.nan)
                out[f"plateau/{col}"] = math.nan if flag is None else float(flag)
            if col == "train/loss":
                # NaN when any epoch has no finite loss (a diverged run): never a mean over fewer epochs.
                out["mean/train/loss"] = float(values.mean(skipna=False))
    return out


def _step_metrics(steps: pd.DataFrame) -> dict:
    out = {}
    first = steps.iloc[0]
    for col in steps.columns:
        if col in ("step", "epoch", "run_id"):
            continue
        out[f"init/{col}"] = float(first[col])
    norm = (
        pd.to_numeric(steps.get("grad/global_norm"), errors="coerce")
        if "grad/global_norm" in steps
        else None
    )
    if norm is not None:
        finite = norm[np.isfinite(norm) & (norm > 0)]
        out["max/grad/global_norm"] = float(norm.max()) if np.isfinite(norm).all() else np.inf
        out["grad/log10_std"] = float(np.log10(finite).std(ddof=0)) if len(finite) > 1 else np.nan
    if "grad/cosine" in steps:
        cos = pd.to_numeric(steps["grad/cosine"], errors="coerce")
        out["min/grad/cosine"] = float(cos.min()) if cos.notna().any() else np.nan
    if "grad/clipped" in steps:
        out["clip_rate"] = float(pd.to_numeric(steps["grad/clipped"], errors="coerce").mean())
    hidden = [c for c in steps.columns if _HIDDEN.match(c)]
    if len(hidden) >= 2:
        lo, hi = float(first[hidden[0]]), float(first[hidden[-1]])
        out["init/grad/depth_ratio"] = lo / hi if hi > 0 else np.nan
    if "loss" in steps:
        loss = pd.to_numeric(steps["loss"], errors="coerce").to_numpy(float)
        tail = loss[-max(1, len(loss) // 10) :]
        out["loss_ratio"] = (
            float(np.mean(tail) / np.mean(loss[:5])) if np.mean(loss[:5]) > 0 else np.nan
        )
    return out


def _merge_optional(runs: pd.DataFrame, exp_dir: Path) -> pd.DataFrame:
    """Merge the probe instruments' per-run metrics (analysis/instruments.py) when that module exists."""
    try:
        from keras_ablate.analysis.instruments import run_metrics
    except ImportError:
        return runs
    try:
        extra = run_metrics(exp_dir)
    except Exception:  # noqa: BLE001 - a broken optional table must not stop every verdict
        return runs
    if not isinstance(extra, pd.DataFrame) or "run_id" not in extra.columns or runs.empty:
        return runs
    new = [c for c in extra.columns if c == "run_id" or c not in runs.columns]
    extra = extra[new].assign(run_id=extra["run_id"].astype(str))
    return runs.assign(run_id=runs["run_id"].astype(str)).merge(extra, on="run_id", how="left")


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
