"""The held-out test split: generated apart from training data, scored once at the end of a run."""

from __future__ import annotations

import math

import numpy as np
import pytest

from keras_ablate.config import RunSettings, RunSpec, make_run_id
from keras_ablate.data import synthetic
from keras_ablate.training import loop

OPTIONS = {
    "ngram": (synthetic.NgramOptions, {"seq_len": 12, "vocab_size": 20}),
    "recall": (synthetic.RecallOptions, {"seq_len": 6}),
    "adding": (synthetic.AddingOptions, {"seq_len": 8}),
}


@pytest.mark.parametrize("task", sorted(OPTIONS))
def test_the_test_split_does_not_change_or_repeat_the_training_data(task):
    options, extra = OPTIONS[task]
    small = getattr(synthetic, task)(options(n_train=64, n_val=16, n_test=8, **extra))
    large = getattr(synthetic, task)(options(n_train=64, n_val=16, n_test=80, **extra))
    for split in ("x_train", "y_train", "x_val", "y_val"):
        np.testing.assert_array_equal(getattr(small, split), getattr(large, split))
    assert len(large.x_test) == 80 and len(large.y_test) == 80
    seen = {row.tobytes() for row in np.concatenate([large.x_train, large.x_val])}
    assert not any(row.tobytes() in seen for row in large.x_test)


def test_ngram_test_examples_follow_the_task_rule():
    data = synthetic.ngram(synthetic.NgramOptions(n_train=16, n_val=8, n_test=200, seq_len=10))
    key = data.meta["key_ngram"]
    for row, label in zip(data.x_test, data.y_test, strict=True):
        windows = [list(row[i : i + len(key)]) for i in range(len(row) - len(key) + 1)]
        assert (key in windows) == bool(label)
        assert sorted(k for k in row if k in key) == sorted(key)  # same tokens in both classes


def _spec(**overrides) -> RunSpec:
    data = {
        "name": "ngram",
        "options": {"n_train": 64, "n_val": 32, "n_test": 48, "seq_len": 10, "vocab_size": 20},
    }
    base = dict(units=4, embed_dim=4, filters=4, epochs=2, batch_size=16, jit_compile=False)
    settings = RunSettings(**{**base, **overrides}).model_dump(mode="json")
    return RunSpec("t", make_run_id(settings, data, 0), settings, data, 0, {})


def test_a_run_records_the_test_score_of_its_final_weights(monkeypatch):
    monkeypatch.setenv("KERAS_ABLATE_REUSE", "1")
    loop._KEPT.clear()
    spec = _spec(architecture="cnn")
    record = loop.run_one(spec)
    model = loop._KEPT[spec.model_key()][0]  # the trained model, kept for the next run
    loop._KEPT.clear()
    data = synthetic.ngram(synthetic.NgramOptions(**spec.dataset["options"]))
    # Independent: the kept model's predictions, thresholded and counted with numpy.
    predicted = (model.predict(data.x_test, verbose=0)[:, 0] > 0.5).astype(int)
    expected = float(np.mean(predicted == data.y_test))
    history = record.tables["history"]
    assert history["test/accuracy"].iloc[:-1].isna().all()
    assert history["test/accuracy"].iloc[-1] == pytest.approx(expected, abs=1e-6)
    assert record.summary["final"]["test/accuracy"] == pytest.approx(expected, abs=1e-6)
    assert record.summary["baseline"]["n_test"] == 48


def test_a_diverged_run_has_no_test_score(monkeypatch):
    monkeypatch.setenv("KERAS_ABLATE_REUSE", "0")
    record = loop.run_one(
        _spec(architecture="rnn", optimizer="sgd", learning_rate=1e6, activation="relu")
    )
    assert record.summary["status"] == "diverged"
    assert record.summary["final"].get("test/accuracy") is None
    assert math.isnan(record.tables["history"]["test/accuracy"].iloc[-1])
