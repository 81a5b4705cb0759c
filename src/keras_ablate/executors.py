"""Executors that train RunSpecs: in this process, in a pool of worker processes, or as Ray tasks."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import signal
import threading
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


def configure_threads(threads: int) -> int:
    """Fix TensorFlow's intra/inter-op threads for this process; return the intra count in effect.

    Must run before TensorFlow executes anything. The count is part of the numerics: without
    XLA, oneDNN convolutions give different bits with 1 and 2 threads (measured), so every
    executor uses the same per-run count (`resources.num_cpus`), never one derived from --workers.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if threads == 1:
        _single_threaded_xla()
    import tensorflow as tf

    # Keras warns about retracing when one process builds many models; here that is the design.
    tf.get_logger().setLevel("ERROR")
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass  # TF already started in this process (a notebook, a test session): keep its count.
    return tf.config.threading.get_intra_op_parallelism_threads()


XLA_SINGLE_THREAD = "--xla_cpu_multi_thread_eigen=false"


def _single_threaded_xla() -> None:
    """Keep XLA:CPU's own Eigen thread pool to one thread too (read when TensorFlow starts).

    TF's intra/inter-op settings do not reach the pool that XLA-compiled steps run in, so two
    one-thread workers still ran four busy threads on two cores: measured here, three default-grid
    runs took 16.4 s and 18.9 s in two concurrent processes against 12.5 s and 15.7 s with this
    flag, 11.1 s alone either way. It is part of the numerics like the thread count: records of
    cnn, lstm and gru runs came out bit-identical with and without it, those of SimpleRNN runs
    did not (all 24 rnn runs of the default grid differ in the last bits; checked again with
    XLA_FLAGS=--xla_cpu_multi_thread_eigen=true). Every executor sets it for one-thread runs.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_multi_thread_eigen" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {XLA_SINGLE_THREAD}".strip()


def freeze_imports() -> None:
    """Import the training code, then move every object alive now out of the garbage collector's sight.

    A full collection walks every tracked object, and TensorFlow + Keras leave about 400,000 of
    them; Keras's clear_session runs one after every run. With the imported modules frozen
    (gc.freeze: never collected, never scanned) that collection fell from 0.32 s to 0.10 s a run
    (16-run throughput grid, measured; _release_models takes it to ~0.02 s). A collection runs
    first, so what is frozen is what is alive now: in a worker, the imported modules, which live
    as long as the process. An object frozen here that dies later is kept until the process ends
    or `gc.unfreeze()` (frozen_imports calls it when the grid is done).
    """
    import keras_ablate.training.loop  # noqa: F401 - TensorFlow, Keras, pandas and the builders

    gc.collect()
    gc.freeze()


@contextlib.contextmanager
def frozen_imports():
    """freeze_imports for the length of a block, in a process that goes on afterwards (the driver)."""
    freeze_imports()
    try:
        yield
    finally:
        gc.unfreeze()


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
        _release_models()
        teardown_s = time.perf_counter() - released
    if isinstance(summary.get("timing"), dict):
        summary["timing"]["teardown_s"] = round(teardown_s, 3)
    return summary, tables


def execute_spec(spec: RunSpec, exp_dir: Path, threads: int | None = None) -> dict:
    """Train one spec and write its folder atomically; return the summary."""
    summary, tables = run_spec(spec, threads)
    store.write_run(Path(exp_dir), spec, summary, tables)
    return summary


def _release_models() -> None:
    # Drop the finished model's graphs so a long-lived process does not grow run after run;
    # every run seeds itself (keras.utils.set_random_seed), so this does not change its numbers.
    import sys

    if "keras" in sys.modules:
        sys.modules["keras"].backend.clear_session()  # ends with a full gc.collect()
    if gc.get_freeze_count():
        # What survived that collection is mostly TensorFlow's own per-model leftovers (about
        # 17,000 objects a run, never freed until the process ends: why workers are recycled).
        # Frozen, they are not walked again by the next run's collection: 0.02 s a run instead
        # of growing by about 0.01 s with every run (measured). The finished run's record
        # (summary and a few small tables) is still referenced here and is frozen with them,
        # which keeps it until the worker is recycled: tens of kB a run (192 steps x 20 columns).
        gc.freeze()


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
    seed of that configuration, so the worker reuses its compiled model: training/loop.py),
    else the head of the queue. Seeds of one configuration cost the same, so the largest-first
    order is kept up to ties."""
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
    _die_with_parent(parent_pid)
    _redirect_native_output(Path(exp_dir))
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


def _redirect_native_output(exp_dir: Path) -> None:
    """Send this worker's stdout/stderr (fd 1 and 2) to results/<exp>/logs/worker-<pid>.log.

    TensorFlow's C++ runtime logs through absl straight to fd 2 and ignores
    TF_CPP_MIN_LOG_LEVEL for some messages (oneDNN banners, grappler notices about RNN
    graphs): dozens of lines that would bury the driver's one line per run. Nothing a user
    needs is lost: a run's Python errors are in its summary.json, the log keeps the rest.
    """
    logs = exp_dir / store.LOGS
    try:
        logs.mkdir(parents=True, exist_ok=True)
        fd = os.open(
            logs / f"worker-{os.getpid()}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644
        )
    except OSError:
        return  # An unwritable results folder fails later, with a clear error, in write_run.
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _die_with_parent(parent_pid: int) -> None:
    """Make this worker exit when the driver dies, even by kill -9."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG (Linux); fails harmlessly elsewhere
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:
        os._exit(1)

    def watch() -> None:  # Portable fallback: reparenting means the driver is gone.
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


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
