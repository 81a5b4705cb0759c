"""The report of FILE covers FILE's plan: other runs in the folder are listed apart, never averaged in."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from keras_ablate import store
from keras_ablate.analysis import simulate
from keras_ablate.cli import main
from keras_ablate.commands import _write_experiment_info
from keras_ablate.config import load_experiment, parse_experiment
from keras_ablate.report.render import build_report

PLAN = """
name: plan
dataset: {name: ngram, options: {seq_len: 12}}
base: {epochs: 3}
grid: {architecture: [rnn, lstm, gru]}
seeds: [0, 1]
"""
# A run folder from another experiment, with a factor this one does not have.
FOREIGN = PLAN.replace("name: plan", "name: other").replace(
    "[rnn, lstm, gru]}", "[rnn], activation: [relu]}"
)


def _write_records(exp_dir, specs, seed=0):
    rng = np.random.default_rng(seed)
    for spec in specs:
        summary, tables = simulate._records(
            spec, rng, 3, 4, simulate.LAYERS, simulate.default_effect, lambda axes: 0.0, 0.02
        )
        store.write_run(exp_dir, spec, summary, tables)


def test_report_of_a_file_follows_its_current_plan(write_yaml, tmp_path, capsys):
    path = write_yaml(PLAN)
    results = tmp_path / "results"
    exp, specs = load_experiment(path)
    exp_dir = exp.folder(results)
    _write_records(exp_dir, specs)
    _write_experiment_info(exp, specs, exp_dir, str(path))  # as `run` left it: 6 runs
    foreign = parse_experiment(FOREIGN)[1]
    _write_records(exp_dir, foreign[:1], seed=1)

    # The file now plans 4 of the 6 runs; status and report agree on that.
    path.write_text(PLAN.replace(", gru]", "]"), encoding="utf-8")
    _, planned = load_experiment(path)
    capsys.readouterr()
    assert main(["status", str(path), "--results-dir", str(results), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["runs"] == 4
    assert main(["report", str(path), "--results-dir", str(results)]) == 0
    assert "3 run(s) in" in capsys.readouterr().err
    html = (exp_dir / "report.html").read_text()
    assert '"status-ok">4 ok' in html and "4 planned" in html
    runs = pd.read_parquet(exp_dir / "tables" / "runs.parquet")
    assert sorted(runs["run_id"]) == sorted(s.run_id for s in planned)
    assert list(runs["architecture"].cat.categories) == ["rnn", "lstm"]
    assert "<h3>architecture " in html and "<h3>activation " not in html
    assert "Other runs in this folder" in html
    left_out = {s.run_id for s in specs if s.settings["architecture"] == "gru"} | {
        foreign[0].run_id
    }
    for run_id in left_out:
        assert f"<code>{run_id}</code>" in html

    # The folder form follows the plan of the last `run` (experiment.json): 6 runs.
    assert main(["report", str(exp_dir)]) == 0
    html = (exp_dir / "report.html").read_text()
    assert '"status-ok">6 ok' in html and "6 planned" in html
    assert f"<code>{foreign[0].run_id}</code>" in html and "<h3>activation " not in html


def test_report_of_one_configuration_without_axes_builds(tmp_path):
    simulate.write_experiment(tmp_path / "single", {}, seeds=2, epochs=2, steps_per_epoch=2)
    paths = build_report(tmp_path / "single")
    assert '"status-ok">2 ok' in paths["html"].read_text()
