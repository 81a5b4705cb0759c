"""The report's budget part: per arm, the seeds that reached the threshold and in how many steps,
the "did not learn within budget" flag with its reason, and the anytime figure (the score at
each epoch, analysis.budgets)."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from keras_ablate.analysis import budgets  # noqa: E402
from keras_ablate.analysis.metrics import curve_metric  # noqa: E402
from keras_ablate.analysis.tables import Tables  # noqa: E402
from keras_ablate.report.plots import _accuracy_levels, level_colors, roles  # noqa: E402

MAX_ARMS = 8  # arms drawn one line each; above this, one line per level of the main factor
STYLES = ("-", "--", "-.", (0, (3, 1, 1, 1)))

DEFINITION = (
    f"An arm is marked {budgets.FLAG} ({budgets.FLAG_TEXT}) when its mean training loss over its "
    f"finished seeds ended above {budgets.STUCK_RATIO:g} x its loss at the first step (the loss "
    "never left its starting plateau), or, for an accuracy, when chance or the majority share "
    "lies inside its score's 95 % interval over seeds (or within 1/sqrt(examples scored) of "
    "its mean). Such an arm may need more epochs or another learning rate: every table and "
    f"figure marks it, and every effect involving it says it {budgets.BUDGET_NOTE}."
)

CAPTION = (
    "The comparison metric at each epoch (its validation series when the score is on the "
    "held-out test split): mean over seeds with a 95 % t interval, one line per arm (with more "
    f"than {MAX_ARMS} arms, one line per level of the main factor: the mean of its arms' "
    "means, the band their range). A diverged seed counts at the epoch's worst value from "
    "the epoch it diverged in. Dotted lines with hollow markers are arms that did not learn "
    f"within budget ({budgets.FLAG}); the dashed black line is the threshold of the steps-to-"
    "threshold table. A curve still rising at the last epoch had not used up its budget."
)


def _steps_text(value: float) -> str:
    if not math.isfinite(value):
        return "never" if value == math.inf else "–"
    return f"{value:.0f}"


def budget_section(tables: Tables) -> dict | None:
    """Template context: metric, threshold, definition and one row per arm (None without runs)."""
    if tables.runs.empty:
        return None
    table = budgets.solved(tables)
    if table.empty:
        return None
    flags = budgets.arm_flags(tables)
    keys = budgets.arm_keys(tables)
    rows = []
    for record, flag in zip(table.to_dict("records"), flags.to_dict("records"), strict=True):
        per_seed = ", ".join(
            f"{seed}: {_steps_text(math.inf if math.isnan(s) else s)}"
            for seed, s in zip(record["seeds"], record["steps_to_threshold"], strict=True)
        )
        rows.append(
            {
                "arm": budgets.arm_label(record, keys)
                + (f" {budgets.FLAG}" if flag["did_not_learn"] else ""),
                "solved": f"{record['n_solved']}/{record['n_seeds']}",
                "median": _steps_text(record["steps_to_threshold_median"]),
                "per_seed": per_seed
                + (f" ({record['n_failed']} failed)" if record["n_failed"] else ""),
                "flag": f"{budgets.FLAG_TEXT}: {flag['reason']}" if flag["did_not_learn"] else "",
            }
        )
    threshold = table.attrs.get("threshold")
    return {
        "metric": table.attrs.get("metric", ""),
        "curve_metric": curve_metric(table.attrs.get("metric", "")),
        "threshold": "–" if threshold is None else f"{threshold:.4g}",
        "definition": DEFINITION,
        "n_flagged": int(flags["did_not_learn"].sum()) if len(flags) else 0,
        "rows": rows,
    }


def anytime_figure(tables: Tables):
    """Score at each epoch per arm (or per level of the main factor), flagged arms dotted."""
    frame = budgets.anytime(tables)
    if frame.empty:
        return None
    keys = budgets.arm_keys(tables)
    flags = budgets.arm_flags(tables)
    flagged = {tuple(r[k] for k in keys) for r in flags.to_dict("records") if r["did_not_learn"]}
    colors = level_colors(tables)
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    arms = frame[keys].drop_duplicates() if keys else None
    if keys and len(arms) > MAX_ARMS:
        hue = roles(tables)["hue"] or keys[0]
        lines = []
        for level, part in frame.groupby(hue, observed=True, sort=True):
            per_epoch = part.groupby("epoch")["mean"].agg(["mean", "min", "max"])
            mine = {tuple(r) for r in part[keys].drop_duplicates().itertuples(index=False)}
            k = len(mine & flagged)
            label = f"{hue}={level}" + (f" ({budgets.FLAG} {k}/{len(mine)} arms)" if k else "")
            lines.append((per_epoch, colors[hue][level], "-", label, k == len(mine)))
    else:
        lines = []
        first = keys[0] if keys else None
        style_of: dict[tuple, object] = {}
        for key, part in frame.groupby(keys, observed=True, sort=True) if keys else [((), frame)]:
            key = key if isinstance(key, tuple) else (key,)
            per_epoch = part.set_index("epoch")[["mean", "ci_low", "ci_high"]]
            per_epoch = per_epoch.rename(columns={"ci_low": "min", "ci_high": "max"})
            style = style_of.setdefault(key[1:], STYLES[len(style_of) % len(STYLES)])
            is_flagged = key in flagged
            label = budgets.arm_label(dict(zip(keys, key, strict=True)), keys)
            color = colors[first][key[0]] if first else "C0"
            lines.append(
                (
                    per_epoch,
                    color,
                    style,
                    label + (f" {budgets.FLAG}" if is_flagged else ""),
                    is_flagged,
                )
            )
    for per_epoch, color, style, label, is_flagged in lines:
        epochs = per_epoch.index.to_numpy(dtype=float)
        low = per_epoch["min"].fillna(per_epoch["mean"]).to_numpy(dtype=float)
        high = per_epoch["max"].fillna(per_epoch["mean"]).to_numpy(dtype=float)
        ax.plot(
            epochs,
            per_epoch["mean"],
            color=color,
            ls=":" if is_flagged else style,
            marker="o",
            ms=3.5,
            mfc="none" if is_flagged else color,
            lw=1.4,
            label=label,
        )
        ax.fill_between(epochs, low, high, color=color, alpha=0.12 if is_flagged else 0.2, lw=0)
    threshold = budgets.threshold_for(tables)
    curve = frame.attrs.get("curve_metric", "")
    if threshold is not None and np.isfinite(threshold):
        ax.axhline(threshold, color="k", ls="--", lw=1, label=f"threshold {threshold:.3g}")
    for value, text, style in _accuracy_levels(tables, curve):
        ax.axhline(value, color="grey", ls=style, lw=1, label=text)
    handles, labels = ax.get_legend_handles_labels()
    if any(is_flagged for *_, is_flagged in lines):
        handles.append(Line2D([], [], color="0.4", ls=":", marker="o", mfc="none"))
        labels.append(f"{budgets.FLAG} {budgets.FLAG_TEXT}")
    ax.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_xlabel("epoch")
    ax.set_ylabel(curve)
    fig.tight_layout()
    return fig


FIGURES = [("anytime", "Score at each epoch (anytime)", anytime_figure, CAPTION)]
