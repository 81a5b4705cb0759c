"""Bad input found before anything runs: exit 2, one message naming the file, nothing written (issue 14)."""

from __future__ import annotations

import json
import os
import re
import stat
import sys
import time

import pytest

from keras_ablate import store
from keras_ablate.config import MAX_SEED, load_experiment, parse_experiment
from keras_ablate.progress import ProgressFile
from keras_ablate.store import slug_of
from tests.test_yaml_input import VALID, _cli, _refused

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


# ---- 4. user data checked before any run; 8. batch size against it -----------------------------

GOOD_CSV = "text,label\n" + "".join(f"good film {i},pos\nbad film {i},neg\n" for i in range(6))


@pytest.mark.parametrize(
    "content, message",
    [
        (
            GOOD_CSV.replace("text,label", "review,label"),
            r"no column 'text'.*columns found: review",
        ),
        ("text,label\ngood,pos\nfine,pos\nnice,pos\n", r"only one class \('pos'\)"),
        (
            GOOD_CSV.encode() + "caf\xe9,pos\n".encode("latin-1"),
            r"line 14: bytes .* not valid utf-8",
        ),
        ("text,label\n\n", r"has no data rows"),
        (GOOD_CSV + "odd,pos,extra\n", r"line 14: 3 fields, but the header"),
    ],
    ids=["missing-column", "one-class", "bad-encoding", "no-rows", "ragged-row"],
)
def test_bad_user_data_stops_plan_and_run_before_any_run(
    tmp_path, monkeypatch, capsys, content, message
):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "reviews.csv"
    data.write_bytes(content if isinstance(content, bytes) else content.encode())
    path = tmp_path / "own.yaml"
    path.write_text(
        "name: own\ndataset: {name: csv, options: {path: reviews.csv}}\n"
        "base: {epochs: 1, units: 4}\ngrid: {architecture: [cnn, lstm]}\n",
        encoding="utf-8",
    )
    err = _refused(capsys, path, tmp_path / "results")
    assert "reviews.csv" in err and re.search(message, err), err


