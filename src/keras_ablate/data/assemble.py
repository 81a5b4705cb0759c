"""Split, tokenize and assemble a text Dataset: labels to ids, stratified splits, TextVectorization, padding."""

from __future__ import annotations

import re

import numpy as np

from keras_ablate.data.base import Dataset
from keras_ablate.data.text_options import TokenizedOptions
from keras_ablate.errors import DataError


def label_ids(labels: list[str], class_names: list[str] | None) -> tuple[np.ndarray, list[str]]:
    if class_names is None:
        distinct = set(labels)
        # Integer labels sort as numbers (2 before 10); anything else sorts as text.
        numeric = all(re.fullmatch(r"[+-]?\d+", label) for label in distinct)
        class_names = sorted(distinct, key=int if numeric else str)
    index = {name: i for i, name in enumerate(class_names)}
    return np.array([index[label] for label in labels], dtype=np.int32), class_names


def stratified_take(
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


def build(
    name,
    opts,
    source,
    texts,
    labels,
    *,
    val=None,
    test=None,
    class_names=None,
    meta=None,
    column="label",
) -> Dataset:
    """A tokenized Dataset from texts and labels: a test split (`test`, a user's test file as
    (texts, labels), else test_fraction of the data, taken first), then validation (`val`, else
    val_fraction of the rest), both stratified and seeded; the vocabulary sees training only."""
    y, class_names = label_ids(labels, class_names)
    split_test = test is None and opts.test_fraction > 0
    check_classes(source, y, class_names, opts, column, split=val is None, test_split=split_test)
    texts = np.asarray(texts, dtype=object)
    rng = np.random.default_rng(opts.seed)
    if opts.n_max is not None and opts.n_max < len(y):
        # At least 2 per class survive, so the split below still finds one of each for validation.
        keep = stratified_take(y, opts.n_max / len(y), rng, minimum=2)
        texts, y = texts[keep], y[keep]
    test_texts = y_test = None
    if test is not None:
        test_texts, y_test = _given_split(test, class_names, opts, rng)
    elif split_test:
        # The held-out split is taken first, stratified, leaving each class enough to train on
        # (and to validate on, when validation is split off too).
        test_mask = np.zeros(len(y), dtype=bool)
        leave = 2 if val is None else 1
        test_mask[stratified_take(y, opts.test_fraction, rng, minimum=1, leave=leave)] = True
        test_idx = rng.permutation(np.flatnonzero(test_mask))
        test_texts, y_test = texts[test_idx], y[test_idx]
        texts, y = texts[~test_mask], y[~test_mask]
    if val is None:
        val_mask = np.zeros(len(y), dtype=bool)
        val_mask[stratified_take(y, opts.val_fraction, rng, minimum=1, leave=1)] = True
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
        val_texts, y_val = _given_split(val, class_names, opts, rng)
    splits = [train_texts, val_texts] + ([test_texts] if test_texts is not None else [])
    encoded, vocabulary, lengths = tokenize(splits, opts)
    meta = {"source": source, **(meta or {}), **length_stats(lengths, opts.max_length)}
    meta["vocabulary_head"] = vocabulary[2:12]  # After "" (padding) and "[UNK]".
    data = dataset(name, encoded[0], y_train, encoded[1], y_val, len(vocabulary), class_names, meta)
    if test_texts is not None:
        data.x_test, data.y_test = encoded[2], y_test.astype(np.int32)
    return data


def check_classes(
    source, y, class_names, opts, column: str, split: bool, test_split: bool | None = None
) -> None:
    """At least two classes, and enough examples of each for the splits taken from this data:
    one to train on, one more when validation is split off (`split`), one more when a test split
    is (`test_split`; default: test_fraction > 0)."""
    if test_split is None:
        test_split = opts.test_fraction > 0
    if len(class_names) < 2:
        raise DataError(
            f"{source}: only one class ('{class_names[0]}') in column '{column}'; classification needs at least 2"
        )
    needed = (2 if split else 1) + test_split
    if needed < 2:
        return
    counts = np.bincount(y, minlength=len(class_names))
    if counts.min() < needed:
        rare = [f"'{class_names[c]}' ({counts[c]})" for c in np.flatnonzero(counts < needed)]
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
            f"split{f' with val_fraction={opts.val_fraction}' if split else ''} needs at least "
            f"{needed} per class (one to train on{', one to validate' if split else ''}"
            f"{', one to test' if test_split else ''}); add examples, drop the class"
            f"{', give a val_path' if split else ''}"
            f"{', give a test_path or set test_fraction: 0' if test_split else ''}{hint}"
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


def tokenize(splits: list, opts: TokenizedOptions):
    """Fit a TextVectorization vocabulary on the training texts (splits[0]) only; encode every
    split. Returns (padded token arrays, vocabulary, the training texts' lengths)."""
    train_texts = splits[0]
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
    for texts in splits:
        values, lengths = [], []
        for start in range(0, len(texts), 4096):
            ragged = vectorizer(np.asarray(texts[start : start + 4096], dtype=object))
            values.append(ragged.flat_values.numpy().astype(np.int32))
            lengths.append(ragged.row_lengths().numpy())
        values, lengths = np.concatenate(values), np.concatenate(lengths)
        encoded.append((pad(values, lengths, opts.max_length, opts.padding), lengths))
    vocabulary = [str(token) for token in vectorizer.get_vocabulary()]
    return [array for array, _ in encoded], vocabulary, encoded[0][1]


def pad(values: np.ndarray, lengths: np.ndarray, max_length: int, padding: str) -> np.ndarray:
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


def length_stats(lengths: np.ndarray, max_length: int) -> dict:
    return {
        "mean_length_train": float(lengths.mean()),
        "truncated_fraction_train": float((lengths > max_length).mean()),
    }


def dataset(name, x_train, y_train, x_val, y_val, vocab_size, class_names, meta) -> Dataset:
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


def _given_split(records, class_names, opts, rng) -> tuple[np.ndarray, np.ndarray]:
    """A split the user gave as its own file (val_path, test_path): its labels as ids, at most
    n_max examples (stratified), shuffled."""
    y, _ = label_ids(records[1], class_names)
    idx = np.arange(len(y))
    if opts.n_max is not None and opts.n_max < len(y):
        idx = stratified_take(y, opts.n_max / len(y), rng, minimum=1)
    idx = rng.permutation(idx)
    return np.asarray(records[0], dtype=object)[idx], y[idx]
