"""The README's promises about the synthetic tasks, checked by classifiers that see one kind of feature."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression

from keras_ablate.data import synthetic


def _bag_of_words(x: np.ndarray, vocab_size: int) -> np.ndarray:
    return np.stack([np.bincount(row, minlength=vocab_size) for row in x]).astype(float)


def _accuracy(features_train, y_train, features_val, y_val) -> float:
    model = LogisticRegression(max_iter=2000).fit(features_train, y_train)
    return float((model.predict(features_val) == y_val).mean())


def test_ngram_both_classes_hold_the_same_tokens_so_bag_of_words_is_at_chance():
    opts = synthetic.NgramOptions(n_train=3000, n_val=2000, n_test=8, seq_len=12, vocab_size=12)
    data = synthetic.ngram(opts)
    key = np.asarray(data.meta["key_ngram"])
    x = np.concatenate([data.x_train, data.x_val])
    # Every sequence, whatever its label, holds each key token exactly once.
    for token in key:
        np.testing.assert_array_equal((x == token).sum(axis=1), 1)
    # Label = the key n-gram occurs contiguously and in order (recomputed from the key).
    windows = np.lib.stride_tricks.sliding_window_view(x, len(key), axis=1)
    np.testing.assert_array_equal(
        (windows == key).all(axis=2).any(axis=1),
        np.concatenate([data.y_train, data.y_val]).astype(bool),
    )
    # Token counts alone: a logistic regression stays at chance (2,000 validation examples,
    # standard error 0.011), while one feature of local order solves the task.
    bow = _accuracy(
        _bag_of_words(data.x_train, opts.vocab_size),
        data.y_train,
        _bag_of_words(data.x_val, opts.vocab_size),
        data.y_val,
    )
    assert bow < 0.56, bow

    def order(x):
        first, second = (
            ((x[:, :-1] == a) & (x[:, 1:] == b)).any(axis=1) for a, b in (key[:2], key[1:])
        )
        return np.c_[first, second, first & second].astype(float)

    assert _accuracy(order(data.x_train), data.y_train, order(data.x_val), data.y_val) > 0.95


def test_recall_label_is_the_token_at_position_0_and_the_rest_carries_nothing():
    opts = synthetic.RecallOptions(
        n_train=2000, n_val=2000, n_test=8, seq_len=5, vocab_size=12, n_classes=4
    )
    data = synthetic.recall(opts)
    assert data.x_train.shape == (2000, opts.seq_len + 1)
    # A lookup table from the first token to the label, learned on train, is perfect on val.
    table = {}
    for token, label in zip(data.x_train[:, 0], data.y_train, strict=True):
        assert table.setdefault(int(token), int(label)) == int(label)
    assert len(table) == opts.n_classes
    predicted = np.array([table[int(t)] for t in data.x_val[:, 0]])
    np.testing.assert_array_equal(predicted, data.y_val)
    # The distractors never use a key token, and the best lookup from any other position is at
    # chance (1 / n_classes; standard error ~0.01 on 2,000 examples).
    keys = set(table)
    assert not keys & set(np.unique(data.x_train[:, 1:]))
    for position in range(1, opts.seq_len + 1):
        hits = 0
        for token in np.unique(data.x_val[:, position]):
            at = data.x_train[:, position] == token
            guess = np.bincount(data.y_train[at], minlength=opts.n_classes).argmax()
            hits += int((data.y_val[data.x_val[:, position] == token] == guess).sum())
        assert hits / len(data.y_val) < 0.25 + 0.05, position
