"""The report's protocol part: each arm's selected learning rate and its sensitivity curve.

Shown when the experiment has a `protocol:` (analysis.protocol). The table says, per arm,
which rate was selected on validation and by what value; the figure draws each arm's score
(the comparison metric, on the held-out test split when the runs have one) against the rate,
mean over seeds with a 95 % t interval, the selected rate ringed: a flat curve is an arm that
is robust to the rate, a sharp peak one that needed its rate.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from keras_ablate.analysis import budgets, stats  # noqa: E402
from keras_ablate.analysis.protocol import RATE  # noqa: E402
from keras_ablate.analysis.tables import Tables  # noqa: E402
from keras_ablate.report.plots import level_colors  # noqa: E402

CAPTION = (
    "Each arm's score against the learning rate it was trained at (log axis): mean over seeds "
    "with a 95 % t interval; the ringed point is the rate selected on validation, the one the "
    "rest of the report compares. A flat curve is an arm robust to the rate; a peak at the edge "
    "of the tried rates says a better rate may lie outside them."
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
    """Score vs learning rate per arm (None without a protocol)."""
    if tables.protocol is None or tables.all_runs is None or tables.all_runs.empty:
        return None
    runs = tables.all_runs
    axes = tables.axes
    colors = level_colors(tables)
    first = axes[0] if axes else None
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    groups = runs.groupby(axes, observed=True, sort=False) if axes else [((), runs)]
    selected = tables.protocol[tables.protocol["selected"]]
    styles: dict[tuple, str] = {}  # the other axes' levels -> a line style, in plan order
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        record = dict(zip(axes, key, strict=True))
        rates, means, lows, highs = [], [], [], []
        for rate, at_rate in group.groupby(RATE, sort=True):
            values = at_rate["score"].to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            if not len(values):
                continue
            low, high = stats.mean_interval(values)
            rates.append(float(rate))
            means.append(float(values.mean()))
            lows.append(low if np.isfinite(low) else values.mean())
            highs.append(high if np.isfinite(high) else values.mean())
        if not rates:
            continue
        color = colors[first][record[first]] if first else None
        rest = tuple(map(str, key[1:]))
        style = styles.setdefault(rest, ["-", "--", ":", "-."][len(styles) % 4])
        flagged = bool(budgets.flagged_labels(tables, record))
        means_arr = np.array(means)
        ax.errorbar(
            rates,
            means,
            yerr=[means_arr - np.array(lows), np.array(highs) - means_arr],
            color=color,
            ls=style,
            marker="o",
            ms=4,
            mfc="none" if flagged else color,
            capsize=3,
            label=_arm_label(record, axes)
            + (f" {budgets.FLAG} {budgets.FLAG_TEXT} (at its rate)" if flagged else ""),
        )
        mask = np.ones(len(selected), dtype=bool)
        for axis, level in record.items():
            mask &= (selected[axis] == level).to_numpy()
        for rate in selected.loc[mask, RATE]:
            if float(rate) in rates:
                y = means[rates.index(float(rate))]
                ax.plot([rate], [y], "o", ms=11, mfc="none", mec=color or "k", mew=1.5)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel(tables.info.get("derived", {}).get("metric", "score"))
    ax.legend(fontsize=7, loc="best", ncol=2 if len(ax.lines) > 12 else 1)
    fig.tight_layout()
    return fig
