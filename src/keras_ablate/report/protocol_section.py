"""The report's protocol part: each arm's selected learning rate and its sensitivity curve.

Shown when the experiment has a `protocol:` (analysis.protocol). The table says, per arm,
which rate was selected on validation and by what value; the figure draws each arm's score
(the comparison metric, on the held-out test split when the runs have one) against the rate,
mean over seeds with the report's interval, the selected rate ringed: a flat curve is an arm that
is robust to the rate, a sharp peak one that needed its rate.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from keras_ablate import scoring  # noqa: E402
from keras_ablate.analysis import budgets, stats  # noqa: E402
from keras_ablate.analysis.protocol import RATE  # noqa: E402
from keras_ablate.analysis.tables import Tables  # noqa: E402
from keras_ablate.report.plots import level_colors  # noqa: E402

CAPTION = (
    "Each arm's score against the learning rate it was trained at (log axis), one panel per "
    "level of the first axis and one line per arm, coloured by the second axis: mean over seeds "
    "with the report's 95 % interval (none from one seed); the ringed point is the rate selected "
    "on validation, the one the rest of the report compares. A flat curve is an arm robust to "
    "the rate; a peak at the edge of the tried rates says a better rate may lie outside them."
)


def _arm_label(record: dict, axes: list[str]) -> str:
    return " ".join(f"{a}={record[a]}" for a in axes) or "all runs"


def protocol_section(tables: Tables) -> dict | None:
    """Template context: select_on, rates, and one row per arm (None without a protocol)."""
    if tables.protocol is None:
        return None
    protocol = tables.info.get("protocol") or {}
    selection = tables.protocol
    rows = []
    for _, group in (
        selection.groupby(tables.axes, observed=True, sort=False)
        if tables.axes
        else [(None, selection)]
    ):
        chosen = group[group["selected"]].iloc[0]
        flagged = budgets.flagged_labels(tables, {a: chosen[a] for a in tables.axes})
        rows.append(
            {
                "arm": _arm_label(chosen.to_dict(), tables.axes),
                "flag": f"{budgets.FLAG} {budgets.FLAG_TEXT}" if flagged else "",
                "rate": f"{chosen[RATE]:g}" + (" (edge)" if chosen.get("at_edge") else ""),
                "value": f"{chosen['select_value']:.4g}",
                "per_rate": ", ".join(
                    f"{r[RATE]:g}: {r['select_value']:.4g} ({r['finished']}/{r['seeds']})"
                    for _, r in group.iterrows()
                ),
            }
        )
    edge = int(selection["at_edge"].sum()) if "at_edge" in selection.columns else 0
    return {
        "edge": edge,
        "n_arms": len(rows),
        "select_on": protocol.get("select_on", ""),
        "rates": ", ".join(f"{r:g}" for r in protocol.get("learning_rate", [])),
        "rows": rows,
    }


def sensitivity(tables: Tables):
    """Score vs learning rate per arm (None without a protocol): one panel per level of the
    first axis, one line per arm coloured by the second axis's level (one legend entry per
    colour, not per arm, so 96 arms stay readable), the selected rate ringed, an arm that did
    not learn within its budget hollow and dotted. Intervals: the report's own (analysis.stats),
    kept inside the score's range; none from a single seed."""
    if tables.protocol is None or tables.all_runs is None or tables.all_runs.empty:
        return None
    runs = tables.all_runs
    axes = tables.axes
    colors = level_colors(tables)
    panel_axis = axes[0] if axes else None
    hue_axis = axes[1] if len(axes) > 1 else panel_axis
    panels = list(tables.levels.get(panel_axis, [])) if panel_axis else [None]
    panels = [p for p in panels if p in set(runs[panel_axis])] if panel_axis else panels
    spec = stats.IntervalSpec.from_info(tables.info)
    metric = tables.info.get("derived", {}).get("metric", "score")
    bounds = scoring.metric_range(metric)
    fig, grid = plt.subplots(
        1, len(panels), figsize=(2.9 * len(panels) + 2.4, 3.4), sharey=True, squeeze=False
    )
    selected = tables.protocol[tables.protocol["selected"]]
    groups = runs.groupby(axes, observed=True, sort=False) if axes else [((), runs)]
    legend: dict[str, object] = {}
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        record = dict(zip(axes, key, strict=True))
        ax = grid[0][panels.index(record[panel_axis]) if panel_axis else 0]
        rates, means, lows, highs = [], [], [], []
        for rate, at_rate in group.groupby(RATE, sort=True):
            values = at_rate["score"].to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            if not len(values):
                continue
            est = stats.mean_estimate(values, spec, bounds)
            rates.append(float(rate))
            means.append(est.value)
            lows.append(est.low if np.isfinite(est.low) else est.value)
            highs.append(est.high if np.isfinite(est.high) else est.value)
        if not rates:
            continue
        color = colors[hue_axis][record[hue_axis]] if hue_axis else "k"
        flagged = bool(budgets.flagged_labels(tables, record))
        means_arr = np.array(means)
        ax.errorbar(
            rates,
            means,
            yerr=[means_arr - np.array(lows), np.array(highs) - means_arr],
            color=color,
            ls=":" if flagged else "-",
            lw=1.0,
            alpha=0.75,
            marker="o",
            ms=3,
            mfc="none" if flagged else color,
            capsize=2,
        )
        if hue_axis:
            legend.setdefault(
                f"{hue_axis}={record[hue_axis]}", plt.Line2D([], [], color=color, marker="o")
            )
        mask = np.ones(len(selected), dtype=bool)
        for axis, level in record.items():
            mask &= (selected[axis] == level).to_numpy()
        for rate in selected.loc[mask, RATE]:
            if float(rate) in rates:
                y = means[rates.index(float(rate))]
                ax.plot([rate], [y], "o", ms=8, mfc="none", mec=color, mew=1.2)
    for i, ax in enumerate(grid[0]):
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        if panel_axis:
            ax.set_title(f"{panel_axis}={panels[i]}", fontsize=9)
    grid[0][0].set_ylabel(metric)
    legend["selected rate (ringed)"] = plt.Line2D(
        [], [], ls="none", marker="o", ms=8, mfc="none", mec="k"
    )
    legend[f"{budgets.FLAG} {budgets.FLAG_TEXT} (hollow, dotted)"] = plt.Line2D(
        [], [], ls=":", marker="o", mfc="none", color="grey"
    )
    fig.legend(
        list(legend.values()),
        list(legend.keys()),
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
        fontsize=7,
        frameon=False,
    )
    fig.tight_layout()
    return fig
