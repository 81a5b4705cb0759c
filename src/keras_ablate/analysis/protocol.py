"""The fair-comparison protocol: each arm at its own learning rate, chosen on validation.

With `protocol: {learning_rate: [r1, r2, ...], select_on: val/loss}` every arm (one
combination of the grid's axes) is trained at every rate. For each arm, the rate whose mean
`select_on` value over the arm's seeds is best (lowest loss, highest accuracy:
scoring.higher_is_better) is selected; a rate at which some seed diverged or has no value
ranks after every rate whose seeds all have one. Arms are then compared at their selected
rates only, on the reported (test) score. The selection reads validation values only, so the
test score of the selected runs is still a held-out estimate.

A rate selected at either end of the list (`at_edge`) says the arm's best rate may lie outside
the rates tried: the report says so and suggests extending the list.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from keras_ablate import scoring

if TYPE_CHECKING:
    from keras_ablate.analysis.tables import Tables

RATE = "learning_rate"


def select_rates(
    runs: pd.DataFrame, axes: list[str], select_on: str, rates: list[float]
) -> pd.DataFrame:
    """One row per arm and rate: the arm's axes, `learning_rate`, `seeds` (runs at that rate),
    `finished` (seeds with a finite value), `select_value` (their mean), `selected`
    (exactly one True per arm) and `at_edge` (selected, and the smallest or largest of at least
    two rates).

    Args:
        runs: the runs frame (analysis.tables.load), with a `final/<select_on>` column.
        axes: the grid axes that define an arm (the learning rate is not one of them).
        select_on: a history metric, e.g. `val/loss` or `val/accuracy`.
        rates: the protocol's rates, in file order (ties go to the earlier one).
    """
    column = f"final/{select_on}"
    higher = scoring.higher_is_better(select_on)
    frame = runs.copy()
    if column not in frame.columns:
        frame[column] = np.nan
    frame["_value"] = pd.to_numeric(frame[column], errors="coerce")
    order = {float(r): i for i, r in enumerate(rates)}
    keys = [*axes, RATE]
    grouped = frame.groupby(keys, dropna=False, observed=True, sort=False)["_value"]
    table = grouped.agg(
        seeds="size",
        finished=lambda v: int(np.isfinite(v.to_numpy(dtype=float)).sum()),
        select_value=lambda v: float(np.nanmean(v)) if np.isfinite(v).any() else math.nan,
    ).reset_index()
    table["_rank_rate"] = table[RATE].map(lambda r: order.get(float(r), len(order)))
    complete = (table["finished"] == table["seeds"]) & np.isfinite(table["select_value"])
    # Complete rates first, then the best value, then file order.
    table["_incomplete"] = (~complete).astype(int)
    table["_key"] = -table["select_value"] if higher else table["select_value"]
    table["_key"] = table["_key"].fillna(np.inf)
    ranked = table.sort_values(["_incomplete", "_key", "_rank_rate"], kind="stable")
    best = (
        ranked.groupby(axes, dropna=False, observed=True, sort=False).head(1).index
        if axes
        else ranked.head(1).index
    )
    table["selected"] = table.index.isin(best)
    ends = {min(order), max(order)} if len(order) > 1 else set()
    table["at_edge"] = table["selected"] & table[RATE].map(lambda r: float(r) in ends)
    table = (
        table.sort_values([*axes, "_rank_rate"], kind="stable")
        if axes
        else table.sort_values("_rank_rate")
    )
    return table.drop(columns=["_rank_rate", "_incomplete", "_key"]).reset_index(drop=True)


def selected_runs(runs: pd.DataFrame, selection: pd.DataFrame, axes: list[str]) -> pd.DataFrame:
    """The runs at their arm's selected rate (every seed of it)."""
    chosen = selection.loc[selection["selected"], [*axes, RATE]]
    merged = runs.merge(chosen, on=[*axes, RATE], how="inner")
    return merged.reset_index(drop=True)


def apply_protocol(tables: Tables, protocol: dict) -> None:
    """Keep, in every frame of `tables`, only the runs at their arm's selected rate.

    Every run stays in `tables.all_runs` (for the sensitivity curves), and the selection
    (select_rates) in `tables.protocol`. Effects, figures and the run table then compare arms
    at their own rates.
    """
    runs = tables.runs
    if runs.empty or RATE not in runs.columns:
        return
    selection = select_rates(runs, tables.axes, protocol["select_on"], protocol["learning_rate"])
    kept = set(selected_runs(runs, selection, tables.axes)["run_id"].astype(str))
    tables.all_runs = runs
    tables.protocol = selection
    tables.runs = _only(runs, kept)
    tables.history = _only(tables.history, kept)
    tables.steps = _only(tables.steps, kept)
    if tables.timesteps is not None:
        tables.timesteps = _only(tables.timesteps, kept)
    tables.extra = {name: _only(frame, kept) for name, frame in tables.extra.items()}


def _only(frame: pd.DataFrame, run_ids: set[str]) -> pd.DataFrame:
    out = frame[frame["run_id"].astype(str).isin(run_ids)].reset_index(drop=True)
    if isinstance(out["run_id"].dtype, pd.CategoricalDtype):
        out["run_id"] = out["run_id"].cat.remove_unused_categories()
    return out
