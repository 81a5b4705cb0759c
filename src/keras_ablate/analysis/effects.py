"""Factor effects over runs: means with 95 % t intervals per configuration, differences, interactions, ANOVA.

Intervals come from analysis.stats. They are Student t intervals, mean +- t(0.975, n-1) * s / sqrt(n), with s the sample std
(ddof 1) of the runs in the group; one run gives no interval (NaN bounds), a constant metric a
zero-width one. Effects compare `score` (see analysis.metrics: diverged runs take the worst
finished value, failed runs are left out but counted). The difference between a level and the
reference level of an axis is paired where the design allows it: runs that share every other
axis level and the seed are matched and the interval is the t interval of the paired
differences ("paired"); otherwise it is Welch's interval for two independent means ("welch").
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from keras_ablate.analysis.metrics import DERIVED
from keras_ablate.analysis.stats import group_intervals, paired_interval, welch_interval
from keras_ablate.analysis.tables import Tables
from keras_ablate.store import DONE_STATUSES


def by_configuration(tables: Tables, metrics: list[str] | None = None) -> pd.DataFrame:
    """Mean and 95 % t interval over seeds of every derived metric per configuration (axis levels)."""
    runs = tables.runs
    metrics = [m for m in (metrics or DERIVED) if m in runs.columns]
    if runs.empty or not metrics:
        return pd.DataFrame()
    return group_intervals(runs, tables.axes, metrics)


def reference_levels(tables: Tables) -> dict:
    """Axis -> reference level: YAML `reference:` when it names a present level, else the first level."""
    wanted = tables.info.get("reference") or {}
    out = {}
    for axis, levels in tables.levels.items():
        match = [lv for lv in levels if axis in wanted and _same(lv, wanted[axis])]
        out[axis] = match[0] if match else levels[0]
    return out


def _same(a, b) -> bool:
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return str(a) == str(b)


def counts(runs: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """by..., n_runs, n_finished, n_diverged, n_failed, divergence_rate (diverged / finished)."""
    status = runs["status"].astype(str)
    flags = pd.DataFrame(
        {
            "n_runs": 1,
            "n_finished": status.isin(DONE_STATUSES).astype(int),
            "n_diverged": (status == "diverged").astype(int),
            "n_failed": (status == "failed").astype(int),
        }
    )
    out = flags.groupby([runs[b] for b in by], observed=True).sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        out["divergence_rate"] = out["n_diverged"] / out["n_finished"].replace(0, np.nan)
    return out.reset_index()


def main_effects(tables: Tables, value: str = "score") -> pd.DataFrame:
    """Per axis and level: marginal mean of `value` with its t interval, counts and divergence rate,
    and the difference from the reference level with its interval (paired or Welch)."""
    runs, rows = tables.runs, []
    if runs.empty or value not in runs.columns:
        return pd.DataFrame()
    reference = reference_levels(tables)
    for axis in tables.axes:
        marginal = group_intervals(runs, [axis], [value]).drop(columns="metric")
        marginal = counts(runs, [axis]).merge(marginal, on=axis, how="left")
        for record in marginal.to_dict("records"):
            level = record.pop(axis)
            diff = difference(runs, tables.axes, axis, level, reference[axis], value)
            rows.append(
                {"axis": axis, "level": level, "reference": reference[axis], **record, **diff}
            )
    if not rows:  # no grid axes (one configuration, several seeds): no factor to compare
        return pd.DataFrame()
    out = pd.DataFrame(rows)
    out["level"] = out["level"].astype(object)
    out["reference"] = out["reference"].astype(object)
    return out


def difference(
    runs: pd.DataFrame, axes: list[str], axis: str, level, reference, value: str
) -> dict:
    """Mean of `value` at `level` minus at `reference`, with a 95 % interval (see module docstring)."""
    empty = {
        "diff": np.nan,
        "diff_low": np.nan,
        "diff_high": np.nan,
        "diff_n": 0,
        "diff_method": "",
    }
    if _same(level, reference):
        return {**empty, "diff": 0.0, "diff_method": "reference"}
    usable = runs[np.isfinite(runs[value].to_numpy(dtype=float))]
    here = usable[usable[axis] == level]
    there = usable[usable[axis] == reference]
    if here.empty or there.empty:
        return empty
    keys = [a for a in axes if a != axis] + ["seed"]
    left = here.groupby(keys, observed=True)[value].mean()
    right = there.groupby(keys, observed=True)[value].mean()
    paired = (left - right).dropna()
    if len(paired) >= 2:
        mean, low, high = paired_interval(paired)
        return {
            "diff": mean,
            "diff_low": low,
            "diff_high": high,
            "diff_n": len(paired),
            "diff_method": "paired",
        }
    a, b = here[value].to_numpy(float), there[value].to_numpy(float)
    diff, low, high = welch_interval(a, b)
    return {
        "diff": diff,
        "diff_low": low,
        "diff_high": high,
        "diff_n": len(a) + len(b),
        "diff_method": "welch",
    }


def interactions(tables: Tables, value: str = "score") -> dict[tuple[str, str], pd.DataFrame]:
    """For each pair of axes: cell means of `value` with t intervals and divergence rates."""
    runs, out = tables.runs, {}
    if runs.empty or value not in runs.columns:
        return out
    for a, b in itertools.combinations(tables.axes, 2):
        cells = group_intervals(runs, [a, b], [value]).drop(columns="metric")
        out[(a, b)] = counts(runs, [a, b]).merge(cells, on=[a, b], how="left")
    return out


def anova(
    tables: Tables, value: str = "score", max_axes: int = 6
) -> tuple[pd.DataFrame | None, str]:
    """Factorial ANOVA (type II sums of squares, OLS) of `value` on the axes and their two-way
    interactions; returns (table, note). The table is None, with the reason in the note, when the
    design does not allow it (one level, too few runs, no residual degrees of freedom)."""
    import statsmodels.formula.api as smf
    from statsmodels.stats.anova import anova_lm

    runs = tables.runs
    if runs.empty or value not in runs.columns:
        return None, "no finished runs"
    data = runs[np.isfinite(runs[value].to_numpy(dtype=float))]
    axes = [a for a in tables.axes if data[a].nunique() > 1]
    if not axes:
        return None, "no axis has two levels among the finished runs"
    frame = pd.DataFrame({f"f{i}": data[a].astype(str).to_numpy() for i, a in enumerate(axes)})
    frame["y"] = data[value].to_numpy(dtype=float)
    terms = " + ".join(f"C(f{i})" for i in range(len(axes)))
    interacting = 2 <= len(axes) <= max_axes
    formula = f"y ~ ({terms})**2" if interacting else f"y ~ {terms}"
    try:
        model = smf.ols(formula, data=frame).fit()
        if model.df_resid < 1:
            if not interacting:
                return None, "no residual degrees of freedom: add seeds"
            model = smf.ols(f"y ~ {terms}", data=frame).fit()
            interacting = False
            if model.df_resid < 1:
                return None, "no residual degrees of freedom: add seeds"
        table = anova_lm(model, typ=2)
    except (ValueError, np.linalg.LinAlgError) as exc:
        return None, f"ANOVA not possible for this design ({exc})"
    names = {f"C(f{i})": a for i, a in enumerate(axes)}
    table.index = [
        " x ".join(names.get(p, p) for p in str(term).split(":")) for term in table.index
    ]
    residual = table.loc["Residual", "sum_sq"]
    table["partial_eta_sq"] = table["sum_sq"] / (table["sum_sq"] + residual)
    table.loc["Residual", "partial_eta_sq"] = np.nan
    table = table.rename(columns={"PR(>F)": "p_value"}).reset_index(names="term")
    note = "type II sums of squares, main effects" + (
        " and two-way interactions" if interacting else " only"
    )
    return table, f"{note}; {len(frame)} runs, {int(model.df_resid)} residual degrees of freedom"
