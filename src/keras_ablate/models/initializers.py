"""Initializers named by the `init` (recurrent kernels) and `kernel_init` (dense/conv kernels) settings."""

from __future__ import annotations

import keras
import numpy as np

from keras_ablate.config.levels import parse_init, parse_kernel_init

# IRNN (Le et al. 2015): input weights drawn from N(0, sigma) with this small standard deviation.
IRNN_INPUT_STDDEV = 0.001


class SquareBlocks(keras.initializers.Initializer):
    """A (units, m * units) recurrent kernel as m square blocks, one per gate / candidate piece.

    Each block is the identity (`kind='identity'`) or a fresh random orthogonal matrix times
    `scale` (`kind='orthogonal'`), so every block, not just the first, has the wanted spectrum:
    an orthogonal matrix has all eigenvalues on the unit circle, so `scale` is its spectral radius.
    """

    def __init__(self, kind: str = "orthogonal", scale: float = 1.0):
        if kind not in ("identity", "orthogonal"):
            raise ValueError(f"SquareBlocks kind must be 'identity' or 'orthogonal', got '{kind}'")
        self.kind = kind
        self.scale = float(scale)

    def __call__(self, shape, dtype=None):
        rows, cols = shape
        if cols % rows:
            raise ValueError(
                f"a recurrent kernel of shape {tuple(shape)} is not a row of square blocks"
            )
        blocks = []
        for _ in range(cols // rows):
            if self.kind == "identity":
                blocks.append(keras.ops.eye(rows, dtype=dtype))
            else:
                # A fresh initializer per block draws a fresh seed from Keras's seeded generator.
                blocks.append(keras.initializers.Orthogonal()((rows, rows), dtype=dtype))
        return keras.ops.concatenate(blocks, axis=1) * self.scale

    def get_config(self):
        return {"kind": self.kind, "scale": self.scale}


def recurrent_initializers(init: str) -> dict:
    """Keyword arguments (kernel_, recurrent_, bias_initializer) for a recurrent layer or cell.

    `identity` is the IRNN recipe: identity recurrent blocks, N(0, 0.001) input weights, zero
    bias (an LSTM still gets its forget-gate bias from `forget_bias`). The other levels change
    only the recurrent kernel and keep Keras's defaults elsewhere.
    """
    kind, value = parse_init(init)
    out = {"kernel_initializer": "glorot_uniform", "bias_initializer": "zeros"}
    if kind == "glorot_uniform":
        out["recurrent_initializer"] = keras.initializers.GlorotUniform()
    elif kind == "orthogonal":
        out["recurrent_initializer"] = keras.initializers.Orthogonal()
    elif kind == "identity":
        out["recurrent_initializer"] = SquareBlocks("identity")
        out["kernel_initializer"] = keras.initializers.RandomNormal(stddev=IRNN_INPUT_STDDEV)
    else:
        out["recurrent_initializer"] = SquareBlocks("orthogonal", scale=value)
    return out


def kernel_initializer(kernel_init: str) -> keras.initializers.Initializer:
    """The initializer for dense and conv kernels named by `kernel_init`."""
    kind, sigma = parse_kernel_init(kernel_init)
    if kind == "glorot_uniform":
        return keras.initializers.GlorotUniform()
    if kind == "he_normal":
        return keras.initializers.HeNormal()
    return keras.initializers.RandomNormal(stddev=sigma)


def spectral_radius(matrix) -> float:
    """Largest eigenvalue modulus of a square matrix (numpy; used by tests and probes)."""
    return float(np.max(np.abs(np.linalg.eigvals(np.asarray(matrix, dtype=np.float64)))))