def test_checking_user_data_at_plan_time_does_not_import_tensorflow(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reviews.csv").write_text(GOOD_CSV, encoding="utf-8")
    path = tmp_path / "own.yaml"
    path.write_text(
        "name: own\ndataset: {name: csv, options: {path: reviews.csv}}\nbase: {batch_size: 8}\n",
        encoding="utf-8",
    )
    sys.modules.pop("tensorflow", None)
    before = set(sys.modules)
    assert _cli(capsys, "plan", path)[0] == 0
    assert "tensorflow" not in set(sys.modules) - before


def test_batch_size_larger_than_the_training_set_warns_at_plan_time(write_yaml, capsys):
    path = write_yaml(VALID.replace("batch_size: 16", "batch_size: 100"))
    code, err = _cli(capsys, "plan", path)
    assert code == 0
    assert (
        f"warning: {path}:3: base.batch_size: batch_size 100 is larger than the 64 training" in err
    )
    code, err = _cli(capsys, "plan", write_yaml(VALID, "fine.yaml"))
    assert code == 0 and "warning" not in err


# ---- 7. one folder per experiment name ---------------------------------------------------------


def test_names_that_differ_get_different_folders_and_safe_names_keep_theirs():
    names = ["a/b", "a b", "a_b", "a:b", "..", "x" * 300]
    slugs = [slug_of(n) for n in names]
    assert len(set(slugs)) == len(names)
    assert (
        slug_of("a_b") == "a_b" and slug_of("claim_05_lstm_gradients") == "claim_05_lstm_gradients"
    )
    assert all(len(s) <= 100 and "/" not in s for s in slugs)


def test_a_folder_holding_another_experiment_is_not_written_into(
    write_yaml, tmp_path, capsys, monkeypatch
):
    results = tmp_path / "results"
    monkeypatch.setattr("keras_ablate.runner.run_grid", lambda *a, **k: _NoRuns())
    first = write_yaml(VALID.replace("name: t", "name: a/b"), "first.yaml")
    second = write_yaml(VALID.replace("name: t", "name: a b"), "second.yaml")
    assert _cli(capsys, "run", first, "--results-dir", results)[0] == 0
    assert _cli(capsys, "run", second, "--results-dir", results)[0] == 0
    folders = sorted(p.name for p in results.iterdir())
    assert len(folders) == 2 and all(f.startswith("a_b-") for f in folders)
    names = {json.loads((results / f / "experiment.json").read_text())["name"] for f in folders}
    assert names == {"a/b", "a b"}
    # Should two names still meet in one folder, the second is refused, not mixed in.
    exp, _ = load_experiment(second)
    store.write_json_atomic(exp.folder(results) / "experiment.json", {"name": "someone else"})
    code, err = _cli(capsys, "run", second, "--results-dir", results)
    assert code == 2 and "holds the results of experiment 'someone else'" in err


def test_a_folder_named_by_the_old_slug_is_still_found(write_yaml, tmp_path):
    path = write_yaml(VALID.replace("name: t", "name: my experiment"))
    exp, _ = load_experiment(path)
    legacy = tmp_path / "results" / "my_experiment"
    store.write_json_atomic(legacy / "experiment.json", {"name": "my experiment"})
    assert exp.folder(tmp_path / "results") == legacy
    store.write_json_atomic(legacy / "experiment.json", {"name": "my/experiment"})
    assert exp.folder(tmp_path / "results").name.startswith("my_experiment-")


def test_a_very_long_name_gets_a_bounded_folder_and_runs(write_yaml, tmp_path, capsys, monkeypatch):
    path = write_yaml(VALID.replace("name: t", "name: " + "x" * 5000))
    results = tmp_path / "results"
    monkeypatch.setattr("keras_ablate.runner.run_grid", lambda *a, **k: _NoRuns())
    assert _cli(capsys, "run", path, "--results-dir", results)[0] == 0
    (folder,) = results.iterdir()
    assert len(folder.name) < 100 and folder.name.startswith("x" * 80 + "-")
    assert json.loads((folder / "experiment.json").read_text())["name"] == "x" * 5000
    assert _cli(capsys, "status", path, "--results-dir", results)[0] == 0


class _NoRuns:
    failed = 0


# ---- 8. flags, filters, file modes -------------------------------------------------------------


@pytest.mark.parametrize("flags", [["--workers", "0"], ["--max-runs", "0"], ["--address", "auto"]])
def test_bad_run_flags_write_nothing(write_yaml, tmp_path, capsys, flags):
    path = write_yaml(VALID)
    _refused(capsys, path, tmp_path / "results", *flags, commands=("run",), about=flags[0])


def test_filter_with_an_unknown_key_lists_the_axes_and_a_level_matching_nothing_the_levels(
    write_yaml, tmp_path, capsys
):
    path = write_yaml(VALID)
    code, err = _cli(capsys, "plan", path, "--filter", "foo=bar")
    assert code == 2 and "unknown key 'foo'; axes of this grid: architecture" in err
    code, err = _cli(capsys, "plan", path, "--filter", "architecture=gru")
    assert code == 2 and "levels in this plan: architecture: cnn, lstm" in err


def test_files_the_suite_writes_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        store.write_json_atomic(tmp_path / "experiment.json", {"name": "t"})
        store.write_text_atomic(tmp_path / "report.html", "<html></html>")
        with ProgressFile(tmp_path, total=1, executor="test", workers=1):
            pass
        _, specs = parse_experiment(VALID)
        run = store.write_run(tmp_path, specs[0], {"status": "failed"}, {})
        os.umask(0o027)
        store.write_text_atomic(tmp_path / "report.md", "# t")
    finally:
        os.umask(old)
    modes = {
        p.name: stat.S_IMODE(p.stat().st_mode)
        for p in [*tmp_path.iterdir(), run / "summary.json"]
        if not p.name.startswith(".") and p.name != "runs"
    }
    assert modes == {
        "experiment.json": 0o644,
        "report.html": 0o644,
        "progress.json": 0o644,
        "summary.json": 0o644,
        "report.md": 0o640,
    }
    assert stat.S_IMODE(run.stat().st_mode) == 0o755
