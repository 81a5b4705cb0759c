"""Report sections as plain data for the templates: summary, factor effects, interactions, ANOVA, environment."""

from __future__ import annotations

import math
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from keras_ablate import store
from keras_ablate.analysis import baselines, budgets, effects
from keras_ablate.analysis.stats import IntervalSpec
from keras_ablate.analysis.tables import STATUSES, Tables
from keras_ablate.phases import format_phases

TOP = 5  # best configurations and largest effects shown in the summary
CONFIG_METRICS = (
    "score",
    "epochs_to_target",
    "train_loss_auc",
    "grad/log10_norm_std",
    "grad/clip_rate",
)


def num(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float | np.floating):
        return f"{value:.{digits}g}"
    return str(value)


def ci_text(mean, low, high) -> str:
    """'0.81 [0.79, 0.83]', or just the mean when there is no interval (one run)."""
    if mean is None or not math.isfinite(float(mean)):
        return "–"
    if low is None or not (math.isfinite(float(low)) and math.isfinite(float(high))):
        return num(float(mean))
    return f"{num(float(mean))} [{num(float(low))}, {num(float(high))}]"


def better_text(record: dict) -> str:
    """P(improvement) '0.83 [0.6, 1]' (the level better than the reference), '–' without one."""
    return ci_text(record.get("p_better"), record.get("p_better_low"), record.get("p_better_high"))


def decision_text(record: dict) -> str:
    """yes / no (the Holm-corrected decision) or 'no interval' when there is no test."""
    if not math.isfinite(float(record.get("p_value", math.nan))):
        return "no interval"
    return "yes" if record.get("resolved") else "no"


def seeds_text(record: dict, min_effect) -> str:
    """Seeds per arm that would resolve an unresolved difference: of its size, and of min_effect."""
    if record.get("resolved"):
        return "resolved"
    parts = []
    observed = record.get("seeds_needed", math.nan)
    if math.isfinite(observed):
        parts.append(f"{int(observed)} (observed size)")
    wanted = record.get("seeds_needed_min", math.nan)
    if min_effect and math.isfinite(wanted):
        parts.append(f"{int(wanted)} (size {num(float(min_effect))})")
    return "; ".join(parts) or "–"


def method_note(main: pd.DataFrame) -> dict:
    """What the effect tables say about their intervals and decisions."""
    family = int(main.attrs.get("family", 0)) if not main.empty else 0
    alpha = float(main.attrs.get("alpha", 0.05)) if not main.empty else 0.05
    level = f"{alpha:.3g}" + (
        " (0.05 split over the adaptive seeds' looks)" if alpha < 0.05 else ""
    )
    return {
        "interval": main.attrs.get("interval", "") if not main.empty else "",
        "family": family,
        "decision": (
            f"Holm-corrected across {family} comparisons: a difference is resolved (yes) where its "
            "Holm-adjusted p-value (paired t test over matched runs, Welch's t test otherwise) is "
            f"below {level}; the intervals shown are the uncorrected 95 % intervals, P(better) is the "
            "probability that a run at the level beats one at the reference (ties 1/2) with its "
            f"bootstrap interval ({main.attrs.get('resamples', '')} resamples), and seeds needed is per arm, for 80 % power at the strictest Holm "
            f"level {alpha:.3g} / {family} (normal approximation)."
        ),
    }


def label(record: dict, axes: list[str]) -> str:
    return ", ".join(f"{a}={record[a]}" for a in axes) or "(all runs)"


def status_counts(tables: Tables) -> dict[str, int]:
    """ok / diverged / failed / unreadable (a damaged folder) / missing (planned, no folder yet),
    over every run: under a protocol, the runs at the rates not selected count too."""
    runs = tables.all_runs if tables.all_runs is not None else tables.runs
    out = {s: int((runs["status"].astype(str) == s).sum()) for s in STATUSES} if len(runs) else {}
    planned = tables.info.get("run_ids") or []
    out["unreadable"] = len(tables.unreadable)
    if planned:
        present = set(runs["run_id"].astype(str)) if len(runs) else set()
        accounted = present | set(tables.unreadable)
        out["missing"] = sum(1 for run_id in planned if run_id not in accounted)
    return {k: v for k, v in out.items() if v or k in STATUSES}


