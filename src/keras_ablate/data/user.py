"""A user's own dataset function (`dataset: {name: "my_data:load", options: {...}}`): called, checked, cached.

The function is called with the options as keyword arguments and returns a mapping:

    {"train": (x, y), "validation": (x, y), "test": (x, y),   # test may be left out
     "task": "binary" | "multiclass" | "regression",
     "n_classes": 3, "class_names": [...], "vocab_size": 100}  # optional

x is int token ids of shape (n, seq_len) (0 = padding) or float features of shape
(n, seq_len, n_features); y holds class ids 0 .. n_classes-1 or real targets. The module's source
hash joins the run ids and the cache key (data.load_dataset), so editing the module never reuses
data or runs of the old version. The function must be deterministic in its options (seed it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict

from keras_ablate.data.base import Dataset
from keras_ablate.errors import DataError
from keras_ablate.usercode import call_error, check_defined, load_function

TASKS = ("binary", "multiclass", "regression")
KEYS = ("train", "validation", "test", "task", "n_classes", "class_names", "vocab_size")


class UserOptions(BaseModel):
    """Any options: they are the user function's keyword arguments."""

    model_config = ConfigDict(extra="allow", frozen=True)


def fingerprint(options: UserOptions, ref: str, base_dir: str | Path | None) -> dict:
    """The module's source hash (found without importing it): part of every run id built on it."""
    return {"module_sha256": check_defined(ref, base_dir).sha256}


def check(options: UserOptions, ref: str, base_dir: str | Path | None) -> None:
    """At plan time: the module exists and defines the function (read with ast, not imported)."""
    check_defined(ref, base_dir)


def load(options: UserOptions, ref: str, base_dir: str | Path | None) -> Dataset:
    function = load_function(ref, base_dir)
    kwargs = options.model_dump(mode="json")
    try:
        result = function(**kwargs)
    except Exception as exc:
        raise call_error(ref, exc, base_dir) from exc
    return to_dataset(ref, result)


def to_dataset(ref: str, result) -> Dataset:
    """Check what the user's function returned and make it a Dataset (DataError says what is wrong)."""
    where = f"the dataset function '{ref}' returned"
    if not isinstance(result, dict):
        raise DataError(
            f"{where} a {type(result).__name__}; it must return a dict with keys train, validation "
            "(and test), each an (x, y) pair, and task (binary, multiclass or regression)"
        )
    unknown = sorted(set(result) - set(KEYS))
    if unknown:
        raise DataError(f"{where} unknown keys {unknown}; valid keys: {', '.join(KEYS)}")
    for key in ("train", "validation", "task"):
        if key not in result:
            raise DataError(f"{where} no '{key}'; required: train, validation, task")
    task = result["task"]
    if task not in TASKS:
        raise DataError(f"{where} task {task!r}; valid: {', '.join(TASKS)}")
    splits = {
        k: _pair(where, k, result[k])
        for k in ("train", "validation", "test")
        if result.get(k) is not None
    }
    x_train = splits["train"][0]
    kind = "tokens" if x_train.ndim == 2 else "features"
    for name, (x, _y) in splits.items():
        if x.shape[1:] != x_train.shape[1:] or x.dtype.kind != x_train.dtype.kind:
            raise DataError(
                f"{where} {name} x of shape {x.shape} ({x.dtype}), train x of shape "
                f"{x_train.shape} ({x_train.dtype}): every split needs the same shape past the first axis"
            )
    vocab_size = 0
    if kind == "tokens":
        top = max(int(x.max(initial=0)) for x, _ in splits.values())
        low = min(int(x.min(initial=0)) for x, _ in splits.values())
        if low < 0:
            raise DataError(
                f"{where} a negative token id ({low}); ids are 0 (padding) .. vocab_size-1"
            )
        vocab_size = int(result.get("vocab_size") or top + 1)
        if top >= vocab_size:
            raise DataError(
                f"{where} token id {top} but vocab_size {vocab_size}; ids must be < vocab_size"
            )
    n_classes = 0
    if task != "regression":
        labels = np.concatenate([y for _, y in splits.values()])
        if labels.dtype.kind not in "iub" and not np.all(np.mod(labels, 1) == 0):
            raise DataError(
                f"{where} non-integer labels for task {task}; give class ids 0 .. n_classes-1"
            )
        n_classes = int(result.get("n_classes") or int(labels.max(initial=0)) + 1)
        if task == "binary" and n_classes != 2:
            raise DataError(
                f"{where} {n_classes} classes for task binary; binary labels are 0 and 1"
            )
        if n_classes < 2 or labels.min(initial=0) < 0 or labels.max(initial=0) >= n_classes:
            raise DataError(
                f"{where} labels from {labels.min()} to {labels.max()} with n_classes {n_classes}; "
                "labels must be 0 .. n_classes-1 with n_classes >= 2"
            )
    else:
        for name, (_x, y) in splits.items():
            if y.dtype.kind not in "iuf" or not np.isfinite(y.astype(np.float64)).all():
                raise DataError(
                    f"{where} {name} targets that are not finite numbers (task regression)"
                )
    label_type = np.float32 if task == "regression" else np.int32
    converted = {
        name: (x.astype(np.int32 if kind == "tokens" else np.float32), y.astype(label_type))
        for name, (x, y) in splits.items()
    }
    test = converted.get("test", (None, None))
    class_names = [str(c) for c in result.get("class_names") or range(n_classes)]
    return Dataset(
        name=ref,
        x_train=converted["train"][0],
        y_train=converted["train"][1],
        x_val=converted["validation"][0],
        y_val=converted["validation"][1],
        x_test=test[0],
        y_test=test[1],
        task=task,
        input_kind=kind,
        vocab_size=vocab_size,
        n_classes=n_classes,
        class_names=class_names,
        meta={"source": ref},
    )


def _pair(where: str, name: str, value) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise DataError(
            f"{where} {name} = {type(value).__name__}; each split is an (x, y) pair of arrays"
        )
    try:
        x, y = np.asarray(value[0]), np.asarray(value[1])
    except Exception as exc:  # ragged lists
        raise DataError(f"{where} {name} that is not a pair of arrays: {exc}") from None
    if x.dtype.kind not in "iuf" or y.dtype.kind not in "iufb":
        raise DataError(
            f"{where} {name} arrays of dtype {x.dtype} and {y.dtype}; both must be numeric"
        )
    if not (x.ndim == 2 and x.dtype.kind in "iu") and not (x.ndim == 3 and x.dtype.kind == "f"):
        raise DataError(
            f"{where} {name} x of shape {x.shape} ({x.dtype}); give int token ids (n, seq_len) or "
            "float features (n, seq_len, n_features)"
        )
    if y.ndim != 1 or len(y) != len(x) or len(x) == 0:
        raise DataError(
            f"{where} {name} x of {len(x)} examples and y of shape {y.shape}; y must be one value "
            "per example and a split must not be empty"
        )
    return x, y
