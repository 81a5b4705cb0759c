"""Factor effects over runs: means with 95 % intervals per configuration, differences, interactions, ANOVA.

Intervals come from analysis.stats, of the kind the experiment's `analysis.interval` names
(stats.IntervalSpec.from_info: a bootstrap over runs by default, or Student t), kept inside the
score's range; one run gives no interval (NaN bounds), a constant metric a zero-width one.
Effects compare `score` (see analysis.metrics: diverged runs take the worst finished value,
failed runs are left out but counted). The difference between a level and the reference level
of an axis is paired where the design allows it: runs that share every other axis level and the
seed are matched ("paired": the bootstrap resamples the pairs, or the paired t interval);
otherwise two independent groups ("unpaired" bootstrap, or Welch's interval: "welch").

Every difference also gets P(improvement) (the level better than the reference, stats.
probability_of_improvement), the p-value of the paired t / Welch t test, and a decision made
after Holm's correction across every difference of the table (the family the report shows):
`resolved` where the Holm-adjusted p-value is below 0.05. An unresolved difference gets the
seeds per arm that would resolve a difference of its observed size (and of `analysis.min_effect`)
at the strictest Holm level, 0.05 / family size, with 80 % power (stats.seeds_needed).

A row (and an interaction cell) that involves an arm which did not learn within its budget
(analysis.budgets) says so: `n_flagged` and `budget_note` (the difference may be budget- or
rate-limited, not an effect of the factor).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd

from keras_ablate import scoring
from keras_ablate.analysis import budgets, stats
from keras_ablate.analysis.metrics import DERIVED
from keras_ablate.analysis.stats import IntervalSpec, T, group_intervals
from keras_ablate.analysis.tables import Tables
from keras_ablate.store import DONE_STATUSES


def by_configuration(tables: Tables, metrics: list[str] | None = None) -> pd.DataFrame:
    """Mean, IQM and 95 % interval over seeds of every derived metric per configuration (axis levels)."""
    runs = tables.runs
    metrics = [m for m in (metrics or DERIVED) if m in runs.columns]
    if runs.empty or not metrics:
        return pd.DataFrame()
    return group_intervals(
        runs, tables.axes, metrics, spec=IntervalSpec.from_info(tables.info), bounds=_bounds(tables)
    )


def _bounds(tables: Tables) -> dict:
    """The score's range: that of the comparison metric (scoring.metric_range)."""
    metric = (tables.info.get("derived") or {}).get("metric") or ""
    return {"score": scoring.metric_range(metric)}


def _higher(tables: Tables) -> bool:
    return bool((tables.info.get("derived") or {}).get("higher_is_better", True))


def decision_alpha(tables: Tables) -> float:
    """The level of the report's Holm decisions: 0.05, or for seeds added until resolved the level
    of each look (stats.alpha_per_look, recorded by adaptive.py in experiment.json)."""
    adaptive = tables.info.get("adaptive") or {}
    return float(adaptive.get("alpha_per_look") or stats.ALPHA)


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
    """Per axis and level: marginal mean and IQM of `value` with its interval, counts and
    divergence rate, and the difference from the reference level with its interval (paired or
    unpaired), P(improvement), p-value, Holm decision and seeds needed (module docstring).
    `out.attrs`: interval (the spec's description), family (number of differences corrected)."""
    runs, rows = tables.runs, []
    if runs.empty or value not in runs.columns:
        return pd.DataFrame()
    spec, bounds = IntervalSpec.from_info(tables.info), _bounds(tables).get(value)
    reference = reference_levels(tables)
    for axis in tables.axes:
        marginal = group_intervals(runs, [axis], [value], spec=spec, bounds={value: bounds}).drop(
            columns="metric"
        )
        marginal = counts(runs, [axis]).merge(marginal, on=axis, how="left")
        for record in marginal.to_dict("records"):
            level = record.pop(axis)
            diff = difference(
                runs,
                tables.axes,
                axis,
                level,
                reference[axis],
                value,
                spec,
                bounds,
                _higher(tables),
            )
            rows.append(
                {"axis": axis, "level": level, "reference": reference[axis], **record, **diff}
            )
    if not rows:  # no grid axes (one configuration, several seeds): no factor to compare
        return pd.DataFrame()
    out = pd.DataFrame(rows)
    out["level"] = out["level"].astype(object)
    out["reference"] = out["reference"].astype(object)
    min_effect = (tables.info.get("analysis") or {}).get("min_effect")
    decide(out, min_effect, decision_alpha(tables))
    add_budget_notes(tables, out)
    out.attrs["interval"] = spec.describe()
    out.attrs["resamples"] = spec.resamples  # P(improvement) is bootstrapped whatever the interval
    return out


