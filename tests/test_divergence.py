"""A diverged run never ranks best: nothing measured on its diverged weights is kept, and it scores
the worst finished value in every table, effect, claim and tuning figure (keras_ablate.scoring)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from keras_ablate import scoring

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
