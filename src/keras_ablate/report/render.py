"""Build report.html (self-contained, figures embedded) and report.md (figures as files) for an experiment."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from keras_ablate import store
from keras_ablate.adaptive import summary_line as adaptive_summary
from keras_ablate.analysis import baselines, budgets, effects
from keras_ablate.analysis.tables import Tables, load
from keras_ablate.report import (
    budget_section,
    heatmaps,
    instrument_plots,
    plots,
    protocol_section,
    rankings,
    sections,
)
from keras_ablate.report.templating import environment
from keras_ablate.tuning.report import tuning_section


@dataclass
class Figure:
    slug: str
    title: str
    caption: str
    path: Path

    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.path.read_bytes()).decode("ascii")


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def run_table(tables: Tables) -> pd.DataFrame:
    """The run table shown in the report: axes, seed, status, final and best metrics, derived metrics."""
    runs = tables.runs
    if runs.empty:
        return runs
    metric = tables.info.get("derived", {}).get("metric", "val/loss")
    cols = ["run_id", *tables.axes, "seed", "status", "diverged_step"]
    cols += [
        f"final/{metric}",
        "final/val/loss",
        f"best/{metric}",
        "score",
        "epochs_to_target",
        "train_loss_auc",
    ]
    cols += ["grad/log10_norm_std", "grad/max_median_ratio", "grad/clip_rate", "wall_time_s"]
    runs = runs.assign(**_levels(runs, metric))
    flagged = budgets.run_flags(tables)
    if flagged.any():
        runs = runs.assign(budget=np.where(flagged, f"{budgets.FLAG} {budgets.FLAG_TEXT}", ""))
        cols.insert(cols.index("status") + 1, "budget")
    cols[cols.index("score") + 1 : cols.index("score") + 1] = [
        "baseline/chance",
        f"baseline/majority_{'train' if metric.startswith('train/') else 'val'}",
        "level",
    ]
    cols = list(dict.fromkeys(c for c in cols if c in runs.columns))
    sort = [c for c in [*tables.axes, "seed"] if c in runs.columns]
    return runs[cols].sort_values(sort).reset_index(drop=True) if sort else runs[cols]


def _levels(runs: pd.DataFrame, metric: str) -> dict:
    """`level`: where each run's final accuracy sits (analysis.baselines); {} for other metrics."""
    if not baselines.is_accuracy(metric) or "baseline/chance" not in runs.columns:
        return {}
    split = "train" if metric.startswith("train/") else "val"

    def column(name: str) -> np.ndarray:
        values = runs[name] if name in runs.columns else pd.Series(np.nan, index=runs.index)
        return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)

    rows = zip(
        column(f"final/{metric}"),
        column("baseline/chance"),
        column(f"baseline/majority_{split}"),
        column("baseline/n_val"),
        column(f"plateau/{metric}"),
        strict=True,
    )
    return {
        "level": [
            baselines.describe(value, chance, majority, n_val, None if flat != flat else flat == 1)
            for value, chance, majority, n_val, flat in rows
        ]
    }


def figure_specs(tables: Tables | None = None) -> list[tuple]:
    """Every figure of the report, in report order: (slug, title, function(tables), caption); the
    function returns a matplotlib Figure, or None when the tables hold nothing to draw. Append one
    to add a figure (keras_ablate.figures offers each by its slug in a notebook). With `tables`,
    the captions name their interval (plots.band_text)."""
    band = (
        plots.band_text(tables)
        if tables is not None
        else "95 % interval (the report's: a bootstrap over runs by default)"
    )
    return [
        (
            "convergence",
            "Convergence",
            plots.convergence,
            f"The comparison metric per epoch: mean over seeds (and over axes not shown) with a {band}, "
            "kept inside the metric's range (the runs' min-max range where fewer than 3 runs share a point). "
            "Look for arms that stall near the starting value (no learning), arms that get there in fewer "
            "epochs, and wide bands (seed-to-seed noise larger than the gap between arms). For an "
            "accuracy, grey lines mark chance (dotted) and the majority-class share (dash-dot) when all "
            "runs share them: an arm flat on the majority line predicts the commonest class, one flat "
            "above both sits on a plateau above chance. A dotted line holds an arm that did not learn within "
            "budget (†).",
        ),
        (
            "gradient_norm",
            "Global gradient norm",
            plots.gradient_norms,
            "Global gradient norm before clipping on a log axis, in bins of steps: geometric mean over runs "
            f"with a {band} (taken on log10; the runs' range below 3 runs); the dashed line is the clip threshold of that panel. Spikes far above the "
            "line are explosions that clipping cut; a curve falling by decades is a vanishing signal; "
            "curves that end early belong to runs that diverged.",
        ),
        (
            "heatmap_score",
            "Final metric by activation x normalization",
            heatmaps.heatmap_score,
            "Mean score (final comparison metric, diverged runs at the worst finished value) per cell, "
            "panels by architecture and clip. Look for a row or column that is better everywhere (a main "
            "effect) and for cells that break the pattern (an interaction). † marks a cell holding an arm "
            "that did not learn within budget.",
        ),
        (
            "heatmap_divergence",
            "Divergence rate by activation x normalization",
            heatmaps.heatmap_divergence,
            "Fraction of finished runs that diverged per cell (0 = never, 1 = always). Look for the cells "
            "that explode and whether clipping (the panels) removes them.",
        ),
        (
            "main_effects",
            "Main effects",
            plots.main_effects,
            "One panel per factor: every run's score (faint points) and the mean score per level over "
            "all runs at that level, with its 95 % interval (the one the tables name: a bootstrap over runs "
            "by default); the dotted line is the grand mean. A factor that matters moves its points away from "
            "the line by more than their intervals; a flat panel is a factor that did nothing. Hollow points are "
            "runs of an arm that did not learn within budget (†).",
        ),
        (
            "interactions",
            "Interactions",
            plots.interactions,
            "Mean score over the levels of one factor, one line per level of another, with 95 % "
            "intervals (the ones the tables name). Parallel lines: the two factors act independently; crossing or diverging lines: "
            "the effect of one depends on the other. A hollow marker is a cell holding an arm that did not learn "
            "within budget (†).",
        ),
        *budget_section.FIGURES,
        # Whole distributions of runs: performance profile and critical-difference ranking.
        *rankings.FIGURES,
        # Probe instruments (issue 3): gradients through time and depth, clipping, units, gates.
        *instrument_plots.FIGURES,
        (
            "sensitivity",
            "Learning-rate sensitivity",
            protocol_section.sensitivity,
            protocol_section.CAPTION,
        ),
    ]


