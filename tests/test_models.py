"""Every architecture, activation and normalization pair builds, takes finite steps and fits a batch."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from keras_ablate.config import RunSettings
from keras_ablate.config.levels import ACTIVATIONS, ARCHITECTURES, NORMALIZATIONS
from keras_ablate.data import load_dataset
from keras_ablate.models import build_model
from keras_ablate.models.cells import VARIANTS, ZooCell
from keras_ablate.training.loop import build_instrumented

DATASETS = {
    "ngram": ("ngram", {"n_train": 16, "n_val": 8, "seq_len": 8, "vocab_size": 12}),
    "recall": ("recall", {"n_train": 16, "n_val": 8, "seq_len": 6, "vocab_size": 12}),
    "adding": ("adding", {"n_train": 16, "n_val": 8, "seq_len": 8}),
}


def _settings(architecture, activation, normalization, **extra) -> dict:
    return RunSettings(
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
        **extra,
    ).model_dump(mode="json")


def _one_step(architecture, activation, normalization, dataset="ngram"):
    ds = load_dataset(*DATASETS[dataset])
    model = build_instrumented(_settings(architecture, activation, normalization), ds, 0, 2)
    # One eager step: tracing a graph per combination would dominate the test time.
    logs = model.train_step((ds.x_train, ds.y_train))
    cols, rows = model.step_records()
    return model, dict(zip(cols, rows[0], strict=True)), logs


def covering(factors: dict[str, tuple]) -> list[tuple]:
    """A small set of combinations in which every pair of levels of any two factors occurs.

    Greedy, deterministic: take the combination covering the most pairs not yet covered,
    first in itertools.product order on ties, until none is left.
    """
    names = list(factors)
    pairs = lambda combo: {  # noqa: E731
        (i, combo[i], j, combo[j]) for i, j in itertools.combinations(range(len(names)), 2)
    }
    candidates = list(itertools.product(*factors.values()))
    todo = set().union(*(pairs(c) for c in candidates))
    chosen = []
    while todo:
        best = max(candidates, key=lambda c: len(pairs(c) & todo))
        chosen.append(best)
        todo -= pairs(best)
    return chosen


# Every pair among (architecture, activation, normalization) for the base architectures, and
# among (variant, bounded or width-changing activation, normalization) for the LSTM gate
# variants and other registry entries, which share the base LSTM's activation code
# (tests/test_models_zoo.py checks their gates in detail). A new level joins every pair.
BASE_ARCHITECTURES = ("cnn", "rnn", "lstm", "gru", "mlp")
COMBINATIONS = covering(
    {"architecture": BASE_ARCHITECTURES, "activation": ACTIVATIONS, "normalization": NORMALIZATIONS}
) + covering(
    {
        "architecture": tuple(sorted(set(ARCHITECTURES) - set(BASE_ARCHITECTURES))),
        "activation": ("tanh", "maxout"),
        "normalization": NORMALIZATIONS,
    }
)


def test_the_combinations_cover_every_registry_entry_and_every_pair():
    assert {a for a, _, _ in COMBINATIONS} == set(ARCHITECTURES)
    base = [c for c in COMBINATIONS if c[0] in BASE_ARCHITECTURES]
    for i, j in itertools.combinations(range(3), 2):
        levels = (BASE_ARCHITECTURES, ACTIVATIONS, NORMALIZATIONS)
        assert {(c[i], c[j]) for c in base} == set(itertools.product(levels[i], levels[j]))
    assert len(base) < len(BASE_ARCHITECTURES) * len(ACTIVATIONS) * len(NORMALIZATIONS) / 3


STEPS = 6


@pytest.mark.parametrize("architecture, activation, normalization", COMBINATIONS)
def test_every_combination_learns_one_batch_with_finite_steps(
    architecture, activation, normalization
):
    # Six eager steps on one batch of 16 at a high learning rate: every step finite, and the
    # model fits the batch (its loss falls), which a model with no gradient path cannot do.
    ds = load_dataset(*DATASETS["ngram"])
    settings = _settings(architecture, activation, normalization, learning_rate=0.02)
    model = build_instrumented(settings, ds, seed=0, capacity=STEPS)
    for _ in range(STEPS):
        model.train_step((ds.x_train, ds.y_train))
    cols, rows = model.step_records()
    steps = [dict(zip(cols, row, strict=True)) for row in rows]
    assert len(steps) == STEPS and model.output_shape == (None, 1)
    assert all(np.isfinite(s["loss"]) and s["grad/nonfinite"] == 0 for s in steps)
    assert all(s["grad/global_norm"] > 0 for s in steps)
    assert steps[-1]["loss"] < steps[0]["loss"], [round(float(s["loss"]), 4) for s in steps]
    names = [layer.name for layer in model.layers]
    if architecture in VARIANTS:
        # depth 2 -> rnn_0, rnn_1; normalization lives inside the cell, not between layers,
        # and only the standard configuration uses the built-in Keras layer.
        assert {"rnn_0", "rnn_1"} <= set(names) and not any(n.endswith("_norm") for n in names)
        built_in = (
            architecture in ("rnn", "lstm", "gru")
            and normalization == "none"
            and activation != "maxout"
        )
        assert isinstance(model.get_layer("rnn_0").cell, ZooCell) != built_in


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
