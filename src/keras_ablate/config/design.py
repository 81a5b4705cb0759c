"""The design of an experiment: its seeds, its size, and the axis combinations it runs."""

from __future__ import annotations

import itertools
import math

from keras_ablate.config.locate import Locator
from keras_ablate.config.schema import MAX_SEED, Experiment

# The most runs one file may plan (the default grid has 96): enough for a cluster, and a bound
# that a mistyped `seeds: 1e9` or a runaway factorial hits at once instead of exhausting memory.
MAX_RUNS = 100_000


def check_seeds(exp: Experiment, loc: Locator) -> list[int]:
    """The seed list, each a valid Keras/NumPy seed, none twice (checked before any run exists)."""
    if exp.adaptive is not None:
        return exp.seed_list
    if isinstance(exp.seeds, int):
        if not 1 <= exp.seeds <= MAX_RUNS:
            raise loc.error(
                ("seeds",),
                f"a count N means seeds 0 .. N-1: give N from 1 to {MAX_RUNS:,} (got "
                f"{exp.seeds}), or a list of seeds",
            )
        return exp.seed_list
    if not exp.seeds:
        raise loc.error(("seeds",), "give at least one seed")
    first: dict[int, int] = {}
    for i, seed in enumerate(exp.seeds):
        if not 0 <= seed <= MAX_SEED:
            raise loc.error(
                ("seeds", i),
                f"seed {seed} is out of range: a seed is an integer from 0 to {MAX_SEED} "
                "(what NumPy and Keras accept)",
            )
        if seed in first:
            raise loc.error(
                ("seeds", i),
                f"seed {seed} appears twice (also seeds[{first[seed]}]): each seed is one run",
            )
        first[seed] = i
    return list(exp.seeds)


def check_plan_size(axes: dict[str, list], design: str, n_seeds: int, loc: Locator) -> None:
    """Refuse a plan too large to list before listing it (a typo can multiply a grid by 1000)."""
    sizes = [len(levels) for levels in axes.values()]
    if design == "factorial":
        combos = math.prod(sizes)
        shape = " x ".join(f"{len(v)} {k}" for k, v in axes.items()) or "1 configuration"
    else:
        combos = 1 + sum(n - 1 for n in sizes)
        shape = f"{combos} configurations (one at a time)"
    if combos * n_seeds > MAX_RUNS:
        raise loc.error(
            ("grid",),
            f"{combos * n_seeds:,} runs ({shape} x {n_seeds} seed(s)); one experiment holds at "
            f"most {MAX_RUNS:,}: split it into several files",
        )


def design_points(axes: dict[str, list], design: str):
    """The axis combinations of a factorial or one-at-a-time design, in file order."""
    if not axes:
        yield {}
        return
    keys = list(axes)
    if design == "factorial":
        for values in itertools.product(*(axes[k] for k in keys)):
            yield dict(zip(keys, values, strict=True))
        return
    baseline = {k: axes[k][0] for k in keys}
    yield dict(baseline)
    for k in keys:
        for level in axes[k][1:]:
            yield {**baseline, k: level}
