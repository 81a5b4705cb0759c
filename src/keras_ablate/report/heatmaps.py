"""Heatmaps for the report: mean score and divergence rate over activation x normalization (or the two
axes that vary), one panel per architecture and clip level."""

from __future__ import annotations

import itertools

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from keras_ablate.analysis import effects, stats  # noqa: E402
from keras_ablate.analysis.tables import Tables  # noqa: E402
from keras_ablate.report.plots import panel_levels  # noqa: E402


def _heatmap(tables: Tables, value: str, title: str, fmt: str, cmap: str):
    runs = tables.runs
    varying = [a for a in tables.axes if len(tables.levels[a]) > 1] or list(tables.axes)
    inner = [a for a in ("activation", "normalization") if a in varying]
    inner += [a for a in varying if a not in inner and a not in ("architecture", "clip")]
    if not inner:
        inner = varying[:1]
    if not inner:
        return None
    y_axis, x_axis = inner[0], (inner[1] if len(inner) > 1 else None)
    col = "architecture" if "architecture" in varying and "architecture" not in inner else None
    row = "clip" if "clip" in varying and "clip" not in inner else None
    keys = [k for k in (y_axis, x_axis, col, row) if k]
    if value == "divergence_rate":
        cells = effects.counts(runs, keys).rename(columns={"divergence_rate": "cell"})
    else:
        cells = stats.group_intervals(runs, keys, [value]).rename(columns={"mean": "cell"})
    cols, rows = panel_levels(tables, col), panel_levels(tables, row)
    y_levels = tables.levels[y_axis]
    x_levels = tables.levels[x_axis] if x_axis else [None]
    fig, axes = plt.subplots(
        len(rows),
        len(cols),
        squeeze=False,
        figsize=(
            1.5 + 1.2 * len(x_levels) * len(cols),
            1.0 + (0.5 * len(y_levels) + 0.6) * len(rows),
        ),
    )
    finite = cells["cell"].to_numpy(dtype=float)
    finite = finite[np.isfinite(finite)]
    vmin, vmax = (finite.min(), finite.max()) if len(finite) else (0, 1)
    if value == "divergence_rate":
        vmin, vmax = 0.0, 1.0
    for (i, r), (j, c) in itertools.product(enumerate(rows), enumerate(cols)):
        panel = cells
        if col:
            panel = panel[panel[col] == c]
        if row:
            panel = panel[panel[row] == r]
        grid = np.full((len(y_levels), len(x_levels)), np.nan)
        xs = panel[x_axis].tolist() if x_axis else [None] * len(panel)
        for y_level, x_level, cell in zip(
            panel[y_axis].tolist(), xs, panel["cell"].tolist(), strict=False
        ):
            grid[y_levels.index(y_level), x_levels.index(x_level)] = cell
        frame = pd.DataFrame(
            grid, index=[str(v) for v in y_levels], columns=[str(v) for v in x_levels]
        )
        sns.heatmap(
            frame,
            ax=axes[i][j],
            annot=True,
            fmt=fmt,
            cmap=cmap,
            vmin=vmin,
            vmax=vmax,
            cbar=False,
            annot_kws={"fontsize": 8},
        )
        axes[i][j].set_title(
            " · ".join(f"{k}={v}" for k, v in ((col, c), (row, r)) if k), fontsize=9
        )
        axes[i][j].set_ylabel(y_axis if j == 0 else "")
        axes[i][j].tick_params(axis="y", labelrotation=0)
        axes[i][j].set_xlabel(x_axis or "" if i == len(rows) - 1 else "")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def heatmap_score(tables: Tables):
    """Mean final metric (score) per cell of activation x normalization, faceted by architecture and clip."""
    if tables.runs.empty or "score" not in tables.runs.columns:
        return None
    metric = tables.info.get("derived", {}).get("metric", "score")
    better = "higher" if tables.info.get("derived", {}).get("higher_is_better") else "lower"
    cmap = "viridis" if better == "higher" else "viridis_r"
    return _heatmap(tables, "score", f"mean final {metric} ({better} is better)", ".3g", cmap)


def heatmap_divergence(tables: Tables):
    """Fraction of finished runs that diverged per cell."""
    if tables.runs.empty:
        return None
    return _heatmap(
        tables, "divergence_rate", "divergence rate (diverged / finished runs)", ".2f", "Reds"
    )
