"""Seaborn/matplotlib figures for the report; each takes Tables and returns a Figure (or None: nothing to plot).

Colours: `level_colors(tables)` gives every level of every axis one colour, derived only from
the axis's levels in plan order, so a level has the same colour in every figure (instrument
figures should use it too). Bands and error bars are the intervals the tables use (analysis.stats:
bootstrap by default, `analysis.interval: t` for Student t), kept in the metric's range and
computed in one vectorized bootstrap per group size (stats.mean_bands), never seaborn's. Heatmaps: heatmaps.py.
"""

from __future__ import annotations

import itertools

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from keras_ablate import scoring  # noqa: E402
from keras_ablate.analysis import budgets, effects, stats  # noqa: E402
from keras_ablate.analysis.tables import Tables  # noqa: E402

# Axes that read best as line colour, then as columns, then as rows of panels.
PREFERRED = ("architecture", "activation", "normalization", "clip")
PALETTES = ("tab10", "Set2", "Dark2", "Set1", "Accent", "Paired")
MAX_POINTS = 150  # step bins per curve: enough to show spikes, few enough to draw fast
MAX_PANELS = 4  # levels per facet direction before the rest is pooled


def level_colors(tables: Tables) -> dict[str, dict]:
    """axis -> {level: colour}; the same for every figure of an experiment."""
    out = {}
    for i, (axis, levels) in enumerate(tables.levels.items()):
        name = PALETTES[i % len(PALETTES)]
        colors = sns.color_palette(name if len(levels) <= 8 else "husl", len(levels))
        out[axis] = {level: colors[j] for j, level in enumerate(levels)}
    return out


def roles(tables: Tables, first: str | None = None) -> dict[str, str | None]:
    """Pick hue, col, row among the varying axes (preferred names first); other axes are pooled."""
    varying = [a for a in tables.axes if len(tables.levels.get(a, [])) > 1]
    order = [a for a in PREFERRED if a in varying] + [a for a in varying if a not in PREFERRED]
    if first in order:
        order.remove(first)
        order.insert(1 if order else 0, first)  # `first` goes to the columns
    return {
        "hue": order[0] if order else None,
        "col": order[1] if len(order) > 1 else None,
        "row": order[2] if len(order) > 2 else None,
    }


def panel_levels(tables: Tables, axis: str | None) -> list:
    """The levels of `axis` shown as panels (the first MAX_PANELS), or [None] without an axis."""
    return tables.levels[axis][:MAX_PANELS] if axis else [None]


# Below this many runs any interval is mostly its quantile (t: 12.7 for 2 runs): draw the range of
# the runs instead, so a band never claims values no run came near.
MIN_RUNS_FOR_T_BAND = 3


def band_text(tables: Tables) -> str:
    """What a band is, for the captions: the tables' interval, its resamples, the range rule."""
    spec = stats.IntervalSpec.from_info(tables.info)
    if spec.kind == "t":
        return "95 % Student t band over runs"
    return (
        f"95 % bootstrap band over runs (BCa at the expanded level, {spec.resamples} resamples; "
        f"Student t below {stats.BOOTSTRAP_MIN} runs)"
    )


def _mean_band(data: pd.DataFrame, keys: list[str], x: str, spec=None, bounds=None) -> pd.DataFrame:
    """Mean and band of `value` per keys + x: the interval of the tables (`spec`, analysis.stats;
    bootstrap by default) kept inside `bounds`, or the runs' min-max range where the group has
    fewer than MIN_RUNS_FOR_T_BAND runs."""
    spec = spec or stats.IntervalSpec()
    by = [*keys, x]
    grouped = data.groupby(by, observed=True)["value"]
    out = grouped.agg(["count", "mean", "min", "max"]).rename(columns={"count": "n"})
    low, high, _ = stats.mean_bands([g.to_numpy() for _, g in grouped], spec, bounds)
    out["ci_low"], out["ci_high"] = low, high
    few = (out["n"] < MIN_RUNS_FOR_T_BAND).to_numpy()
    out.loc[few, "ci_low"] = out.loc[few, "min"]
    out.loc[few, "ci_high"] = out.loc[few, "max"]
    return out.drop(columns=["min", "max"]).reset_index()


