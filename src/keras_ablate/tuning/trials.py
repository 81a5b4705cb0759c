"""A search's outcome: the trials table (trials.parquet) and the best trial's settings (best.yaml)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from keras_ablate import store
from keras_ablate.config.tuning import Arm, SearchDim
from keras_ablate.tuning.objectives import Objective


def trials_table(oracle, space: dict[str, SearchDim], objective: Objective) -> pd.DataFrame:
    """One row per trial: trial_id, status (ok / diverged / failed / running), each hp, score, metrics."""
    rows = []
    for trial_id, trial in sorted(oracle.trials.items()):
        metrics = {name: trial.metrics.get_last_value(name) for name in trial.metrics.metrics}
        if trial.status == "COMPLETED":
            status = "ok"
        elif trial.status in ("FAILED", "INVALID"):
            status = "diverged" if metrics.get("diverged") == 1.0 else "failed"
        else:
            status = str(trial.status).lower()
        score = trial.score if status == "ok" and trial.score is not None else math.nan
        row = {"trial_id": trial_id, "status": status, **dict(trial.hyperparameters.values)}
        row.update(
            {"objective": objective.name, "direction": objective.direction, "score": float(score)}
        )
        row.update({name: value for name, value in metrics.items() if name != objective.name})
        row["message"] = (
            (trial.message or "").strip().splitlines()[-1]
            if status == "failed" and trial.message
            else ""
        )
        rows.append(row)
    columns = ["trial_id", "status", *space, "objective", "direction", "score"]
    frame = pd.DataFrame(rows)
    return (
        frame[columns + [c for c in frame.columns if c not in columns]]
        if rows
        else pd.DataFrame(columns=columns)
    )


def best_trial(table: pd.DataFrame, objective: Objective) -> pd.Series | None:
    """The best trial with status ok and a finite score (never a diverged or NaN one)."""
    if table.empty:
        return None
    good = table[(table["status"] == "ok") & np.isfinite(table["score"].astype(float))]
    if good.empty:
        return None
    ordered = good.sort_values(
        ["score", "trial_id"], ascending=[objective.direction == "min", True]
    )
    return ordered.iloc[0]


def write_outputs(
    exp, arm: Arm, space, objective: Objective, oracle, directory: Path
) -> dict | None:
    """Write trials.parquet and (when a trial succeeded) best.yaml; return the best entry or None."""
    table = trials_table(oracle, space, objective)
    buffer = io.BytesIO()
    table.to_parquet(buffer, index=False)
    store.write_text_atomic(directory / store.TRIALS_FILE, buffer.getvalue())
    best = best_trial(table, objective)
    if best is None:
        return None
    entry = {
        "experiment": exp.name,
        "arm": arm.name,
        "axes": arm.axes,
        "objective": {"name": objective.name, "direction": objective.direction},
        "tuner": exp.tune.tuner,
        "trial_id": str(best["trial_id"]),
        "score": float(best["score"]),
        "trials": {k: int(v) for k, v in table["status"].value_counts().items()},
        "settings": {name: _plain(best[name]) for name in space},
    }
    header = "# Best settings of one arm, written by `keras-ablate tune`; a grid takes them with `base_from: tuning`.\n"
    store.write_text_atomic(
        directory / store.BEST_FILE, header + yaml.safe_dump(entry, sort_keys=False)
    )
    return entry


def _plain(value):
    return value.item() if hasattr(value, "item") else value
