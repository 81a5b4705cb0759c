"""The Dataset record every loader returns and every model builder reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Task = Literal["binary", "multiclass", "regression"]


@dataclass
class Dataset:
    """Arrays plus what a model builder needs to know about them.

    Attributes:
        x_train, y_train, x_val, y_val: numpy arrays. Token inputs are int32 of shape
            (n, seq_len); feature inputs are float32 of shape (n, seq_len, n_features).
        x_test, y_test: the held-out split, scored once at the end of a run and never used to
            select anything (None for a loader without one).
        task: "binary" (y in {0, 1}), "multiclass" (y in 0..n_classes-1) or "regression".
        input_kind: "tokens" (needs an embedding; ids in 0..vocab_size-1, 0 = padding)
            or "features" (fed to the first layer as they are).
        vocab_size: number of token ids (tokens only).
        n_classes: 2 for binary, k for multiclass, 0 for regression.
        class_names: label names in id order (classification), for plan and report.
        meta: anything worth showing (baseline metrics, class balance, source file).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    task: Task
    input_kind: Literal["tokens", "features"]
    vocab_size: int = 0
    n_classes: int = 0
    class_names: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None

    @property
    def has_test(self) -> bool:
        return self.x_test is not None and len(self.x_test) > 0

    @property
    def seq_len(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def padded(self) -> bool:
        """Whether any example holds padding (token id 0): then models build a padding mask."""
        if self.input_kind != "tokens":
            return False
        splits = [self.x_train, self.x_val] + ([self.x_test] if self.has_test else [])
        return any(bool((x == 0).any()) for x in splits)

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[2]) if self.input_kind == "features" else 0

    def baseline(self) -> dict:
        """Accuracy without learning, recorded with every run (analysis reads it without TensorFlow):
        n_classes, n_val, chance = 1 / n_classes, and the commonest class's share of each split."""
        if self.task == "regression" or not self.n_classes:
            return {}

        def majority(y: np.ndarray) -> float:
            return (
                float(np.bincount(np.asarray(y, dtype=np.int64)).max() / len(y)) if len(y) else 0.0
            )

        baseline = {
            "n_classes": int(self.n_classes),
            "n_val": int(len(self.y_val)),
            "chance": 1.0 / self.n_classes,
            "majority_val": majority(self.y_val),
            "majority_train": majority(self.y_train),
        }
        if self.has_test:
            baseline["n_test"] = int(len(self.y_test))
            baseline["majority_test"] = majority(self.y_test)
        return baseline

    @property
    def metric(self) -> str:
        """Name of the task metric recorded next to the loss."""
        return "mse" if self.task == "regression" else "accuracy"