def _line_grid(
    tables: Tables,
    data: pd.DataFrame,
    x: str,
    ylabel: str,
    role: dict,
    log: bool = False,
    threshold=None,
    references: tuple = (),
    flagged: set | None = None,
    bounds: tuple[float, float] | None = None,
):
    """Panels row x col; one line per hue level with its band. With `log`, values are log10 and the
    band (geometric mean and interval) is drawn back on a log axis. `references`: (value, label,
    line style) drawn as grey horizontal lines in every panel. `flagged`: (hue level, col level,
    row level) of the lines holding an arm that did not learn within budget: drawn dotted."""
    flagged = flagged or set()
    hue, col, row = role["hue"], role["col"], role["row"]
    keys = [k for k in (hue, col, row) if k]
    band = _mean_band(data, keys, x, stats.IntervalSpec.from_info(tables.info), bounds)
    if log:
        band[["mean", "ci_low", "ci_high"]] = 10.0 ** band[["mean", "ci_low", "ci_high"]]
    cols, rows = panel_levels(tables, col), panel_levels(tables, row)
    colors = level_colors(tables)
    fig, axes = plt.subplots(
        len(rows),
        len(cols),
        figsize=(3.6 * len(cols), 2.8 * len(rows)),
        squeeze=False,
        sharex=True,
        sharey=True,
    )
    for (i, r), (j, c) in itertools.product(enumerate(rows), enumerate(cols)):
        ax = axes[i][j]
        panel = band
        if col:
            panel = panel[panel[col] == c]
        if row:
            panel = panel[panel[row] == r]
        for level in panel_levels(tables, hue) if hue else [None]:
            line = panel[panel[hue] == level] if hue else panel
            if line.empty:
                continue
            color = colors[hue][level] if hue else "C0"
            ls = ":" if (level, c, r) in flagged else "-"
            ax.plot(
                line[x], line["mean"], color=color, ls=ls, label=str(level) if hue else None, lw=1.4
            )
            ax.fill_between(line[x], line["ci_low"], line["ci_high"], color=color, alpha=0.2, lw=0)
        if threshold is not None and threshold(c, r) is not None:
            ax.axhline(threshold(c, r), color="k", ls="--", lw=1, label="clip threshold")
        for value, text, style in references:
            ax.axhline(value, color="grey", ls=style, lw=1, label=text)
        title = " · ".join(f"{k}={v}" for k, v in ((col, c), (row, r)) if k)
        ax.set_title(title, fontsize=9)
        if log:
            ax.set_yscale("log")
        if i == len(rows) - 1:
            ax.set_xlabel(x)
        if j == 0:
            ax.set_ylabel(ylabel)
    handles, labels = axes[0][0].get_legend_handles_labels()
    for ax in axes.flat[1:]:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=False):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if flagged:
        handles.append(plt.Line2D([], [], color="0.4", ls=":"))
        labels.append(f"dotted: holds an arm {budgets.FLAG} {budgets.FLAG_TEXT}")
    if handles:
        fig.legend(
            handles, labels, title=hue, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8
        )
    fig.tight_layout()
    return fig


def _with_axes(frame: pd.DataFrame, tables: Tables, keys: list[str]) -> pd.DataFrame:
    settings = tables.runs[["run_id", *keys]].copy()
    settings["run_id"] = pd.Categorical(
        settings["run_id"].astype(str), categories=frame["run_id"].cat.categories
    )
    return frame.merge(settings, on="run_id", how="inner")


def convergence(tables: Tables):
    """The comparison metric per epoch: mean over seeds (and pooled axes) with the tables' band."""
    derived = tables.info.get("derived", {})
    # The curve of the comparison metric (for a test/ metric, its validation series).
    metric = derived.get("curve_metric", derived.get("metric", "val/loss"))
    h = tables.history
    data = h[(h["metric"] == metric).to_numpy()]
    data = data[np.isfinite(data["value"].to_numpy())]
    if data.empty:
        return None
    role = roles(tables)
    data = _with_axes(data[["run_id", "epoch", "value"]], tables, [k for k in role.values() if k])
    return _line_grid(
        tables,
        data,
        "epoch",
        metric,
        role,
        references=_accuracy_levels(tables, metric),
        flagged=flagged_lines(tables, role),
        bounds=scoring.metric_range(metric),
    )


