"""examples/user_model end to end through the CLI, small: a user's bidirectional LSTM with a
params axis on a user's dataset function -> run -> report with its per-layer and per-timestep
gradients, both directions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from keras_ablate.cli import main

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "user_model"


def _small(text: str) -> str:
    """The example at a test's budget: less data, narrower, one epoch, one seed."""
    replaced = text
    for old, new in [
        (
            "n_train: 512, n_val: 128, n_test: 256, seq_len: 16",
            "n_train: 64, n_val: 32, n_test: 32, seq_len: 8",
        ),
        ("units: 16, embed_dim: 16, epochs: 8", "units: 4, embed_dim: 4, epochs: 1"),
        ("seeds: 2", "seeds: 1"),
    ]:
        assert old in replaced, old
        replaced = replaced.replace(old, new)
    return replaced


def test_the_user_model_example_runs_and_reports_its_gradients(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "user_model"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("__pycache__", "results"))
    path = folder / "experiment.yaml"
    path.write_text(_small(path.read_text(encoding="utf-8")), encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # not the example's folder: its modules are found next to the file
    results = tmp_path / "results"
    assert main(["run", str(path), "--results-dir", str(results), "--workers", "1"]) == 0
    exp_dir = results / "user_model"
    runs = {}
    for run in (exp_dir / "runs").iterdir():
        spec = json.loads((run / "spec.json").read_text())
        assert json.loads((run / "summary.json").read_text())["status"] == "ok"
        runs[(spec["axes"]["architecture"], spec["axes"]["params.merge_mode"])] = run
    assert set(runs) == {("lstm", "concat"), ("bilstm", "concat"), ("bilstm", "sum")}
    for merge_mode in ("concat", "sum"):
        run = runs[("bilstm", merge_mode)]
        steps = pd.read_parquet(run / "steps.parquet")
        assert {"grad/norm/embedding", "grad/norm/bilstm", "grad/norm/dense_out"} <= set(steps)
        assert (steps["grad/norm/bilstm"] > 0).all()
        timesteps = pd.read_parquet(run / "timesteps.parquet")
        assert set(timesteps["layer"]) == {"bilstm/forward", "bilstm/backward"}
        assert set(timesteps["epoch"]) == {0, 1}
        assert timesteps.groupby("layer")["distance"].nunique().to_dict() == {
            "bilstm/forward": 8,
            "bilstm/backward": 8,
        }
        depth = pd.read_parquet(run / "depth.parquet")
        assert list(depth[depth["epoch"] == 0]["layer"]) == ["embedding", "bilstm", "dense_out"]

    assert main(["report", str(path), "--results-dir", str(results)]) == 0
    md = (exp_dir / "report.md").read_text(encoding="utf-8")
    for figure in ("timestep_gradients", "depth_gradients", "gradient_norm"):
        assert f"](figures/{figure}.png)" in md
        assert (exp_dir / "figures" / f"{figure}.png").is_file()

    from keras_ablate.analysis.tables import load
    from keras_ablate.report.instrument_plots import timestep_profiles

    figure = timestep_profiles(load(exp_dir))
    labels = {text.get_text() for text in figure.legends[0].get_texts()}
    assert {"forward", "backward", "params.merge_mode=sum"} <= labels, labels

    # An arm that did not learn within budget gets the flag at the end of its trained line: one
    # per arm (its runs over seeds are one line); none when no arm is flagged.
    from keras_ablate.analysis import budgets

    def marks(flag_all: bool) -> int:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(
                budgets, "run_flags", lambda tables, runs=None: np.full(len(tables.runs), flag_all)
            )
            figure = timestep_profiles(load(exp_dir))
        return sum(t.get_text() == budgets.FLAG for ax in figure.axes for t in ax.texts)

    tables = load(exp_dir)
    arms = len(tables.runs[tables.axes].drop_duplicates())
    assert arms >= 2 and (marks(True), marks(False)) == (arms, 0)
