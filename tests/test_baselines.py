"""Chance and majority-class accuracy come from the data, are recorded with every run, and are stated
next to accuracies in the default and claims reports, with words for where an accuracy sits."""

from __future__ import annotations

import collections
import math
import textwrap

import numpy as np
import pandas as pd
import pytest

from keras_ablate import store
from keras_ablate.analysis import baselines, effects, load
from keras_ablate.claims import load_claim, run_claims
from keras_ablate.config import RunSpec
from keras_ablate.data import load_dataset
from keras_ablate.report import sections
from keras_ablate.report.render import run_table

# ---------------------------------------------------------------------------------------------
# From the data.


def test_dataset_baseline_is_one_over_classes_and_the_commonest_share_of_each_split():
    data = load_dataset(
        "recall", {"n_classes": 4, "n_train": 200, "n_val": 120, "seq_len": 5, "vocab_size": 12}
    )
    val = collections.Counter(data.y_val.tolist())
    train = collections.Counter(data.y_train.tolist())
    test = collections.Counter(data.y_test.tolist())
    assert data.baseline() == {
        "n_classes": 4,
        "n_val": 120,
        "chance": 0.25,
        "majority_val": max(val.values()) / 120,
        "majority_train": max(train.values()) / 200,
        "n_test": 512,
        "majority_test": max(test.values()) / 512,
    }
    assert load_dataset("adding", {"n_train": 16, "n_val": 8, "seq_len": 4}).baseline() == {}


# ---------------------------------------------------------------------------------------------
# Words for where an accuracy sits (4 classes, 256 validation examples: tolerance 1/16).


@pytest.mark.parametrize(
    "value, plateau, words",
    [
        (0.10, None, "below chance"),
        (0.26, None, "at chance"),
        (0.31, None, "at chance"),  # within 0.0625 of 0.25
        (0.40, None, "at the majority share"),
        (0.33, None, "between chance and the majority share"),
        (0.49, True, "plateau above chance"),
        (0.49, False, "above chance"),
        (0.49, None, "above chance"),
        (0.99, True, "above chance"),  # at the ceiling, not a plateau
    ],
)
def test_describe_says_where_an_accuracy_sits(value, plateau, words):
    assert baselines.describe(value, 0.25, 0.42, 256, plateau) == words


def test_plateau_is_the_last_half_of_the_epochs_flat_within_the_tolerance():
    assert baselines.tolerance(256) == 1 / 16
    assert baselines.plateaued([0.3, 0.45, 0.49, 0.50, 0.49, 0.48], 256)
    assert not baselines.plateaued([0.3, 0.35, 0.40, 0.45, 0.50, 0.60], 256)
    assert not baselines.plateaued([0.49, 0.49, 0.49, 0.60], 256)  # last 2 of 4: 0.49 -> 0.60
    assert baselines.plateaued([0.5], 256) is None


# ---------------------------------------------------------------------------------------------
# Hand-written run folders: a 4-class task where one arm learns, one sits at the majority share
# and one on a plateau above chance.

MAJORITY = 0.34  # more than the tolerance (1/16) above chance: a level of its own
CURVES = {
    "gru": [0.5, 0.8, 0.95, 1.0],
    "rnn": [0.35, 0.34, 0.33, 0.34],
    "lstm": [0.35, 0.47, 0.49, 0.49],
}


def _write_runs(exp_dir, specs):
    for spec in specs:
        curve = CURVES[spec.settings["architecture"]]
        history = pd.DataFrame(
            {
                "epoch": np.arange(1, len(curve) + 1),
                "train/loss": np.linspace(1.4, 1.0, len(curve)),
                "val/accuracy": curve,
            }
        )
        summary = {
            "run_id": spec.run_id,
            "status": "ok",
            "metric": "accuracy",
            "steps_per_epoch": 4,
            "baseline": {
                "n_classes": 4,
                "n_val": 256,
                "chance": 0.25,
                "majority_val": MAJORITY,
                "majority_train": 0.28,
            },
            "final": {"val/accuracy": curve[-1], "train/loss": 1.0},
            "best": {"val/accuracy": max(curve)},
            "wall_time_s": 1.0,
        }
        store.write_run(exp_dir, spec, summary, {"history": history})


CLAIM = """
name: claim_99_plateau
dataset: {name: recall, options: {n_classes: 4, n_train: 64, n_val: 256, seq_len: 5}}
base: {epochs: 4}
grid: {architecture: [gru, rnn, lstm]}
seeds: 3
claim:
  id: 99
  statement: an LSTM learns recall
  rule:
    all:
      - compare: {name: lstm vs rnn, metric: final/val/accuracy, a: {architecture: lstm},
                  b: {architecture: rnn}, direction: greater}
      - threshold: {name: gru learns, metric: final/val/accuracy, where: {architecture: gru},
                    direction: greater, value: 0.9}
  notes: none
"""


def test_claims_report_states_chance_majority_and_a_plateau_above_chance(tmp_path):
    experiments = tmp_path / "experiments"
    experiments.mkdir()
    path = experiments / "claim_99_plateau.yaml"
    path.write_text(textwrap.dedent(CLAIM), encoding="utf-8")
    claim = load_claim(path)
    _write_runs(tmp_path / "results/claims" / claim.experiment.slug, claim.specs)
    run_claims(experiments, tmp_path / "results", run=False)
    md = (tmp_path / "results/claims/report.md").read_text()
    rows = {line.split(" | ")[2]: line for line in md.splitlines() if line.startswith("| lstm vs")}
    rows.update({line.split(" | ")[2]: line for line in md.splitlines() if "gru learns" in line})
    assert "0.49 (chance 0.25, majority 0.34: plateau above chance)" in rows["architecture=lstm"]
    assert "0.34 (chance 0.25, majority 0.34: at the majority share)" in rows["architecture=rnn"]
    assert "1 (chance 0.25, majority 0.34: above chance)" in rows["architecture=gru"]
    assert "1 / number of classes" in md
    assert "plateau above chance" in (tmp_path / "results/claims/report.html").read_text()


def test_default_report_states_chance_and_majority_next_to_the_score(tmp_path):
    exp = tmp_path / "plateau"
    specs = []
    for arch in CURVES:
        axes = {"architecture": arch}
        specs.append(RunSpec("p", f"run_{arch}", axes, {"name": "recall", "options": {}}, 0, axes))
    _write_runs(exp, specs)
    store.write_json_atomic(exp / "experiment.json", {"name": "p", "axes": ["architecture"]})
    tables = load(exp)
    summary = sections.summary(
        tables, effects.main_effects(tables), effects.by_configuration(tables)
    )
    assert "chance 0.25" in summary["baseline"] and "majority 0.34" in summary["baseline"]
    levels = {b["config"]: b["level"] for b in summary["best"]}
    assert levels == {
        "architecture=gru": "chance 0.25, majority 0.34: above chance",
        "architecture=lstm": "chance 0.25, majority 0.34: plateau above chance",
        "architecture=rnn": "chance 0.25, majority 0.34: at the majority share",
    }
    table = run_table(tables).set_index("architecture")
    assert table.loc["lstm", "level"] == "plateau above chance"
    assert table.loc["rnn", "baseline/majority_val"] == MAJORITY
    assert math.isclose(table.loc["rnn", "baseline/chance"], 0.25)
