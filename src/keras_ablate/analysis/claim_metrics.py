"""The per-run table claim rules read: load(dir).runs of the plan, plus a 'missing' row per run not run yet."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from keras_ablate.analysis.tables import load


def claim_table(exp_dir: str | Path, run_ids: list[str] | None = None) -> pd.DataFrame:
    """One row per planned run: settings, status, every derived metric (analysis.metrics).

    Args:
        run_ids: the runs of the current plan; other run folders (older plans) are left out.
    """
    runs = load(Path(exp_dir)).runs.copy()
    if runs.empty:
        runs = pd.DataFrame(columns=["run_id", "status"])
    # Categorical columns would refuse the 'missing' status and new levels.
    runs = runs.astype(
        {c: object for c in runs.columns if isinstance(runs[c].dtype, pd.CategoricalDtype)}
    )
    if run_ids is not None:
        runs = runs[runs["run_id"].astype(str).isin(run_ids)]
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
