"""Seaborn figures for the report; each returns a Figure (or None when there is nothing to plot)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from keras_ablate.analysis.aggregate import Tables  # noqa: E402


def _with_settings(frame: pd.DataFrame, runs: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    keep = ["run_id"] + [c for c in columns if c in runs.columns]
    return frame.merge(runs[keep], on="run_id", how="left")


def _facet_args(tables: Tables, data: pd.DataFrame) -> dict:
    """Facet by architecture, hue activation, style normalization, when those vary."""
    args = {}
    for role, col in (("col", "architecture"), ("hue", "activation"), ("style", "normalization")):
        if col in data.columns and data[col].nunique() > 1:
            args[role] = col
    if "col" in args:
        args["col_wrap"] = min(4, data[args["col"]].nunique())
    return args


def convergence(tables: Tables, metric: str = "val/loss"):
    """Validation loss per epoch, mean over seeds with a 95 % band."""
    h = tables.history
    if h.empty:
        return None
    data = h[h["metric"] == metric]
    if data.empty:
        return None
    data = _with_settings(data, tables.runs, ["architecture", "activation", "normalization", "clip"])
    g = sns.relplot(
        data=data, x="epoch", y="value", kind="line", errorbar=("ci", 95), height=3.0, aspect=1.2,
        facet_kws={"sharey": False}, **_facet_args(tables, data),
    )
    g.set_axis_labels("epoch", metric)
    return g.figure


def gradient_norms(tables: Tables, max_points: int = 400):
    """Global gradient norm before clipping per step (log scale)."""
    s = tables.steps
    if s.empty or "grad/global_norm" not in s.columns:
        return None
    data = s[["run_id", "step", "grad/global_norm"]].copy()
    data = data[np.isfinite(data["grad/global_norm"]) & (data["grad/global_norm"] > 0)]
    if data.empty:
        return None
    # Thin long runs to at most max_points steps so the figure stays quick to draw.
    stride = max(1, int(data["step"].max() // max_points) + 1)
    data = data[data["step"] % stride == 0]
    data = _with_settings(data, tables.runs, ["architecture", "activation", "normalization", "clip"])
    g = sns.relplot(
        data=data, x="step", y="grad/global_norm", kind="line", errorbar=None, height=3.0, aspect=1.2,
        facet_kws={"sharey": False}, **_facet_args(tables, data),
    )
    g.set(yscale="log")
    g.set_axis_labels("step", "global gradient norm (before clipping)")
    return g.figure


def save(fig, path) -> None:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
