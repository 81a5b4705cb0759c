"""Read every run folder of an experiment into tidy pandas frames (works on partial results).

`load(dir)` is the entry point of the analysis: its `runs` frame carries every per-run derived
metric (analysis.metrics), the probe instruments' included.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from keras_ablate import scoring, store
from keras_ablate.analysis import metrics, protocol
from keras_ablate.analysis.long_tables import LongBuilder, split_layers

# The order of the status levels in `runs` (any other status recorded follows them).
STATUSES = (*store.DONE_STATUSES, "failed")


@dataclass
class Tables:
    """Tidy frames for one experiment.

    runs: one row per run: run_id, every setting as a column (dataset options as
        `dataset.<option>`), seed, status, diverged_step, summary numbers, final/... and
        best/... of every history metric, baseline/... (chance and majority-class accuracy,
        analysis.baselines), and every derived per-run metric (analysis.metrics.GLOSSARY):
        score, targets, gradient stability, values at the first step, after the first epoch
        and at the end, and the probe instruments at initialization and at the end.
    history: run_id, epoch, metric, value (long; run_id and metric categorical).
    steps: run_id, step, quantity, layer, value (long, value float32). A per-layer column
        `grad/norm/rnn_0` becomes quantity `grad/norm`, layer `rnn_0`; whole-model
        quantities (`loss`, `grad/global_norm`, ...) have layer "".
    timesteps: the runs' timesteps tables with run_id prepended, or None when no run has one.
    extra: any other per-run table (<name>.parquet) the same way, by name.
    axes: the grid axes, in file order. levels: each axis's levels in plan order.
    info: experiment.json (name, reference, analysis settings, planned run ids, ...).
    unreadable, unplanned: the run folders left out, and why (see load).
    """

    runs: pd.DataFrame
    history: pd.DataFrame
    steps: pd.DataFrame
    axes: list[str]
    timesteps: pd.DataFrame | None = None
    extra: dict[str, pd.DataFrame] = field(default_factory=dict)
    levels: dict[str, list] = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    # Run folders left out: by run id, why a planned (or, without a plan, any) folder could not
    # be read; and the readable runs that are not in the plan, as {run_id, status, label}.
    unreadable: dict[str, str] = field(default_factory=dict)
    unplanned: list[dict] = field(default_factory=list)
    # With a `protocol:` (analysis.protocol): every run, and each arm's rate selection.
    all_runs: pd.DataFrame | None = None
    protocol: pd.DataFrame | None = None
    # Each arm's "did not learn within budget" flag and its reasons (analysis.budgets.flags).
    budget: pd.DataFrame | None = None

    def quantity(self, quantity: str, layer: str = "") -> pd.DataFrame:
        """Rows of `steps` for one quantity (and layer): run_id, step, value."""
        s = self.steps
        mask = (s["quantity"] == quantity) & (s["layer"] == layer)
        return s.loc[mask, ["run_id", "step", "value"]].reset_index(drop=True)

    def save(self, folder: str | Path) -> dict[str, Path]:
        """Write every frame as <folder>/<name>.parquet; return the paths."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        frames = {"runs": self.runs, "history": self.history, "steps": self.steps, **self.extra}
        if self.timesteps is not None:
            frames["timesteps"] = self.timesteps
        paths = {}
        for name, frame in frames.items():
            paths[name] = folder / f"{name}.parquet"
            tmp = folder / f".{name}.parquet.tmp"
            frame.to_parquet(tmp, index=False)
            tmp.replace(paths[name])
        return paths


def load(
    results_dir: str | Path,
    derive: bool = True,
    run_ids: list[str] | None = None,
    info: dict | None = None,
) -> Tables:
    """Load an experiment folder (results/<experiment>); with `derive`, add every derived metric.

    Args:
        run_ids: the plan. Only these runs are loaded; other runs in the folder (an older plan,
            a folder copied in) are listed in `unplanned` and never mixed into the frames.
            None loads every run.
        info: the experiment's description (experiment.json's fields); default experiment.json.

    A run folder that cannot be read is left out and named in `unreadable`, never an error.
    """
    exp_dir = Path(results_dir)
    info = store.read_experiment(exp_dir) if info is None else dict(info)
    rows = []
    history, steps = LongBuilder("epoch", "metric"), LongBuilder("step", "name")
    others: dict[str, list[pd.DataFrame]] = {}
    plan = {run_id: i for i, run_id in enumerate(info.get("run_ids", []))}
    first_seen: dict[str, dict] = {}  # axis -> level -> earliest plan position
    readable, unreadable = store.scan_runs(exp_dir)
    wanted = None if run_ids is None else set(run_ids)
    unplanned = []
    # Per-run metrics read from a run's own tables as they were written (analysis.metrics).
    records: dict[str, dict] = {}
    planned_axes = info.get("axes") if wanted is not None else None
    for path, spec, summary in readable:
        run_id = spec["run_id"]
        if wanted is not None and run_id not in wanted:
            label = " ".join(f"{k}={v}" for k, v in (spec.get("axes") or {}).items())
            unplanned.append({"run_id": run_id, "status": summary["status"], "label": label})
            continue
        try:
            row = _run_row(spec, summary)
            tables, raw = _read_run_tables(path, history, steps)
        except Exception as exc:  # noqa: BLE001 - damaged bytes raise many pyarrow/numpy types
            unreadable[path.name] = f"{type(exc).__name__}: {store.error_text(exc)}"
            continue
        if derive:
            records[run_id] = metrics.record_metrics(summary, raw)
        position = plan.get(run_id, len(plan))
        # With a plan, its axes are the factors; a run's spec.json names the axes of the plan
        # that wrote it, which may be an older one (same settings, same run id).
        run_axes = (
            {a: row[a] for a in planned_axes if a in row}
            if planned_axes is not None
            else spec.get("axes") or {}
        )
        for key, level in run_axes.items():
            level = _cell(level)
            seen = first_seen.setdefault(key, {})
            seen[level] = min(seen.get(level, position), position)
        rows.append(row)
        code = len(rows) - 1
        for name, converted in tables:
            if name == "history":
                history.add(code, converted)
            elif name == "steps":
                steps.add(code, converted)
            else:
                converted.insert(0, "run_id", run_id)
                others.setdefault(name, []).append(converted)
    if wanted is not None:
        unreadable = {k: v for k, v in unreadable.items() if k in wanted}
    axes = [a for a in info.get("axes", []) if a in first_seen]
    if planned_axes is None:
        axes += [a for a in first_seen if a not in axes]
    # Run ids are listed in expansion order, so this is the order the YAML lists the levels in.
    levels = {a: sorted(first_seen[a], key=first_seen[a].get) for a in axes}
    loaded = [r["run_id"] for r in rows]
    runs = _runs_frame(rows, axes, levels)
    tables = Tables(
        runs=runs,
        history=history.frame("run_id", loaded, "metric"),
        steps=split_layers(steps.frame("run_id", loaded, "name")),
        axes=axes,
        levels=levels,
        info=info,
        unreadable=unreadable,
        unplanned=unplanned,
    )
    for name, frames in others.items():
        frame = pd.concat(frames, ignore_index=True)
        frame["run_id"] = pd.Categorical(frame["run_id"], categories=loaded)
        if name == "timesteps":
            tables.timesteps = frame
        else:
            tables.extra[name] = frame
    blank_diverged(tables)
    if derive:
        metrics.add_derived(tables, records)
        if info.get("protocol"):
            protocol.apply_protocol(tables, info["protocol"])
    return tables


def blank_diverged(tables: Tables) -> None:
    """Apply scoring's diverged-run rule to records however they were written (earlier versions kept
    what Keras measured on the diverged weights): history and probe values of those epochs become
    NaN, every final/... of a diverged run NaN, and its best/... comes from the epochs it keeps."""
    runs = tables.runs
    if runs.empty or "status" not in runs.columns:
        return
    diverged = (runs["status"].astype(str) == "diverged").to_numpy()
    if not diverged.any():
        return
    kept = [
        scoring.kept_epochs(step, per_epoch) if is_diverged else (np.inf, np.inf)
        for step, per_epoch, is_diverged in zip(
            runs["diverged_step"], runs["steps_per_epoch"], diverged, strict=True
        )
    ]
    run_ids = runs["run_id"].astype(str)
    last_train = pd.Series([k[0] for k in kept], index=run_ids)
    last_end = pd.Series([k[1] for k in kept], index=run_ids)
    history = tables.history
    if not history.empty:
        codes = history["run_id"].cat.codes.to_numpy()
        categories = history["run_id"].cat.categories.astype(str)
        end = np.array([scoring.is_end_of_epoch(str(m)) for m in history["metric"].cat.categories])
        last = np.where(
            end[history["metric"].cat.codes.to_numpy()],
            last_end.reindex(categories, fill_value=np.inf).to_numpy()[codes],
            last_train.reindex(categories, fill_value=np.inf).to_numpy()[codes],
        )
        history["value"] = history["value"].where(history["epoch"].to_numpy() <= last)
    probe_tables = dict(tables.extra)
    if tables.timesteps is not None:
        probe_tables["timesteps"] = tables.timesteps
    for table in probe_tables.values():
        if "epoch" not in table.columns or "run_id" not in table.columns:
            continue
        last = table["run_id"].astype(str).map(last_end).fillna(np.inf).to_numpy(dtype=float)
        bad = table["epoch"].to_numpy(dtype=float) > last
        if bad.any():
            table.loc[bad, scoring.value_columns(table)] = np.nan
    final = [c for c in runs.columns if c.startswith("final/")]
    runs.loc[diverged, final] = np.nan
    if history.empty:
        return
    mine = history[history["run_id"].astype(str).isin(set(run_ids[diverged]))]
    for (run_id, metric), values in mine.groupby(["run_id", "metric"], observed=True)["value"]:
        column = f"best/{metric}"
        values = values.to_numpy(dtype=float)
        values = values[np.isfinite(values)]
        best = np.nan
        if len(values):
            best = values.max() if scoring.higher_is_better(str(metric)) else values.min()
        runs.loc[(run_ids == str(run_id)).to_numpy(), column] = best