def summary(tables: Tables, main: pd.DataFrame, configs: pd.DataFrame) -> dict:
    derived = tables.info.get("derived", {})
    higher = bool(derived.get("higher_is_better"))
    best = []
    scores = configs[configs["metric"] == "score"] if not configs.empty else configs
    if not scores.empty:
        status = effects.counts(tables.runs, tables.axes) if tables.axes else None
        ranked = scores[np.isfinite(scores["mean"].to_numpy(dtype=float))]
        order, ascending = ["mean"], [not higher]
        if status is not None:
            # At equal means (diverged runs tie with the worst finished one) fewer divergences rank first.
            ranked = ranked.merge(status[[*tables.axes, "n_diverged"]], on=tables.axes, how="left")
            order, ascending = ["mean", "n_diverged"], [not higher, True]
        ranked = ranked.sort_values(order, ascending=ascending, kind="mergesort").head(TOP)
        for record in ranked.to_dict("records"):
            diverged = ""
            if status is not None:
                match = status
                for a in tables.axes:
                    match = match[match[a] == record[a]]
                if len(match):
                    diverged = (
                        f"{int(match['n_diverged'].iloc[0])} / {int(match['n_finished'].iloc[0])}"
                    )
            mine = tables.runs
            for a in tables.axes:
                mine = mine[mine[a] == record[a]]
            flagged = budgets.flagged_labels(tables, {a: record[a] for a in tables.axes})
            best.append(
                {
                    "config": label(record, tables.axes),
                    "flag": f"{budgets.FLAG} {budgets.FLAG_TEXT}" if flagged else "",
                    "n": int(record["n"]),
                    "value": ci_text(record["mean"], record["ci_low"], record["ci_high"]),
                    "diverged": diverged,
                    "level": baselines.group_text(
                        mine, f"final/{derived.get('metric')}", float(record["mean"])
                    ),
                }
            )
    largest = []
    min_effect = (tables.info.get("analysis") or {}).get("min_effect")
    if not main.empty:
        rows = main[
            (main["diff_method"] != "reference") & np.isfinite(main["diff"].to_numpy(dtype=float))
        ]
        rows = rows.reindex(rows["diff"].abs().sort_values(ascending=False).index).head(TOP)
        for record in rows.to_dict("records"):
            low, high = record["diff_low"], record["diff_high"]
            largest.append(
                {
                    "effect": f"{record['axis']}: {record['level']} vs {record['reference']}",
                    "value": ci_text(record["diff"], low, high),
                    "method": f"{record['diff_method']}, {record['diff_interval']}"
                    + (", cut to range" if record.get("diff_clipped") else ""),
                    "better": better_text(record),
                    "excludes_zero": decision_text(record),
                    "seeds": seeds_text(record, min_effect),
                    "budget": record.get("budget_note", ""),
                }
            )
    return {
        "metric": derived.get("metric"),
        "direction": "higher" if higher else "lower",
        "target": num(derived.get("target")),
        "baseline": baseline_sentence(tables, derived.get("metric") or ""),
        "best": best,
        "largest": largest,
        "interval": IntervalSpec.from_info(tables.info).describe(),
        **{f"method_{k}": v for k, v in method_note(main).items()},
    }


def baseline_sentence(tables: Tables, metric: str) -> str:
    """What an accuracy is worth without learning, from the runs' summaries ('' for other metrics)."""
    runs = tables.runs
    if not baselines.is_accuracy(metric) or runs.empty or "baseline/chance" not in runs.columns:
        return ""
    split = baselines.split_of(runs, metric)
    parts = []
    for name, column in (("chance", "baseline/chance"), ("majority", f"baseline/majority_{split}")):
        values = pd.to_numeric(runs.get(column), errors="coerce").dropna()
        if values.empty:
            return ""
        low, high = values.min(), values.max()
        parts.append(
            f"{name} {num(low, 3)}" if low == high else f"{name} {num(low, 3)}-{num(high, 3)}"
        )
    n_val = pd.to_numeric(
        runs.get(f"baseline/n_{'test' if split == 'test' else 'val'}"), errors="coerce"
    ).dropna()
    tolerance = num(baselines.tolerance(float(n_val.min())), 2) if len(n_val) else "–"
    return (
        f"Without learning: {parts[0]} (1 / number of classes), {parts[1]} (share of the commonest "
        f"class in the {dict(train='training', test='test').get(split, 'validation')} set); an accuracy within "
        f"{tolerance} (1/sqrt(examples scored)) of one of them is described as at it, and one "
        "above both whose last epochs are flat as a plateau above chance."
    )


