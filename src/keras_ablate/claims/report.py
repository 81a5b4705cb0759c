"""results/claims/report.html (self-contained) and report.md: a verdict table, then one section per claim."""

from __future__ import annotations

import base64
import math
import textwrap
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from keras_ablate import store  # noqa: E402
from keras_ablate.analysis import baselines  # noqa: E402
from keras_ablate.claims.evaluation import select  # noqa: E402
from keras_ablate.report.templating import environment  # noqa: E402

COLOURS = {
    "supported": "#1a7f37",
    "contradicted": "#cf222e",
    "inconclusive": "#9a6700",
    "budget-sensitive": "#8250df",
}
GROUP_COLOURS = ("#0969da", "#bc4c00", "#8250df")


def claim_figure(result, path: Path) -> Path | None:
    """One panel per rule: each run's value per group, the group mean with its CI, the threshold."""
    leaves = [leaf for leaf in result.verdict.leaves() if leaf.groups]
    if not leaves:
        return None
    columns = min(3, len(leaves))
    rows = -(-len(leaves) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.2 * rows), squeeze=False)
    for ax in axes.flat[len(leaves) :]:
        ax.set_visible(False)
    for ax, leaf in zip(axes.flat, leaves, strict=False):
        ax.ticklabel_format(axis="y", useOffset=False)
        for i, group in enumerate(leaf.groups):
            colour = GROUP_COLOURS[i % len(GROUP_COLOURS)]
            if len(group.values):  # a group with no finished run has nothing to scatter
                jitter = np.linspace(-0.12, 0.12, len(group.values))
                ax.scatter(i + jitter, group.values, s=14, color=colour, alpha=0.6)
            if not math.isnan(group.mean):
                lo, hi = group.ci
                err = None if math.isnan(lo) else [[group.mean - lo], [hi - group.mean]]
                ax.errorbar(i + 0.3, group.mean, yerr=err, fmt="o", color=colour, capsize=4)
        if leaf.kind == "threshold":
            ax.axhline(leaf.rule["value"], color="grey", linestyle="--", linewidth=1)
        for value, style in _accuracy_lines(leaf, result.table):
            ax.axhline(value, color="grey", linestyle=style, linewidth=0.8)
        ax.set_xticks(range(len(leaf.groups)))
        ax.set_xticklabels([_short(g.label) for g in leaf.groups], fontsize=7, rotation=15)
        transform = leaf.rule.get("transform", "none")
        ax.set_ylabel(
            leaf.metric if transform == "none" else f"{transform}({leaf.metric})", fontsize=8
        )
        title = textwrap.fill(f"{leaf.name or leaf.kind}: {leaf.verdict}", 40)
        ax.set_title(title, fontsize=8, color=COLOURS[leaf.verdict])
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def _accuracy_lines(leaf, table) -> list[tuple[float, str]]:
    """Chance (dotted) and majority share (dash-dot) of an accuracy leaf's runs, as reference lines."""
    if (
        table is None
        or not baselines.is_accuracy(leaf.metric)
        or leaf.rule.get("transform", "none") != "none"
    ):
        return []
    split = "train" if "/train/" in f"/{leaf.metric}" else "val"
    out = []
    for column, style in (("baseline/chance", ":"), (f"baseline/majority_{split}", "-.")):
        if column in table.columns:
            values = table[column].astype(float).dropna()
            if len(values):
                out.append((float(values.mean()), style))
    return out


def _short(label: str, width: int = 28) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


def group_runs(leaf, table) -> list:
    """The runs behind each of a leaf's groups, in the order of leaf.groups."""
    rule = leaf.rule or {}
    selections = (
        [rule.get("where") or {}] if leaf.kind == "threshold" else [rule.get("a"), rule.get("b")]
    )
    return [select(table, where or {}) for where in selections[: len(leaf.groups)]]


def _baseline_texts(leaf, table) -> list[str]:
    """Per group: 'chance 0.25, majority 0.27: plateau above chance' for an accuracy (else '')."""
    if table is None or leaf.rule.get("transform", "none") != "none":
        return [""] * len(leaf.groups)
    return [
        baselines.group_text(runs, leaf.metric, g.mean)
        for runs, g in zip(group_runs(leaf, table), leaf.groups, strict=False)
    ]


def _leaf_rows(verdict, table=None) -> list[dict]:
    rows = []
    for leaf in verdict.leaves():
        texts = _baseline_texts(leaf, table) if leaf.groups else []
        groups = [
            {
                "label": g.label,
                "n": len(g.values),
                "planned": g.n_planned,
                "diverged": g.n_diverged,
                "failed": g.n_failed,
                "missing": g.n_missing,
                "mean": g.mean,
                "ci": g.ci,
                "baseline": text,
            }
            for g, text in zip(leaf.groups, texts, strict=True)
        ]
        rows.append(
            {
                "name": leaf.name or leaf.kind,
                "kind": leaf.kind,
                "metric": leaf.metric,
                "transform": leaf.rule.get("transform", "none") if leaf.rule else "none",
                "verdict": leaf.verdict,
                "reason": leaf.reason,
                "groups": groups,
            }
        )
    return rows


def _protocol_rows(result) -> list[dict]:
    """Under a protocol: each arm's selected rate and its mean validation value at every rate."""
    selection = result.protocol
    if selection is None or selection.empty:
        return []
    axes = [c for c in selection.columns if c not in _SELECTION_COLUMNS]
    rows = []
    for _, row in selection.iterrows():
        rows.append(
            {
                "arm": ", ".join(f"{a}={row[a]}" for a in axes) or "all runs",
                "rate": float(row["learning_rate"]),
                "value": float(row["select_value"]),
                "finished": f"{int(row['finished'])}/{int(row['seeds'])}",
                "selected": bool(row["selected"]),
                "edge": bool(row.get("at_edge", False)),
            }
        )
    return rows


