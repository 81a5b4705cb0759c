"""Build report.html (self-contained, figures embedded) and report.md (figures as files) for an experiment."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from keras_ablate import store
from keras_ablate.analysis.aggregate import Tables, load
from keras_ablate.report import plots
from keras_ablate.report.tuning_section import tuning_section


@dataclass
class Figure:
    slug: str
    title: str
    caption: str
    path: Path

    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.path.read_bytes()).decode("ascii")


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("keras_ablate.report", "templates"),
        autoescape=select_autoescape(["html", "j2"], default_for_string=True, default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = _fmt
    return env


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def run_table(tables: Tables) -> pd.DataFrame:
    """The run table shown in the report: axes, seed, status, final and best metrics."""
    runs = tables.runs
    if runs.empty:
        return runs
    metric = runs["metric"].dropna().iloc[0] if runs["metric"].notna().any() else "loss"
    cols = ["run_id", *tables.axes, "seed", "status", "diverged_step"]
    cols += [c for c in (f"final/val/{metric}", "final/val/loss", f"best/val/{metric}", "wall_time_s") if c in runs.columns]
    cols = list(dict.fromkeys(c for c in cols if c in runs.columns))
    sort = [c for c in [*tables.axes, "seed"] if c in runs.columns]
    return runs[cols].sort_values(sort).reset_index(drop=True) if sort else runs[cols]


def make_figures(tables: Tables, fig_dir: Path) -> list[Figure]:
    fig_dir.mkdir(parents=True, exist_ok=True)
    specs = [
        ("convergence", "Convergence", plots.convergence,
         "Validation loss per epoch, mean over seeds with a 95 % band. Look for arms that stall "
         "near the starting loss (no learning) or end lower than the rest."),
        ("gradient_norm", "Global gradient norm", plots.gradient_norms,
         "Global gradient norm before clipping at each step, log scale. Spikes are explosions; "
         "a curve falling by decades is vanishing signal."),
    ]
    figures = []
    for slug, title, fn, caption in specs:
        fig = fn(tables)
        if fig is None:
            continue
        path = fig_dir / f"{slug}.png"
        plots.save(fig, path)
        figures.append(Figure(slug, title, caption, path))
    return figures


def build_report(exp_dir: str | Path) -> dict[str, Path]:
    """Write report.html and report.md into the experiment folder; return their paths."""
    started = time.time()
    exp_dir = Path(exp_dir)
    tables = load(exp_dir)
    info = _experiment_info(exp_dir)
    figures = make_figures(tables, exp_dir / "figures")
    table = run_table(tables)
    counts = tables.runs["status"].value_counts().to_dict() if not tables.runs.empty else {}
    env_info = _first_environment(exp_dir)
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
        "environment": env_info,
        "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
        "total_wall_time_s": float(tables.runs["wall_time_s"].fillna(0).sum()) if not tables.runs.empty else 0.0,
        # keras-tuner searches under tuning/<arm>/ (empty list when nothing was tuned).
        "tuning": tuning_section(exp_dir, exp_dir / "figures"),
    }
    env = _environment()
    html = env.get_template("report.html.j2").render(**context)
    md = env.get_template("report.md.j2").render(**context, figure_dir="figures")
    store.write_text_atomic(exp_dir / "report.html", html)
    store.write_text_atomic(exp_dir / "report.md", md)
    return {"html": exp_dir / "report.html", "md": exp_dir / "report.md", "seconds": time.time() - started}


def _experiment_info(exp_dir: Path) -> dict:
    try:
        return json.loads((exp_dir / "experiment.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _first_environment(exp_dir: Path) -> dict:
    for _, _, summary in store.iter_runs(exp_dir):
        if summary.get("environment"):
            return summary["environment"]
    return {}


def _failed(tables: Tables) -> list[dict]:
    runs = tables.runs
    if runs.empty:
        return []
    bad = runs[runs["status"] == "failed"]
    return [{"run_id": r.run_id, "error": r.error} for r in bad.itertuples()]
