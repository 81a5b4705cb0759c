"""Executors that train RunSpecs: in this process, in a pool of worker processes, or as Ray tasks.

Each process that trains is set up by training/process_setup.py (threads, XLA, gc, logs).
"""

from __future__ import annotations

import gc
import os
import signal
import time
import traceback
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path

from keras_ablate import store
from keras_ablate.config.schema import RunSpec
from keras_ablate.errors import UserError
from keras_ablate.training.process_setup import (
    configure_threads,
    die_with_parent,
    freeze_imports,
    frozen_imports,
    redirect_native_output,
    release_models,
)

# A worker process is replaced after this many runs: TensorFlow keeps some memory per traced
# model even after clear_session, and a fresh process (about 4 s to import TF) bounds it.
RECYCLE_AFTER = 20


@dataclass
class Event:
    """What an executor reports: a run was handed out ('start') or has its record ('done')."""

    kind: str
    spec: RunSpec
    summary: dict | None = None
    pid: int | None = None


# ---------------------------------------------------------------------------------------------
# One run, in whatever process trains it.


def failed_summary(spec: RunSpec, error: str, trace: str, started: float) -> dict:
    return {
        "run_id": spec.run_id,
        "status": "failed",
        "error": error,
        "traceback": trace,
        "wall_time_s": round(time.time() - started, 3),
    }


def run_spec(spec: RunSpec, threads: int | None = None) -> tuple[dict, dict]:
    """Train one spec; return (summary, tables). Any exception becomes a 'failed' summary."""
    started = time.time()
    try:
        from keras_ablate.training.loop import run_one

        record = run_one(spec)
        summary, tables = record.summary, record.tables
        if threads is not None and isinstance(summary.get("environment"), dict):
            summary["environment"]["intra_op_threads"] = threads
    except Exception as exc:  # noqa: BLE001 - any error inside one run is that run's result
        summary = failed_summary(
            spec, f"{type(exc).__name__}: {exc}", traceback.format_exc(), started
        )
        tables = {}
    finally:
        released = time.perf_counter()
        release_models()
        teardown_s = time.perf_counter() - released
    if isinstance(summary.get("timing"), dict):
        summary["timing"]["teardown_s"] = round(teardown_s, 3)
    return summary, tables


def execute_spec(spec: RunSpec, exp_dir: Path, threads: int | None = None) -> dict:
    """Train one spec and write its folder atomically; return the summary."""
    summary, tables = run_spec(spec, threads)
    store.write_run(Path(exp_dir), spec, summary, tables)
    return summary


# ---------------------------------------------------------------------------------------------
# In this process.


class InlineExecutor:
    """Runs one after another in the driver process (--workers 1)."""

    def __init__(self, exp_dir: Path, threads: int = 1):
        self.exp_dir = Path(exp_dir)
        self.threads = threads
        self.effective_threads: int | None = None

    def describe(self) -> str:
        return f"this process ({self.threads} thread(s))"

    def execute(self, specs: list[RunSpec]) -> Iterator[Event]:
        self.effective_threads = configure_threads(self.threads)
        with frozen_imports():
            for spec in specs:
                yield Event("start", spec, pid=os.getpid())
                yield Event(
                    "done",
                    spec,
                    execute_spec(spec, self.exp_dir, self.effective_threads),
                    pid=os.getpid(),
                )


# ---------------------------------------------------------------------------------------------
# A pool of long-lived worker processes.


@dataclass
class _Worker:
    process: object
    conn: object
    spec: RunSpec | None = None
    dispatched_at: float = 0.0
    runs: int = 0
    last_key: str | None = None  # model key of the last run handed to this worker


class PoolExecutor:
    """Long-lived spawn workers, TF imported once per worker; each writes its own run folders.

    The driver hands one run at a time to an idle worker (in the order given: largest first),
    so the tail is short and the driver always knows which run each worker holds. A worker
    that dies (kill -9, out of memory) gets its run recorded as failed and is replaced.
    Workers die with the driver (PR_SET_PDEATHSIG, plus a parent watch), so no orphan writes
    into an experiment after its lock is gone.
    """

    def __init__(
        self, exp_dir: Path, workers: int, threads: int = 1, recycle_after: int | None = None
    ):
        self.exp_dir = Path(exp_dir)
        self.workers = workers
        self.threads = threads
        self.recycle_after = recycle_after or RECYCLE_AFTER

    def describe(self) -> str:
        return f"{self.workers} worker processes ({self.threads} thread(s) each)"

    def execute(self, specs: list[RunSpec]) -> Iterator[Event]:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        queue = deque(specs)
        keys = {spec.run_id: spec.model_key() for spec in specs}
        pool: list[_Worker] = []

        def start() -> None:
            parent_end, child_end = context.Pipe()
            process = context.Process(
                target=_worker_main,
                args=(child_end, self.threads, str(self.exp_dir), os.getpid()),
                name="keras-ablate-worker",
                daemon=True,
            )
            process.start()
            child_end.close()
            pool.append(_Worker(process, parent_end))

        try:
            for _ in range(min(self.workers, len(queue))):
                start()
            while True:
                for worker in pool:
                    if worker.spec is None and queue:
                        worker.spec, worker.dispatched_at = _take(queue, worker, keys), time.time()
                        worker.last_key = keys[worker.spec.run_id]
                        worker.conn.send(worker.spec.to_json())
                        yield Event("start", worker.spec, pid=worker.process.pid)
                busy = [w for w in pool if w.spec is not None]
                if not busy:
                    return
                ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy]))
                for worker in busy:
                    if worker.conn not in ready and worker.process.sentinel not in ready:
                        continue
                    summary = _receive(worker)
                    spec = worker.spec
                    if summary is None:  # the worker died holding this run
                        pool.remove(worker)
                        worker.process.join(timeout=5)
                        summary = self._record_dead(worker)
                        if queue:
                            start()
                    else:
                        worker.runs += 1
                        if worker.runs >= self.recycle_after:
                            _stop(worker)
                            pool.remove(worker)
                            if queue:
                                start()
                    worker.spec = None
                    yield Event("done", spec, summary, pid=worker.process.pid)
        finally:
            for worker in pool:
                _stop(worker, kill=worker.spec is not None)

    def _record_dead(self, worker: _Worker) -> dict:
        """A dead worker's run: its own record if it finished writing one, else a 'failed' one."""
        spec = worker.spec
        folder = store.run_dir(self.exp_dir, spec.run_id)
        try:
            if (folder / "summary.json").stat().st_mtime >= worker.dispatched_at:
                return store.read_summary(folder)
        except OSError:
            pass
        code = worker.process.exitcode
        how = (
            f"signal {signal.Signals(-code).name}"
            if code is not None and code < 0
            else f"exit code {code}"
        )
        summary = failed_summary(
            spec,
            f"WorkerDied: worker process {worker.process.pid} ended ({how}) while training this run; "
            "it runs again on the next `keras-ablate run`",
            "",
            worker.dispatched_at,
        )
        store.write_run(self.exp_dir, spec, summary, {})
        return summary