def factor_tables(main: pd.DataFrame, min_effect=None) -> list[dict]:
    """One table per axis: level, counts, divergence rate, mean [CI], IQM, difference from the
    reference [CI], P(better) [CI], the Holm-corrected decision and the seeds needed."""
    out = []
    if main.empty:
        return out
    for axis, rows in main.groupby("axis", sort=False):
        body = []
        for r in rows.to_dict("records"):
            reference = r["diff_method"] == "reference"
            body.append(
                {
                    "level": str(r["level"]),
                    "runs": r["n_runs"],
                    "finished": r["n_finished"],
                    "diverged": r["n_diverged"],
                    "failed": r["n_failed"],
                    "divergence rate": num(r["divergence_rate"], 2),
                    "mean [95% CI]": ci_text(r["mean"], r["ci_low"], r["ci_high"]),
                    "IQM": num(r.get("iqm", math.nan)),
                    "difference [95% CI]": "reference"
                    if reference
                    else ci_text(r["diff"], r["diff_low"], r["diff_high"]),
                    "interval": r["diff_method"]
                    if reference
                    else f"{r['diff_method']}, {r['diff_interval']}"
                    + (", cut to range" if r.get("diff_clipped") else ""),
                    "P(better) [95% CI]": "" if reference else better_text(r),
                    "p (Holm)": "" if reference else num(r.get("p_holm", math.nan), 3),
                    "differs (Holm)": "" if reference else decision_text(r),
                    "seeds needed per arm": "" if reference else seeds_text(r, min_effect),
                    "budget": r.get("budget_note", ""),
                }
            )
        if not any(row["budget"] for row in body):
            for row in body:
                del row["budget"]
        out.append(
            {
                "axis": axis,
                "reference": str(rows["reference"].iloc[0]),
                "columns": list(body[0]),
                "rows": body,
            }
        )
    return out


def pairwise_tables(pairs: pd.DataFrame) -> dict:
    """Per axis with 3-6 levels: every pair of levels, the difference [CI], P(first better) [CI]
    and the decision Holm-corrected across every pair shown ({'family', 'tables'})."""
    if pairs.empty:
        return {"family": 0, "tables": []}
    out = []
    for axis, rows in pairs.groupby("axis", sort=False):
        body = [
            {
                "pair": f"{r['a']} vs {r['b']}",
                "difference [95% CI]": ci_text(r["diff"], r["diff_low"], r["diff_high"]),
                "interval": f"{r['diff_method']}, {r['diff_interval']}"
                + (", cut to range" if r.get("diff_clipped") else ""),
                "P(first better) [95% CI]": better_text(r),
                "p (Holm)": num(r.get("p_holm", math.nan), 3),
                "differs (Holm)": decision_text(r),
            }
            for r in rows.to_dict("records")
        ]
        out.append({"axis": axis, "columns": list(body[0]), "rows": body})
    return {"family": int(pairs.attrs.get("family", 0)), "tables": out}


def interaction_tables(tables: Tables) -> list[dict]:
    """Per pair of axes: rows = first axis levels, columns = second axis levels, cells 'mean [CI] (n)'."""
    out = []
    for (a, b), cells in effects.interactions(tables).items():
        if len(tables.levels[a]) < 2 or len(tables.levels[b]) < 2:
            continue
        columns = [str(v) for v in tables.levels[b]]
        body = []
        for level in tables.levels[a]:
            row = {"level": str(level)}
            for col_level, key in zip(tables.levels[b], columns, strict=False):
                cell = cells[(cells[a] == level) & (cells[b] == col_level)]
                if cell.empty:
                    row[key] = "–"
                    continue
                c = cell.iloc[0]
                rate = f", {int(c['n_diverged'])} div." if c["n_diverged"] else ""
                flag = f" {budgets.FLAG}" if c.get("n_flagged", 0) else ""
                row[key] = (
                    f"{ci_text(c['mean'], c['ci_low'], c['ci_high'])} (n={int(c['n'])}{rate}){flag}"
                )
            body.append(row)
        out.append({"rows_axis": a, "cols_axis": b, "columns": columns, "rows": body})
    return out


