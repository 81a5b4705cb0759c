"""Seeds of one configuration reuse the compiled model and still give the records of fresh builds."""

from __future__ import annotations

import pandas as pd
import pytest

from keras_ablate import store
from keras_ablate.config import RunSettings, RunSpec, make_run_id
from keras_ablate.training import loop

pytestmark = pytest.mark.slow

DATA = {"name": "ngram", "options": {"n_train": 96, "n_val": 32, "seq_len": 8, "vocab_size": 16}}


def _specs(**overrides) -> list[RunSpec]:
    base = dict(units=4, embed_dim=4, filters=4, epochs=2, batch_size=32, jit_compile=False)
    settings = RunSettings(**{**base, **overrides}).model_dump(mode="json")
    return [RunSpec("t", make_run_id(settings, DATA, s), settings, DATA, s, {}) for s in (0, 1, 2)]


def _train(specs, monkeypatch, reuse: bool):
    monkeypatch.setenv("KERAS_ABLATE_REUSE", "1" if reuse else "0")
    loop._KEPT.clear()
    records = [loop.run_one(spec) for spec in specs]
    loop._KEPT.clear()
    return records


@pytest.mark.parametrize(
    "overrides",
    [
        # Dropout (seed state), Adam slots, batch-norm statistics inside a cell.
        {"architecture": "lstm", "dropout": 0.3, "normalization": "batch"},
        # A CNN with batch norm, trained with momentum SGD and clipping.
        {"architecture": "cnn", "normalization": "batch", "optimizer": "sgd", "clip": "norm:0.5"},
        # A run that diverges before the next seed reuses its (NaN) model.
        {"architecture": "rnn", "optimizer": "sgd", "learning_rate": 1e6, "activation": "relu"},
    ],
)
def test_reused_models_give_the_records_of_fresh_builds(overrides, monkeypatch):
    specs = _specs(**overrides)
    fresh = _train(specs, monkeypatch, reuse=False)
    reused = _train(specs, monkeypatch, reuse=True)
    assert [r.summary["reused_compiled_model"] for r in fresh] == [False, False, False]
    assert [r.summary["reused_compiled_model"] for r in reused] == [False, True, True]
    for a, b in zip(fresh, reused, strict=True):
        assert set(a.tables) == set(b.tables)
        for name in a.tables:
            pd.testing.assert_frame_equal(a.tables[name], b.tables[name], check_exact=True)
        stable = [
            {
                k: v
                for k, v in store.stable_summary(r.summary).items()
                if k != "reused_compiled_model"
            }
            for r in (a, b)
        ]
        assert stable[0] == stable[1]
    # Seeds really differ (so equal records above are not one seed's records three times).
    assert not fresh[0].tables["steps"].equals(fresh[1].tables["steps"])


def test_a_different_model_is_built_fresh(monkeypatch):
    first = _specs(architecture="gru")[0]
    second = _specs(architecture="gru", units=6)[0]
    records = _train([first, second], monkeypatch, reuse=True)
    assert [r.summary["reused_compiled_model"] for r in records] == [False, False]


@pytest.mark.parametrize(
    "first, second",
    [
        # Another clip level, as in the default grid's clip axis.
        ({"architecture": "lstm"}, {"architecture": "lstm", "clip": "norm:0.001"}),
        # After a run that diverged (NaN weights and optimizer state), as in a learning-rate axis.
        (
            {
                "architecture": "cnn",
                "optimizer": "sgd",
                "activation": "relu",
                "learning_rate": 1e12,
            },
            {
                "architecture": "cnn",
                "optimizer": "sgd",
                "activation": "relu",
                "learning_rate": 0.05,
            },
        ),
        # Another optimizer, learning rate, batch size and budget, with batch norm in the cell.
        (
            {"architecture": "rnn", "normalization": "batch"},
            {
                "architecture": "rnn",
                "normalization": "batch",
                "optimizer": "sgd",
                "learning_rate": 0.05,
                "batch_size": 16,
                "epochs": 3,
            },
        ),
    ],
)
def test_a_run_that_only_trains_differently_keeps_the_model_and_gives_fresh_records(
    first, second, monkeypatch
):
    specs = [_specs(**first)[0], _specs(**second)[1]]
    built = []
    original = loop.Probe.__init__

    def counted(self, *args, **kwargs):
        built.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(loop.Probe, "__init__", counted)
    fresh = _train(specs, monkeypatch, reuse=False)
    assert len(built) == 2
    reused = _train(specs, monkeypatch, reuse=True)
    assert len(built) == 3  # the second run kept the first one's model and probe
    # Compiled again for its own settings, so not a reused compiled model.
    assert [r.summary["reused_compiled_model"] for r in reused] == [False, False]
    for a, b in zip(fresh, reused, strict=True):
        for name in a.tables:
            pd.testing.assert_frame_equal(a.tables[name], b.tables[name], check_exact=True)
        assert store.stable_summary(a.summary) == store.stable_summary(b.summary)
    for spec, record in zip(specs, reused, strict=True):
        if record.summary["status"] == "diverged":
            continue
        batches = -(-DATA["options"]["n_train"] // spec.settings["batch_size"])
        assert record.summary["steps_done"] == batches * spec.settings["epochs"]


def test_a_pool_worker_takes_the_next_seed_of_its_last_configuration():
    from collections import deque

    from keras_ablate.executors import _take, _Worker

    a, b = _specs(architecture="gru"), _specs(architecture="cnn")
    queue = deque([a[1], b[0], b[1], a[2]])
    keys = {s.run_id: s.model_key() for s in (*a, *b)}
    worker = _Worker(process=None, conn=None, last_key=keys[a[0].run_id])
    assert _take(queue, worker, keys) is a[1]
    assert _take(queue, worker, keys) is a[2]  # skips the cnn runs queued before it
    assert list(queue) == [b[0], b[1]]
    worker.last_key = "another model"
    assert _take(queue, worker, keys) is b[0]  # nothing of its own left: the head of the queue