def _take(queue: deque, worker: _Worker, keys: dict[str, str]) -> RunSpec:
    """The next run for `worker`: the first queued one with the model of its last run (another
    seed or optimizer arm of that model, so the worker reuses it: training/loop.py), else the
    head of the queue. Runs of one model cost about the same, so the largest-first order is
    kept up to near-ties."""
    if worker.last_key is not None:
        for index, spec in enumerate(queue):
            if keys[spec.run_id] == worker.last_key:
                del queue[index]
                return spec
    return queue.popleft()


def _receive(worker: _Worker) -> dict | None:
    try:
        if worker.conn.poll():
            return worker.conn.recv()
    except (EOFError, OSError):
        pass
    return None


def _stop(worker: _Worker, kill: bool = False) -> None:
    if not kill:
        try:
            worker.conn.send(None)
        except OSError:
            kill = True
        worker.process.join(timeout=10)
    if worker.process.is_alive():
        worker.process.kill()
        worker.process.join(timeout=5)
    worker.conn.close()


def _worker_main(conn, threads: int, exp_dir: str, parent_pid: int) -> None:
    """Worker loop: import TF once, then train each spec the driver sends until it sends None."""
    # Ctrl-C reaches the whole process group; the driver decides what stops, not each worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(parent_pid)
    redirect_native_output(Path(exp_dir))
    threads_in_effect = configure_threads(threads)
    freeze_imports()  # pays the imports before the first run, too

    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        spec = RunSpec.from_json(message)
        conn.send(execute_spec(spec, Path(exp_dir), threads_in_effect))


# ---------------------------------------------------------------------------------------------
# Ray: each run is a task; the task returns its records and the driver writes them.


def import_ray():
    try:
        import ray
    except ImportError:
        raise UserError(
            "--executor ray needs the ray package: pip install 'keras-ablate[ray]' (or `make setup`)"
        ) from None
    return ray


def _ray_task(spec_json: dict, threads: int) -> tuple[dict, dict]:
    threads_in_effect = configure_threads(threads)
    if not gc.get_freeze_count():  # a Ray worker process runs many tasks: freeze at its first
        freeze_imports()
    return run_spec(RunSpec.from_json(spec_json), threads_in_effect)


class RayExecutor:
    """Each run is a Ray task with the YAML's num_cpus/num_gpus; records come back to the driver.

    Returning records (a few small tables) instead of writing from the task means the cluster
    needs no shared filesystem, and only the process holding the experiment lock ever writes.
    """

    def __init__(
        self, exp_dir: Path, num_cpus: int = 1, num_gpus: float = 0.0, address: str | None = None
    ):
        self.exp_dir = Path(exp_dir)
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.address = address

    def describe(self) -> str:
        where = self.address or "a local Ray instance"
        return f"Ray tasks on {where} ({self.num_cpus} CPU, {self.num_gpus:g} GPU per run)"

    def execute(self, specs: list[RunSpec]) -> Iterator[Event]:
        ray = import_ray()
        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
        task = ray.remote(_ray_task).options(
            num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_retries=1
        )
        pending: dict = {}
        try:
            for spec in specs:  # submitted largest first; Ray starts them in that order
                started = time.time()
                pending[task.remote(spec.to_json(), self.num_cpus)] = (spec, started)
                yield Event("start", spec)
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                spec, started = pending.pop(done[0])
                try:
                    summary, tables = ray.get(done[0])
                except Exception as exc:  # noqa: BLE001 - a lost task is that run's result
                    summary = failed_summary(
                        spec, f"RayTaskError: {exc}", traceback.format_exc(), started
                    )
                    tables = {}
                store.write_run(self.exp_dir, spec, summary, tables)
                yield Event("done", spec, summary)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
            if started_here:
                ray.shutdown()
