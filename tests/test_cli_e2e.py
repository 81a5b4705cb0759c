"""End to end through the CLI: a tiny grid -> run folders -> report; resume; failed and diverged runs."""

from __future__ import annotations

import json
import shutil

import pytest

from keras_ablate import store
from keras_ablate.cli import main
from keras_ablate.config import load_experiment

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """Run the tiny grid once for the whole module (training is the slow part)."""
    from tests.conftest import TINY

    root = tmp_path_factory.mktemp("e2e")
    path = root / "tiny.yaml"
    path.write_text(TINY, encoding="utf-8")
    results = root / "results"
    assert main(["run", str(path), "--results-dir", str(results)]) == 0
    return path, results, results / "tiny"


def test_run_writes_one_complete_folder_per_run(finished):
    path, _, exp_dir = finished
    _, specs = load_experiment(path)
    folders = sorted(p.name for p in (exp_dir / "runs").iterdir())
    assert folders == sorted(s.run_id for s in specs)
    for spec in specs:
        run = exp_dir / "runs" / spec.run_id
        assert {"spec.json", "summary.json", "history.parquet", "steps.parquet"} <= {
            p.name for p in run.iterdir()
        }
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "ok"
        assert {"val/loss", "val/accuracy", "train/loss"} <= set(summary["final"])
        assert summary["environment"]["tensorflow"]
        assert json.loads((run / "spec.json").read_text())["settings"] == spec.settings


def test_report_writes_html_and_markdown(finished):
    path, results, exp_dir = finished
    assert main(["report", str(path), "--results-dir", str(results)]) == 0
    html = (exp_dir / "report.html").read_text()
    md = (exp_dir / "report.md").read_text()
    assert "<h1>tiny</h1>" in html and "data:image/png;base64," in html
    assert html.count("<tr>") >= 5  # header + 4 runs
    assert md.startswith("# tiny") and "](figures/" in md
    for line in md.splitlines():
        if line.startswith("!["):
            assert (exp_dir / line.split("](")[1].rstrip(")")).exists()
    # The folder form works too.
    assert main(["report", str(exp_dir)]) == 0


def test_second_run_executes_nothing_and_deleting_a_folder_reruns_exactly_it(finished, capsys):
    path, results, exp_dir = finished
    _, specs = load_experiment(path)
    mtimes = {
        s.run_id: (exp_dir / "runs" / s.run_id / "summary.json").stat().st_mtime_ns for s in specs
    }
    capsys.readouterr()
    assert main(["run", str(path), "--results-dir", str(results)]) == 0
    assert "nothing to run" in capsys.readouterr().err
    victim = specs[1].run_id
    shutil.rmtree(exp_dir / "runs" / victim)
    assert main(["run", str(path), "--results-dir", str(results)]) == 0
    err = capsys.readouterr().err
    assert victim in err and "3 run(s) already complete" in err
    for s in specs:
        now = (exp_dir / "runs" / s.run_id / "summary.json").stat().st_mtime_ns
        assert (now != mtimes[s.run_id]) == (s.run_id == victim)


def test_failed_run_is_recorded_does_not_stop_the_grid_and_is_retried(
    write_yaml, tmp_path, monkeypatch
):
    path = write_yaml(
        """
        name: flaky
        dataset: {name: ngram, options: {n_train: 64, n_val: 16, seq_len: 8, vocab_size: 12}}
        base: {epochs: 1, units: 4, embed_dim: 4, filters: 4, jit_compile: false}
        grid: {architecture: [mlp, rnn]}
        """
    )
    results = tmp_path / "results"
    import keras_ablate.models as models

    real = models.build_model

    def broken(settings, dataset, base_dir=None):
        if settings["architecture"] == "rnn":
            raise RuntimeError("boom in the builder")
        return real(settings, dataset, base_dir)

    monkeypatch.setattr(models, "build_model", broken)
    monkeypatch.setattr("keras_ablate.training.loop.build_model", broken)
    assert main(["run", str(path), "--results-dir", str(results)]) == 1
    statuses = {
        s["run_id"]: (spec["settings"]["architecture"], s["status"])
        for _, spec, s in store.iter_runs(results / "flaky")
    }
    assert sorted(statuses.values()) == [("mlp", "ok"), ("rnn", "failed")]
    failed = next(s for _, _, s in store.iter_runs(results / "flaky") if s["status"] == "failed")
    assert "boom in the builder" in failed["error"] and "Traceback" in failed["traceback"]
    # Next invocation retries only the failed run; with the builder fixed it succeeds.
    monkeypatch.setattr(models, "build_model", real)
    monkeypatch.setattr("keras_ablate.training.loop.build_model", real)
    assert main(["run", str(path), "--results-dir", str(results)]) == 0
    assert sorted(s["status"] for _, _, s in store.iter_runs(results / "flaky")) == ["ok", "ok"]


def test_diverged_run_is_a_result_not_a_failure(write_yaml, tmp_path):
    path = write_yaml(
        """
        name: boom
        dataset: {name: ngram, options: {n_train: 64, n_val: 16, seq_len: 8, vocab_size: 12}}
        base: {architecture: rnn, activation: relu, optimizer: sgd, epochs: 2, units: 4, embed_dim: 4,
               batch_size: 16, jit_compile: false}
        grid: {learning_rate: [1.0e12, 0.01]}
        """
    )
    results = tmp_path / "results"
    assert main(["run", str(path), "--results-dir", str(results)]) == 0
    statuses = sorted(s["status"] for _, _, s in store.iter_runs(results / "boom"))
    assert statuses == ["diverged", "ok"]
    assert main(["report", str(results / "boom")]) == 0
    assert "diverged" in (results / "boom" / "report.html").read_text()


def test_filter_and_max_runs_limit_what_runs(tiny_yaml, tmp_path):
    results = tmp_path / "results"
    assert (
        main(
            [
                "run",
                str(tiny_yaml),
                "--results-dir",
                str(results),
                "--filter",
                "architecture=cnn",
                "--max-runs",
                "1",
            ]
        )
        == 0
    )
    runs = list(store.iter_runs(results / "tiny"))
    assert len(runs) == 1 and runs[0][1]["settings"]["architecture"] == "cnn"


def test_second_runner_on_the_same_experiment_stops_with_a_clear_message(
    tiny_yaml, tmp_path, capsys
):
    results = tmp_path / "results"
    exp_dir = results / "tiny"
    with store.experiment_lock(exp_dir):
        assert main(["run", str(tiny_yaml), "--results-dir", str(results)]) == 2
    assert "another keras-ablate runner is working on this experiment" in capsys.readouterr().err
