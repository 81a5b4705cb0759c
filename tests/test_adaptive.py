"""Adaptive seeds (--until-resolved): the error-control rule, the loop on simulated records, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats as sps

from keras_ablate import store
from keras_ablate.adaptive import Rule, run_until_resolved, seed_sequence
from keras_ablate.analysis import sequential, simulate, stats
from keras_ablate.cli import main
from keras_ablate.config.expand import expand_seeds, parse_experiment

YAML = """
name: adaptive_demo
dataset: {name: ngram, options: {n_train: 64, n_val: 32, n_test: 32, seq_len: 8, vocab_size: 10}}
base: {architecture: lstm, units: 4, embed_dim: 4, epochs: 1, batch_size: 32}
grid: {activation: [tanh, relu, elu]}
seeds: {min: 3, max: 5, until: resolved}
"""


def _loop(tmp_path, effect, noise=0.02, yaml=YAML):
    exp, first = parse_experiment(yaml, "exp.yaml")
    rule = Rule(exp.adaptive.min, exp.adaptive.max, exp.adaptive.step)
    seeds = seed_sequence(exp.seed_list, rule.max)
    specs = expand_seeds(exp, seeds)
    exp_dir = tmp_path / "r"
    record = store.experiment_record(exp, first, "exp.yaml")
    rounds = []

    def run_round(round_specs):
        rounds.append(len(round_specs))
        simulate.write_runs(exp_dir, round_specs, effect, noise, epochs=2, steps_per_epoch=2)

    state = run_until_resolved(specs, seeds, rule, exp_dir, record, run_round, say=lambda t: None)
    return state, rounds, exp_dir


def test_a_large_effect_stops_at_the_first_look(tmp_path):
    state, rounds, exp_dir = _loop(
        tmp_path, lambda axes: {"tanh": 0.6, "relu": 0.8, "elu": 0.9}[axes["activation"]], 0.01
    )
    assert state["stopped"] == "all resolved"
    assert rounds == [9]  # 3 arms x 3 seeds, one look
    assert len(state["looks"]) == 1 and set(state["seeds_per_arm"].values()) == {3}
    assert store.read_adaptive(exp_dir)["stopped"] == "all resolved"
    assert store.read_experiment(exp_dir)["adaptive"]["alpha_per_look"] == pytest.approx(0.05 / 3)


def test_a_null_effect_runs_every_arm_to_the_cap_and_a_restart_retrains_nothing(tmp_path):
    yaml = YAML.replace("relu, elu", "relu")
    state, rounds, exp_dir = _loop(tmp_path, lambda axes: 0.7, yaml=yaml)
    assert state["stopped"] == "cap reached"
    # min 3, max 5, +1 per round: 3 looks, both arms grow by one seed per round.
    assert rounds == [6, 8, 10]
    assert set(state["seeds_per_arm"].values()) == {5}
    assert len(store.read_experiment(exp_dir)["run_ids"]) == 10
    # Started again (after a kill, say): the same looks and decisions, no run written again.
    written = {p.name: p.stat().st_mtime_ns for p in (exp_dir / store.RUNS).iterdir()}
    again, _, _ = _loop(tmp_path, lambda axes: 0.7, yaml=yaml)
    assert {p.name: p.stat().st_mtime_ns for p in (exp_dir / store.RUNS).iterdir()} == written
    assert again["looks"] == state["looks"] and again["stopped"] == state["stopped"]


def test_only_the_arms_of_unresolved_comparisons_get_seeds(tmp_path):
    # relu differs clearly from tanh; elu does not: tanh and elu grow, relu stays at 3 seeds.
    state, rounds, _ = _loop(
        tmp_path, lambda axes: {"tanh": 0.7, "relu": 0.9, "elu": 0.7}[axes["activation"]], 0.01
    )
    counts = {json.loads(arm)["activation"]: n for arm, n in state["seeds_per_arm"].items()}
    assert counts == {"tanh": 5, "relu": 3, "elu": 5}
    assert rounds == [9, 11, 13]
    last = {c["comparison"]: c for c in state["looks"][-1]["comparisons"]}
    assert last["activation=relu"]["resolved_at_look"] == 1
    assert not last["activation=elu"]["resolved"]


def test_repeated_looks_keep_false_resolutions_below_alpha():
    """2000 simulated null experiments (3 levels vs a reference: 2 comparisons; 3 to 10 seeds, 8
    looks): the share with any comparison declared resolved stays below alpha + 2 points. The
    same looks, each at 0.05, resolve far more often (what the rule prevents)."""
    rng = np.random.default_rng(7)
    looks = stats.looks(3, 10, 1)
    runs = rng.normal(0.7, 0.05, size=(2000, 3, 10))  # experiment, level, seed
    diffs = runs[:, 1:, :] - runs[:, :1, :]  # paired differences from the reference level

    # p-values of the paired t test at every look, by scipy directly (not the code under test).
    p = np.stack([sps.ttest_1samp(diffs[..., :n], 0.0, axis=-1).pvalue for n in range(3, 11)])

    def false_rate(alpha_look):
        hits = 0
        for e in range(len(diffs)):
            resolved = np.zeros(2, bool)
            for k in range(looks):
                resolved = sequential.decide(p[k, e], alpha_look, resolved)
                if resolved.all():
                    break
            hits += resolved.any()
        return hits / len(diffs)

    assert looks == 8
    assert false_rate(stats.alpha_per_look(0.05, looks)) <= 0.05 + 0.02
    assert false_rate(0.05) > 0.1


def test_max_seeds_alone_or_below_the_start_is_a_clear_error(tmp_path, capsys):
    plain = tmp_path / "plain.yaml"
    plain.write_text(YAML.replace("seeds: {min: 3, max: 5, until: resolved}", "seeds: 3"))
    args = ["run", str(plain), "--results-dir", str(tmp_path / "res")]
    assert main([*args, "--max-seeds", "5"]) == 2
    assert "--max-seeds is for adaptive seeds" in capsys.readouterr().err
    assert main([*args, "--until-resolved", "--max-seeds", "2"]) == 2
    assert "below the 3 seeds" in capsys.readouterr().err
    assert main([*args, "--until-resolved", "--max-runs", "2"]) == 2
    assert "--max-runs cannot be combined" in capsys.readouterr().err
    assert not (tmp_path / "res").exists()


def test_a_bad_seeds_section_names_the_key(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(YAML.replace("max: 5", "maxx: 5"))
    assert main(["plan", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml:6: seeds.maxx: unknown key 'maxx' (did you mean 'max'?)" in err
    bad.write_text(YAML.replace("max: 5", "max: 2"))
    assert main(["plan", str(bad)]) == 2
    assert "seeds.max: max (2) must be at least min (3)" in capsys.readouterr().err


def test_plan_shows_the_first_look_and_the_most_runs(tmp_path, capsys):
    path = tmp_path / "a.yaml"
    path.write_text(YAML)
    assert main(["plan", str(path)]) == 0
    out = capsys.readouterr().out
    assert "9 runs at the first look, at most 15 runs (every arm at 5 seeds)" in out
    assert "0.05 / 3" in out


@pytest.mark.slow
def test_until_resolved_trains_reports_and_says_why_it_stopped(tmp_path, capsys):
    """Real training through the CLI: 2 arms of a 1-epoch LSTM, seeds 2 to 3."""
    path = tmp_path / "tiny.yaml"
    path.write_text(YAML.replace("relu, elu", "relu").replace("{min: 3, max: 5", "{min: 2, max: 3"))
    results = tmp_path / "res"
    args = ["--results-dir", str(results)]
    assert main(["run", str(path), *args, "--workers", "1"]) == 0
    err = capsys.readouterr().err
    assert "adaptive seeds: seeds 2 to 3 per arm" in err and "look 1/2" in err
    state = store.read_adaptive(results / "adaptive_demo")
    assert state["stopped"] in ("all resolved", "cap reached")
    n_runs = len(state["run_ids"])
    assert n_runs == (4 if state["stopped"] == "all resolved" else 6)
    assert len(list((results / "adaptive_demo" / store.RUNS).iterdir())) == n_runs
    assert main(["status", str(path), *args]) == 0
    out = capsys.readouterr().out
    assert f"adaptive seeds: {state['stopped']} after" in out
    assert main(["report", str(path), *args]) == 0
    report = (results / "adaptive_demo" / store.REPORT_MD).read_text()
    assert f"Seeds added until resolved: {state['stopped']} after" in report
    assert "below 0.025 (0.05 split over the adaptive seeds' looks)" in report
    assert "not in this plan" not in capsys.readouterr().err
