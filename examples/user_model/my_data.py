"""A user's own dataset for keras-ablate: synthetic, seeded, no downloads.

keras-ablate calls `load(**options)` and reads the dict it returns: train / validation / test
(x, y) pairs and the task. Here a sequence of tokens 3 .. vocab_size-1 holds one marker token,
1 or 2, somewhere in it; the class says which marker it is and whether it sits in the first or
the second half (4 classes), so a model must carry information from both ends.
"""

import numpy as np


def load(n_train=512, n_val=128, n_test=256, seq_len=16, vocab_size=20, seed=0):
    rng = np.random.default_rng(seed)

    def split(n):
        x = rng.integers(3, vocab_size, size=(n, seq_len))
        marker = rng.integers(1, 3, size=n)
        position = rng.integers(0, seq_len, size=n)
        x[np.arange(n), position] = marker
        y = (marker - 1) * 2 + (position >= seq_len // 2)
        return x.astype("int32"), y.astype("int32")

    return {
        "train": split(n_train),
        "validation": split(n_val),
        "test": split(n_test),
        "task": "multiclass",
        "n_classes": 4,
        "class_names": ["1 early", "1 late", "2 early", "2 late"],
        "vocab_size": vocab_size,
    }
