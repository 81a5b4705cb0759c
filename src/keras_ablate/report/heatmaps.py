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

from keras_ablate.analysis import budgets, effects, stats  # noqa: E402
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
    if value == "score":
        # A cell holding an arm that did not learn within budget is annotated with the flag.
        hit = runs[budgets.run_flags(tables)]
        flagged = {tuple(r[k] for k in keys) for r in hit.to_dict("records")}
        cells["cell_flag"] = [
            budgets.FLAG if tuple(r[k] for k in keys) in flagged else ""
            for r in cells.to_dict("records")
        ]
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
        marks = np.full(grid.shape, "", dtype=object)
        xs = panel[x_axis].tolist() if x_axis else [None] * len(panel)
        flags = panel["cell_flag"].tolist() if "cell_flag" in panel else [""] * len(panel)
        for y_level, x_level, cell, flag in zip(
            panel[y_axis].tolist(), xs, panel["cell"].tolist(), flags, strict=False
        ):
            grid[y_levels.index(y_level), x_levels.index(x_level)] = cell
            marks[y_levels.index(y_level), x_levels.index(x_level)] = flag
        annot = np.array(
            [
                [
                    ("" if not np.isfinite(v) else format(v, fmt)) + m
                    for v, m in zip(gr, mr, strict=True)
                ]
                for gr, mr in zip(grid, marks, strict=True)
            ],
            dtype=object,
        )
        frame = pd.DataFrame(
            grid, index=[str(v) for v in y_levels], columns=[str(v) for v in x_levels]
        )
        sns.heatmap(
            frame,
            ax=axes[i][j],
            annot=annot,
            fmt="",
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
    title = f"mean final {metric} ({better} is better)"
    if budgets.run_flags(tables).any():
        title += f"; {budgets.FLAG} {budgets.FLAG_TEXT}"
    return _heatmap(tables, "score", title, ".3g", cmap)


def heatmap_divergence(tables: Tables):
    """Fraction of finished runs that diverged per cell."""
    if tables.runs.empty:
        return None
    return _heatmap(
        tables, "divergence_rate", "divergence rate (diverged / finished runs)", ".2f", "Reds"
    )
