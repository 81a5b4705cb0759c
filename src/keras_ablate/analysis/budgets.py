"""Budgets per arm: the score at every epoch, steps to a threshold, the seeds that solved it, and
the arms that did not learn within their budget.

An arm is one combination of the grid's axes (`tables.axes`): the runs that differ only by seed.
Under a `protocol:` the tables hold only each arm's selected learning rate (analysis.protocol),
so every number here is at the arm's own rate.

- `anytime`: the arm's metric at each epoch, mean over seeds with a 95 % interval
  (analysis.stats). The per-epoch series of a test/<m> metric is val/<m> (metrics.curve_metric:
  the test split is scored once, after the last epoch). A run that diverged keeps nothing from
  its diverged epochs (scoring); from the epoch it diverged in on it takes, like a diverged
  run's score, the worst finite value any run of the experiment has at that epoch, so the
  curve never rises because the arm's bad seeds dropped out (`n_diverged` counts them).
- `per_seed` / `solved`: the first epoch whose metric meets the threshold (analysis.target, else
  analysis.target_fraction of the best finished run: metrics.target_value), times the steps
  per epoch. A seed is solved when it reached the threshold and did not diverge (a diverged
  run's last weights are not a solution); an unsolved seed has no steps (NaN). The arm's
  median counts unsolved seeds as never (+inf): it is inf when half or more never got there.
  Failed runs (crashes) are not seeds: `n_failed` counts them apart.
- `flags` / `did_not_learn`: an arm did not learn within its budget when either
  (a) its loss never left the starting plateau: mean final train/loss over its finished,
      undiverged seeds > STUCK_RATIO (0.95) x their mean loss at the first step (`init/loss`;
      the first epoch's train/loss when a run recorded no steps), or
  (b) for an accuracy, its score sits at chance or at the majority share (analysis.baselines):
      the level lies inside the score's 95 % interval over seeds (the report's interval kind),
      or the mean is within baselines.tolerance (1/sqrt(examples scored)) of it (what
      baselines calls "at"; the only test with one seed).
  Every table and figure of the report marks such an arm with FLAG, and every effect that
  involves it says that it may be budget- or rate-limited (analysis.effects).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from keras_ablate import scoring
from keras_ablate.analysis import baselines, metrics, stats
from keras_ablate.store import DONE_STATUSES

if TYPE_CHECKING:
    from keras_ablate.analysis.tables import Tables

STUCK_RATIO = 0.95  # final / starting training loss above this: the loss never left its plateau
FLAG = "†"
FLAG_TEXT = "did not learn within budget"
BUDGET_NOTE = "may be budget- or rate-limited"


def arm_keys(tables: Tables) -> list[str]:
    """The columns that name an arm: the grid axes present in the runs frame."""
    return [a for a in tables.axes if a in tables.runs.columns]


def arm_label(record: dict, axes: list[str]) -> str:
    """'architecture=lstm, clip=none' (or 'all runs' without axes)."""
    return ", ".join(f"{a}={record[a]}" for a in axes) or "all runs"


def _metric(tables: Tables, metric: str | None) -> str:
    return (
        metric or (tables.info.get("derived") or {}).get("metric") or metrics.chosen_metric(tables)
    )


def _status(runs: pd.DataFrame) -> pd.Series:
    return runs["status"].astype(str) if "status" in runs.columns else pd.Series("ok", runs.index)


def _numbers(runs: pd.DataFrame, column: str) -> np.ndarray:
    if column not in runs.columns:
        return np.full(len(runs), np.nan)
    return pd.to_numeric(runs[column], errors="coerce").to_numpy(dtype=float)


def threshold_for(tables: Tables, metric: str | None = None, threshold: float | None = None):
    """The threshold steps are counted to: `threshold`, else the experiment's target for
    `metric` (metrics.target_value over the finished runs' final curve values)."""
    if threshold is not None:
        return float(threshold)
    metric = _metric(tables, metric)
    derived = tables.info.get("derived") or {}
    if derived.get("metric") == metric and "target" in derived:
        return derived["target"]
    runs, curve = tables.runs, metrics.curve_metric(metric)
    ok = (_status(runs) == "ok").to_numpy()
    finals = _numbers(runs, f"final/{curve}")[ok]
    analysis = tables.info.get("analysis") or {}
    return metrics.target_value(finals, analysis, scoring.higher_is_better(metric))


def per_seed(
    tables: Tables, metric: str | None = None, threshold: float | None = None
) -> pd.DataFrame:
    """One row per run that finished (ok or diverged): the arm's axes, seed, run_id, diverged,
    epochs_to_threshold, steps_to_threshold (NaN unless solved) and solved (module docstring)."""
    metric = _metric(tables, metric)
    threshold = threshold_for(tables, metric, threshold)
    higher = scoring.higher_is_better(metric)
    runs = tables.runs
    keys = arm_keys(tables)
    status = _status(runs)
    done = runs[status.isin(DONE_STATUSES).to_numpy()]
    out = (
        done[["run_id", *keys, "seed"]].copy()
        if len(done)
        else done.reindex(columns=["run_id", *keys, "seed"])
    )
    out["diverged"] = (_status(done) == "diverged").to_numpy()
    first = metrics.epochs_to_target(
        tables.history, metrics.curve_metric(metric), threshold, higher
    )
    epochs = done["run_id"].astype(str).map(first).astype(float).to_numpy()
    out["epochs_to_threshold"] = epochs
    out["solved"] = np.isfinite(epochs) & ~out["diverged"].to_numpy()
    steps = epochs * _numbers(done, "steps_per_epoch")
    out["steps_to_threshold"] = np.where(out["solved"].to_numpy(), steps, np.nan)
    out = out.reset_index(drop=True)
    out.attrs.update(metric=metric, threshold=threshold)
    return out


def _arms(tables: Tables) -> pd.DataFrame:
    """Every arm with at least one run, in the order of the axes' levels."""
    keys = arm_keys(tables)
    runs = tables.runs
    if not keys:
        return pd.DataFrame(index=[0]) if len(runs) else pd.DataFrame()
    return runs[keys].drop_duplicates().sort_values(keys).reset_index(drop=True)


def _arm_index(arms: pd.DataFrame, keys: list[str]) -> pd.Index:
    if not keys:
        return pd.Index(["all runs"] * len(arms), name="arm")
    if len(keys) == 1:
        return pd.Index(arms[keys[0]].tolist(), name=keys[0])
    return pd.MultiIndex.from_frame(arms[keys])


def solved(
    tables: Tables, metric: str | None = None, threshold: float | None = None
) -> pd.DataFrame:
    """One row per arm: its axes, n_seeds (finished runs), n_solved, solved_fraction,
    steps_to_threshold_median (unsolved seeds count as never: inf when half or more never got
    there; NaN without seeds), seeds and steps_to_threshold (tuples in seed order, NaN where
    unsolved), n_failed. `attrs`: metric and threshold."""
    seeds = per_seed(tables, metric, threshold)
    keys = arm_keys(tables)
    arms = _arms(tables)
    failed = tables.runs[(_status(tables.runs) == "failed").to_numpy()]
    rows = []
    for record in arms.to_dict("records"):
        mine = seeds
        bad = failed
        for key in keys:
            mine = mine[(mine[key] == record[key]).to_numpy()]
            bad = bad[(bad[key] == record[key]).to_numpy()]
        mine = mine.sort_values("seed", kind="stable")
        steps = mine["steps_to_threshold"].to_numpy(dtype=float)
        n = len(mine)
        rows.append(
            {
                **record,
                "n_seeds": n,
                "n_solved": int(mine["solved"].sum()),
                "solved_fraction": float(mine["solved"].mean()) if n else math.nan,
                "steps_to_threshold_median": float(
                    np.median(np.where(np.isnan(steps), np.inf, steps))
                )
                if n
                else math.nan,
                "seeds": tuple(int(s) for s in mine["seed"]),
                "steps_to_threshold": tuple(float(s) for s in steps),
                "n_failed": len(bad),
            }
        )
    columns = [*keys, "n_seeds", "n_solved", "solved_fraction", "steps_to_threshold_median"]
    columns += ["seeds", "steps_to_threshold", "n_failed"]
    out = pd.DataFrame(rows, columns=columns)
    out.attrs.update(seeds.attrs)
    return out


def flags(tables: Tables, metric: str | None = None) -> pd.DataFrame:
    """One row per arm: its axes, n_seeds, start_loss, final_loss, loss_ratio, stuck, mean,
    ci_low, ci_high (the score over seeds), chance, majority, at_level ('chance', 'majority
    share' or ''), did_not_learn and reason (words for the report; '' when it learned)."""
    metric = _metric(tables, metric)
    runs = tables.runs
    keys = arm_keys(tables)
    status = _status(runs)
    finished = status.isin(DONE_STATUSES).to_numpy()
    diverged = (status == "diverged").to_numpy()
    derived = tables.info.get("derived") or {}
    higher = scoring.higher_is_better(metric)
    if derived.get("metric") == metric and "score" in runs.columns:
        score = _numbers(runs, "score")
    else:
        score = metrics.score(_numbers(runs, f"final/{metric}"), diverged, finished, higher)
    start = _numbers(runs, "init/loss")
    start = np.where(np.isfinite(start), start, _numbers(runs, "epoch1/train/loss"))
    final_loss = _numbers(runs, "final/train/loss")
    learning = finished & ~diverged & np.isfinite(start) & np.isfinite(final_loss)
    spec = stats.IntervalSpec.from_info(tables.info)
    split = baselines.split_of(runs, metric) if len(runs) else "val"
    accuracy = baselines.is_accuracy(metric)
    frame = runs.assign(
        _score=score, _start=start, _final=final_loss, _learning=learning, _finished=finished
    )
    rows = []
    for record in _arms(tables).to_dict("records"):
        mine = frame
        for key in keys:
            mine = mine[(mine[key] == record[key]).to_numpy()]
        used = mine[mine["_learning"].to_numpy()]
        start_mean = float(used["_start"].mean()) if len(used) else math.nan
        final_mean = float(used["_final"].mean()) if len(used) else math.nan
        ratio = final_mean / start_mean if start_mean and start_mean > 0 else math.nan
        stuck = bool(math.isfinite(ratio) and ratio > STUCK_RATIO)
        values = mine.loc[mine["_finished"].to_numpy(), "_score"].to_numpy(dtype=float)
        est = stats.mean_estimate(values, spec, scoring.metric_range(metric))
        chance = _arm_mean(mine, "baseline/chance") if accuracy else math.nan
        majority = _arm_mean(mine, f"baseline/majority_{split}") if accuracy else math.nan
        n_eval = _arm_mean(mine, f"baseline/n_{'val' if split == 'train' else split}")
        if not math.isfinite(n_eval):
            n_eval = _arm_mean(mine, "baseline/n_val")
        at_level = ""
        for name, level in (("chance", chance), ("majority share", majority)):
            if _at(est, level, baselines.tolerance(n_eval)):
                at_level = name
                break
        reasons = []
        if stuck:
            reasons.append(
                f"train loss {final_mean:.3g} vs {start_mean:.3g} at the start "
                f"(ratio {ratio:.3g} > {STUCK_RATIO:g})"
            )
        if at_level:
            level = chance if at_level == "chance" else majority
            interval = f" [{est.low:.3g}, {est.high:.3g}]" if math.isfinite(est.low) else ""
            reasons.append(f"score {est.value:.3g}{interval} is at {at_level} {level:.3g}")
        rows.append(
            {
                **record,
                "n_seeds": int(mine["_finished"].sum()),
                "start_loss": start_mean,
                "final_loss": final_mean,
                "loss_ratio": ratio,
                "stuck": stuck,
                "mean": est.value,
                "ci_low": est.low,
                "ci_high": est.high,
                "chance": chance,
                "majority": majority,
                "at_level": at_level,
                "did_not_learn": stuck or bool(at_level),
                "reason": "; ".join(reasons),
            }
        )
    columns = [*keys, "n_seeds", "start_loss", "final_loss", "loss_ratio", "stuck", "mean"]
    columns += ["ci_low", "ci_high", "chance", "majority", "at_level", "did_not_learn", "reason"]
    out = pd.DataFrame(rows, columns=columns)
    out.attrs["metric"] = metric
    return out


def _at(est: stats.Estimate, level: float, tol: float) -> bool:
    """Whether a level lies inside the estimate's interval, or within `tol` of its mean."""
    if not (math.isfinite(level) and math.isfinite(est.value)):
        return False
    if math.isfinite(est.low) and math.isfinite(est.high) and est.low <= level <= est.high:
        return True
    return math.isfinite(tol) and abs(est.value - level) <= tol


def _arm_mean(runs: pd.DataFrame, column: str) -> float:
    values = _numbers(runs, column)
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else math.nan


def did_not_learn(tables: Tables, metric: str | None = None) -> pd.Series:
    """Per arm, whether it did not learn within its budget (module docstring), indexed by the
    arm's axis levels (a MultiIndex with two axes or more; 'all runs' without axes)."""
    table = arm_flags(tables) if metric is None else flags(tables, metric)
    keys = arm_keys(tables)
    out = pd.Series(table["did_not_learn"].astype(bool).to_numpy(), index=_arm_index(table, keys))
    out.name = "did_not_learn"
    return out


def arm_flags(tables: Tables) -> pd.DataFrame:
    """flags() of the comparison metric, computed once per Tables (analysis.tables.load stores
    it in `tables.budget`)."""
    if getattr(tables, "budget", None) is None:
        tables.budget = flags(tables)
    return tables.budget


def flagged_labels(tables: Tables, where: dict | None = None) -> list[str]:
    """Labels of the flagged arms (those matching every axis level in `where`, a level or a
    set of levels per axis)."""
    table = arm_flags(tables)
    table = table[table["did_not_learn"].to_numpy(dtype=bool)]
    for axis, levels in (where or {}).items():
        levels = levels if isinstance(levels, set | list | tuple) else {levels}
        table = table[table[axis].isin(list(levels)).to_numpy()]
    keys = arm_keys(tables)
    return [arm_label(r, keys) for r in table.to_dict("records")]


def run_flags(tables: Tables, runs: pd.DataFrame | None = None) -> np.ndarray:
    """Per row of `runs` (default tables.runs): whether its arm did not learn within budget."""
    runs = tables.runs if runs is None else runs
    keys = arm_keys(tables)
    table = arm_flags(tables)
    if not len(runs) or table.empty:
        return np.zeros(len(runs), dtype=bool)
    if not keys:
        return np.full(len(runs), bool(table["did_not_learn"].iloc[0]))
    flagged = {tuple(r[k] for k in keys) for r in table.to_dict("records") if r["did_not_learn"]}
    return np.array([tuple(r) in flagged for r in runs[keys].itertuples(index=False)], dtype=bool)


def anytime(
    tables: Tables, metric: str | None = None, spec: stats.IntervalSpec | None = None
) -> pd.DataFrame:
    """Per arm and epoch: n (seeds with a value), n_diverged (of them, diverged by then and at
    the epoch's worst value), mean, std, ci_low, ci_high, iqm of the metric's per-epoch series.

    Args:
        spec: the interval kind (stats.IntervalSpec); None gives Student t intervals, the
            figures' bands.
    """
    metric = _metric(tables, metric)
    curve = metrics.curve_metric(metric)
    keys = arm_keys(tables)
    h = tables.history
    columns = [*keys, "epoch", "n", "n_diverged", "mean", "std", "ci_low", "ci_high", "iqm"]
    rows = h[(h["metric"].astype(str) == curve).to_numpy()] if len(h) else h
    runs = tables.runs
    if rows.empty or runs.empty:
        return pd.DataFrame(columns=columns)
    wide = rows.pivot_table(
        index="run_id", columns="epoch", values="value", observed=True, dropna=False
    )
    wide.index = wide.index.astype(str)
    status = _status(runs)
    finished = runs[status.isin(DONE_STATUSES).to_numpy()]
    wide = wide.reindex(finished["run_id"].astype(str))
    diverged = (_status(finished) == "diverged").to_numpy()
    undiverged = wide[~diverged]
    worst = undiverged.min() if scoring.higher_is_better(curve) else undiverged.max()
    values = wide.to_numpy(dtype=float)
    # A diverged run: from its first non-finite (or missing) epoch on, the epoch's worst value.
    gone = np.zeros_like(values, dtype=bool)
    for i in np.flatnonzero(diverged):
        bad = ~np.isfinite(values[i])
        if bad.any():
            gone[i, int(np.argmax(bad)) :] = True
    values = np.where(gone, worst.to_numpy(dtype=float)[None, :], values)
    long = pd.DataFrame(values, columns=list(wide.columns))
    for key in keys:
        long[key] = finished[key].to_numpy()
    long = long.melt(id_vars=keys, var_name="epoch", value_name="value")
    long["_gone"] = gone.T.ravel()
    long = long[np.isfinite(long["value"].to_numpy(dtype=float))]
    for key in keys:
        if isinstance(runs[key].dtype, pd.CategoricalDtype):  # keep the plan's level order
            long[key] = pd.Categorical(long[key], categories=runs[key].cat.categories)
    bounds = {"value": scoring.metric_range(curve)}
    out = stats.group_intervals(long, [*keys, "epoch"], ["value"], spec=spec, bounds=bounds)
    gone_count = long.groupby([*keys, "epoch"], observed=True)["_gone"].sum().reset_index()
    out = out.merge(gone_count.rename(columns={"_gone": "n_diverged"}), on=[*keys, "epoch"])
    out["n_diverged"] = out["n_diverged"].astype(int)
    out["epoch"] = out["epoch"].astype(int)
    extra = [c for c in ("interval", "clipped") if c in out.columns]
    out = out[[*columns, *extra]].sort_values([*keys, "epoch"]).reset_index(drop=True)
    out.attrs.update(metric=metric, curve_metric=curve)
    return out
