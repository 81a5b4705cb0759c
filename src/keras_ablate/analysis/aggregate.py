"""Read every run folder of an experiment into tidy pandas frames (works on partial results)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from keras_ablate import store


@dataclass
class Tables:
    """Tidy frames for one experiment.

    runs: one row per run (settings as columns, dataset options as `dataset.<option>`,
        status, diverged_step, final/... and best/... metrics, wall_time_s, error).
    history: run_id, epoch, metric, value (long).
    steps: one row per recorded step per run (run_id, step, epoch, then one column per
        quantity: loss, grad/global_norm, grad/norm/<layer>, ...).
    axes: the grid axes (columns of `runs` that vary by design), in file order.
    """

    runs: pd.DataFrame
    history: pd.DataFrame
    steps: pd.DataFrame
    axes: list[str]


def load(results_dir: str | Path) -> Tables:
    """Load an experiment folder (results/<experiment>)."""
    exp_dir = Path(results_dir)
    rows, histories, steps = [], [], []
    axes: list[str] = []
    for path, spec, summary in store.iter_runs(exp_dir):
        for key in spec.get("axes", {}):
            if key not in axes:
                axes.append(key)
        rows.append(_run_row(spec, summary))
        h = store.read_table(path, "history")
        if h is not None and not h.empty:
            long = h.melt(id_vars="epoch", var_name="metric", value_name="value")
            long.insert(0, "run_id", spec["run_id"])
            histories.append(long)
        s = store.read_table(path, "steps")
        if s is not None and not s.empty:
            s.insert(0, "run_id", spec["run_id"])
            steps.append(s)
    runs = pd.DataFrame(rows)
    if not runs.empty:
        runs = runs.sort_values(["run_id"]).reset_index(drop=True)
    history = pd.concat(histories, ignore_index=True) if histories else pd.DataFrame(
        columns=["run_id", "epoch", "metric", "value"]
    )
    step_frame = pd.concat(steps, ignore_index=True) if steps else pd.DataFrame(columns=["run_id", "step", "epoch"])
    return Tables(runs=runs, history=history, steps=step_frame, axes=axes)


def _run_row(spec: dict, summary: dict) -> dict:
    row = {"run_id": spec["run_id"], "seed": spec["seed"]}
    for key, value in spec["settings"].items():
        row[key] = ",".join(map(str, value)) if isinstance(value, list) else value
    for key, value in spec["dataset"]["options"].items():
        row[f"dataset.{key}"] = value
    row["dataset"] = spec["dataset"]["name"]
    row["status"] = summary.get("status", "failed")
    row["diverged_step"] = summary.get("diverged_step")
    row["metric"] = summary.get("metric")
    for prefix in ("final", "best"):
        for key, value in (summary.get(prefix) or {}).items():
            row[f"{prefix}/{key}"] = value
    row["wall_time_s"] = summary.get("wall_time_s")
    row["error"] = summary.get("error")
    return row
