"""Execution at scale: worker pool, Ray, kill -9 safety, lock, status, rerun flags, determinism."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keras_ablate import schedule, store
from keras_ablate.cli import main
from keras_ablate.config import load_experiment, parse_experiment
from keras_ablate.errors import ConfigError, UserError
from keras_ablate.executors import PoolExecutor
from keras_ablate.progress import eta_seconds, grid_status, read_progress

# Six tiny runs: three architectures x a sane and an absurd learning rate (the absurd one
# diverges at once, the rnn's included: its probes keep nothing from NaN weights). cnn without XLA is the case whose bits depend on the thread count.
GRID = """
name: crash
dataset: {name: ngram, options: {n_train: 256, n_val: 32, seq_len: 12, vocab_size: 20}}
base: {epochs: 3, units: 6, embed_dim: 4, filters: 4, batch_size: 32, optimizer: sgd,
       activation: relu, jit_compile: false}
grid: {architecture: [cnn, rnn, mlp], learning_rate: [0.05, 1.0e12]}
seeds: [0]
"""
TABLES = ("spec.json", "history.parquet", "steps.parquet")


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "keras_ablate.cli", *args]


def run_checked(path: Path, results: Path, env: dict, workers: str = "1", timeout: int = 120):
    """`keras-ablate run` of `path` in a subprocess (a fresh TensorFlow), which must succeed."""
    done = subprocess.run(
        _cli("run", str(path), "--results-dir", str(results), "--workers", workers),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """The grid file and its reference results: one uninterrupted in-process run in a subprocess."""
    root = tmp_path_factory.mktemp("execution")
    path = root / "crash.yaml"
    path.write_text(GRID, encoding="utf-8")
    env = {**os.environ, "KERAS_ABLATE_CACHE": str(root / "cache"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    run_checked(path, root / "reference", env, timeout=120)
    _, specs = load_experiment(path)
    return path, specs, root / "reference" / "crash", env


def assert_same_records(exp_dir: Path, reference: Path, run_ids) -> None:
    for run_id in run_ids:
        ours, theirs = exp_dir / "runs" / run_id, reference / "runs" / run_id
        for name in TABLES:
            assert (ours / name).read_bytes() == (theirs / name).read_bytes(), (
                f"{run_id}/{name} differs"
            )
        a, b = (
            store.stable_summary(json.loads((d / "summary.json").read_text()))
            for d in (ours, theirs)
        )
        assert a == b and "status" in a, f"{run_id}/summary.json differs"


def assert_complete_or_absent(exp_dir: Path) -> None:
    """Every folder a reader would see holds all of its files and a readable summary."""
    for path in (exp_dir / "runs").iterdir():
        if path.name.startswith("."):
            continue
        names = {p.name for p in path.iterdir()}
        assert {"spec.json", "summary.json"} <= names, path
        summary = store.read_summary(path)
        assert summary is not None
        if summary["status"] != "failed":
            assert {"history.parquet", "steps.parquet"} <= names, path


def test_reference_has_ok_and_diverged_runs(grid):
    _, specs, reference, _ = grid
    statuses = sorted(store.run_status(reference, s.run_id) for s in specs)
    assert statuses == ["diverged"] * 3 + ["ok"] * 3


def test_two_recycled_pool_workers_write_the_same_bytes_as_one_process(grid, tmp_path):
    _, specs, reference, _ = grid
    exp_dir = tmp_path / "crash"
    # cnn (thread-sensitive without XLA) and one mlp run; the rest run in the kill test's pool.
    chosen = [s for s in specs if s.settings["architecture"] == "cnn"] + [specs[-1]]
    pool = PoolExecutor(exp_dir, workers=2, threads=1, recycle_after=1)
    done = [e for e in pool.execute(schedule.order_largest_first(chosen)) if e.kind == "done"]
    assert sorted(e.spec.run_id for e in done) == sorted(s.run_id for s in chosen)
    # Recycled after every run: three runs, three worker processes, the third a replacement.
    assert len({e.pid for e in done}) == 3
    assert all(
        e.summary["environment"]["intra_op_threads"] == 1
        for e in done
        if e.summary["status"] == "ok"
    )
    assert_same_records(exp_dir, reference, [s.run_id for s in chosen])


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_for(condition, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _folders(exp_dir: Path) -> list[str]:
    runs = exp_dir / "runs"
    return [p.name for p in runs.iterdir() if not p.name.startswith(".")] if runs.is_dir() else []


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds worker processes through /proc")
def test_kill_9_of_a_worker_then_the_driver_then_rerun_loses_nothing(grid, tmp_path, capsys):
    path, specs, reference, env = grid
    run_ids = [s.run_id for s in specs]
    results, exp_dir = tmp_path / "results", tmp_path / "results" / "crash"
    with open(tmp_path / "driver.log", "w") as log:
        driver = subprocess.Popen(
            _cli("run", str(path), "--results-dir", str(results), "--workers", "2"),
            env=env,
            stdout=log,
            stderr=log,
        )
        try:
            _wait_for(lambda: _folders(exp_dir), 90, "the first run folder")
            # While it runs: status sees it, and a second runner stops with a clear message.
            status = grid_status(exp_dir, run_ids)
            assert status["runner"] == "running" and status["pid"] == driver.pid
            assert status["done"] + status["diverged"] >= 1 and status["eta_s"] is not None
            assert main(["run", str(path), "--results-dir", str(results)]) == 2
            assert (
                "another keras-ablate runner is working on this experiment"
                in capsys.readouterr().err
            )

            # 1. kill -9 the worker that took a run last, in the middle of that run.
            def running_worker():
                progress = read_progress(exp_dir) or {}
                running = [
                    (v["since"], k, v["pid"]) for k, v in progress.get("running", {}).items()
                ]
                return max(running) if running else None

            _, victim, worker_pid = _wait_for(running_worker, 30, "a worker holding a run")
            os.kill(worker_pid, signal.SIGKILL)
            # The driver records that run as failed, starts a replacement worker and goes on...
            _wait_for(
                lambda: store.run_status(exp_dir, victim) == "failed", 30, "the killed run's record"
            )
            # 2. ...until kill -9 of the driver itself, while the replacement is still starting.
            workers = _children(driver.pid)
            os.kill(driver.pid, signal.SIGKILL)
            driver.wait(timeout=10)
        finally:
            if driver.poll() is None:
                driver.kill()
    # The workers die with the driver: nothing writes into the experiment once its lock is gone.
    _wait_for(lambda: not any(_alive(p) for p in workers), 10, "the workers to exit")
    assert_complete_or_absent(exp_dir)
    killed = store.read_summary(store.run_dir(exp_dir, victim))
    assert "WorkerDied" in killed["error"] and "SIGKILL" in killed["error"]
    status = grid_status(exp_dir, run_ids)
    assert status["runner"] == "died" and status["failed"] == 1 and status["missing"] >= 1
    kept = {
        r: (exp_dir / "runs" / r / "summary.json").stat().st_mtime_ns for r in _folders(exp_dir)
    }

    # 3. Rerun: exactly the failed and the missing runs execute; every record equals the
    # uninterrupted in-process run's, byte for byte (timings and environment aside).
    assert main(["run", str(path), "--results-dir", str(results), "--workers", "2"]) == 0
    redone = {
        r
        for r in _folders(exp_dir)
        if kept.get(r) != (exp_dir / "runs" / r / "summary.json").stat().st_mtime_ns
    }
    assert redone == {victim} | (set(run_ids) - set(kept))
    assert not [p for p in (exp_dir / "runs").iterdir() if p.name.startswith(".")]
    assert_same_records(exp_dir, reference, run_ids)


def test_rerun_failed_and_rerun_diverged_run_only_those(grid, tmp_path, capsys):
    path, specs, reference, _ = grid
    results = tmp_path / "results"
    exp_dir = results / "crash"
    shutil.copytree(reference, exp_dir)
    by_status = {}
    for spec in specs:
        by_status.setdefault(store.run_status(exp_dir, spec.run_id), []).append(spec)
    failed, missing = by_status["ok"][0], by_status["ok"][1]
    store.write_run(
        exp_dir, failed, {"run_id": failed.run_id, "status": "failed", "error": "simulated"}, {}
    )
    shutil.rmtree(store.run_dir(exp_dir, missing.run_id))

    def stamps():
        return {
            r: (exp_dir / "runs" / r / "summary.json").stat().st_mtime_ns for r in _folders(exp_dir)
        }

    before = stamps()
    assert (
        main(
            ["run", str(path), "--results-dir", str(results), "--workers", "1", "--rerun", "failed"]
        )
        == 0
    )
    after = stamps()
    assert {r for r in before if before[r] != after[r]} == {failed.run_id}
    assert store.run_status(exp_dir, failed.run_id) == "ok"
    assert store.run_status(exp_dir, missing.run_id) == "missing"  # --rerun runs only those
    assert "1 missing run(s) not run" in capsys.readouterr().err

    assert (
        main(
            [
                "run",
                str(path),
                "--results-dir",
                str(results),
                "--workers",
                "1",
                "--rerun",
                "diverged",
            ]
        )
        == 0
    )
    again = stamps()
    assert {r for r in after if after[r] != again[r]} == {s.run_id for s in by_status["diverged"]}
    assert all(store.run_status(exp_dir, s.run_id) == "diverged" for s in by_status["diverged"])

    # status from the file and from the folder agree.
    assert main(["status", str(path), "--results-dir", str(results), "--json"]) == 0
    from_file = json.loads(capsys.readouterr().out)
    assert main(["status", str(exp_dir), "--json"]) == 0
    from_dir = json.loads(capsys.readouterr().out)
    for status in (from_file, from_dir):
        assert (status["done"], status["diverged"], status["failed"], status["missing"]) == (
            2,
            3,
            0,
            1,
        )
        assert status["runner"] == "finished"


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_tasks_return_records_the_driver_writes_identically(grid, local_ray, tmp_path):
    path, specs, reference, _ = grid
    results = tmp_path / "results"
    # One cnn run: the architecture whose bits would show a thread-count mismatch.
    only = ["--filter", "architecture=cnn", "--filter", "learning_rate=0.05"]
    assert main(["run", str(path), "--results-dir", str(results), "--executor", "ray", *only]) == 0
    exp_dir = results / "crash"
    cnn = [
        s.run_id
        for s in specs
        if s.settings["architecture"] == "cnn" and s.settings["learning_rate"] == 0.05
    ]
    assert len(cnn) == 1 and _folders(exp_dir) == cnn
    assert_same_records(exp_dir, reference, cnn)
    assert local_ray.is_initialized()  # a Ray the caller started is left running


def test_ray_missing_is_a_clear_error(monkeypatch, tiny_yaml, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(UserError, match=r"pip install 'keras-ablate\[ray\]'"):
        from keras_ablate.executors import import_ray

        import_ray()
    assert main(["run", str(tiny_yaml), "--results-dir", str(tmp_path), "--executor", "ray"]) == 2


def test_bad_flags_and_resources_are_user_errors(tiny_yaml, tmp_path, capsys):
    assert main(["run", str(tiny_yaml), "--results-dir", str(tmp_path), "--workers", "0"]) == 2
    assert "--workers must be >= 1" in capsys.readouterr().err
    assert main(["run", str(tiny_yaml), "--results-dir", str(tmp_path), "--address", "auto"]) == 2
    assert "--address is for --executor ray" in capsys.readouterr().err
    base = "name: r\ndataset: {name: ngram}\n"
    with pytest.raises(ConfigError, match=r"resources\.num_cpus"):
        parse_experiment(base + "resources: {num_cpus: 0}\n", source="r.yaml")
    with pytest.raises(ConfigError, match=r"unknown key 'gpus'.*num_gpus"):
        parse_experiment(base + "resources: {gpus: 1}\n", source="r.yaml")
    exp, _ = parse_experiment(base + "resources: {num_cpus: 2, num_gpus: 0.5}\n")
    assert (exp.resources.num_cpus, exp.resources.num_gpus) == (2, 0.5)


def _spec(architecture="lstm", units=8, epochs=1, n_train=128, seq_len=12):
    text = f"""
    name: s
    dataset: {{name: ngram, options: {{n_train: {n_train}, seq_len: {seq_len}}}}}
    base: {{architecture: {architecture}, units: {units}, epochs: {epochs}}}
    """
    return parse_experiment(text)[1][0]


def test_largest_runs_go_first_and_worker_count_follows_cpus_memory_and_work():
    small, big, cnn = _spec(units=8), _spec(units=64, epochs=5), _spec("cnn", units=64)
    assert schedule.order_largest_first([small, cnn, big]) == [big, cnn, small]
    heavy = [_spec(units=128, epochs=20, n_train=20000, seq_len=100)] * 4
    assert schedule.auto_workers(heavy, threads=1, cpus=2, memory=64 * 2**30) == 2
    assert (
        schedule.auto_workers(heavy, threads=2, cpus=2, memory=64 * 2**30) == 1
    )  # one run uses both cores
    assert (
        schedule.auto_workers(heavy, threads=1, cpus=8, memory=2.5 * 2**30) == 2
    )  # memory for two workers
    assert schedule.auto_workers(heavy[:1], threads=1, cpus=8, memory=64 * 2**30) == 1
    # Four tiny runs finish in-process before two workers would have imported TensorFlow.
    assert schedule.auto_workers([small] * 4, threads=1, cpus=2, memory=64 * 2**30) == 1


def test_eta_uses_this_invocations_pace_else_mean_run_time_over_workers():
    progress = {"total": 10, "finished": 2, "started_at": 1000.0, "workers": 2}
    assert eta_seconds(progress, mean_wall_time_s=99.0, now=1100.0) == pytest.approx(8 * 100 / 2)
    progress["finished"] = 0
    assert eta_seconds(progress, mean_wall_time_s=30.0, now=1100.0) == pytest.approx(10 * 30 / 2)
    assert eta_seconds(progress, mean_wall_time_s=None, now=1100.0) is None
