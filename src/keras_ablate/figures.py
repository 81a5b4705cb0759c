"""The report's figures for a notebook: keras_ablate.figures.convergence(tables) -> a Figure.

Each name is a figure of the report (report.render.figure_specs, by its slug: convergence,
gradient_norm, heatmap_score, main_effects, timestep_gradients, ...), drawn by the report's own
function from `Experiment.tables()` (or an Experiment, whose tables are loaded). A figure with
nothing to draw returns None, as the report skips it. `names()` lists them.
"""

from __future__ import annotations

from typing import Any


def _specs() -> dict[str, tuple]:
    from keras_ablate.report.render import figure_specs

    return {slug: (title, function, caption) for slug, title, function, caption in figure_specs()}


def names() -> list[str]:
    """Every figure's name, in report order."""
    return list(_specs())


def draw(name: str, tables: Any):
    """The figure `name` drawn from `tables` (analysis Tables, or an Experiment)."""
    from keras_ablate.errors import UserError, unknown_name

    specs = _specs()
    if name not in specs:
        raise UserError(unknown_name("figure", name, specs))
    if hasattr(tables, "tables") and callable(tables.tables):
        tables = tables.tables()
    return specs[name][1](tables)


def caption(name: str) -> str:
    """What to look for in the figure, as the report says it."""
    return _specs()[name][2]


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    specs = _specs()
    if name not in specs:
        raise AttributeError(f"module 'keras_ablate.figures' has no figure {name!r}; {names()}")

    def figure(tables):
        return draw(name, tables)

    figure.__name__ = name
    figure.__doc__ = f"{specs[name][0]}: {specs[name][2]}"
    return figure


def __dir__() -> list[str]:
    return sorted([*globals(), *names()])