def anova_table(tables: Tables) -> dict:
    table, note = effects.anova(tables)
    if table is None:
        return {"note": note, "columns": [], "rows": []}
    rows = [
        {
            "term": r["term"],
            "df": num(r["df"]),
            "sum of squares": num(r["sum_sq"]),
            "F": num(r["F"]),
            "p": num(r["p_value"], 3),
            "partial eta²": num(r["partial_eta_sq"], 3),
        }
        for r in table.to_dict("records")
    ]
    return {"note": note, "columns": list(rows[0]), "rows": rows}


def config_table(tables: Tables, configs: pd.DataFrame) -> dict:
    """Per configuration: 'mean [CI]' over seeds of the main derived metrics."""
    if configs.empty or not tables.axes:
        return {"columns": [], "rows": []}
    metrics = [m for m in CONFIG_METRICS if m in set(configs["metric"])]
    wide = {}
    for record in configs[configs["metric"].isin(metrics)].to_dict("records"):
        key = tuple(record[a] for a in tables.axes)
        row = wide.setdefault(key, {**{a: str(record[a]) for a in tables.axes}, "n": 0})
        row[record["metric"]] = ci_text(record["mean"], record["ci_low"], record["ci_high"])
        if record["metric"] == "score":
            row["n"] = int(record["n"])
        if "budget" not in row:
            flagged = budgets.flagged_labels(tables, {a: record[a] for a in tables.axes})
            row["budget"] = f"{budgets.FLAG} {budgets.FLAG_TEXT}" if flagged else ""
    columns = [*tables.axes, "n", *metrics]
    if any(row["budget"] for row in wide.values()):
        columns.append("budget")
    return {
        "columns": columns,
        "rows": [{c: row.get(c, "–") for c in columns} for row in wide.values()],
    }


def environment(exp_dir: Path, tables: Tables, build_seconds: float) -> dict:
    """Versions (runs and report), hardware, the command, and wall times."""
    info = tables.info
    out = {}
    for _, _, s in store.iter_runs(exp_dir):
        if s.get("environment"):
            out.update({f"run {k}": v for k, v in s["environment"].items()})
            break
    for package in ("pandas", "numpy", "matplotlib", "seaborn", "statsmodels", "keras-ablate"):
        try:
            out[f"report {package}"] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    out["report python"] = platform.python_version()
    out["report host"] = f"{platform.platform()} ({platform.machine()})"
    if info.get("command"):
        out["command"] = info["command"]
    elif info.get("source"):
        out["command"] = f"keras-ablate run {info['source']}"
    out["report command"] = (
        " ".join(["keras-ablate", *sys.argv[1:]]) if sys.argv[0].endswith("keras-ablate") else ""
    )
    runs = tables.runs
    if len(runs) and "wall_time_s" in runs.columns:
        out["training time, sum over runs"] = f"{float(runs['wall_time_s'].fillna(0).sum()):.1f} s"
    phases = {
        c.removeprefix("timing/"): float(runs[c].fillna(0).sum())
        for c in runs.columns
        if c.startswith("timing/")
    }
    if phases:
        out["time by phase, sum over runs"] = format_phases(phases)
    times = [
        (p / "summary.json").stat().st_mtime
        for p in (exp_dir / store.RUNS).glob("*/")
        if not p.name.startswith(".") and (p / "summary.json").exists()
    ]
    if len(times) > 1:
        out["first to last run finished"] = f"{max(times) - min(times):.1f} s"
    out["report built in"] = f"{build_seconds:.1f} s"
    out["report generated"] = time.strftime("%Y-%m-%d %H:%M:%S")
    return {k: v for k, v in out.items() if v not in ("", None)}