_SELECTION_COLUMNS = {"learning_rate", "seeds", "finished", "select_value", "selected", "at_edge"}


def budget_rows(result) -> list[dict]:
    """Per arm (at its selected rate under a protocol): seeds that reached the claim's target
    and the did-not-learn-within-budget flag with its reason (analysis.budgets)."""
    from keras_ablate.analysis import budgets

    tables = result.tables
    if tables is None or tables.runs.empty:
        return []
    keys = budgets.arm_keys(tables)
    solved = budgets.solved(tables)
    flagged = budgets.flags(tables)
    reasons = {
        tuple(r[k] for k in keys): (bool(r["did_not_learn"]), r["reason"])
        for r in flagged.to_dict("records")
    }
    rows = []
    for r in solved.to_dict("records"):
        stuck, reason = reasons.get(tuple(r[k] for k in keys), (False, ""))
        median = r["steps_to_threshold_median"]
        rows.append(
            {
                "arm": budgets.arm_label(r, keys),
                "solved": f"{r['n_solved']}/{r['n_seeds']}",
                "steps": "never (most seeds)" if median == math.inf else _fmt(median),
                "flag": f"{budgets.FLAG} {budgets.FLAG_TEXT}: {reason}" if stuck else "",
            }
        )
    return rows


def _threshold_text(result) -> str:
    from keras_ablate.analysis import budgets

    if result.tables is None or result.tables.runs.empty:
        return ""
    from keras_ablate.analysis.metrics import curve_metric
    from keras_ablate.scoring import higher_is_better

    metric = budgets._metric(result.tables, None)
    sign = ">=" if higher_is_better(metric) else "<="
    return f"{curve_metric(metric)} {sign} {_fmt(budgets.threshold_for(result.tables, metric))}"


def rate_figure(result, path: Path) -> Path | None:
    """Under a protocol: the claim's score against the learning rate per arm, the selected rate
    ringed (the report's sensitivity figure, report.protocol_section.sensitivity)."""
    from keras_ablate.report.protocol_section import sensitivity

    if result.protocol is None or result.tables is None:
        return None
    fig = sensitivity(result.tables)
    if fig is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def _check(result) -> dict | None:
    check = result.check
    if check is None:
        return None
    return {
        "factor": check.factor,
        "epochs": check.epochs,
        "verdict": check.verdict.verdict,
        "reason": check.verdict.reason,
        "complete": check.complete,
        "statuses": check.statuses,
        "leaves": _leaf_rows(check.verdict, check.table),
    }


def _setup(claim) -> dict:
    exp = claim.experiment
    specs = claim.specs
    axes = {k: v for k, v in exp.grid.items()}
    protocol = exp.protocol
    return {
        "protocol": (
            f"each arm at its own learning rate from {protocol.learning_rate}, selected on the "
            f"mean {protocol.select_on} over its seeds"
            if protocol
            else f"one learning rate for every arm ({exp.base.get('learning_rate', 'default')})"
        ),
        "epochs": exp.base.get("epochs"),
        "file": str(claim.path),
        "experiment": exp.name,
        "dataset": exp.dataset.name,
        "dataset_options": exp.dataset.options,
        # Under a protocol the base learning rate is never used: each arm trains at every rate.
        "base": {k: v for k, v in exp.base.items() if not (protocol and k == "learning_rate")},
        "grid": axes,
        "seeds": exp.seed_list,
        "n_runs": len(specs),
        "design": exp.design,
    }


def build_claims_report(results: list, out_dir: str | Path) -> dict[str, Path]:
    """Write report.html (figures embedded) and report.md (figures next to it) into out_dir."""
    out_dir = Path(out_dir)
    fig_dir = out_dir / store.FIGURES
    sections = []
    for result in results:
        claim = result.claim
        meta = claim.experiment.claim
        fig = claim_figure(result, fig_dir / f"{claim.path.stem}.png")
        rates = rate_figure(result, fig_dir / f"{claim.path.stem}_rates.png")
        sections.append(
            {
                "id": meta.id,
                "file_stem": claim.path.stem,
                "statement": " ".join(meta.statement.split()),
                "notes": " ".join(meta.notes.split()),
                "revised": " ".join(meta.revised.split()) if meta.revised else None,
                "verdict": result.final_verdict,
                "reason": result.final_reason,
                "budget_verdict": result.verdict.verdict,
                "protocol_rows": _protocol_rows(result),
                "check": _check(result),
                "budget_rows": budget_rows(result),
                "threshold": _threshold_text(result),
                "leaves": _leaf_rows(result.verdict, result.table),
                "setup": _setup(claim),
                "statuses": result.statuses,
                "wall_time_s": result.training_s,
                "figure_uri": _data_uri(fig) if fig else None,
                "figure_file": f"{store.FIGURES}/{fig.name}" if fig else None,
                "rates_uri": _data_uri(rates) if rates else None,
                "rates_file": f"{store.FIGURES}/{rates.name}" if rates else None,
            }
        )
    counts = {v: sum(s["verdict"] == v for s in sections) for v in COLOURS}
    context = {
        "sections": sections,
        "counts": counts,
        "colours": COLOURS,
        "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
        "total_wall_time_s": sum(s["wall_time_s"] for s in sections),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    html = environment("html", {"fmt": _fmt}).get_template("claims.html.j2").render(**context)
    md = environment("markdown", {"fmt": _fmt}).get_template("claims.md.j2").render(**context)
    store.write_text_atomic(out_dir / store.REPORT_HTML, html)
    store.write_text_atomic(out_dir / store.REPORT_MD, md)
    return {"html": out_dir / store.REPORT_HTML, "md": out_dir / store.REPORT_MD}


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
