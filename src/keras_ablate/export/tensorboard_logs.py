"""`keras-ablate export tensorboard`: one TensorBoard log folder per run, with HParams.

OUT/<run_id>/  the run's settings as HParams (the hparams plugin's session start), its epoch
               metrics (history: `val/accuracy`, step = epoch) and its per-step quantities
               (steps: `grad/global_norm`, `grad/norm/rnn_0`, step = training step) as scalars
OUT/           the HParams experiment: every grid axis with its levels (plus seed and status)
               and every metric, so the HParams dashboard opens with every run and axis

Events are written with TensorBoard's own record writer and protos (no TensorFlow). Each run folder is
written beside OUT and renamed into place whole, so a second export replaces it instead of
adding events (TensorBoard would draw both copies).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

from keras_ablate import store
from keras_ablate.export.records import ExperimentExport, read_experiment

# A file in each run folder naming the run it holds: folders with it are this export's own.
MARKER = "keras_ablate_run.txt"
EVENTS_PREFIX = "events.out.tfevents."
# The HParams listed in the dashboard besides the axes (every setting is in each run's HParams).
EXTRA_HPARAMS = ("seed", "status")
# The per-step quantities the dashboard lists as metrics (a column each, and a plot under "Show
# Metrics"); every other one (cosine, clipped, the per-layer norms) is in each run's scalars.
DASHBOARD_STEP_METRICS = ("grad/global_norm", "loss")


def export_tensorboard(exp_dir: str | Path, out: str | Path | None = None) -> dict:
    """Write (or rewrite) the TensorBoard logs of an experiment folder; return what was written.

    Returns: {"out": folder, "runs": number of run folders, "removed": stale run folders removed,
    "unreadable": {run_id: why} of run folders left out}.
    """
    experiment = read_experiment(exp_dir)
    out = Path(out) if out is not None else Path(exp_dir) / "tensorboard"
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    for run in experiment.runs:
        _replace_folder(out, run.run_id, lambda folder, run=run: _write_run(folder, run, started))
    _write_config(out, experiment)
    # A run that left the results (deleted, or not readable now) leaves the logs too.
    exported = {run.run_id for run in experiment.runs}
    removed = 0
    for folder in out.iterdir():
        if folder.is_dir() and (folder / MARKER).is_file() and folder.name not in exported:
            shutil.rmtree(folder)
            removed += 1
    return {
        "out": out,
        "runs": len(experiment.runs),
        "removed": removed,
        "unreadable": experiment.unreadable,
    }


class _EventFile:
    """One events file written in order with TensorBoard's record format (its RecordWriter), as
    its EventFileWriter does, but without TensorFlow (EventFileWriter opens files through
    tensorboard.compat.tf, which imports TensorFlow when it is installed)."""

    def __init__(self, folder: Path, wall_time: float):
        from tensorboard.compat.proto import event_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter

        name = f"{EVENTS_PREFIX}{int(wall_time):010d}.{socket.gethostname()}.{os.getpid()}.0"
        self._file = open(folder / name, "wb")  # noqa: SIM115 - closed by close()
        self._records = RecordWriter(self._file)
        self.add_event(event_pb2.Event(wall_time=wall_time, file_version="brain.Event:2"))

    def add_event(self, event) -> None:
        self._records.write(event.SerializeToString())

    def close(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()


def _writer(folder: Path, wall_time: float) -> _EventFile:
    return _EventFile(folder, wall_time)


def _scalar_event(step: int, values: dict[str, float], wall_time: float):
    from tensorboard.compat.proto import event_pb2, summary_pb2

    summary = summary_pb2.Summary(
        value=[summary_pb2.Summary.Value(tag=tag, simple_value=v) for tag, v in values.items()]
    )
    return event_pb2.Event(wall_time=wall_time, step=step, summary=summary)


def _write_run(folder: Path, run, started: float) -> None:
    from tensorboard.compat.proto import event_pb2
    from tensorboard.plugins.hparams import summary_v2 as hp

    (folder / MARKER).write_text(run.run_id + "\n", encoding="utf-8")
    writer = _writer(folder, started)
    try:
        session = hp.hparams_pb(run.hparams, trial_id=run.run_id, start_time_secs=started)
        writer.add_event(event_pb2.Event(wall_time=started, step=0, summary=session))
        for series in (run.epochs, run.steps):
            by_step: dict[int, dict[str, float]] = {}
            for tag, points in series.items():
                for step, value in points:
                    by_step.setdefault(step, {})[tag] = value
            for step in sorted(by_step):
                writer.add_event(_scalar_event(step, by_step[step], started))
    finally:
        writer.close()


def _domain(levels: list):
    """A Discrete domain of one type, as the hparams plugin requires (else the levels as str)."""
    from tensorboard.plugins.hparams import summary_v2 as hp

    # In the grid's order (the dashboard lists them so).
    if levels and all(isinstance(v, bool) for v in levels):
        return hp.Discrete(list(dict.fromkeys(levels)), dtype=bool)
    numbers = [v for v in levels if isinstance(v, int | float) and not isinstance(v, bool)]
    if levels and len(numbers) == len(levels):
        kind = int if all(isinstance(v, int) for v in numbers) else float
        return hp.Discrete(list(dict.fromkeys(kind(v) for v in levels)), dtype=kind)
    return hp.Discrete(list(dict.fromkeys(str(v) for v in levels)), dtype=str)


def _write_config(out: Path, experiment: ExperimentExport) -> None:
    """The HParams experiment at OUT: every axis with its levels, seed, status, every metric."""
    from tensorboard.compat.proto import event_pb2
    from tensorboard.plugins.hparams import summary_v2 as hp

    names = [*experiment.axes, *(h for h in EXTRA_HPARAMS if h not in experiment.axes)]
    hparams = []
    for name in names:
        levels = experiment.levels.get(name) or [r.hparams[name] for r in experiment.runs]
        hparams.append(hp.HParam(name, _domain(levels)))
    metrics = [
        hp.Metric(tag, display_name=f"{tag} (last epoch)") for tag in experiment.epoch_metrics()
    ]
    metrics += [
        hp.Metric(tag, display_name=f"{tag} (last step)")
        for tag in experiment.step_metrics(whole_model=True)
        if tag in DASHBOARD_STEP_METRICS
    ]
    config = hp.hparams_config_pb(hparams=hparams, metrics=metrics, time_created_secs=time.time())
    tmp = Path(tempfile.mkdtemp(dir=out, prefix=".tmp-config-"))
    try:
        writer = _writer(tmp, time.time())
        writer.add_event(event_pb2.Event(wall_time=time.time(), step=0, summary=config))
        writer.close()
        (new,) = tmp.iterdir()
        for old in out.glob(EVENTS_PREFIX + "*"):
            old.unlink()
        os.replace(new, out / new.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _replace_folder(out: Path, name: str, write) -> None:
    """Build out/name under a temporary name, then swap it in whole (the old one goes)."""
    tmp = Path(tempfile.mkdtemp(dir=out, prefix=f".tmp-{name}-"))
    try:
        os.chmod(tmp, 0o777 & ~store.umask())  # mkdtemp makes 0700; a log folder is like any other
        write(tmp)
        final = out / name
        if final.exists():
            trash = Path(tempfile.mkdtemp(dir=out, prefix=f".old-{name}-"))
            os.replace(final, trash / name)
            os.replace(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
