"""Adaptive seeds' rule: which comparisons a look resolves, and which arms get more seeds.

The comparisons are the report's family (analysis.effects.reference_tests: every level of every
axis against its reference, paired over matched runs where the design allows). At each look
they are Holm-corrected at stats.alpha_per_look(alpha, looks), the level that keeps the chance of
any false "resolved" over all the looks below alpha (Bonferroni over the looks; stats.py says
why). A comparison resolved at one look stays resolved; the arms (design points) on either side
of a comparison that is still unresolved get more seeds. adaptive.py runs the loop.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from keras_ablate.analysis import effects, stats
from keras_ablate.analysis.tables import Tables


def key(axis: str, level) -> str:
    """A comparison's name in the adaptive state: 'axis=level' (against the axis's reference)."""
    return f"{axis}={level}"


def decide(p_values, alpha_look: float, already=None) -> np.ndarray:
    """Resolved flags: Holm at alpha_look over the finite p-values, or resolved at an earlier look
    (`already`, one flag per p-value)."""
    reject, _ = stats.holm(np.asarray(p_values, float), alpha_look)
    if already is not None:
        reject = reject | np.asarray(already, bool)
    return reject


def look(
    tables: Tables, alpha_look: float, resolved_before: set[str] = frozenset()
) -> pd.DataFrame:
    """The family at this look: axis, level, reference, diff, p_value, n, comparison (key) and
    resolved (Holm at alpha_look, or resolved at an earlier look)."""
    table = effects.reference_tests(tables)
    table["comparison"] = [key(a, lv) for a, lv in zip(table["axis"], table["level"], strict=True)]
    before = table["comparison"].isin(resolved_before).to_numpy()
    table["resolved"] = decide(table["p_value"].to_numpy(dtype=float), alpha_look, before)
    return table


def runs_to_extend(tables: Tables, comparisons: pd.DataFrame) -> list[str]:
    """The run ids of the arms on either side of every unresolved comparison (the arms that get
    more seeds): runs at the level or at the reference of that axis."""
    runs = tables.runs
    if runs.empty:
        return []
    wanted = np.zeros(len(runs), bool)
    for row in comparisons[~comparisons["resolved"]].to_dict("records"):
        column = runs[row["axis"]]
        wanted |= ((column == row["level"]) | (column == row["reference"])).to_numpy()
    return runs.loc[wanted, "run_id"].astype(str).tolist()
