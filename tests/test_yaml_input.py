"""Experiment files are read safely: bounded aliases, nesting and size, no duplicate keys, UTF-8 (issue 14)."""

from __future__ import annotations

import os
import re
import time

import pytest

from keras_ablate.cli import main
from keras_ablate.config import parse_experiment
from keras_ablate.errors import ConfigError

VALID = """\
name: t
dataset: {name: ngram, options: {n_train: 64, n_val: 16, seq_len: 8, vocab_size: 12}}
base: {epochs: 1, units: 4, batch_size: 16}
grid: {architecture: [cnn, lstm]}
"""


def _cli(capsys, *argv) -> tuple[int, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def _refused(capsys, path, results, *argv, commands=("plan", "run"), about=None) -> str:
    """Every command exits 2 with one message naming the file (or `about`, a flag); nothing
    appears under results."""
    err = ""
    for command in commands:
        code, err = _cli(capsys, command, path, "--results-dir", results, *argv)
        assert code == 2, err
        assert err.count("keras-ablate: error:") == 1 and (about or str(path)) in err, err
        assert not results.exists(), f"{command} wrote {sorted(results.rglob('*'))}"
    return err


# ---- 1. YAML bombs -----------------------------------------------------------------------------


def _alias_bomb(levels: int = 9) -> str:
    text = (
        VALID + "exclude:\n  - &a [{architecture: cnn}, {architecture: cnn}, {architecture: cnn}]\n"
    )
    previous = "a"
    for name in "bcdefghijklmnop"[: levels - 1]:
        text += f"  - &{name} [{', '.join(['*' + previous] * 9)}]\n"
        previous = name
    return text


def test_alias_bomb_is_refused_in_under_a_second_naming_file_and_key(write_yaml, tmp_path, capsys):
    path = write_yaml(_alias_bomb())
    assert len(path.read_bytes()) < 700  # expands to 3 x 9**8 = 129 million mappings
    started = time.perf_counter()
    err = _refused(capsys, path, tmp_path / "results")
    assert time.perf_counter() - started < 1.0
    assert "exclude[8]" in err and "aliases" in err and "100,000" in err


@pytest.mark.parametrize(
    "text, message",
    [
        (VALID + "exclude: &x [*x]\n", r"recursive alias"),
        (VALID + "description: " + "[" * 40 + "]" * 40 + "\n", r":5: nested more than 32"),
        (VALID + "description: [" + "0, " * 100_001 + "]\n", r"more than 100000 values"),
        (VALID + "# " + "x" * (1 << 20) + "\n", r"larger than 1024 KiB"),
    ],
    ids=["recursive-alias", "too-deep", "too-many-values", "too-large"],
)
def test_documents_beyond_the_bounds_are_refused_fast(write_yaml, tmp_path, capsys, text, message):
    path = write_yaml(text)
    started = time.perf_counter()
    err = _refused(capsys, path, tmp_path / "results", commands=("plan",))
    assert time.perf_counter() - started < 1.0
    assert re.search(message, err), err


# ---- 3. duplicate keys -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, where",
    [
        (VALID + "base: {units: 8}\n", r":5: base: duplicate key 'base' \(first on line 3\)"),
        (
            VALID.replace("units: 4,", "units: 4, units: 8,"),
            r":3: base.units: duplicate key 'units' \(first on line 3\)",
        ),
        (
            VALID + "exclude:\n  - architecture: cnn\n    architecture: lstm\n",
            r":7: exclude\[0\].architecture: duplicate key 'architecture' \(first on line 6\)",
        ),
    ],
    ids=["top-level", "nested", "in-a-list"],
)
def test_duplicate_keys_are_refused_at_any_depth_with_line(
    write_yaml, tmp_path, capsys, text, where
):
    path = write_yaml(text)
    err = _refused(capsys, path, tmp_path / "results")
    assert re.search(where, err), err


def test_merge_keys_may_still_override_what_they_merge():
    text = VALID.replace(
        "base: {epochs: 1, units: 4, batch_size: 16}",
        "defaults: &d {epochs: 1, units: 4}\nbase: {<<: *d, units: 8}",
    )
    with pytest.raises(ConfigError, match="unknown key 'defaults'"):
        parse_experiment(text, source="m.yaml")  # the anchor holder itself is not a section
    text = VALID.replace("base: {epochs: 1, units: 4, batch_size: 16}", "base: {units: 8}")
    text += "reference: &r {architecture: cnn}\nanalysis: {<<: {target_fraction: 0.5}, metric: val/loss}\n"
    exp, _ = parse_experiment(text, source="m.yaml")
    assert exp.analysis.target_fraction == 0.5 and exp.base == {"units": 8}


# ---- 6. files that are not UTF-8 YAML ----------------------------------------------------------


@pytest.mark.parametrize("kind", ["latin-1", "utf-16", "directory", "binary", "fifo"])
def test_files_that_are_not_utf8_yaml_are_refused_with_a_message(tmp_path, capsys, kind):
    path = tmp_path / "exp.yaml"
    if kind == "directory":
        path.mkdir()
    elif kind == "binary":
        path.write_bytes(bytes(range(256)) * 4)
    elif kind == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("no FIFOs here")
        os.mkfifo(path)
    else:
        path.write_bytes(VALID.replace("name: t", "name: café").encode(kind))
    err = _refused(capsys, path, tmp_path / "results")
    expected = {
        "latin-1": ":1: not UTF-8 text",
        "utf-16": ":1: not UTF-8 text",
        "directory": "is a folder",
        "binary": "not UTF-8 text",
        "fifo": "not a regular file",
    }[kind]
    assert expected in err
