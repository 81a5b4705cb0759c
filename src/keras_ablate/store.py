"""The results layout: every file under results/<experiment>/ is named here, and written and read here.

results/<experiment>/        experiment_folder(results_dir, name); slug_of(name) is its name
  experiment.json            the plan of the last `run` (write_experiment / read_experiment)
  runs/<run_id>/             one folder per run, renamed into place whole (write_run / read_run)
    spec.json, summary.json, history.parquet, steps.parquet and the probe tables
  progress.json              the runner's heartbeat (progress.py writes it through this module)
  adaptive.json              seeds added until resolved: each look's decisions, why it stopped
                             (adaptive.py; write_adaptive / read_adaptive)
  .lock                      held by the runner (experiment_lock)
  logs/                      worker processes' native output (training/process_setup.py)
  tables/ figures/ report.html report.md     the report (report/render.py)
  tuning/<arm>/              keras-tuner's files, trials.parquet, best.yaml, search.json

Imports only the standard library at module level (pandas and pyarrow where a table is read),
so that config can resolve folders and `plan` stays fast. Over 400 lines because it is the one
owner of every file of the results folder (adaptive.json joined them): splitting it would give
a file two writers.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keras_ablate.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

    from keras_ablate.config.schema import Experiment, RunSpec

# A run folder is complete exactly when it exists under runs/ (it is renamed into place
# whole); half-written work only ever lives in runs/.tmp-*, which readers ignore.
RUNS = "runs"
EXPERIMENT_FILE = "experiment.json"
PROGRESS_FILE = "progress.json"
ADAPTIVE_FILE = "adaptive.json"
LOCK_FILE = ".lock"
LOGS = "logs"
TABLES = "tables"
FIGURES = "figures"
REPORT_HTML = "report.html"
REPORT_MD = "report.md"
TUNING = "tuning"
TRIALS_FILE = "trials.parquet"
BEST_FILE = "best.yaml"
SEARCH_FILE = "search.json"
# results/claims/<experiment>/ for every claim file, and results/claims/report.html.
CLAIMS = "claims"
# The statuses of a finished run: never trained again unless asked (--force, --rerun), and the
# runs every mean and verdict is taken over (a failed run is counted, never averaged).
DONE_STATUSES = ("ok", "diverged")
# The status of a run folder that exists but cannot be read (see read_run); treated as missing.
UNREADABLE = "unreadable"
# Summary keys that describe one invocation rather than the run: `environment` and every timing
# (`wall_time_s`, `probe_time_s`, ... a timing key ends in `_time_s`). Everything else in a run
# folder is byte-identical between executors, worker counts and interrupted-then-resumed grids.
PER_INVOCATION_KEYS = ("environment", "timing")
PER_INVOCATION_SUFFIX = "_time_s"
# Folder names longer than this are cut and given a hash (most file systems allow 255 bytes).
MAX_SLUG = 80


def stable_summary(summary: dict) -> dict:
    """The summary without its per-invocation keys (what must match between two executions)."""
    return {
        k: v
        for k, v in summary.items()
        if k not in PER_INVOCATION_KEYS and not k.endswith(PER_INVOCATION_SUFFIX)
    }


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "experiment"


def slug_of(name: str) -> str:
    """Folder-safe, injective name of an experiment: the name itself when it is folder-safe, else a
    safe prefix plus a hash of the name, so that two names never share a folder ('a/b', 'a b')."""
    safe = _safe_name(name)
    if safe == name and len(name) <= MAX_SLUG:
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{safe[:MAX_SLUG]}-{digest}"


def experiment_folder(results_dir: str | Path, name: str) -> Path:
    """results_dir/<slug_of(name)>. A folder named by the earlier, non-injective slug (the bare safe
    name) is still used while its experiment.json says it holds this very experiment."""
    root = Path(results_dir)
    current, legacy = root / slug_of(name), root / _safe_name(name)
    if legacy != current and not current.exists():
        if read_experiment(legacy).get("name") == name:
            return legacy
    return current


def experiment_record(
    exp: Experiment, specs: list[RunSpec], source: str, command: str | None = None
) -> dict[str, Any]:
    """What experiment.json records about a plan: the experiment's description and analysis
    settings, its axes and every planned run id (the report and `status DIR` read them)."""
    record = {
        "name": exp.name,
        "description": exp.description,
        "source": source,
        "design": exp.design,
        "axes": list(specs[0].axes) if specs else [],
        "reference": exp.reference,
        "analysis": exp.analysis.model_dump(),
        "n_runs": len(specs),
        "run_ids": [s.run_id for s in specs],
    }
    if exp.protocol is not None:
        record["protocol"] = exp.protocol.model_dump()
    if command is not None:
        record["command"] = command
    return record


def write_experiment(exp_dir: Path, record: dict[str, Any]) -> None:
    """Write experiment.json (atomically): the one writer of that file."""
    write_json_atomic(Path(exp_dir) / EXPERIMENT_FILE, record)


def read_experiment(exp_dir: str | Path) -> dict[str, Any]:
    """experiment.json as a mapping; {} when there is none or it is not a mapping (a folder of
    hand-made runs, a damaged file): the one reader of that file."""
    try:
        record = json.loads((Path(exp_dir) / EXPERIMENT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def write_adaptive(exp_dir: Path, state: dict[str, Any]) -> None:
    """Write adaptive.json (atomically): the adaptive-seeds loop's looks and decisions."""
    write_json_atomic(Path(exp_dir) / ADAPTIVE_FILE, state)


