"""Schedule the runs of a grid: skip finished ones, execute the rest, record every outcome."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from keras_ablate import schedule, store
from keras_ablate.config.schema import ResourcesSection, RunSpec
from keras_ablate.errors import UserError
from keras_ablate.executors import (
    InlineExecutor,
    PoolExecutor,
    RayExecutor,
    execute_spec,
    import_ray,
)
from keras_ablate.progress import ProgressFile

RERUN_CHOICES = ("failed", "diverged")
EXECUTORS = ("local", "ray")

__all__ = ["GridOutcome", "describe", "execute_spec", "make_executor", "run_grid", "select_todo"]


@dataclass
class GridOutcome:
    """What a runner invocation did."""

    executed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)

    @property
    def failed(self) -> int:
        return self.statuses.get("failed", 0)


def select_todo(
    specs: list[RunSpec], exp_dir: Path, force: bool = False, rerun: tuple[str, ...] = ()
) -> tuple[list[RunSpec], list[RunSpec]]:
    """Split specs into (to run, to skip).

    By default missing and failed runs run, and so do runs whose folder cannot be read (they
    count as missing). `rerun` (failed and/or diverged) runs only the runs with those
    statuses, nothing else; `force` runs everything.
    """
    todo, skip = [], []
    seen = set()
    for spec in specs:
        if spec.run_id in seen:
            continue
        seen.add(spec.run_id)
        status = store.run_status(exp_dir, spec.run_id)
        wanted = status in rerun if rerun else status in ("missing", "failed", store.UNREADABLE)
        if force or wanted:
            todo.append(spec)
        else:
            skip.append(spec)
    return todo, skip


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


def check_options(executor: str, workers: int | None, address: str | None) -> None:
    """Reject bad executor options before anything is locked or started."""
    if executor not in EXECUTORS:
        raise UserError(
            f"--executor: unknown executor '{executor}'; choose one of {', '.join(EXECUTORS)}"
        )
    if executor == "ray":
        import_ray()  # fail before anything starts when ray is not installed
    elif address is not None:
        raise UserError(
            "--address is for --executor ray (a Ray cluster address such as 'auto' or ray://HOST:10001)"
        )
    if workers is not None and workers < 1:
        raise UserError(f"--workers must be >= 1, got {workers}")


def make_executor(
    executor: str,
    exp_dir: Path,
    todo: list[RunSpec],
    workers: int | None = None,
    resources: ResourcesSection | None = None,
    address: str | None = None,
):
    """The executor for these runs: in-process (1 worker), a local pool (N workers) or Ray."""
    resources = resources or ResourcesSection()
    check_options(executor, workers, address)
    if executor == "ray":
        return RayExecutor(exp_dir, resources.num_cpus, resources.num_gpus, address)
    threads = resources.num_cpus
    # Asked-for workers (N > 1) are always processes, even for fewer runs than N.
    count = workers if workers is not None else schedule.auto_workers(todo, threads)
    if count == 1:
        return InlineExecutor(exp_dir, threads)
    return PoolExecutor(exp_dir, min(count, len(todo)), threads)


def run_grid(
    specs: list[RunSpec],
    exp_dir: Path,
    force: bool = False,
    rerun: tuple[str, ...] = (),
    max_runs: int | None = None,
    console: Console | None = None,
    workers: int | None = None,
    executor: str = "local",
    address: str | None = None,
    resources: ResourcesSection | None = None,
) -> GridOutcome:
    """Run what is missing, one folder per run, with progress and ETA.

    Args:
        workers: local worker processes; None picks from the CPU count and the model sizes
            (schedule.auto_workers); 1 runs in this process.
        executor: 'local' (this process or a pool) or 'ray' (one Ray task per run).
        address: Ray cluster address for executor 'ray' (None starts a local Ray).
        resources: the experiment's `resources:` (threads, and Ray CPUs/GPUs, per run).
    """
    console = console or Console(stderr=True)
    check_options(executor, workers, address)
    outcome = GridOutcome()
    exp_dir = Path(exp_dir)
    with store.experiment_lock(exp_dir):
        store.clean_stale_temp(exp_dir)
        todo, skip = select_todo(specs, exp_dir, force=force, rerun=rerun)
        outcome.skipped = [s.run_id for s in skip]
        if max_runs is not None:
            todo = todo[:max_runs]
        waiting = sum(
            store.run_status(exp_dir, s.run_id) in ("missing", store.UNREADABLE) for s in skip
        )
        _, unreadable = store.scan_runs(exp_dir)
        for spec in todo:
            if spec.run_id in unreadable:
                console.print(
                    f"run folder {spec.run_id} cannot be read ({unreadable[spec.run_id]}): "
                    "training it again",
                    soft_wrap=True,
                )
        if len(skip) - waiting:
            console.print(f"{len(skip) - waiting} run(s) already complete, skipped")
        if waiting:
            console.print(
                f"{waiting} missing run(s) not run (--rerun runs only {'/'.join(rerun)} runs)"
            )
        if not todo:
            console.print("nothing to run")
            return outcome
        todo = schedule.order_largest_first(todo)
        engine = make_executor(executor, exp_dir, todo, workers, resources, address)
        console.print(f"{len(todo)} run(s) on {engine.describe()}")
        columns = (
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
        )
        n_workers = getattr(engine, "workers", 1)
        tracker = ProgressFile(exp_dir, len(todo), engine.describe(), n_workers)
        with tracker, Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task("runs", total=len(todo))
            for event in engine.execute(todo):
                if event.kind == "start":
                    tracker.started(event.spec.run_id, event.pid)
                    continue
                status = event.summary["status"]
                outcome.executed.append(event.spec.run_id)
                outcome.statuses[status] += 1
                tracker.finished(event.spec.run_id, status)
                progress.console.print(describe(event.summary, event.spec), soft_wrap=True)
                progress.advance(task)
        # A worker killed mid-write leaves a temporary folder; no worker is left to finish one.
        store.clean_stale_temp(exp_dir)
        threads = getattr(engine, "effective_threads", None)
        if threads is not None and threads != engine.threads:
            console.print(
                f"warning: TensorFlow was already running in this process ({threads or 'default'} threads), "
                f"not resources.num_cpus={engine.threads}; CNN runs without XLA may differ in the last bits"
            )
    console.print(
        "done: "
        + ", ".join(f"{n} {s}" for s, n in sorted(outcome.statuses.items()))
        + f"; results in {exp_dir}"
    )
    return outcome
