"""A diverged run never ranks best: nothing measured on its diverged weights is kept, and it scores
the worst finished value in every table, effect, claim and tuning figure (keras_ablate.scoring)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from keras_ablate import scoring, store
from keras_ablate.analysis import effects, load
from keras_ablate.claims.evaluation import evaluate
from keras_ablate.claims.rules import parse_rule
from keras_ablate.claims.running import claim_table
from keras_ablate.config import RunSpec
from keras_ablate.report import sections
from keras_ablate.tuning.report import objective_figure

# ---------------------------------------------------------------------------------------------
# Which epochs a diverged run keeps.


@pytest.mark.parametrize("steps_per_epoch", [1, 2, 3, 8])
@pytest.mark.parametrize("diverged_step", [0, 1, 2, 3, 4, 5, 7, 8, 9, 16])
def test_kept_epochs_are_those_measured_before_the_diverged_step(diverged_step, steps_per_epoch):
    # Enumerate: epoch e's training averages cover steps (e-1)n .. en-1; its end-of-epoch values
    # are measured on the weights step en starts from. Both must come before step k.
    k, n = diverged_step, steps_per_epoch
    epochs = range(0, 30)
    train = [e for e in epochs if e >= 1 and all(s < k for s in range((e - 1) * n, e * n))]
    end = [e for e in epochs if e * n < k]
    last_train, last_end = scoring.kept_epochs(k, n)
    assert [e for e in epochs if 1 <= e <= last_train] == train
    assert [e for e in epochs if e <= last_end] == end


def test_a_run_that_did_not_diverge_keeps_everything():
    assert scoring.kept_epochs(None, 4) == (math.inf, math.inf)
    history = pd.DataFrame({"epoch": [1, 2], "val/accuracy": [0.5, 0.6]})
    assert scoring.blank_history(history, None, 4) is history


def test_blank_history_drops_what_was_measured_on_diverged_weights():
    # 4 steps per epoch, first non-finite step 8 = the first step of epoch 3. Epoch 2's training
    # steps (4..7) all came before it, but its validation ran on the weights step 8 started from.
    history = pd.DataFrame(
        {
            "epoch": [1, 2, 3],
            "train/loss": [0.7, 0.6, np.nan],
            "train/accuracy": [0.5, 0.55, 0.48],
            "val/loss": [0.69, 0.68, np.nan],
            "val/accuracy": [0.52, 0.58, 0.61],
        }
    )
    out = scoring.blank_history(history, 8, 4)
    expected = pd.DataFrame(
        {
            "epoch": [1, 2, 3],
            "train/loss": [0.7, 0.6, np.nan],
            "train/accuracy": [0.5, 0.55, np.nan],
            "val/loss": [0.69, np.nan, np.nan],
            "val/accuracy": [0.52, np.nan, np.nan],
        }
    )
    pd.testing.assert_frame_equal(out, expected)
    assert scoring.final_values(out) == {
        "train/loss": None,
        "train/accuracy": None,
        "val/loss": None,
        "val/accuracy": None,
    }
    assert scoring.best_values(out) == {
        "train/loss": 0.6,
        "train/accuracy": 0.55,
        "val/loss": 0.69,
        "val/accuracy": 0.52,
    }


def test_blank_probe_table_keeps_keys_and_measurements_before_divergence():
    # Diverged at step 3 with 2 steps per epoch: the probe at init (epoch 0) and after epoch 1
    # (weights step 2 started from) are kept; after epoch 2 (weights of step 4) is not.
    units = pd.DataFrame(
        {
            "epoch": [0, 1, 2, 2],
            "layer": ["rnn_0"] * 4,
            "quantity": ["saturated", "saturated", "saturated", "dead"],
            "value": [0.1, 0.2, 0.0, 0.0],
        }
    )
    out = scoring.blank_probe_table(units, 3, 2)
    assert out["value"].tolist()[:2] == [0.1, 0.2]
    assert out["value"].iloc[2:].isna().all()
    pd.testing.assert_frame_equal(out.drop(columns="value"), units.drop(columns="value"))


def test_direction_of_metric_names():
    assert scoring.higher_is_better("val/accuracy")
    assert scoring.higher_is_better("min/grad/cosine")
    assert scoring.higher_is_better("t0_ratio/rnn_0/final")
    assert not scoring.higher_is_better("val/loss")
    # An accuracy gap is overfitting: smaller is better.
    assert not scoring.higher_is_better("gap/accuracy")


# ---------------------------------------------------------------------------------------------
# A diverged run next to several finite ones, in hand-written run folders.

STEPS_PER_EPOCH = 2
# (architecture, learning_rate, seed) -> final val/accuracy of the runs that finished ok.
OK_FINALS = {
    ("rnn", 0.01, 0): 0.60,
    ("rnn", 0.01, 1): 0.64,
    ("rnn", 1.0, 0): 0.70,
    ("rnn", 1.0, 1): 0.72,
    ("cnn", 0.01, 0): 0.80,
    ("cnn", 0.01, 1): 0.84,
    ("cnn", 1.0, 1): 0.90,
}
DIVERGED = ("cnn", 1.0, 0)
WORST_OK = 0.60  # the smallest final val/accuracy above


def _write(exp_dir, key, status, history, diverged_step=None, units=None):
    architecture, learning_rate, seed = key
    run_id = f"{architecture}_{learning_rate}_{seed}"
    axes = {"architecture": architecture, "learning_rate": learning_rate}
    spec = RunSpec("hand", run_id, dict(axes), {"name": "ngram", "options": {}}, seed, axes)
    steps = pd.DataFrame(
        {
            "step": np.arange(2 * STEPS_PER_EPOCH),
            "epoch": np.arange(2 * STEPS_PER_EPOCH) // STEPS_PER_EPOCH,
            "loss": [0.7, 0.69, 0.68, 0.67],
            "grad/global_norm": [1.0, 1.0, 1.0, 1.0],
        }
    )
    if diverged_step is not None:
        steps = steps.iloc[: diverged_step + 1].copy()
        steps.loc[steps.index[-1], ["loss", "grad/global_norm"]] = np.nan
    # The summary as an earlier version wrote it: the last epoch's values, whatever they were.
    last = history.iloc[-1]
    summary = {
        "run_id": run_id,
        "status": status,
        "diverged_step": diverged_step,
        "metric": "accuracy",
        "steps_per_epoch": STEPS_PER_EPOCH,
        "epochs_done": len(history),
        "final": {k: float(v) for k, v in last.items() if k != "epoch"},
        "best": {"val/accuracy": float(history["val/accuracy"].max())},
        "wall_time_s": 1.0,
    }
    tables = {"history": history, "steps": steps}
    if units is not None:
        tables["units"] = units
    store.write_run(exp_dir, spec, summary, tables)


@pytest.fixture
def folder(tmp_path):
    exp = tmp_path / "hand"
    for key, final in OK_FINALS.items():
        history = pd.DataFrame(
            {
                "epoch": [1, 2],
                "train/loss": [0.7, 0.6],
                "train/accuracy": [0.55, final + 0.05],
                "val/accuracy": [0.55, final],
            }
        )
        _write(exp, key, "ok", history)
    # Diverged at step 3, inside epoch 2: Keras still evaluated epoch 2 on the NaN weights,
    # which all predict one class, and recorded that class's share as a "finite" accuracy.
    history = pd.DataFrame(
        {
            "epoch": [1, 2],
            "train/loss": [0.65, np.nan],
            "train/accuracy": [0.6, 0.5],
            "val/accuracy": [0.62, 0.95],
        }
    )
    units = pd.DataFrame(
        {
            "epoch": [0, 1, 2],
            "layer": ["rnn_0"] * 3,
            "quantity": ["saturated"] * 3,
            "value": [0.1, 0.3, 0.0],
        }
    )
    _write(exp, DIVERGED, "diverged", history, diverged_step=3, units=units)
    store.write_json_atomic(
        exp / "experiment.json",
        {"name": "hand", "axes": ["architecture", "learning_rate"], "analysis": {}},
    )
    return exp


def test_load_keeps_nothing_measured_on_the_diverged_weights(folder):
    tables = load(folder)
    run = tables.runs.set_index("run_id").loc["cnn_1.0_0"]
    assert math.isnan(run["final/val/accuracy"]) and math.isnan(run["final/train/accuracy"])
    # Its best epoch is the one before it diverged.
    assert run["best/val/accuracy"] == pytest.approx(0.62)
    h = tables.history
    mine = h[h["run_id"].astype(str) == "cnn_1.0_0"].set_index(["epoch", "metric"])["value"]
    assert mine[(1, "val/accuracy")] == pytest.approx(0.62)
    assert mine[(2, "val/accuracy")] != mine[(2, "val/accuracy")]  # NaN
    assert mine[(2, "train/accuracy")] != mine[(2, "train/accuracy")]
    # The probe instruments' per-run metrics are in load(dir).runs too (analysis.metrics).
    assert math.isnan(run["saturated/final"])


def test_diverged_run_scores_the_worst_finished_value_not_its_recorded_one(folder):
    runs = load(folder).runs
    score = dict(zip(runs["run_id"], runs["score"], strict=True))
    assert score["cnn_1.0_0"] == pytest.approx(WORST_OK)
    for (arch, rate, seed), final in OK_FINALS.items():
        assert score[f"{arch}_{rate}_{seed}"] == pytest.approx(final)


def test_best_configuration_and_effects_use_the_worst_value(folder):
    tables = load(folder)
    main = effects.main_effects(tables)
    summary = sections.summary(tables, main, effects.by_configuration(tables))
    # Means per configuration with the diverged seed at 0.60: cnn/0.01 0.82, cnn/1.0 0.75.
    assert summary["best"][0]["config"] == "architecture=cnn, learning_rate=0.01"
    assert summary["best"][0]["value"].startswith("0.82")
    assert summary["best"][1]["config"] == "architecture=cnn, learning_rate=1.0"
    assert summary["best"][1]["value"].startswith("0.75")
    # Paired over (architecture, seed): 1.0 minus 0.01.
    with_worst = {**OK_FINALS, DIVERGED: WORST_OK}
    pairs = [
        with_worst[(arch, 1.0, seed)] - with_worst[(arch, 0.01, seed)]
        for arch in ("rnn", "cnn")
        for seed in (0, 1)
    ]
    row = main[(main["axis"] == "learning_rate") & (main["level"] == 1.0)].iloc[0]
    assert row["diff_method"] == "paired"
    assert row["diff"] == pytest.approx(np.mean(pairs))
    assert row["mean"] == pytest.approx(np.mean([0.70, 0.72, WORST_OK, 0.90]))


def test_claims_give_a_diverged_run_the_worst_value_of_each_metric(folder):
    table = claim_table(folder)
    finished = table.set_index("run_id")

    def group_a(metric):
        rule = parse_rule(
            {
                "compare": {
                    "metric": metric,
                    "a": {"learning_rate": 1.0, "architecture": "cnn"},
                    "b": {"learning_rate": 0.01, "architecture": "cnn"},
                    "min_seeds": 2,
                }
            }
        )
        return evaluate(rule, table).groups[0]

    # final accuracy: its recorded 0.95 is gone; the worst (smallest) finished value stands in.
    group = group_a("final/val/accuracy")
    assert sorted(group.values) == pytest.approx(sorted([WORST_OK, 0.90]))
    # Accuracy gap = overfitting, lower is better: the worst is the largest gap (0.05 for all here
    # but the diverged run, whose last epoch holds no values).
    assert math.isnan(finished.loc["cnn_1.0_0", "gap/accuracy"])
    gaps = finished["gap/accuracy"].dropna()
    group = group_a("gap/accuracy")
    assert max(group.values) == pytest.approx(gaps.max())
    # Mean training loss over epochs: never a mean over the epochs before it diverged.
    assert math.isnan(finished.loc["cnn_1.0_0", "mean/train/loss"])
    group = group_a("mean/train/loss")
    assert max(group.values) == pytest.approx(finished["mean/train/loss"].max())
    # Measured before it diverged: used as it is.
    assert finished.loc["cnn_1.0_0", "epoch1/val/accuracy"] == pytest.approx(0.62)


def test_tuning_figure_draws_diverged_trials_at_the_worst_score():
    trials = pd.DataFrame(
        {
            "trial_id": ["0", "1", "2"],
            "status": ["ok", "ok", "diverged"],
            "objective": "val_loss",
            "direction": "min",
            "score": [0.5, 0.3, np.nan],
        }
    )
    fig = objective_figure(trials, "val_loss", "arm")
    crosses = [line for line in fig.axes[0].lines if line.get_label() == "diverged / failed"]
    assert crosses[0].get_ydata().tolist() == [0.5]


# ---------------------------------------------------------------------------------------------
# End to end: the reproduction, tiny.

REPRODUCTION = """
name: repro
dataset: {name: ngram, options: {n_train: 256, n_val: 64, seq_len: 12, vocab_size: 20, seed: 11}}
base: {optimizer: sgd, activation: relu, init: identity, epochs: 2, units: 8, embed_dim: 8,
       filters: 8, batch_size: 32, jit_compile: false}
