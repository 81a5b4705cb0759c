"""Seeded synthetic tasks that isolate one phenomenon each: n-gram detection, long-range recall, adding."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from keras_ablate.data.base import Dataset


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    n_train: int = Field(2048, ge=8, description="training examples")
    n_val: int = Field(512, ge=8, description="validation examples")
    n_test: int = Field(
        512, ge=8, description="held-out test examples (drawn from their own random stream)"
    )
    seed: int = Field(0, ge=0, description="data seed: every run of a grid sees the same data")


class NgramOptions(_Options):
    seq_len: int = Field(40, ge=4)
    vocab_size: int = Field(50, ge=8)
    ngram_len: int = Field(3, ge=2, description="length of the planted key n-gram")

    @model_validator(mode="after")
    def _fits(self):
        if self.ngram_len * 2 > self.seq_len:
            raise ValueError(f"ngram_len {self.ngram_len} needs seq_len >= {2 * self.ngram_len}")
        if self.vocab_size - 1 <= self.ngram_len + 1:
            raise ValueError(f"vocab_size must exceed ngram_len + 2 = {self.ngram_len + 2}")
        return self


class RecallOptions(_Options):
    seq_len: int = Field(20, ge=1, description="number of distractors after the key token")
    vocab_size: int = Field(30, ge=4)
    n_classes: int = Field(4, ge=2, description="distinct key tokens = classes")

    @model_validator(mode="after")
    def _fits(self):
        if self.vocab_size - 1 - self.n_classes < 1:
            raise ValueError(f"vocab_size must exceed n_classes + 1 = {self.n_classes + 1}")
        return self


class AddingOptions(_Options):
    seq_len: int = Field(50, ge=2)
    variant: Literal["halves", "anywhere"] = Field(
        "halves",
        description="halves: one marker in each half (Arjovsky 2016); anywhere: two distinct steps",
    )


def ngram(opts: NgramOptions) -> Dataset:
    """Label 1 when the key n-gram appears contiguously and in order.

    Every sequence holds each key token exactly once plus fillers drawn from the other
    tokens, so both classes have the same bag of words. Negatives hold the key tokens
    either contiguously in another order or scattered (in order, not adjacent): only a
    model that sees local order can tell them apart.
    """
    rng = np.random.default_rng(opts.seed)
    tokens = np.arange(1, opts.vocab_size)  # 0 is padding
    key = rng.choice(tokens, size=opts.ngram_len, replace=False)
    return _generate(
        "ngram",
        opts,
        lambda stream, n: _ngram_examples(stream, key, opts, n),
        rng,
        task="binary",
        input_kind="tokens",
        vocab_size=opts.vocab_size,
        n_classes=2,
        class_names=["absent", "present"],
        meta={"key_ngram": key.tolist()},
    )


def _ngram_examples(rng, key: np.ndarray, opts: NgramOptions, n: int):
    fillers = np.setdiff1d(np.arange(1, opts.vocab_size), key)
    x = rng.choice(fillers, size=(n, opts.seq_len)).astype(np.int32)
    y = (rng.random(n) < 0.5).astype(np.int32)
    L, T = opts.ngram_len, opts.seq_len
    for i in range(n):
        if y[i] == 1:
            start = rng.integers(0, T - L + 1)
            x[i, start : start + L] = key
        elif rng.random() < 0.5:
            perm = key.copy()
            while np.array_equal(perm, key):
                perm = rng.permutation(key)
            start = rng.integers(0, T - L + 1)
            x[i, start : start + L] = perm
        else:
            # Positions in increasing order with at least one gap, so never contiguous.
            while True:
                pos = np.sort(rng.choice(T, size=L, replace=False))
                if np.any(np.diff(pos) > 1):
                    break
            x[i, pos] = key
    return x, y


def _generate(name, opts: _Options, examples, rng: np.random.Generator, **kwargs) -> Dataset:
    """Training and validation examples from `rng` (the task's seeded stream), test examples from
    their own stream: train and validation data stay what they were before the test split
    existed, and a different n_test changes no training example. examples(stream, n) -> (x, y)."""
    train_val = examples(rng, opts.n_train + opts.n_val)
    test = examples(np.random.default_rng([opts.seed, 1]), opts.n_test)
    return _split(name, opts, train_val, test, **kwargs)


def recall(opts: RecallOptions) -> Dataset:
    """Label = the token at position 0; `seq_len` distractor tokens follow it."""
    return _generate(
        "recall",
        opts,
        lambda stream, n: _recall_examples(stream, opts, n),
        np.random.default_rng(opts.seed),
        task="multiclass",
        input_kind="tokens",
        vocab_size=opts.vocab_size,
        n_classes=opts.n_classes,
        class_names=[f"key_{k}" for k in range(opts.n_classes)],
    )


def _recall_examples(rng, opts: RecallOptions, n: int):
    y = rng.integers(0, opts.n_classes, size=n).astype(np.int32)
    distractors = rng.integers(opts.n_classes + 1, opts.vocab_size, size=(n, opts.seq_len))
    x = np.concatenate([(y + 1)[:, None], distractors], axis=1).astype(np.int32)
    return x, y


def adding(opts: AddingOptions) -> Dataset:
    """The adding problem: steps carry (value ~ U[0,1], marker); target = sum of the two marked values.

    Predicting the constant 1 (the mean of the target) gives MSE = Var(U1 + U2) = 1/6.
    """
    return _generate(
        "adding",
        opts,
        lambda stream, n: _adding_examples(stream, opts, n),
        np.random.default_rng(opts.seed),
        task="regression",
        input_kind="features",
        meta={"constant_baseline_mse": 1.0 / 6.0},
    )


def _adding_examples(rng, opts: AddingOptions, n: int):
    T = opts.seq_len
    values = rng.random((n, T))
    markers = np.zeros((n, T))
    rows = np.arange(n)
    if opts.variant == "halves":
        first = rng.integers(0, T // 2, size=n)
        second = rng.integers(T // 2, T, size=n)
    else:
        pairs = np.array([rng.choice(T, size=2, replace=False) for _ in range(n)])
        first, second = pairs[:, 0], pairs[:, 1]
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    x = np.stack([values, markers], axis=-1).astype(np.float32)
    y = (values[rows, first] + values[rows, second]).astype(np.float32)
    return x, y


def _split(name, opts, train_val, test, **kwargs) -> Dataset:
    (x, y), (x_test, y_test) = train_val, test
    n_train = opts.n_train
    meta = kwargs.pop("meta", {})
    if kwargs["task"] != "regression":
        counts = np.bincount(y[:n_train], minlength=kwargs["n_classes"])
        meta["class_balance_train"] = {
            c: int(k) for c, k in zip(kwargs["class_names"], counts, strict=True)
        }
        meta["majority_baseline_val"] = float(np.bincount(y[n_train:]).max() / len(y[n_train:]))
    return Dataset(
        name=name,
        x_train=x[:n_train],
        y_train=y[:n_train],
        x_val=x[n_train:],
        y_val=y[n_train:],
        x_test=x_test,
        y_test=y_test,
        meta=meta,
        **kwargs,
    )
