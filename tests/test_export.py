"""Exports read back: TensorBoard's own event reader and hparams plugin data, mlflow.search_runs.

The expected values come from the run folders' files read directly (spec.json, history.parquet,
steps.parquet), not from the export code.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from keras_ablate.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The tiny grid (2 architectures x 2 clip levels, 1 epoch of 4 steps) and its report."""
    from tests.conftest import TINY

    root = tmp_path_factory.mktemp("export")
    path = root / "tiny.yaml"
    path.write_text(TINY, encoding="utf-8")
    assert main(["run", str(path), "--results-dir", str(root / "results"), "--workers", "1"]) == 0
    exp_dir = root / "results" / "tiny"
    assert main(["report", str(exp_dir)]) == 0
    return exp_dir


def _runs(exp_dir: Path) -> dict[str, dict]:
    """Each run's spec.json, history and steps tables, read directly."""
    out = {}
    for folder in sorted((exp_dir / "runs").iterdir()):
        out[folder.name] = {
            "spec": json.loads((folder / "spec.json").read_text()),
            "history": pd.read_parquet(folder / "history.parquet"),
            "steps": pd.read_parquet(folder / "steps.parquet"),
        }
    return out


def _series(frame: pd.DataFrame, index: str) -> dict[str, dict[int, float]]:
    """Every column of a run table as {index value: value}, non-finite values left out."""
    return {
        column: {
            int(i): float(v)
            for i, v in zip(frame[index], frame[column], strict=True)
            if math.isfinite(v)
        }
        for column in frame.columns
        if column not in ("epoch", "step")
    }


def _hparam_value(value):
    kind = value.WhichOneof("kind")
    return getattr(value, kind)


def _expected_hparams(spec: dict) -> dict:
    expected = {}
    for key, value in spec["settings"].items():
        expected[key] = ",".join(map(str, value)) if isinstance(value, list) else value
    for key, value in spec["dataset"]["options"].items():
        expected[f"dataset.{key}"] = value
    expected.update(dataset=spec["dataset"]["name"], seed=spec["seed"], status="ok")
    return {k: "none" if v is None else v for k, v in expected.items()}


def _read_tensorboard(out: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata

    def accumulate(folder):
        acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
        acc.Reload()
        return acc

    root = accumulate(out)
    experiment = metadata.parse_experiment_plugin_data(
        root.PluginTagToContent(metadata.PLUGIN_NAME)[metadata.EXPERIMENT_TAG]
    )
    runs = {}
    for folder in sorted(p for p in out.iterdir() if p.is_dir()):
        acc = accumulate(folder)
        session = metadata.parse_session_start_info_plugin_data(
            acc.PluginTagToContent(metadata.PLUGIN_NAME)[metadata.SESSION_START_INFO_TAG]
        )
        scalars = {
            tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]
        }
        hparams = {k: _hparam_value(v) for k, v in session.hparams.items()}
        runs[folder.name] = (session.group_name, hparams, scalars, sorted(os.listdir(folder)))
    return experiment, runs


