"""Execution with the default jit_compile (auto) and with two threads a run in recycled
workers: the records are the same bytes as in one process. (Split from test_execution.py so
that pytest-xdist's per-file scheduling spreads the two slow halves over two workers.)"""

from __future__ import annotations

import os
import re

import pytest

from keras_ablate import schedule, store
from keras_ablate.config import load_experiment
from keras_ablate.executors import PoolExecutor
from tests.test_execution import assert_same_records, run_checked

# The default jit_compile (auto): a gru long enough in steps x timesteps for XLA (384 steps of
# batch 1 x 30 timesteps = 11,520 >= its break-even 11,000) and an mlp too short for it.
JIT_GRID = """
name: jit
dataset: {name: ngram, options: {n_train: 384, n_val: 32, seq_len: 30, vocab_size: 20}}
base: {epochs: 1, units: 4, embed_dim: 4, batch_size: 1}
grid: {architecture: [gru, mlp]}
seeds: [0]
"""


def test_default_jit_auto_records_are_the_same_bytes_in_process_and_in_two_workers(tmp_path):
    path = tmp_path / "jit.yaml"
    path.write_text(JIT_GRID, encoding="utf-8")
    env = {**os.environ, "KERAS_ABLATE_CACHE": str(tmp_path / "cache"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    _, specs = load_experiment(path)
    assert {s.settings["jit_compile"] for s in specs} == {"auto"}
    for workers in ("1", "2"):
        run_checked(path, tmp_path / workers, env, workers, timeout=300)
    one, two = tmp_path / "1" / "jit", tmp_path / "2" / "jit"
    compiled = {
        s.settings["architecture"]: store.read_summary(store.run_dir(one, s.run_id))["jit_compiled"]
        for s in specs
    }
    assert compiled == {"gru": True, "mlp": False}  # auto took both branches
    assert_same_records(two, one, [s.run_id for s in specs])


# Two threads a run (resources.num_cpus), the default jit_compile (auto, here too short for XLA
# to pay: the XLA branch is the 1-thread test's above) and a pool that recycles its workers
# after every run. The cnn is the architecture whose bits depend on the thread count.
THREADS_GRID = """
name: threads
dataset: {name: ngram, options: {n_train: 128, n_val: 32, seq_len: 12, vocab_size: 20}}
base: {epochs: 1, units: 4, embed_dim: 4, filters: 4, batch_size: 32}
grid: {architecture: [gru, cnn, mlp]}
resources: {num_cpus: 2}
seeds: [0]
"""


@pytest.fixture(scope="module")
def two_thread_pool(tmp_path_factory):
    """The grid in one process (a subprocess: a fresh TensorFlow takes the thread count) and in
    a pool of two workers recycled after every run, whose TensorFlow logs at every level."""
    root = tmp_path_factory.mktemp("threads")
    path = root / "threads.yaml"
    path.write_text(THREADS_GRID, encoding="utf-8")
    env = {**os.environ, "KERAS_ABLATE_CACHE": str(root / "cache"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    run_checked(path, root / "inline", env, timeout=600)
    _, specs = load_experiment(path)
    assert {s.settings["jit_compile"] for s in specs} == {"auto"}
    exp_dir = root / "pool" / "threads"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KERAS_ABLATE_CACHE", str(root / "cache"))
        patch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")  # the workers inherit it: TF's INFO lines too
        pool = PoolExecutor(exp_dir, workers=2, threads=2, recycle_after=1)
        events = list(pool.execute(schedule.order_largest_first(specs)))
    return specs, root / "inline" / "threads", exp_dir, [e for e in events if e.kind == "done"]


def test_two_threads_a_run_in_recycled_workers_write_the_same_bytes_as_one_process(
    two_thread_pool,
):
    specs, inline, exp_dir, done = two_thread_pool
    assert sorted(e.spec.run_id for e in done) == sorted(s.run_id for s in specs)
    assert len({e.pid for e in done}) == 3  # each run in a fresh worker
    assert all(e.summary["status"] == "ok" for e in done)
    assert all(e.summary["environment"]["intra_op_threads"] == 2 for e in done)
    assert_same_records(exp_dir, inline, [s.run_id for s in specs])


def test_worker_processes_tensorflow_logs_go_to_the_logs_folder(two_thread_pool):
    # README: "Worker processes' TensorFlow logs go to results/<exp>/logs/": one file per
    # worker, holding TensorFlow's own native log lines (absl format: I<mmdd> <time> <thread> <file>.cc:<line>] ...).
    _, _, exp_dir, done = two_thread_pool
    logs = exp_dir / store.LOGS
    assert sorted(p.name for p in logs.iterdir()) == sorted(f"worker-{e.pid}.log" for e in done)
    for event in done:
        text = (logs / f"worker-{event.pid}.log").read_text(errors="replace")
        assert re.search(r"^I\d{4} [\d:.]+ +\d+ \S+\.cc:\d+\] ", text, re.M), text[:500]
