"""tune.space in keras-tuner's own words: sampling, min_value/max_value, step, default, Boolean."""

from __future__ import annotations

import re

import pytest

from keras_ablate.cli import main
from keras_ablate.config import load_experiment
from keras_ablate.config.tuning import search_space

HEAD = """name: kt
dataset: {name: ngram, options: {n_train: 64, n_val: 32, seq_len: 12, vocab_size: 20}}
base: {epochs: 1, units: 4}
grid: {architecture: [cnn, lstm]}
tune:
  space:
"""

# What a keras-tuner user writes in a HyperModel, pasted as YAML (the argument names of hp.Float,
# hp.Int, hp.Choice and hp.Boolean), next to this file's own short spelling.
PASTED = """    learning_rate: {type: Float, min_value: 1.0e-4, max_value: 1.0e-2, sampling: log, default: 1.0e-3}
    dropout: {type: float, min: 0.1, max: 0.5, sampling: reverse_log, step: 2}
    units: {type: Int, min_value: 4, max_value: 32, step: 2, sampling: log, default: 8}
    batch_size: {type: int, min: 16, max: 64, log: true}
    embed_dim: {type: int, min: 4, max: 12, step: 4, sampling: linear}
    activation: {type: Choice, values: [relu, tanh, elu], ordered: false, default: tanh}
    jit_compile: {type: Boolean, default: true}
"""


def test_keras_tuner_spellings_build_the_same_hyperparameters_as_keras_tuner_calls(tmp_path):
    import keras_tuner as kt

    from keras_ablate.tuning.search import declare

    path = tmp_path / "kt.yaml"
    path.write_text(HEAD + PASTED)
    exp, _ = load_experiment(path)
    ours = kt.HyperParameters()
    declare(ours, search_space(exp))
    # The calls a keras-tuner user makes for the same ranges, written out by hand.
    theirs = kt.HyperParameters()
    theirs.Float("learning_rate", 1e-4, 1e-2, sampling="log", default=1e-3)
    theirs.Float("dropout", 0.1, 0.5, step=2, sampling="reverse_log")
    theirs.Int("units", 4, 32, step=2, sampling="log", default=8)
    theirs.Int("batch_size", 16, 64, sampling="log")
    theirs.Int("embed_dim", 4, 12, step=4)
    theirs.Choice("activation", ["relu", "tanh", "elu"], ordered=False, default="tanh")
    theirs.Boolean("jit_compile", default=True)
    assert ours.get_config() == theirs.get_config()
    by_name = {hp.name: hp for hp in ours.space}
    assert type(by_name["jit_compile"]).__name__ == "Boolean"
    assert by_name["dropout"].sampling == "reverse_log"
    assert by_name["units"].default == 8 and list(by_name["units"].values) == [4, 8, 16, 32]


def test_the_short_spelling_still_means_what_it_did(tmp_path):
    path = tmp_path / "short.yaml"
    path.write_text(
        HEAD + "    learning_rate: {type: float, min: 1.0e-4, max: 1.0e-2, log: true}\n"
        "    units: {type: int, min: 4, max: 8, step: 4}\n"
    )
    space = search_space(load_experiment(path)[0])
    assert space["learning_rate"].sampling == "log" and space["units"].step == 4
    # search.json keeps its earlier form, so a search started before these spellings resumes.
    assert space["learning_rate"].record() == {
        "name": "learning_rate",
        "kind": "float",
        "min": 1e-4,
        "max": 1e-2,
        "step": None,
        "log": True,
        "values": [],
    }


BAD = [
    (
        "learning_rate: {type: float, min: 1.0e-4, max: 1.0e-2, log: true, sampling: linear}",
        r"tune\.space\.learning_rate\.log: log: true contradicts sampling: linear",
    ),
    (
        "learning_rate: {type: float, min: 1.0e-4, min_value: 1.0e-3, max: 1.0e-2}",
        r"learning_rate\.min_value: give min or keras-tuner's min_value, not both",
    ),
    (
        "learning_rate: {type: float, min_value: 1.0e-4, max_value: 1.0e-2, sampling: logarithmic}",
        r"learning_rate\.sampling: .*'linear', 'log' or 'reverse_log'",
    ),
    (
        "learning_rate: {type: float, min_value: 1.0e-4, max_value: 1.0e-2, sampling: log, step: 0.5}",
        r"learning_rate\.step: with log sampling the step is a factor .* > 1",
    ),
    (
        "learning_rate: {type: float, min_value: 1.0e-4, max_value: 1.0e-2, default: 0.5}",
        r"learning_rate\.default: default \(0\.5\) must lie in \[min, max\]",
    ),
    (
        "activation: {type: Choice, values: [relu, tanh], default: elu}",
        r"activation\.default: default 'elu' is not one of the values",
    ),
    (
        "units: {type: Boolean}",
        r"tune\.space\.units\.type: 'units' is not a true/false setting",
    ),
    (
        "units: {type: Int, min_value: 0, max_value: 8, sampling: reverse_log}",
        r"units\.min_value: reverse_log sampling needs min > 0",
    ),
]


@pytest.mark.parametrize("entry, message", BAD, ids=[str(i) for i in range(len(BAD))])
def test_conflicting_or_wrong_keras_tuner_spellings_are_located_errors(
    tmp_path, capsys, entry, message
):
    path = tmp_path / "bad.yaml"
    path.write_text(HEAD + f"    {entry}\n")
    assert main(["plan", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:7: " in err, err
    assert re.search(message, err), err
