"""Bad input found before anything runs: exit 2, one message naming the file, nothing written (issue 14)."""

from __future__ import annotations

import re
import time

import pytest

from keras_ablate.config import MAX_SEED, parse_experiment
from tests.test_yaml_input import VALID, _refused

# ---- 6. seeds and plan size, checked when the file is read -------------------------------------


@pytest.mark.parametrize(
    "seeds, message",
    [
        ("[-1]", r"seeds\[0\]: seed -1 is out of range"),
        ("[0, 4294967296]", r"seeds\[1\]: seed 4294967296 is out of range"),
        ("[1.0e+23]", r"seeds"),
        ("1.0e+23", r"seeds"),
        ("1000000000", r":5: seeds: a count N means seeds 0 .. N-1: .*\(got 1000000000\)"),
        ("[0, 0]", r"seeds\[1\]: seed 0 appears twice \(also seeds\[0\]\)"),
    ],
)
def test_seeds_are_checked_when_the_file_is_read(write_yaml, tmp_path, capsys, seeds, message):
    path = write_yaml(VALID + f"seeds: {seeds}\n")
    err = _refused(capsys, path, tmp_path / "results")
    assert re.search(message, err), err


def test_largest_seed_is_accepted():
    _, specs = parse_experiment(VALID + f"seeds: [0, {MAX_SEED}]\n")
    assert {s.seed for s in specs} == {0, MAX_SEED}


def test_a_plan_too_large_to_list_is_refused_before_listing(write_yaml, tmp_path, capsys):
    levels = ", ".join(str(i) for i in range(1, 401))
    grid = f"grid: {{architecture: [cnn, lstm], units: [{levels}], epochs: [{levels}]}}"
    path = write_yaml(VALID.replace("grid: {architecture: [cnn, lstm]}", grid))
    started = time.perf_counter()
    err = _refused(capsys, path, tmp_path / "results", commands=("plan",))
    assert time.perf_counter() - started < 1.0
    assert "320,000 runs (2 architecture x 400 units x 400 epochs x 1 seed(s))" in err
