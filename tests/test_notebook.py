"""The notebook API: docs/NOTEBOOK.md's example runs as written; importing the package stays light."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import keras_ablate
from keras_ablate.errors import ConfigError, UserError

DOC = Path(__file__).resolve().parents[1] / "docs" / "NOTEBOOK.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


@pytest.mark.slow
def test_the_documented_example_runs_as_written(tmp_path, monkeypatch):
    (yaml_text,) = blocks("yaml")
    (code,) = blocks("python")
    (tmp_path / "tiny.yaml").write_text(yaml_text, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, str(DOC), "exec"), scope)
    exp_dir = tmp_path / "results" / "notebook_demo"
    # What the example did, checked from the files it left (not from its own variables only).
    runs = sorted(p.name for p in (exp_dir / "runs").iterdir())
    assert sorted(scope["plan"]["run_id"]) == runs and len(runs) == 2
    assert (exp_dir / "report.html").stat().st_size > 0 and (tmp_path / "convergence.png").exists()
    tables = scope["tables"]
    assert sorted(tables.runs["run_id"]) == runs
    assert list(tables.levels["clip"]) == ["none", "norm:1.0"]
    fig = scope["fig"]
    assert type(fig).__name__ == "Figure" and fig.axes
    # The notebook's figure is the report's: the same function drew figures/convergence.png.
    assert (exp_dir / "figures" / "convergence.png").exists()
    assert "convergence" in scope["keras_ablate"].figures.names()
    # The same folder is the command line's: `status` counts the notebook's runs as done.
    assert scope["exp"].plan()["status"].tolist() == ["ok", "ok"]


def test_importing_the_package_and_planning_import_neither_pandas_nor_tensorflow(tmp_path):
    (yaml_text,) = blocks("yaml")
    (tmp_path / "tiny.yaml").write_text(yaml_text, encoding="utf-8")
    code = (
        "import sys, keras_ablate\n"
        "assert 'pandas' not in sys.modules and 'tensorflow' not in sys.modules, 'heavy import'\n"
        "exp = keras_ablate.Experiment.from_yaml('tiny.yaml', results_dir='results')\n"
        "print(len(exp.plan()), exp.status()['missing'])\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'imported TF'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(keras_ablate.__file__).parents[1])}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["2", "2"]


def test_a_bad_file_and_a_bad_selection_say_what_is_wrong(tmp_path):
    (yaml_text,) = blocks("yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml_text.replace('clip: [none, "norm:1.0"]', "clip: [none, nrom:1.0]"))
    with pytest.raises(ConfigError, match=r"bad\.yaml:4: grid\.clip\[1\]"):
        keras_ablate.Experiment.from_yaml(bad, results_dir=tmp_path / "results")
    good = tmp_path / "tiny.yaml"
    good.write_text(yaml_text)
    exp = keras_ablate.Experiment.from_yaml(good, results_dir=tmp_path / "results")
    assert len(exp.plan({"clip": "none"})) == 1
    with pytest.raises(UserError, match="clip"):
        exp.plan({"clip": "value:9"})
    with pytest.raises(UserError, match="unknown figure 'convergance'.*did you mean 'convergence'"):
        keras_ablate.figures.draw("convergance", None)
    with pytest.raises(AttributeError, match="no figure 'nope'"):
        keras_ablate.figures.nope  # noqa: B018


def test_each_figure_name_draws_the_reports_figure_of_that_name(tmp_path):
    from keras_ablate.analysis import simulate
    from keras_ablate.analysis.tables import load
    from keras_ablate.report import heatmaps, plots

    exp = tmp_path / "sim"
    simulate.write_experiment(
        exp, {"architecture": ["rnn", "lstm"], "activation": ["tanh", "relu"]}, seeds=1, epochs=2
    )
    tables = load(exp)

    def drawn(figure):
        return [
            (
                a.get_title(),
                a.get_xlabel(),
                a.get_ylabel(),
                [list(line.get_ydata()) for line in a.lines],
            )
            for a in figure.axes
        ]

    assert drawn(keras_ablate.figures.convergence(tables)) == drawn(plots.convergence(tables))
    assert drawn(keras_ablate.figures.gradient_norm(tables)) == drawn(plots.gradient_norms(tables))
    assert drawn(keras_ablate.figures.heatmap_score(tables)) == drawn(
        heatmaps.heatmap_score(tables)
    )
    assert keras_ablate.figures.names()[:2] == ["convergence", "gradient_norm"]
    assert "stall" in keras_ablate.figures.caption("convergence")
