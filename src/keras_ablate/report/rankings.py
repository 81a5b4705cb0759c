"""Figures over whole distributions of runs: a performance profile and critical-difference rankings.

The performance profile (rliable, Agarwal et al. 2021) draws, per level of the most important
factor (the one whose level means of the score spread the most), the share of its runs scoring at
least tau, over tau. The ranking (Demsar 2006) ranks the levels of each factor with 3 or more
levels within blocks of matched runs (same other levels and seed), tests them with Friedman's
test and draws the mean ranks with Nemenyi's critical difference (analysis.stats.friedman_nemenyi):
levels joined by a bar are not told apart.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from keras_ablate.analysis import stats  # noqa: E402
from keras_ablate.analysis.tables import Tables  # noqa: E402
from keras_ablate.report.plots import level_colors  # noqa: E402


def _higher(tables: Tables) -> bool:
    return bool((tables.info.get("derived") or {}).get("higher_is_better", True))


def most_important_axis(tables: Tables) -> str | None:
    """The axis whose level means of the score spread the most (None without a varying axis)."""
    runs = tables.runs
    if runs.empty or "score" not in runs.columns:
        return None
    spreads = {}
    for axis in tables.axes:
        if len(tables.levels.get(axis, [])) < 2:
            continue
        means = runs.groupby(axis, observed=True)["score"].mean()
        spreads[axis] = float(means.max() - means.min()) if means.notna().any() else -1.0
    return max(spreads, key=spreads.get) if spreads else None


def performance_profile(tables: Tables):
    """Share of runs with score >= tau over tau, one curve per level of the most important factor."""
    axis = most_important_axis(tables)
    if axis is None:
        return None
    runs = tables.runs
    scores = runs["score"].to_numpy(dtype=float)
    finite = scores[np.isfinite(scores)]
    if len(finite) < 2 or finite.min() == finite.max():
        return None
    taus = np.linspace(finite.min(), finite.max(), 200)
    higher, colors = _higher(tables), level_colors(tables)[axis]
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    for level in tables.levels[axis]:
        values = runs.loc[runs[axis] == level, "score"].to_numpy(dtype=float)
        share = stats.performance_profile(values, taus, higher)
        ax.step(taus, share, where="post", color=colors[level], label=str(level))
    ax.set_xlabel("score threshold tau")
    ax.set_ylabel("share of runs with score " + (">= tau" if higher else "<= tau"))
    ax.set_ylim(-0.03, 1.03)
    ax.legend(title=axis, fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def rank_blocks(tables: Tables, axis: str) -> pd.DataFrame:
    """Blocks x levels of `axis`: the score of matched runs (same other levels and seed; a block
    with a missing or non-finite level is dropped)."""
    runs = tables.runs
    keys = [a for a in tables.axes if a != axis] + ["seed"]
    table = runs.pivot_table(
        index=keys, columns=axis, values="score", aggfunc="mean", observed=True
    )
    levels = [lv for lv in tables.levels[axis] if lv in table.columns]
    return table[levels].dropna()


def critical_difference(tables: Tables):
    """Mean ranks with Nemenyi's critical difference, one panel per factor with 3 or more levels."""
    runs = tables.runs
    if runs.empty or "score" not in runs.columns:
        return None
    panels = []
    for axis in tables.axes:
        if len(tables.levels.get(axis, [])) < 3:
            continue
        blocks = rank_blocks(tables, axis)
        ranking = stats.friedman_nemenyi(blocks.to_numpy(float), _higher(tables))
        if ranking is not None and len(blocks.columns) == len(tables.levels[axis]):
            panels.append((axis, list(blocks.columns), ranking))
    if not panels:
        return None
    fig, axes = plt.subplots(len(panels), 1, figsize=(6.0, 1.5 + 0.9 * len(panels)), squeeze=False)
    colors = level_colors(tables)
    for ax, (axis, levels, ranking) in zip(axes[:, 0], panels, strict=True):
        _draw_ranking(ax, axis, levels, ranking, colors[axis])
    fig.tight_layout()
    return fig


def _draw_ranking(ax, axis: str, levels: list, ranking: stats.Ranking, colors: dict) -> None:
    k, ranks = len(levels), ranking.mean_ranks
    ax.set_xlim(0.8, k + 0.2)
    ax.set_ylim(-1.3, 1.3)
    ax.axhline(0, color="k", lw=0.8)
    order = np.argsort(ranks)
    for i, j in enumerate(order):
        ax.plot(ranks[j], 0, "o", color=colors[levels[j]])
        ax.annotate(
            f"{levels[j]} ({ranks[j]:.2f})", (ranks[j], 0), xytext=(0, 6 if i % 2 else 18),
            textcoords="offset points", ha="center", fontsize=8,
        )  # fmt: skip
    # Bars join each maximal run of levels (in rank order) within one critical difference.
    bars, y = [], -0.3
    for start in range(k):
        end = start
        while (
            end + 1 < k
            and ranks[order[end + 1]] - ranks[order[start]] <= ranking.critical_difference
        ):
            end += 1
        if end > start and not any(s <= start and end <= e for s, e in bars):
            bars.append((start, end))
    for s, e in bars:
        ax.plot([ranks[order[s]], ranks[order[e]]], [y, y], color="grey", lw=3, alpha=0.7)
        y -= 0.25
    ax.plot([1, 1 + ranking.critical_difference], [-1.0, -1.0], color="k", lw=2)
    ax.text(
        1 + ranking.critical_difference + 0.05,
        -1.1,
        f"CD {ranking.critical_difference:.2f}",
        fontsize=8,
    )
    ax.set_yticks([])
    ax.set_xlabel("mean rank (1 = best)", fontsize=8)
    ax.set_title(
        f"{axis}: Friedman chi2 = {ranking.statistic:.3g}, p = {ranking.p_value:.3g} "
        f"({ranking.blocks} blocks of matched runs)",
        fontsize=9,
    )


FIGURES = [
    ("performance_profile", "Performance profile", performance_profile,
     "Share of runs whose score is at least tau (at most, for a lower-is-better metric), over tau, one "
     "curve per level of the factor whose level means spread the most (rliable's performance profile, "
     "Agarwal et al. 2021). A curve above another everywhere is better over the whole distribution of "
     "runs, not only on average; crossing curves trade a better typical run for a worse tail."),
    ("critical_difference", "Ranking with critical difference", critical_difference,
     "For each factor with 3 or more levels: the levels' mean ranks (1 = best) within blocks of matched "
     "runs (the same other levels and seed), Friedman's test over the blocks (title), and Nemenyi's "
     "critical difference (CD, at 0.05; Demsar 2006). Levels joined by a grey bar are within one CD of "
     "each other: the ranking does not tell them apart."),
]  # fmt: skip