def read_adaptive(exp_dir: str | Path) -> dict[str, Any]:
    """adaptive.json as a mapping; {} when there is none or it cannot be read."""
    try:
        state = json.loads((Path(exp_dir) / ADAPTIVE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def adaptive_run_ids(exp_dir: str | Path) -> list[str]:
    """The runs an adaptive loop planned so far (initial seeds and every seed it added)."""
    run_ids = read_adaptive(exp_dir).get("run_ids")
    if isinstance(run_ids, list) and all(isinstance(r, str) for r in run_ids):
        return run_ids
    return []


def run_dir(exp_dir: Path, run_id: str) -> Path:
    return exp_dir / RUNS / run_id


def umask() -> int:
    """This process's umask, read without changing it where the system allows."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no /proc: set and restore (not atomic, but only without /proc)
    os.umask(mask)
    return mask


def _mkstemp(path: Path) -> tuple[int, str]:
    """A temporary file beside `path` with the mode open() would give it (mkstemp makes 0600)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~umask())
    return fd, tmp


def write_json_atomic(path: Path, obj) -> None:
    """Write JSON so that readers see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _mkstemp(path)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True, allow_nan=False, default=_json_default)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _mkstemp(path)
    mode = "wb" if isinstance(text, bytes) else "w"
    with os.fdopen(fd, mode, **({} if isinstance(text, bytes) else {"encoding": "utf-8"})) as f:
        f.write(text)
    os.replace(tmp, path)


def _json_default(o):
    if hasattr(o, "item"):  # numpy scalars
        return o.item()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def write_run(exp_dir: Path, spec: RunSpec, summary: dict, tables: dict[str, pd.DataFrame]) -> Path:
    """Write a run folder atomically: build it under runs/.tmp-*, fsync, then rename into place.

    An existing folder for the same run (a failed run retried, or --force) is replaced.
    """
    runs = exp_dir / RUNS
    runs.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=runs, prefix=f".tmp-{spec.run_id}-"))
    try:
        os.chmod(tmp, 0o777 & ~umask())  # mkdtemp makes 0700; a run folder is like any other
        _write_json(tmp / "spec.json", spec.to_json())
        _write_json(tmp / "summary.json", summary)
        for name, df in tables.items():
            df.to_parquet(tmp / f"{name}.parquet", index=False)
        for f in tmp.iterdir():
            _fsync_file(f)
        final = run_dir(exp_dir, spec.run_id)
        if final.exists():
            trash = Path(tempfile.mkdtemp(dir=runs, prefix=f".old-{spec.run_id}-"))
            os.replace(final, trash / "run")
            os.replace(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(runs)
        return final
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_json(path: Path, obj) -> None:
    with open(path, "w", encoding="utf-8") as f:
        # Non-finite numbers become null so the file stays valid JSON.
        json.dump(_finite(obj), f, indent=2, sort_keys=True, default=_json_default)
        f.write("\n")


def _finite(obj):
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_summary(path: Path) -> dict | None:
    try:
        summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


# What a reader needs from spec.json, and what each value must be.
_SPEC_FIELDS = {"run_id": str, "settings": dict, "dataset": dict, "seed": int}


def read_run(path: Path) -> tuple[dict, dict] | str:
    """(spec, summary) of a run folder, or why it cannot be read: a missing or damaged
    spec.json or summary.json, or a .parquet table that is not a Parquet file.

    A folder that cannot be read counts as missing: the next `run` trains it again (write_run
    replaces it) and readers leave it out, saying so, instead of failing on it.
    """
    loaded = []
    for name in ("spec.json", "summary.json"):
        try:
            loaded.append(json.loads((path / name).read_text(encoding="utf-8")))
        except FileNotFoundError:
            return f"{name} is missing"
        except (OSError, ValueError) as exc:
            return f"{name} cannot be read ({error_text(exc)})"
    spec, summary = loaded
    if not isinstance(spec, dict) or any(
        not isinstance(spec.get(k), t) for k, t in _SPEC_FIELDS.items()
    ):
        return "spec.json is not a run spec (run_id, settings, dataset, seed)"
    if not isinstance(spec["dataset"].get("options", {}), dict) or not isinstance(
        spec.get("axes", {}), dict
    ):
        return "spec.json is not a run spec (dataset.options or axes is not a mapping)"
    if spec["run_id"] != path.name:
        return f"spec.json describes run {spec['run_id']!r}, not this folder's"
    if not isinstance(summary, dict) or not isinstance(summary.get("status"), str):
        return "summary.json is not a run summary (a mapping with a status)"
    for key in ("final", "best", "environment"):
        if not isinstance(summary.get(key) or {}, dict):
            return f"summary.json: '{key}' is not a mapping"
    import pyarrow.parquet as pq

    for table in sorted(path.glob("*.parquet")):
        try:
            pq.read_metadata(table)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for bad bytes
            return f"{table.name} is not a readable Parquet file ({error_text(exc)})"
    return spec, summary


def error_text(exc: BaseException) -> str:
    """The first line of an exception's message, short enough for one line of output."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:160]


def scan_runs(exp_dir: Path) -> tuple[list[tuple[Path, dict, dict]], dict[str, str]]:
    """Every complete run folder: the readable ones as (folder, spec, summary), and by folder
    name why each other one cannot be read (temporary folders are skipped)."""
    runs = Path(exp_dir) / RUNS
    readable, unreadable = [], {}
    if not runs.is_dir():
        return readable, unreadable
    for path in sorted(runs.iterdir()):
        if path.name.startswith(".") or not path.is_dir():
            continue
        record = read_run(path)
        if isinstance(record, str):
            unreadable[path.name] = record
        else:
            readable.append((path, *record))
    return readable, unreadable


def iter_runs(exp_dir: Path) -> Iterator[tuple[Path, dict, dict]]:
    """Yield (folder, spec, summary) for every readable run folder (see scan_runs)."""
    yield from scan_runs(exp_dir)[0]


def run_status(exp_dir: Path, run_id: str) -> str:
    """'missing', 'unreadable' (a damaged folder), or the run's status (ok / diverged / failed)."""
    path = run_dir(exp_dir, run_id)
    if not path.is_dir():
        return "missing"
    record = read_run(path)
    return UNREADABLE if isinstance(record, str) else record[1]["status"]


def read_table(path: Path, name: str) -> pd.DataFrame | None:
    import pandas as pd

    f = path / f"{name}.parquet"
    return pd.read_parquet(f) if f.exists() else None


def clean_stale_temp(exp_dir: Path) -> int:
    """Remove temporary folders left by a killed runner (call only while holding the lock)."""
    runs = Path(exp_dir) / RUNS
    removed = 0
    if runs.is_dir():
        for path in runs.iterdir():
            if path.name.startswith((".tmp-", ".old-")):
                shutil.rmtree(path, ignore_errors=True)
                removed += 1
    return removed


class LockedError(UserError):
    """Another runner holds the experiment lock."""


@contextmanager
def experiment_lock(exp_dir: Path):
    """Hold an exclusive lock on the experiment folder for the life of a runner.

    A second runner on the same experiment stops at once with a clear message instead
    of racing the first on the same run folders. The lock is an flock, so the kernel
    releases it when a runner dies, even under kill -9: no stale lock files to clear.
    """
    exp_dir.mkdir(parents=True, exist_ok=True)
    path = exp_dir / LOCK_FILE
    f = open(path, "a+")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        f.close()
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            f2 = path.read_text().strip() if path.exists() else ""
            raise LockedError(
                f"{exp_dir}: another keras-ablate runner is working on this experiment ({f2 or 'pid unknown'}); "
                "wait for it to finish or stop it, then run again (finished runs are kept)"
            ) from None
        raise
    try:
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}\n")
        f.flush()
        yield
    finally:
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        f.close()
