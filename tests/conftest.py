"""Shared fixtures: quiet TensorFlow, a private dataset cache, and small experiment files."""

from __future__ import annotations

import os
import textwrap

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    # Each test session gets its own dataset cache so tests never read a stale one.
    monkeypatch.setenv("KERAS_ABLATE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def write_yaml(tmp_path):
    """Write dedented YAML text to tmp_path/name and return its path."""

    def _write(text: str, name: str = "exp.yaml"):
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return _write


TINY = """
name: tiny
dataset: {name: ngram, options: {n_train: 128, n_val: 32, seq_len: 12, vocab_size: 20}}
base: {epochs: 1, units: 4, embed_dim: 4, filters: 4, batch_size: 32, jit_compile: false}
grid: {architecture: [cnn, lstm], clip: [none, "norm:1.0"]}
seeds: [0]
"""


@pytest.fixture
def tiny_yaml(write_yaml):
    return write_yaml(TINY, "tiny.yaml")