def test_tensorboard_export_reads_back_every_run_axis_and_metric(finished, tmp_path):
    exp_dir = finished
    out = tmp_path / "tb"
    assert main(["export", "tensorboard", str(exp_dir), "--out", str(out)]) == 0
    expected = _runs(exp_dir)
    experiment, runs = _read_tensorboard(out)

    # The HParams experiment: every axis with its levels in the grid's order, seed and status.
    domains = {
        h.name: [_hparam_value(v) for v in h.domain_discrete.values]
        for h in experiment.hparam_infos
    }
    assert domains == {
        "architecture": ["cnn", "lstm"],
        "clip": ["none", "norm:1.0"],
        "seed": [0],
        "status": ["ok"],
    }
    metrics = {m.name.tag for m in experiment.metric_infos}
    history_columns = set(next(iter(expected.values()))["history"].columns) - {"epoch"}
    assert history_columns <= metrics and {"grad/global_norm", "loss"} <= metrics

    # One folder per run, each with its settings as HParams and every metric as scalars.
    assert sorted(runs) == sorted(expected)
    for run_id, (group, hparams, scalars, files) in runs.items():
        want = expected[run_id]
        assert group == run_id
        assert hparams == _expected_hparams(want["spec"])
        assert {hparams["architecture"], hparams["clip"]} == {
            str(want["spec"]["axes"]["architecture"]),
            str(want["spec"]["axes"]["clip"]),
        }
        series = {**_series(want["history"], "epoch"), **_series(want["steps"], "step")}
        assert set(scalars) == {k for k, v in series.items() if v}
        for tag, points in series.items():
            if points:
                steps, values = zip(*scalars[tag], strict=True)
                assert list(steps) == list(points)
                assert values == pytest.approx(list(points.values()), rel=1e-6)
        assert len(scalars["grad/global_norm"]) == 4  # 128 examples / batch 32, one epoch
        assert len([f for f in files if f.startswith("events.out.tfevents.")]) == 1

    # A second export replaces each run's folder: no run, event file or point is duplicated.
    assert main(["export", "tensorboard", str(exp_dir), "--out", str(out)]) == 0
    experiment_again, runs_again = _read_tensorboard(out)
    assert experiment_again.hparam_infos == experiment.hparam_infos
    assert len(list(out.glob("events.out.tfevents.*"))) == 1
    assert {k: v[:3] for k, v in runs_again.items()} == {k: v[:3] for k, v in runs.items()}
    assert all(len(v[3]) == 2 for v in runs_again.values())  # one events file and the marker
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_tensorboard_default_folder_and_no_tensorflow(finished):
    code = (
        "import sys; from keras_ablate.cli import main; "
        f"assert main(['export', 'tensorboard', {str(finished)!r}]) == 0; "
        "assert 'tensorflow' not in sys.modules, 'imported TF'"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert len([p for p in (finished / "tensorboard").iterdir() if p.is_dir()]) == 4


def test_a_run_gone_from_the_results_leaves_the_logs(finished, tmp_path):
    import shutil

    copy = tmp_path / "tiny"
    shutil.copytree(finished, copy, ignore=shutil.ignore_patterns("tensorboard", "mlruns"))
    out = tmp_path / "tb"
    assert main(["export", "tensorboard", str(copy), "--out", str(out)]) == 0
    gone = sorted((copy / "runs").iterdir())[0]
    shutil.rmtree(gone)
    assert main(["export", "tensorboard", str(copy), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(
        p.name for p in (copy / "runs").iterdir()
    )


def _search(uri: str, experiment: str = "tiny") -> pd.DataFrame:
    import mlflow

    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(experiment_names=[experiment], max_results=1000)


def test_mlflow_export_reads_back_every_run_param_and_metric(finished, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (tmp_path / "mlruns").as_uri()
    assert main(["export", "mlflow", str(finished), "--tracking-uri", uri]) == 0
    expected = _runs(finished)
    found = _search(uri)
    runs = found[found["tags.keras_ablate.role"] == "run"]
    (parent,) = found.loc[found["tags.keras_ablate.role"] == "experiment", "run_id"]
    assert sorted(runs["tags.keras_ablate.run_id"]) == sorted(expected)
    client = MlflowClient(uri)
    for _, row in runs.iterrows():
        want = expected[row["tags.keras_ablate.run_id"]]
        assert row["tags.mlflow.parentRunId"] == parent and row["status"] == "FINISHED"
        params = {c[len("params.") :]: v for c, v in row.items() if c.startswith("params.")}
        assert params == {k: str(v) for k, v in _expected_hparams(want["spec"]).items()}
        series = {**_series(want["history"], "epoch"), **_series(want["steps"], "step")}
        logged = {c[len("metrics.") :] for c in row.index if c.startswith("metrics.")}
        assert {k for k, v in series.items() if v} <= logged
        for name, points in series.items():
            history = client.get_metric_history(row["run_id"], name)
            got = {m.step: m.value for m in history}
            assert list(got) == list(points)
            assert list(got.values()) == pytest.approx(list(points.values()), rel=1e-6)
    # The report, once, on the experiment's parent run.
    artifacts = {f.path for f in client.list_artifacts(parent, "report")}
    assert artifacts == {"report/report.html", "report/report.md"}

    # A second export keeps every run; a rerun run (records changed) is replaced, not added.
    assert main(["export", "mlflow", str(finished), "--tracking-uri", uri]) == 0
    again = _search(uri)
    assert sorted(again["run_id"]) == sorted(found["run_id"])
    changed = finished.parent / "changed"
    import shutil

    shutil.copytree(finished, changed / "tiny")
    run_id = sorted(expected)[0]
    steps_file = changed / "tiny" / "runs" / run_id / "steps.parquet"
    steps = pd.read_parquet(steps_file)
    steps["grad/global_norm"] *= 2
    steps.to_parquet(steps_file, index=False)
    assert main(["export", "mlflow", str(changed / "tiny"), "--tracking-uri", uri]) == 0
    third = _search(uri)
    assert len(third) == len(found)
    row = third[third["tags.keras_ablate.run_id"] == run_id].iloc[0]
    assert row["run_id"] not in set(found["run_id"])  # a new MLflow run for the changed one
    doubled = {
        m.step: m.value for m in client.get_metric_history(row["run_id"], "grad/global_norm")
    }
    assert list(doubled.values()) == pytest.approx(steps["grad/global_norm"].tolist(), rel=1e-6)


def test_mlflow_missing_names_the_extra(finished, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    assert main(["export", "mlflow", str(finished)]) == 2
    err = capsys.readouterr().err
    assert "keras-ablate[mlflow]" in err and "not installed" in err


@pytest.mark.parametrize("tool", ["tensorboard", "mlflow"])
def test_export_of_a_file_or_a_missing_folder_says_what_to_give(tmp_path, capsys, tool):
    assert main(["export", tool, str(tmp_path / "nothing")]) == 2
    assert "export takes a results folder (results/<experiment>" in capsys.readouterr().err
    assert main(["export", tool, str(tmp_path)]) == 2  # a folder without runs/
    assert "no runs to export" in capsys.readouterr().err
    assert not (tmp_path / "tensorboard").exists() and not (tmp_path / "mlruns").exists()


def test_under_a_protocol_the_learning_rate_is_an_exported_dimension(finished, tmp_path):
    import shutil

    from keras_ablate.export.records import read_experiment

    exp_dir = tmp_path / "tiny"
    shutil.copytree(finished, exp_dir)
    info = json.loads((exp_dir / "experiment.json").read_text())
    assert "learning_rate" not in read_experiment(exp_dir).axes
    rates = sorted({r["spec"]["settings"]["learning_rate"] for r in _runs(exp_dir).values()})
    info["protocol"] = {"learning_rate": [*rates, 0.5], "select_on": "val/loss"}
    (exp_dir / "experiment.json").write_text(json.dumps(info))
    export = read_experiment(exp_dir)
    assert export.axes[-1] == "learning_rate" and export.levels["learning_rate"] == [*rates, 0.5]
    # Every run is exported (not only each arm's selected rate), with its own rate.
    assert sorted(r.hparams["learning_rate"] for r in export.runs) == sorted(
        r["spec"]["settings"]["learning_rate"] for r in _runs(exp_dir).values()
    )
