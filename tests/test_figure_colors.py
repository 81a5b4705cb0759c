"""One colour per level across the report's figures: every legend entry of a level has its colour."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

from matplotlib.colors import to_rgb  # noqa: E402

from keras_ablate.analysis import simulate  # noqa: E402
from keras_ablate.analysis.tables import load  # noqa: E402
from keras_ablate.report import plots, render  # noqa: E402


def _handle_color(handle) -> tuple:
    color = handle.get_color()
    if hasattr(color, "ndim") and color.ndim == 2:  # a collection: one row per segment
        color = color[0]
    return tuple(round(c, 6) for c in to_rgb(color))


def test_every_figure_gives_a_level_the_same_colour(tmp_path, monkeypatch):
    exp = tmp_path / "s"
    grid = {
        "architecture": ["rnn", "lstm", "gru"],
        "activation": ["tanh", "relu"],
        "clip": ["none", "norm:1.0"],
    }
    simulate.write_experiment(exp, grid, seeds=2, epochs=2, steps_per_epoch=2)
    tables = load(exp)
    drawn = []
    monkeypatch.setattr(plots, "save", lambda fig, path: drawn.append((path.stem, fig)))
    render.make_figures(tables, exp / "figures")

    seen: dict[tuple[str, str], set] = {}  # (axis, level) -> colours, over every figure's legends
    for slug, fig in drawn:
        legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
        for legend in legends:
            axis = legend.get_title().get_text() or None
            for text, handle in zip(legend.get_texts(), legend.legend_handles, strict=True):
                label = text.get_text()
                if label in grid:  # seaborn's sectioned legend: a header names the axis
                    axis = label
                elif axis in grid and label in grid[axis]:
                    seen.setdefault((axis, label), set()).add((slug, _handle_color(handle)))
    figures_per_level = {key: {slug for slug, _ in v} for key, v in seen.items()}
    assert len(seen) == 7 and all(len(s) >= 1 for s in figures_per_level.values())
    assert len({slug for v in figures_per_level.values() for slug in v}) >= 3
    colors = {key: {color for _, color in v} for key, v in seen.items()}
    # One colour per level everywhere, and that colour is level_colors' (distinct within an axis).
    expected = plots.level_colors(tables)
    for (axis, level), found in colors.items():
        assert found == {tuple(round(c, 6) for c in to_rgb(expected[axis][level]))}, (axis, level)
    for axis, levels in grid.items():
        assert len(
            {next(iter(colors[(axis, lv)])) for lv in levels if (axis, lv) in colors}
        ) == len([lv for lv in levels if (axis, lv) in colors])