def make_figures(tables: Tables, fig_dir: Path) -> list[Figure]:
    """Draw every figure of figure_specs that has data into fig_dir."""
    fig_dir.mkdir(parents=True, exist_ok=True)
    figures = []
    for slug, title, fn, caption in figure_specs(tables):
        fig = fn(tables)
        if fig is None:
            continue
        path = fig_dir / f"{slug}.png"
        plots.save(fig, path)
        if slug == "timestep_gradients":
            caption += _not_probed(tables)
        figures.append(Figure(slug, title, caption, path))
    return figures


def _not_probed(tables: Tables) -> str:
    """' Not probed: layer (reason); ...' for recurrent layers without per-timestep rows, or ''."""
    runs = tables.runs
    if runs is None or runs.empty or "probe_skipped" not in runs.columns:
        return ""
    skipped = sorted({s for cell in runs["probe_skipped"].dropna() for s in str(cell).split("; ")})
    return f" Not probed (no rows): {'; '.join(skipped)}." if skipped else ""


def build_report(exp_dir: str | Path, info: dict | None = None) -> dict:
    """Write report.html and report.md into the experiment folder.

    Args:
        info: the experiment as planned now (experiment.json's fields, `run_ids` the plan);
            default: experiment.json, as the last `run` wrote it. Only the plan's runs are
            reported; other runs in the folder are listed apart, never averaged in.

    Returns:
        The paths ('html', 'md'), the build time ('seconds'), and the run folders left out:
        'unreadable' (run id -> why) and 'unplanned' (list of {run_id, status, label}).
    """
    started = time.time()
    exp_dir = Path(exp_dir)
    info = _experiment_info(exp_dir) if info is None else info
    tables = load(exp_dir, run_ids=info.get("run_ids"), info=info)
    tables.save(exp_dir / store.TABLES)
    figures = make_figures(tables, exp_dir / store.FIGURES)
    table = run_table(tables)
    counts = sections.status_counts(tables)
    main = effects.main_effects(tables)
    configs = effects.by_configuration(tables)
    context = {
        "name": info.get("name", exp_dir.name),
        "description": info.get("description", ""),
        "source": info.get("source", ""),
        "n_planned": info.get("n_runs"),
        "counts": counts,
        "figures": figures,
        "columns": list(table.columns),
        "rows": table.to_dict("records"),
        "failed": _failed(tables),
        "unreadable": tables.unreadable,
        "unplanned": tables.unplanned,
        "summary": sections.summary(tables, main, configs),
        "protocol": protocol_section.protocol_section(tables),
        "budgets": budget_section.budget_section(tables),
        "factors": sections.factor_tables(main, (info.get("analysis") or {}).get("min_effect")),
        "pairwise": sections.pairwise_tables(effects.pairwise(tables)),
        "adaptive": adaptive_summary(store.read_adaptive(exp_dir)),
        "interactions": sections.interaction_tables(tables),
        "anova": sections.anova_table(tables),
        "configurations": sections.config_table(tables, configs),
        "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
        "total_wall_time_s": float(tables.runs["wall_time_s"].fillna(0).sum())
        if not tables.runs.empty
        else 0.0,
        # keras-tuner searches under tuning/<arm>/ (empty list when nothing was tuned).
        "tuning": tuning_section(exp_dir, exp_dir / store.FIGURES),
    }
    context["environment"] = sections.environment(exp_dir, tables, time.time() - started)
    html = environment("html", {"fmt": _fmt}).get_template("report.html.j2").render(**context)
    md = (
        environment("markdown", {"fmt": _fmt})
        .get_template("report.md.j2")
        .render(**context, figure_dir=store.FIGURES)
    )
    store.write_text_atomic(exp_dir / store.REPORT_HTML, html)
    store.write_text_atomic(exp_dir / store.REPORT_MD, md)
    return {
        "html": exp_dir / store.REPORT_HTML,
        "md": exp_dir / store.REPORT_MD,
        "seconds": time.time() - started,
        "unreadable": tables.unreadable,
        "unplanned": tables.unplanned,
    }


def _experiment_info(exp_dir: Path) -> dict:
    info = store.read_experiment(exp_dir)
    run_ids = info.get("run_ids")
    if run_ids is not None and not (
        isinstance(run_ids, list) and all(isinstance(r, str) for r in run_ids)
    ):
        info.pop("run_ids")  # a damaged plan: report every readable run
    return info


def _failed(tables: Tables) -> list[dict]:
    runs = tables.runs
    if runs.empty:
        return []
    bad = runs[runs["status"] == "failed"]
    return [{"run_id": r.run_id, "error": r.error} for r in bad.itertuples()]
