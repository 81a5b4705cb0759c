"""Report section for `keras-ablate tune`: a trials table and an objective-vs-trial figure per arm."""

from __future__ import annotations

import base64
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from keras_ablate import store  # noqa: E402

# Shown in the table next to the hp columns; the rest of the metrics stay in trials.parquet.
SHOWN_METRICS = ("val/loss", "val/accuracy", "val/mse", "diverged_step", "wall_time_s")


def tuning_section(exp_dir: str | Path, fig_dir: str | Path) -> list[dict]:
    """One entry per tuned arm of results/<experiment>/tuning/<arm>/ (empty when nothing was tuned).

    Returns:
        dicts with arm, objective, best (best.yaml content or None), figure path (or None),
        columns and rows of the trials table.
    """
    root = Path(exp_dir) / store.TUNING
    if not root.is_dir():
        return []
    fig_dir = Path(fig_dir)
    sections = []
    for path in sorted(root.glob(f"*/{store.TRIALS_FILE}")):
        arm = path.parent.name
        trials = pd.read_parquet(path)
        if trials.empty:
            continue
        best_path = path.parent / store.BEST_FILE
        best = (
            yaml.safe_load(best_path.read_text(encoding="utf-8")) if best_path.is_file() else None
        )
        objective = str(trials["objective"].iloc[0])
        figure = fig_dir / f"tuning_{arm}.png"
        fig_dir.mkdir(parents=True, exist_ok=True)
        objective_figure(trials, objective, arm).savefig(figure, dpi=110, bbox_inches="tight")
        plt.close("all")
        table = trials_view(trials)
        sections.append(
            {
                "arm": arm,
                "objective": objective,
                "best": best,
                "figure": figure,
                "figure_uri": "data:image/png;base64,"
                + base64.b64encode(figure.read_bytes()).decode("ascii"),
                "columns": list(table.columns),
                "rows": table.to_dict("records"),
            }
        )
    return sections


def trials_view(trials: pd.DataFrame) -> pd.DataFrame:
    """The columns a reader compares: id, status, each tuned setting, the score and a few metrics."""
    start = ["trial_id", "status"]
    hps = [
        c
        for c in trials.columns[2 : list(trials.columns).index("objective")]
        if not c.startswith("tuner/")
    ]
    shown = [c for c in SHOWN_METRICS if c in trials.columns]
    return trials[start + hps + ["score"] + shown].sort_values("trial_id").reset_index(drop=True)


def objective_figure(trials: pd.DataFrame, objective: str, arm: str):
    """Score per trial in run order, the best-so-far line, and diverged/failed trials marked at the
    worst finished trial's score (they never enter the best-so-far line)."""
    ordered = trials.sort_values("trial_id").reset_index(drop=True)
    x = np.arange(1, len(ordered) + 1)
    score = ordered["score"].astype(float).to_numpy()
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    ok = np.isfinite(score)
    ax.plot(x[ok], score[ok], "o", color="tab:blue", label="trial")
    if "direction" in ordered.columns:
        maximize = ordered["direction"].iloc[0] == "max"
    else:
        maximize = objective.endswith("accuracy")
    running = (
        pd.Series(np.where(ok, score, np.nan)).cummax()
        if maximize
        else pd.Series(np.where(ok, score, np.nan)).cummin()
    )
    ax.step(x, running.to_numpy(), where="post", color="tab:green", label="best so far")
    if (~ok).any():
        # Drawn at the worst finished trial's score, the value a diverged run scores in a report.
        worst = (np.nanmin(score) if maximize else np.nanmax(score)) if ok.any() else 0.0
        ax.plot(
            x[~ok], np.full((~ok).sum(), worst), "x", color="tab:red", label="diverged / failed"
        )
    ax.set_xlabel("trial (in order)")
    ax.set_ylabel(objective)
    ax.set_title(arm, fontsize=9)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig
