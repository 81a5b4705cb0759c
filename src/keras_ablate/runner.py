"""Schedule the runs of a grid: skip finished ones, execute the rest, record every outcome."""

from __future__ import annotations

import os
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from keras_ablate import store
from keras_ablate.config import RunSpec

RERUN_CHOICES = ("failed", "diverged")


@dataclass
class GridOutcome:
    """What a runner invocation did."""

    executed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)

    @property
    def failed(self) -> int:
        return self.statuses.get("failed", 0)


def select_todo(specs: list[RunSpec], exp_dir: Path, force: bool = False, rerun: tuple[str, ...] = ()) -> tuple[list[RunSpec], list[RunSpec]]:
    """Split specs into (to run, to skip). Failed and missing runs always run; ok/diverged only on request."""
    todo, skip = [], []
    seen = set()
    for spec in specs:
        if spec.run_id in seen:
            continue
        seen.add(spec.run_id)
        status = store.run_status(exp_dir, spec.run_id)
        if force or status in ("missing", "failed") or status in rerun:
            todo.append(spec)
        else:
            skip.append(spec)
    return todo, skip


def execute_spec(spec: RunSpec, exp_dir: Path) -> dict:
    """Run one spec and write its folder; an exception becomes a 'failed' record, never a crash."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    started = time.time()
    try:
        from keras_ablate.training.loop import run_one

        record = run_one(spec)
        summary, tables = record.summary, record.tables
    except Exception as exc:  # noqa: BLE001 - any error inside one run is that run's result
        summary = {
            "run_id": spec.run_id,
            "status": "failed",
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(),
            "wall_time_s": round(time.time() - started, 3),
        }
        tables = {}
    store.write_run(exp_dir, spec, summary, tables)
    return summary


def describe(summary: dict, spec: RunSpec) -> str:
    """One line for a finished run."""
    status = summary["status"]
    extra = ""
    if status == "ok":
        metric = summary.get("metric", "loss")
        value = summary.get("final", {}).get(f"val/{metric}")
        extra = f" val/{metric}={value:.4f}" if isinstance(value, float) else ""
    elif status == "diverged":
        extra = f" at step {summary.get('diverged_step')}"
    elif status == "failed":
        extra = f" ({summary.get('error', '')[:120]})"
    return f"{spec.run_id} {spec.label()}: {status}{extra} [{summary.get('wall_time_s', 0):.1f}s]"


def run_grid(
    specs: list[RunSpec],
    exp_dir: Path,
    force: bool = False,
    rerun: tuple[str, ...] = (),
    max_runs: int | None = None,
    console: Console | None = None,
) -> GridOutcome:
    """Run what is missing (in this process), one folder per run, with progress and ETA."""
    console = console or Console(stderr=True)
    outcome = GridOutcome()
    with store.experiment_lock(exp_dir):
        store.clean_stale_temp(exp_dir)
        todo, skip = select_todo(specs, exp_dir, force=force, rerun=rerun)
        outcome.skipped = [s.run_id for s in skip]
        if max_runs is not None:
            todo = todo[:max_runs]
        if skip:
            console.print(f"{len(skip)} run(s) already complete, skipped")
        if not todo:
            console.print("nothing to run")
            return outcome
        columns = (
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task("runs", total=len(todo))
            for spec in todo:
                summary = execute_spec(spec, exp_dir)
                outcome.executed.append(spec.run_id)
                outcome.statuses[summary["status"]] += 1
                progress.console.print(describe(summary, spec), soft_wrap=True)
                progress.advance(task)
    console.print(
        "done: " + ", ".join(f"{n} {s}" for s, n in sorted(outcome.statuses.items())) + f"; results in {exp_dir}"
    )
    return outcome
