"""Every architecture x activation x normalization builds and takes one finite training step."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from keras_ablate.config import RunSettings
from keras_ablate.config.levels import ACTIVATIONS, ARCHITECTURES, NORMALIZATIONS
from keras_ablate.data import load_dataset
from keras_ablate.models import build_model
from keras_ablate.training.loop import build_instrumented

DATASETS = {
    "ngram": ("ngram", {"n_train": 16, "n_val": 8, "seq_len": 8, "vocab_size": 12}),
    "recall": ("recall", {"n_train": 16, "n_val": 8, "seq_len": 6, "vocab_size": 12}),
    "adding": ("adding", {"n_train": 16, "n_val": 8, "seq_len": 8}),
}


def _one_step(architecture, activation, normalization, dataset="ngram"):
    ds = load_dataset(*DATASETS[dataset])
    settings = RunSettings(
        architecture=architecture,
        activation=activation,
        normalization=normalization,
        units=4,
        embed_dim=3,
        filters=3,
        kernel_sizes=(2, 3),
        depth=2,
        batch_size=16,
        jit_compile=False,
    ).model_dump(mode="json")
    model = build_instrumented(settings, ds, seed=0, capacity=2)
    # One eager step: tracing a graph per combination would dominate the test time.
    logs = model.train_step((ds.x_train, ds.y_train))
    cols, rows = model.step_records()
    return model, dict(zip(cols, rows[0], strict=True)), logs


# Every base architecture x every activation x every normalization; the LSTM gate variants
# share the base LSTM's activation code, so they get every normalization with a bounded and
# a width-changing activation (tests/test_models_zoo.py checks their gates in detail).
BASE_ARCHITECTURES = ("cnn", "rnn", "lstm", "gru", "mlp")
COMBINATIONS = list(itertools.product(BASE_ARCHITECTURES, ACTIVATIONS, NORMALIZATIONS)) + list(
    itertools.product(
        sorted(set(ARCHITECTURES) - set(BASE_ARCHITECTURES)), ("tanh", "maxout"), NORMALIZATIONS
    )
)


def test_the_combinations_cover_every_registry_entry():
    assert {a for a, _, _ in COMBINATIONS} == set(ARCHITECTURES)


@pytest.mark.parametrize("architecture, activation, normalization", COMBINATIONS)
def test_every_combination_builds_and_takes_a_finite_step(architecture, activation, normalization):
    model, row, logs = _one_step(architecture, activation, normalization)
    assert (
        np.isfinite(row["loss"])
        and np.isfinite(row["grad/global_norm"])
        and row["grad/global_norm"] > 0
    )
    assert row["grad/nonfinite"] == 0
    assert model.output_shape == (None, 1)
    assert np.isfinite(float(logs["loss"]))


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
@pytest.mark.parametrize("dataset", ["recall", "adding"])
def test_heads_follow_the_task(architecture, dataset):
    model, row, _ = _one_step(architecture, "tanh", "none", dataset)
    expected = (None, 4) if dataset == "recall" else (None, 1)
    assert model.output_shape == expected
    assert np.isfinite(row["loss"])


def test_layer_names_are_stable_and_descriptive():
    names = {
        a: [layer.name for layer in _one_step(a, "relu", "batch")[0].layers]
        for a in ("cnn", "lstm", "mlp")
    }
    assert {"embed", "conv_k2", "conv_k2_1", "conv_k3", "pool_k2", "dense_out"} <= set(names["cnn"])
    assert {"embed", "rnn_0", "rnn_1", "dense_out"} <= set(names["lstm"])
    assert {"embed", "dense_0", "dense_0_norm", "dense_0_act", "dense_1", "dense_out"} <= set(
        names["mlp"]
    )


def _expected_params(settings: dict, ds) -> int:
    """The parameter count of a model with these settings, by the layer formulas."""
    e, u, f = settings["embed_dim"], settings["units"], settings["filters"]
    outputs = 1 if ds.n_classes in (None, 2) else ds.n_classes
    total = ds.vocab_size * e
    architecture, depth = settings["architecture"], settings["depth"]
    if architecture == "cnn":
        ks = settings["kernel_sizes"]
        total += sum(k * e * f + f + (depth - 1) * (k * f * f + f) for k in ks)
        features = len(ks) * f
    elif architecture == "mlp":
        total += (ds.seq_len * e) * u + u + (depth - 1) * (u * u + u)
        features = u
    else:
        # Per layer: gate blocks x (input kernel + recurrent kernel + bias); Keras's GRU
        # (reset_after) has a second bias for the recurrent term.
        blocks = {"rnn": 1, "lstm": 4, "gru": 3}[architecture]
        extra_bias = blocks * u if architecture == "gru" else 0
        total += sum(
            blocks * ((e if i == 0 else u) * u + u * u + u) + extra_bias for i in range(depth)
        )
        features = u
    return total + features * outputs + outputs


@pytest.mark.parametrize(
    "architecture, depth, dataset",
    [
        ("cnn", 1, "ngram"),
        ("cnn", 2, "recall"),
        ("mlp", 2, "ngram"),
        ("rnn", 2, "recall"),
        ("lstm", 1, "ngram"),
        ("lstm", 2, "recall"),
        ("gru", 2, "ngram"),
    ],
)
def test_n_params_matches_the_layer_formulas(architecture, depth, dataset):
    ds = load_dataset(*DATASETS[dataset])
    settings = RunSettings(
        architecture=architecture, units=5, embed_dim=3, filters=4, kernel_sizes=(2, 3), depth=depth
    ).model_dump(mode="json")
    model = build_model(settings, ds)
    assert model.count_params() == _expected_params(settings, ds)