def add_budget_notes(tables: Tables, table: pd.DataFrame) -> None:
    """Add `n_flagged` (arms at the level, or at the level or its reference for a difference,
    that did not learn within budget: analysis.budgets) and `budget_note`, in place: a
    difference involving such an arm may be budget- or rate-limited."""
    notes, counts_ = [], []
    for record in table.to_dict("records"):
        levels = {record["level"]}
        if record.get("diff_method") != "reference":
            levels.add(record["reference"])
        flagged = budgets.flagged_labels(tables, {record["axis"]: levels})
        counts_.append(len(flagged))
        notes.append(
            f"{budgets.FLAG} {budgets.BUDGET_NOTE}: {len(flagged)} arm(s) involved "
            f"{budgets.FLAG_TEXT} ({'; '.join(flagged[:3])}"
            f"{f'; and {len(flagged) - 3} more: see Budgets' if len(flagged) > 3 else ''})"
            if flagged
            else ""
        )
    table["n_flagged"] = counts_
    table["budget_note"] = notes


def pairwise(tables: Tables, value: str = "score", max_levels: int = 6) -> pd.DataFrame:
    """Every pair of levels (a, b) of each axis with 3 to `max_levels` levels (a 2-level axis has
    its one pair in main_effects): a - b with its interval, P(a better than b) with its interval,
    the p-value, and decisions Holm-corrected across all the pairs of the table (decide).
    Columns as main_effects' differences, with axis, a, b."""
    runs, rows = tables.runs, []
    if runs.empty or value not in runs.columns:
        return pd.DataFrame()
    spec, bounds = IntervalSpec.from_info(tables.info), _bounds(tables).get(value)
    for axis in tables.axes:
        levels = tables.levels[axis]
        if not 3 <= len(levels) <= max_levels:
            continue
        for a, b in itertools.combinations(levels, 2):
            diff = difference(runs, tables.axes, axis, a, b, value, spec, bounds, _higher(tables))
            rows.append({"axis": axis, "a": a, "b": b, **diff})
    if not rows:
        return pd.DataFrame()
    out = pd.DataFrame(rows)
    out[["a", "b"]] = out[["a", "b"]].astype(object)
    min_effect = (tables.info.get("analysis") or {}).get("min_effect")
    decide(out, min_effect, decision_alpha(tables))
    out.attrs["interval"] = spec.describe()
    out.attrs["resamples"] = spec.resamples
    return out


def decide(
    table: pd.DataFrame, min_effect: float | None = None, alpha: float = stats.ALPHA
) -> None:
    """Add p_holm and resolved (Holm across the table's finite p-values) and, for the unresolved
    differences, seeds_needed (observed size) and seeds_needed_min (min_effect), in place."""
    reject, adjusted = stats.holm(table["p_value"].to_numpy(dtype=float), alpha)
    family = int(np.isfinite(table["p_value"].to_numpy(dtype=float)).sum())
    table["p_holm"], table["resolved"] = adjusted, reject
    strict = alpha / max(family, 1)
    rows = [(r, not r["resolved"] and np.isfinite(r["p_value"])) for r in table.to_dict("records")]
    table["seeds_needed"] = [_seeds(r, abs(r["diff"]), strict) if u else math.nan for r, u in rows]
    # Without min_effect _seeds gives NaN (this column once repeated the observed-size number).
    table["seeds_needed_min"] = [_seeds(r, min_effect, strict) if u else math.nan for r, u in rows]
    table.attrs["family"] = family
    table.attrs["alpha"] = alpha


def _seeds(row: dict, effect: float | None, alpha: float) -> float:
    """Seeds per arm: runs (pairs) needed over the runs (pairs) each seed gives that difference."""
    if effect is None or not np.isfinite(row["diff_sd"]):
        return math.nan
    n = stats.seeds_needed(effect, row["diff_sd"], row["diff_method"] == "paired", alpha)
    if not np.isfinite(n):
        return math.nan
    return float(math.ceil(n / max(row["diff_per_seed"], 1.0)))