def flagged_lines(tables: Tables, role: dict) -> set:
    """(hue, col, row) levels (None where a role is unused) of the groups of runs that hold an
    arm which did not learn within budget (analysis.budgets)."""
    runs = tables.runs
    hit = runs[budgets.run_flags(tables)]
    return {
        tuple(r[role[k]] if role[k] else None for k in ("hue", "col", "row"))
        for r in hit.to_dict("records")
    }


def _accuracy_levels(tables: Tables, metric: str) -> tuple:
    """Chance and majority-class accuracy as reference lines, when every run has the same ones."""
    runs = tables.runs
    if "accuracy" not in metric or "baseline/chance" not in runs.columns:
        return ()
    split = "train" if metric.startswith("train/") else "val"
    out = []
    for column, text, style in (
        ("baseline/chance", "chance", ":"),
        (f"baseline/majority_{split}", "majority class", "-."),
    ):
        values = pd.to_numeric(runs.get(column), errors="coerce").dropna().unique()
        if len(values) == 1:
            out.append((float(values[0]), f"{text} {values[0]:.3g}", style))
    return tuple(out)


def gradient_norms(tables: Tables):
    """Global gradient norm before clipping over training (log scale), thinned to MAX_POINTS bins per run."""
    data = tables.quantity("grad/global_norm")
    value = data["value"].to_numpy()
    data = data[np.isfinite(value) & (value > 0)]
    if data.empty:
        return None
    stride = max(1, int(data["step"].max()) // MAX_POINTS + 1)
    # Average log10 norms within a bin per run first, so each run counts once per bin.
    data = data.assign(
        step=(data["step"] // stride) * stride, value=np.log10(data["value"].astype(float))
    )
    data = data.groupby(["run_id", "step"], observed=True, as_index=False)["value"].mean()
    role = roles(tables, first="clip" if "clip" in tables.axes else None)
    data = _with_axes(data, tables, [k for k in role.values() if k])
    fig = _line_grid(
        tables,
        data,
        "step",
        "global gradient norm",
        role,
        log=True,
        threshold=_threshold_for(role),
        flagged=flagged_lines(tables, role),
    )
    return fig


def _threshold_for(role: dict):
    from keras_ablate.config.levels import parse_clip

    def threshold(col_level, row_level):
        for axis, level in ((role["col"], col_level), (role["row"], row_level)):
            if axis == "clip":
                try:
                    kind, value = parse_clip(str(level))
                except ValueError:
                    return None
                # Per-variable norm and value clipping bound other quantities than the global norm;
                # their threshold is still drawn as the reference the user chose.
                return value
        return None

    return threshold


def main_effects(tables: Tables):
    """One panel per factor: every run's score (faint points, seeded jitter) and the marginal mean
    score per level with its 95 % interval (the report's interval, analysis.effects)."""
    table = effects.main_effects(tables)
    if table.empty:
        return None
    runs, jitter = tables.runs, np.random.default_rng(0)
    flagged = budgets.run_flags(tables)
    axes_list = [a for a in tables.axes if len(tables.levels[a]) > 1] or list(tables.axes)
    colors = level_colors(tables)
    grand = np.nanmean(tables.runs["score"].to_numpy(dtype=float))
    fig, axs = plt.subplots(
        1, len(axes_list), figsize=(2.6 * len(axes_list) + 0.6, 3.0), squeeze=False, sharey=True
    )
    for ax, axis in zip(axs[0], axes_list, strict=False):
        rows = table[table["axis"] == axis]
        for k, record in enumerate(rows.itertuples(index=False)):
            at_level = (runs[axis] == record.level).to_numpy()
            points = runs.loc[at_level, "score"].to_numpy(dtype=float)
            hollow = flagged[at_level][np.isfinite(points)]
            points = points[np.isfinite(points)]
            x = k + jitter.uniform(-0.2, 0.2, len(points))
            color = colors[axis][record.level]
            # Runs of an arm that did not learn within budget: hollow markers.
            ax.scatter(x[~hollow], points[~hollow], s=7, color=color, alpha=0.35, linewidths=0)
            if hollow.any():
                ax.scatter(
                    x[hollow],
                    points[hollow],
                    s=12,
                    facecolors="none",
                    edgecolors=color,
                    linewidths=0.8,
                    label=f"{budgets.FLAG} {budgets.FLAG_TEXT}",
                )
            err = np.array([[record.mean - record.ci_low], [record.ci_high - record.mean]])
            ax.errorbar(
                [k],
                [record.mean],
                yerr=None if np.isnan(err).any() else err,
                fmt="o",
                color=colors[axis][record.level],
                capsize=3,
                zorder=3,
            )
        ax.axhline(grand, color="0.6", ls=":", lw=1)
        ax.set_xticks(
            range(len(rows)), [str(v) for v in rows["level"]], rotation=30, ha="right", fontsize=8
        )
        ax.set_title(axis, fontsize=9)
        ax.set_xlim(-0.5, len(rows) - 0.5)
    axs[0][0].set_ylabel(tables.info.get("derived", {}).get("metric", "score"))
    if flagged.any():
        marker = plt.Line2D([], [], ls="", marker="o", mfc="none", mec="0.4")
        fig.legend([marker], [f"hollow: a run of an arm {budgets.FLAG} {budgets.FLAG_TEXT}"],
                   loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7)  # fmt: skip
    fig.tight_layout()
    return fig


def interactions(tables: Tables, max_pairs: int = 6):
    """For each pair of axes: mean score over the first axis's levels, one line per level of the second."""
    pairs = effects.interactions(tables)
    pairs = {
        k: v
        for k, v in pairs.items()
        if len(tables.levels[k[0]]) > 1 and len(tables.levels[k[1]]) > 1
    }
    if not pairs:
        return None
    pairs = dict(list(pairs.items())[:max_pairs])
    colors = level_colors(tables)
    n = len(pairs)
    ncols = min(3, n)
    nrows = -(-n // ncols)
    fig, axs = plt.subplots(
        nrows, ncols, figsize=(3.8 * ncols, 3.0 * nrows), squeeze=False, sharey=True
    )
    for ax, ((a, b), cells) in zip(axs.flat, pairs.items(), strict=False):
        x_levels = tables.levels[a]
        for level in tables.levels[b]:
            line = cells[cells[b] == level]
            x = [x_levels.index(v) for v in line[a]]
            err = np.vstack([line["mean"] - line["ci_low"], line["ci_high"] - line["mean"]])
            ax.errorbar(
                x,
                line["mean"],
                yerr=np.nan_to_num(err),
                color=colors[b][level],
                marker="o",
                capsize=3,
                label=str(level),
                lw=1.2,
            )
            # A cell holding an arm that did not learn within budget: a hollow marker.
            hit = (
                (line["n_flagged"] > 0).to_numpy()
                if "n_flagged" in line
                else np.zeros(len(x), bool)
            )
            if hit.any():
                ax.plot(
                    np.asarray(x)[hit], line["mean"].to_numpy()[hit], ls="", marker="o", ms=7,
                    mfc="white", mec=colors[b][level], label=None,
                )  # fmt: skip
        ax.set_xticks(
            range(len(x_levels)), [str(v) for v in x_levels], rotation=30, ha="right", fontsize=8
        )
        ax.set_xlabel(a)
        ax.legend(title=b, fontsize=7, title_fontsize=8)
    for ax in list(axs.flat)[n:]:
        ax.set_visible(False)
    axs[0][0].set_ylabel(tables.info.get("derived", {}).get("metric", "score"))
    fig.tight_layout()
    return fig


def save(fig, path) -> None:
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