grid:
  architecture: [rnn, cnn]
  learning_rate: [0.01, 1.0e6]
seeds: [0]
"""


@pytest.mark.slow
def test_the_reproduction_never_ranks_a_diverged_run_best(write_yaml, tmp_path):
    # Before the fix the NaN-weight runs scored 0.531 (the share of the class NaN outputs
    # predict), above both sane runs (0.500, 0.469): the two diverged configurations ranked
    # first and lr 1e6 "beat" 0.01.
    from keras_ablate.cli import main

    path = write_yaml(REPRODUCTION)
    results = tmp_path / "results"
    assert main(["run", str(path), "--results-dir", str(results)]) == 0
    exp = results / "repro"
    statuses = {}
    for run_path, spec, summary in store.iter_runs(exp):
        key = (spec["settings"]["architecture"], spec["settings"]["learning_rate"])
        statuses[key] = summary["status"]
        if summary["status"] == "diverged":
            assert summary["final"]["val/accuracy"] is None
            history = pd.read_parquet(run_path / "history.parquet")
            k, n = summary["diverged_step"], summary["steps_per_epoch"]
            # The epoch it diverged in holds nothing (validation ran on its NaN weights).
            assert (
                history.loc[history["epoch"] == k // n + 1].drop(columns="epoch").isna().all(None)
            )
            # So does the probe taken after that epoch (on the NaN weights).
            units = pd.read_parquet(run_path / "units.parquet")
            assert units.loc[units["epoch"] == k // n + 1, "value"].isna().all()
    assert statuses[("cnn", 1e6)] == "diverged" and statuses[("cnn", 0.01)] == "ok"
    tables = load(exp)
    runs = tables.runs
    ok = runs[runs["status"] == "ok"]
    # The comparison metric is the held-out test accuracy (synthetic tasks have a test split).
    metric = tables.info["derived"]["metric"]
    assert metric == "test/accuracy"
    worst = ok[f"final/{metric}"].min()
    assert (runs.loc[runs["status"] == "diverged", "score"] == worst).all()
    main_effects = effects.main_effects(tables)
    summary = sections.summary(tables, main_effects, effects.by_configuration(tables))
    assert summary["best"][0]["config"].endswith("learning_rate=0.01")
    rate = main_effects[main_effects["axis"] == "learning_rate"].set_index("level")
    assert rate.loc[1e6, "diff"] <= 0


def test_a_diverged_configuration_ranks_below_a_finished_one_with_the_same_score(tmp_path):
    exp = tmp_path / "tie"
    history = pd.DataFrame(
        {"epoch": [1, 2], "train/loss": [0.7, np.nan], "val/accuracy": [0.6, 0.7]}
    )
    _write(exp, ("cnn", 1.0, 0), "diverged", history, diverged_step=3)
    _write(exp, ("cnn", 0.01, 0), "ok", history.assign(**{"train/loss": [0.7, 0.6]}))
    # Plan order puts the diverged configuration first; its score ties with the other's (0.7).
    store.write_json_atomic(
        exp / "experiment.json",
        {"name": "tie", "axes": ["learning_rate"], "run_ids": ["cnn_1.0_0", "cnn_0.01_0"]},
    )
    tables = load(exp)
    summary = sections.summary(
        tables, effects.main_effects(tables), effects.by_configuration(tables)
    )
    configs = [b["config"] for b in summary["best"]]
    assert configs == [
        "learning_rate=0.01, architecture=cnn",
        "learning_rate=1.0, architecture=cnn",
    ]
    assert [b["diverged"] for b in summary["best"]] == ["0 / 1", "1 / 1"]


def test_kept_epochs_edge_inputs_read_as_the_records_hold_them():
    # summary.json / a parquet column give NaN or nothing for "did not diverge", and an old
    # record may lack steps_per_epoch (then one step per epoch).
    assert scoring.kept_epochs(math.nan, 4) == (math.inf, math.inf)
    assert scoring.kept_epochs("", 4) == (math.inf, math.inf)
    assert scoring.kept_epochs(3, None) == (3.0, 2.0)
    assert scoring.kept_epochs(3, 0) == (3.0, 2.0)
    assert scoring.is_end_of_epoch("test/accuracy") and scoring.is_end_of_epoch("val/loss")
    assert not scoring.is_end_of_epoch("train/loss")


def test_final_and_best_values_of_a_finished_run_and_of_an_all_nan_metric():
    history = pd.DataFrame(
        {
            "epoch": [1, 2, 3],
            "val/loss": [np.nan, np.nan, np.nan],  # before the others: one missing metric
            "train/loss": [0.7, 0.5, 0.6],
            "val/accuracy": [0.5, 0.75, 0.625],
        }
    )
    assert scoring.final_values(history) == {
        "val/loss": None,
        "train/loss": 0.6,
        "val/accuracy": 0.625,
    }
    assert scoring.best_values(history) == {
        "val/loss": None,
        "train/loss": 0.5,
        "val/accuracy": 0.75,
    }


def test_blanking_leaves_tables_without_epochs_and_probe_keys_alone():
    no_epoch = pd.DataFrame({"val/loss": [0.5, 0.4]})
    assert scoring.blank_history(no_epoch, 8, 4) is no_epoch
    assert scoring.blank_probe_table(no_epoch, 8, 4) is no_epoch
    units = pd.DataFrame({"epoch": [0, 1], "value": [0.1, 0.2]})
    assert scoring.blank_probe_table(units, None, 2) is units
    # Float key columns (t, distance) of a timesteps table keep their values; grad_norm does not.
    timesteps = pd.DataFrame(
        {
            "epoch": [0.0, 2.0],
            "layer": ["rnn_0", "rnn_0"],
            "t": [0.0, 1.0],
            "distance": [1.0, 0.0],
            "grad_norm": [0.3, 0.4],
        }
    )
    out = scoring.blank_probe_table(timesteps, 3, 2)
    assert out["t"].tolist() == [0.0, 1.0] and out["distance"].tolist() == [1.0, 0.0]
    assert out["epoch"].tolist() == [0.0, 2.0]
    assert out["grad_norm"].tolist()[0] == 0.3 and math.isnan(out["grad_norm"].iloc[1])