def difference(
    runs: pd.DataFrame,
    axes: list[str],
    axis: str,
    level,
    reference,
    value: str,
    spec: IntervalSpec = T,
    bounds: tuple[float, float] | None = None,
    higher_is_better: bool = True,
) -> dict:
    """Mean of `value` at `level` minus at `reference`, with its 95 % interval (spec; see the
    module docstring), P(improvement) with its interval, the test's p-value, the sd the seeds
    needed are computed from (of the pair differences, or pooled) and the pairs (runs per arm)
    each seed gives."""
    empty = {
        "diff": np.nan,
        "diff_low": np.nan,
        "diff_high": np.nan,
        "diff_n": 0,
        "diff_method": "",
        "diff_interval": "",
        "diff_clipped": False,
        "p_better": np.nan,
        "p_better_low": np.nan,
        "p_better_high": np.nan,
        "p_value": np.nan,
        "diff_sd": np.nan,
        "diff_per_seed": np.nan,
    }
    if _same(level, reference):
        return {**empty, "diff": 0.0, "diff_method": "reference"}
    sample = samples(runs, axes, axis, level, reference, value)
    if sample is None:
        return empty
    a, b, paired, sd, per_seed, n = sample
    method = "paired" if paired else ("welch" if spec.kind == "t" else "unpaired")
    est = stats.difference_estimate(a, b, paired, spec, bounds)
    better = stats.probability_of_improvement(a, b, paired, spec, higher_is_better)
    return {
        "diff": est.value,
        "diff_low": est.low,
        "diff_high": est.high,
        "diff_n": n,
        "diff_method": method,
        "diff_interval": est.method,
        "diff_clipped": est.clipped,
        "p_better": better.value,
        "p_better_low": better.low,
        "p_better_high": better.high,
        "p_value": stats.difference_p_value(a, b, paired),
        "diff_sd": sd,
        "diff_per_seed": float(per_seed),
    }


def samples(runs: pd.DataFrame, axes: list[str], axis: str, level, reference, value: str):
    """The runs compared by `level` vs `reference` of `axis`: (a, b, paired, sd, per_seed, n), or
    None when a side has no finite value. Paired (a[i], b[i] matched: same other axes and seed)
    where at least 2 pairs exist, else the two groups; sd is that of the pair differences or the
    pooled one; per_seed the pairs (runs per arm) one seed gives; n the pairs or runs compared."""
    usable = runs[np.isfinite(runs[value].to_numpy(dtype=float))]
    here = usable[usable[axis] == level]
    there = usable[usable[axis] == reference]
    if here.empty or there.empty:
        return None
    keys = [a for a in axes if a != axis] + ["seed"]
    left = here.groupby(keys, observed=True)[value].mean()
    right = there.groupby(keys, observed=True)[value].mean()
    matched = pd.concat({"a": left, "b": right}, axis=1).dropna()
    if len(matched) >= 2:
        a, b = matched["a"].to_numpy(float), matched["b"].to_numpy(float)
        seeds = matched.index.get_level_values("seed").nunique()
        sd = float(np.std(a - b, ddof=1))
        return a, b, True, sd, len(matched) / max(seeds, 1), len(matched)
    a, b = here[value].to_numpy(float), there[value].to_numpy(float)
    sd = (
        math.sqrt((np.var(a, ddof=1) + np.var(b, ddof=1)) / 2)
        if min(len(a), len(b)) > 1
        else np.nan
    )
    per_seed = min(
        len(a) / max(here["seed"].nunique(), 1), len(b) / max(there["seed"].nunique(), 1)
    )
    return a, b, False, sd, per_seed, len(a) + len(b)


def reference_tests(tables: Tables, value: str = "score") -> pd.DataFrame:
    """Per axis and non-reference level: the p-value of the difference from the reference (the
    family main_effects corrects), without intervals: axis, level, reference, diff, p_value, n."""
    runs, rows = tables.runs, []
    if runs.empty or value not in runs.columns:
        return pd.DataFrame(columns=["axis", "level", "reference", "diff", "p_value", "n"])
    reference = reference_levels(tables)
    for axis in tables.axes:
        for level in tables.levels[axis]:
            if _same(level, reference[axis]):
                continue
            sample = samples(runs, tables.axes, axis, level, reference[axis], value)
            p, diff, n = math.nan, math.nan, 0
            if sample is not None:
                a, b, paired, _, _, n = sample
                p = stats.difference_p_value(a, b, paired)
                diff = float(a.mean() - b.mean())
            rows.append(
                {"axis": axis, "level": level, "reference": reference[axis], "diff": diff,
                 "p_value": p, "n": n}
            )  # fmt: skip
    return pd.DataFrame(rows, columns=["axis", "level", "reference", "diff", "p_value", "n"])


def interactions(tables: Tables, value: str = "score") -> dict[tuple[str, str], pd.DataFrame]:
    """For each pair of axes: cell means of `value` with intervals and divergence rates."""
    runs, out = tables.runs, {}
    if runs.empty or value not in runs.columns:
        return out
    spec, bounds = IntervalSpec.from_info(tables.info), _bounds(tables).get(value)
    for a, b in itertools.combinations(tables.axes, 2):
        cells = group_intervals(runs, [a, b], [value], spec=spec, bounds={value: bounds})
        cells = cells.drop(columns="metric")
        cells = counts(runs, [a, b]).merge(cells, on=[a, b], how="left")
        cells["n_flagged"] = [
            len(budgets.flagged_labels(tables, {a: r[a], b: r[b]}))
            for r in cells.to_dict("records")
        ]
        out[(a, b)] = cells
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
