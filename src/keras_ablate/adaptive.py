"""Seeds until resolved: run the minimum seeds, look, add seeds to the arms of unresolved comparisons.

The loop sits above the runner: each round is one `run_grid` call over every run planned so far
(finished runs are skipped, so a killed loop started again retrains nothing it finished, under
any executor). Each look loads the records, decides with analysis.sequential (Holm at
alpha / looks) and writes experiment.json (the runs planned so far, the rule) and adaptive.json
(every look's decisions, seeds per arm, why it stopped), both atomically. The decisions depend
only on the records, which the same settings and seeds reproduce, so a resumed loop takes the same
decisions again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from keras_ablate import store
from keras_ablate.analysis import sequential, stats
from keras_ablate.analysis.tables import load
from keras_ablate.config.schema import RunSpec
from keras_ablate.errors import UserError

DEFAULT_MAX_SEEDS = 10


@dataclass(frozen=True)
class Rule:
    """Seeds per arm from `min` to `max`, `step` more per round for unresolved arms."""

    min: int
    max: int
    step: int = 1
    alpha: float = stats.ALPHA

    @property
    def looks(self) -> int:
        return stats.looks(self.min, self.max, self.step)

    @property
    def alpha_per_look(self) -> float:
        return stats.alpha_per_look(self.alpha, self.looks)

    def record(self) -> dict:
        return {
            "min": self.min,
            "max": self.max,
            "step": self.step,
            "alpha": self.alpha,
            "looks": self.looks,
            "alpha_per_look": self.alpha_per_look,
        }

    def describe(self) -> str:
        return (
            f"seeds {self.min} to {self.max} per arm, +{self.step} per round to the arms of "
            f"unresolved comparisons; at most {self.looks} looks, each Holm-corrected at "
            f"{self.alpha:g} / {self.looks} = {self.alpha_per_look:.3g}"
        )


def rule_for(exp, until_resolved: bool, max_seeds: int | None) -> Rule | None:
    """The rule of `seeds: {min, max, until}` or of --until-resolved [--max-seeds N]; None when
    neither asks for one. Raises UserError for --max-seeds alone or below the minimum."""
    adaptive = exp.adaptive
    if adaptive is None and not until_resolved:
        if max_seeds is not None:
            raise UserError(
                "--max-seeds is for adaptive seeds: add --until-resolved, or write "
                "seeds: {min: 3, max: N, until: resolved} in the file"
            )
        return None
    low = adaptive.min if adaptive else len(exp.seed_list)
    high = max_seeds if max_seeds is not None else (adaptive.max if adaptive else None)
    high = max(DEFAULT_MAX_SEEDS, low) if high is None else high
    if low < 2:
        raise UserError(
            f"--until-resolved needs at least 2 seeds to start from (the file gives {low}); "
            "write seeds: 2 or more, or seeds: {min: 3, max: 10, until: resolved}"
        )
    if high < low:
        raise UserError(f"--max-seeds {high} is below the {low} seeds every arm starts with")
    return Rule(low, high, adaptive.step if adaptive else 1)


def seed_sequence(initial: list[int], total: int) -> list[int]:
    """The seeds an arm takes in order: the initial ones, then the next integers after the largest."""
    out = list(initial)
    nxt = max(out) + 1 if out else 0
    while len(out) < total:
        out.append(nxt)
        nxt += 1
    return out[:total]


def arm_of(spec: RunSpec) -> str:
    """An arm: one design point (its axis levels); protocol rates and seeds are inside it."""
    return json.dumps(spec.axes, sort_keys=True, default=str)


def run_until_resolved(
    specs: list[RunSpec],
    seeds: list[int],
    rule: Rule,
    exp_dir: Path,
    record: dict,
    run_round: Callable[[list[RunSpec]], object],
    say: Callable[[str], None] = print,
) -> dict:
    """The loop (module docstring). Returns the final adaptive state.

    Args:
        specs: every run of every arm at every seed of `seeds` (the plan at max seeds).
        seeds: the seed sequence (seed_sequence), `rule.max` long; an arm at count c runs the first c.
        record: experiment.json's plan record (store.experiment_record); run_ids and the rule
            are filled in at every look.
        run_round: trains what is missing of the given specs (runner.run_grid with the options).
    """
    exp_dir = Path(exp_dir)
    position = {seed: i for i, seed in enumerate(seeds)}
    arms = list(dict.fromkeys(arm_of(s) for s in specs))
    counts = dict.fromkeys(arms, rule.min)
    resolved: dict[str, int] = {}  # comparison -> the look that resolved it
    state = {"rule": rule.record(), "description": rule.describe(), "looks": [], "stopped": None}
    for look in range(1, rule.looks + 1):
        current = [s for s in specs if position[s.seed] < counts[arm_of(s)]]
        ids = [s.run_id for s in current]
        info = {**record, "run_ids": ids, "n_runs": len(ids), "adaptive": rule.record()}
        store.write_experiment(exp_dir, info)
        state.update(run_ids=ids, stopped="running", updated=time.time())
        store.write_adaptive(exp_dir, state)
        run_round(current)
        tables = load(exp_dir, run_ids=ids, info=info)
        table = sequential.look(tables, rule.alpha_per_look, set(resolved))
        for name, done in zip(table["comparison"], table["resolved"], strict=True):
            if done:
                resolved.setdefault(name, look)
        by_run = {s.run_id: arm_of(s) for s in current}
        grow = sorted({by_run[r] for r in sequential.runs_to_extend(tables, table) if r in by_run})
        grow = [a for a in grow if counts[a] < rule.max]
        state["looks"].append(
            {
                "look": look,
                "runs": len(ids),
                "seeds_per_arm": {a: counts[a] for a in arms},
                "comparisons": [
                    {
                        "comparison": r["comparison"],
                        "diff": r["diff"],
                        "p_value": r["p_value"],
                        "n": int(r["n"]),
                        "resolved": bool(r["resolved"]),
                        "resolved_at_look": resolved.get(r["comparison"]),
                    }
                    for r in table.to_dict("records")
                ],
                "extended_arms": grow,
            }
        )
        n_resolved, n_all = int(table["resolved"].sum()), len(table)
        say(
            f"look {look}/{rule.looks}: {n_resolved} of {n_all} comparison(s) resolved "
            f"(Holm at {rule.alpha_per_look:.3g})"
        )
        if n_resolved == n_all:
            state["stopped"] = "all resolved" if n_all else "no comparisons to resolve"
            break
        if not grow:
            state["stopped"] = "cap reached"
            break
        for arm in grow:
            counts[arm] = min(counts[arm] + rule.step, rule.max)
        say(f"adding {rule.step} seed(s) to {len(grow)} arm(s) of unresolved comparisons")
    else:
        state["stopped"] = "cap reached"
    state["seeds_per_arm"] = {a: counts[a] for a in arms}
    state["updated"] = time.time()
    store.write_adaptive(exp_dir, state)
    say(f"adaptive seeds stopped: {summary_line(state)}")
    return state


def summary_line(state: dict) -> str:
    """'all resolved after 3 looks; seeds per arm 3-5 (2 arms at 5); 14 runs' (status, report)."""
    if not state:
        return ""
    looks = state.get("looks") or []
    counts = list(
        (state.get("seeds_per_arm") or (looks[-1]["seeds_per_arm"] if looks else {})).values()
    )
    spread = (
        f"{min(counts)}-{max(counts)}"
        if counts and min(counts) != max(counts)
        else (f"{counts[0]}" if counts else "?")
    )
    last = looks[-1]["comparisons"] if looks else []
    open_ = [c["comparison"] for c in last if not c["resolved"]]
    why = state.get("stopped") or "not started"
    text = f"{why} after {len(looks)} look(s); seeds per arm {spread}; {len(state.get('run_ids') or [])} runs"
    if open_ and why != "running":
        text += f"; unresolved: {', '.join(open_)}"
    return text