def _read_run_tables(
    path: Path, history: LongBuilder, steps: LongBuilder
) -> tuple[list[tuple], dict[str, pd.DataFrame]]:
    """Every table of one run, read and converted, so that a damaged one raises before any
    part of this run joins the frames; and the run's own tables as written, by name (what
    analysis.metrics.record_metrics reads: steps and history as dicts of numpy columns in their
    recorded dtype, units as a DataFrame)."""
    out, raw = [], {}
    for name in _table_names(path):
        table = pq.read_table(path / f"{name}.parquet")
        if name in ("history", "steps"):
            # Column by column as recorded (numpy: converting every run's tables to pandas cost a
            # 1000-run report seconds for what record_metrics reads).
            raw[name] = {c: table.column(c).to_numpy() for c in table.column_names}
        if name == "history":
            out.append((name, history.convert(table, np.float64)))
        elif name == "steps":
            table = table.drop_columns([c for c in ("epoch",) if c in table.column_names])
            out.append((name, steps.convert(table, np.float32)))
        elif table.num_rows:
            frame = table.to_pandas()
            if name in metrics.RECORD_TABLES:
                raw[name] = (
                    frame  # read before anything changes it (load's loop and blank_diverged)
                )
            out.append((name, frame))
    return out, raw


def _table_names(path: Path) -> list[str]:
    return sorted(p.name[: -len(".parquet")] for p in path.iterdir() if p.name.endswith(".parquet"))


def _cell(value):
    """Lists (e.g. kernel sizes) become 'a,b,c' so that every level is one hashable value."""
    return ",".join(map(str, value)) if isinstance(value, list) else value


def _run_row(spec: dict, summary: dict) -> dict:
    row = {"run_id": spec["run_id"], "seed": spec["seed"]}
    for key, value in spec["settings"].items():
        if key == "params" and isinstance(value, dict):
            # A user builder's own settings, one column each, named as their axes (params.<name>).
            row.update((f"params.{k}", _cell(v)) for k, v in value.items())
        else:
            row[key] = _cell(value)
    for key, value in spec["dataset"]["options"].items():
        row[f"dataset.{key}"] = _cell(value)
    row["dataset"] = spec["dataset"]["name"]
    row["status"] = summary.get("status", "failed")
    row["diverged_step"] = summary.get("diverged_step")
    row["metric"] = summary.get("metric")
    for key in ("epochs_done", "steps_done", "steps_per_epoch", "n_params", "wall_time_s"):
        row[key] = summary.get(key)
    for prefix in ("final", "best", "baseline", "timing"):
        for key, value in (summary.get(prefix) or {}).items():
            row[f"{prefix}/{key}"] = value
    row["error"] = summary.get("error")
    if summary.get("probe_skipped"):
        # Recurrent layers of a user's model that the probes could not replay, and why.
        row["probe_skipped"] = "; ".join(
            f"{s.get('layer')} ({s.get('reason')})"
            for s in summary["probe_skipped"]
            if isinstance(s, dict)
        )
    return row


def _runs_frame(rows: list[dict], axes: list[str], levels: dict[str, list]) -> pd.DataFrame:
    runs = pd.DataFrame(rows)
    if runs.empty:
        return pd.DataFrame(columns=["run_id", *axes, "seed", "status"])
    numeric = [
        "diverged_step",
        "epochs_done",
        "steps_done",
        "steps_per_epoch",
        "n_params",
        "wall_time_s",
    ]
    numeric += [c for c in runs.columns if c.startswith(("final/", "best/", "baseline/"))]
    for col in numeric:
        if col in runs.columns:
            runs[col] = pd.to_numeric(runs[col], errors="coerce").astype(float)
    for col in runs.columns:
        if col in axes or col in numeric or runs[col].dtype != object:
            continue
        kinds = {type(v) for v in runs[col] if v is not None and v == v}
        if kinds - {str}:  # mixed types (e.g. None and 0.5) cannot go to Parquet as they are
            runs[col] = runs[col].map(lambda v: None if v is None or v != v else str(v))
    for axis in axes:
        # Levels stay what the YAML said (numbers stay numbers) unless they mix types. A run
        # written by an earlier plan (where this setting was not an axis) keeps its value:
        # it joins the levels after the planned ones instead of becoming NaN.
        planned = set(map(_cell, levels[axis]))
        extra = [v for v in runs[axis].dropna().unique() if _cell(v) not in planned]
        values = levels[axis] = [*levels[axis], *extra]
        if len({type(v) for v in values}) > 1:
            values = list(dict.fromkeys(str(v) for v in values))
            runs[axis] = runs[axis].map(str)
            levels[axis] = values
        runs[axis] = pd.Categorical(runs[axis], categories=values)
    runs["status"] = pd.Categorical(
        runs["status"], categories=list(dict.fromkeys([*STATUSES, *runs["status"]]))
    )
    return runs.sort_values("run_id").reset_index(drop=True)
