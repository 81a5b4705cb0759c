"""The runner's heartbeat file (progress.json) and the status of a grid: counts, runner, ETA."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

from keras_ablate import store
from keras_ablate.phases import format_phases

# The runner rewrites progress.json this often even while a long run trains.
HEARTBEAT_SECONDS = 5.0
# A heartbeat older than this means the runner is gone (used when its pid cannot be checked).
STALE_SECONDS = 60.0


class ProgressFile:
    """Written atomically by the runner on every start/finish and every HEARTBEAT_SECONDS."""

    def __init__(self, exp_dir: Path, total: int, executor: str, workers: int):
        self.path = Path(exp_dir) / store.PROGRESS_FILE
        self.state = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "executor": executor,
            "workers": workers,
            "started_at": time.time(),
            "total": total,
            "finished": 0,
            "statuses": {},
            "running": {},
            "state": "running",
        }
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)

    def __enter__(self) -> ProgressFile:
        self.write()
        self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._stop.set()
        self._thread.join(timeout=HEARTBEAT_SECONDS)
        self.state["state"] = "interrupted" if exc_type else "finished"
        self.state["running"] = {}
        self.write()

    def started(self, run_id: str, pid: int | None) -> None:
        with self._lock:
            self.state["running"][run_id] = {"pid": pid, "since": time.time()}
        self.write()

    def finished(self, run_id: str, status: str) -> None:
        with self._lock:
            self.state["running"].pop(run_id, None)
            self.state["finished"] += 1
            self.state["statuses"][status] = self.state["statuses"].get(status, 0) + 1
        self.write()

    def write(self) -> None:
        with self._lock:
            self.state["heartbeat"] = time.time()
            store.write_json_atomic(self.path, self.state)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            self.write()


def read_progress(exp_dir: Path) -> dict | None:
    try:
        progress = json.loads((Path(exp_dir) / store.PROGRESS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return progress if isinstance(progress, dict) else None


def runner_alive(progress: dict | None, now: float | None = None) -> bool:
    """Whether the runner that wrote this progress is still working."""
    if not progress or progress.get("state") != "running":
        return False
    now = now or time.time()
    if progress.get("host") == socket.gethostname():
        try:
            os.kill(int(progress["pid"]), 0)
        except (ProcessLookupError, KeyError, ValueError):
            return False
        except PermissionError:
            pass  # alive, another user's process
    return now - float(progress.get("heartbeat", 0)) < STALE_SECONDS


def grid_status(exp_dir: Path, run_ids: list[str] | None = None) -> dict:
    """Counts over the grid's runs: done (ok), diverged, failed, missing; runner state and ETA.

    Args:
        run_ids: the grid's runs; None counts the folders present (missing is then unknown).
    """
    exp_dir = Path(exp_dir)
    readable, broken = store.scan_runs(exp_dir)
    summaries = {path.name: s for path, _, s in readable}
    counts = {"done": 0, "diverged": 0, "failed": 0, "missing": 0, store.UNREADABLE: 0}
    wall_times = []
    phases: dict[str, float] = {}  # seconds per phase (summary["timing"]), summed over runs
    ids = list(dict.fromkeys(run_ids)) if run_ids is not None else sorted({*summaries, *broken})
    unreadable = {}
    for run_id in ids:
        summary = summaries.get(run_id)
        if run_id in broken:
            status = store.UNREADABLE
            unreadable[run_id] = broken[run_id]
        else:
            status = "missing" if summary is None else summary["status"]
        counts["done" if status == "ok" else status if status in counts else "failed"] += 1
        if summary is not None and status in store.DONE_STATUSES and summary.get("wall_time_s"):
            wall_times.append(float(summary["wall_time_s"]))
        if summary is not None and isinstance(summary.get("timing"), dict):
            for phase, seconds in summary["timing"].items():
                if isinstance(seconds, (int, float)):
                    phases[phase] = phases.get(phase, 0.0) + float(seconds)
    if run_ids is None:
        counts["missing"] = None
    progress = read_progress(exp_dir)
    alive = runner_alive(progress)
    result = {
        "experiment": exp_dir.name,
        "results": str(exp_dir),
        "runs": len(ids),
        **counts,
        # Folders that cannot be read, by run id: the next `run` trains them again.
        "unreadable_runs": unreadable,
        "runner": _runner_state(progress, alive),
        "mean_wall_time_s": sum(wall_times) / len(wall_times) if wall_times else None,
        "time_by_phase_s": {k: round(v, 1) for k, v in phases.items()},
        "eta_s": None,
    }
    if alive:
        result.update(
            pid=progress["pid"],
            executor=progress.get("executor"),
            running=sorted(progress.get("running", {})),
            finished_this_invocation=progress.get("finished", 0),
            todo_this_invocation=progress.get("total", 0),
            eta_s=eta_seconds(progress, result["mean_wall_time_s"]),
        )
    return result


def _runner_state(progress: dict | None, alive: bool) -> str:
    if alive:
        return "running"
    if progress is None:
        return "none"
    # A runner killed without a chance to say so leaves its last state: running.
    return "died" if progress.get("state") == "running" else progress.get("state", "none")


def eta_seconds(
    progress: dict, mean_wall_time_s: float | None, now: float | None = None
) -> float | None:
    """Time left for the running invocation: its own pace so far, else mean run time / workers."""
    now = now or time.time()
    remaining = max(0, int(progress.get("total", 0)) - int(progress.get("finished", 0)))
    finished = int(progress.get("finished", 0))
    if finished:
        return remaining * (now - float(progress["started_at"])) / finished
    if mean_wall_time_s:
        return remaining * mean_wall_time_s / max(1, int(progress.get("workers", 1)))
    return None


def format_status(status: dict) -> str:
    lines = [f"{status['experiment']}: {status['runs']} runs -> {status['results']}"]
    missing = "?" if status["missing"] is None else status["missing"]
    lines.append(
        f"  done {status['done']}  diverged {status['diverged']}  failed {status['failed']}  missing {missing}"
        + (f"  unreadable {status['unreadable']}" if status.get("unreadable") else "")
    )
    if status.get("time_by_phase_s"):
        lines.append(f"  time in runs: {format_phases(status['time_by_phase_s'])}")
    if status.get("unreadable_runs"):
        lines.append("  unreadable run folders (the next `keras-ablate run` trains them again):")
        lines += [f"    {run_id}: {why}" for run_id, why in status["unreadable_runs"].items()]
    if status["runner"] == "running":
        eta = status.get("eta_s")
        eta_text = "unknown" if eta is None else time.strftime("%H:%M:%S", time.gmtime(eta))
        lines.append(
            f"  runner: running (pid {status['pid']}, {status['executor']}): "
            f"{status['finished_this_invocation']} of {status['todo_this_invocation']} finished, "
            f"{len(status['running'])} in progress, eta {eta_text}"
        )
    elif status["runner"] != "none":
        lines.append(f"  runner: not running (last one {status['runner']})")
    else:
        lines.append("  runner: not running")
    return "\n".join(lines)
