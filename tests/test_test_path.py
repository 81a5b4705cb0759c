"""A user's test file (`test_path`) instead of the held-out fraction, and the default test splits."""

from __future__ import annotations

import re

import numpy as np
import pydantic
import pytest

from keras_ablate import data as registry
from keras_ablate.data import text
from keras_ablate.errors import DataError
from tests.test_data_text import write_fake_imdb, write_reviews_csv
from tests.test_yaml_input import _cli, _refused


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_ABLATE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setattr(registry, "_MEMORY", {})


def _test_file(path, rows):
    path.write_text("text,label\n" + "".join(f"{t},{lab}\n" for t, lab in rows), encoding="utf-8")
    return path


def test_a_test_file_replaces_the_held_out_fraction(tmp_path):
    train = write_reviews_csv(tmp_path / "train.csv", n_per_class=10)
    test = _test_file(
        tmp_path / "test.csv", [("unseenword fine", "pos"), ("otherword dull", "neg"), ("x", "neg")]
    )
    data = text.csv_file(text.CsvOptions(path=str(train), test_path=str(test), max_length=6))
    # Nothing of the training file is held out: 20 rows, a fifth (2 per class) validates.
    assert len(data.y_train) == 16 and len(data.y_val) == 4
    assert data.x_test.shape == (3, 6)
    assert sorted(data.y_test.tolist()) == [0, 0, 1]  # neg = 0, pos = 1, as in training
    assert data.meta["test_source"] == str(test)
    # The vocabulary is the training file's: the test file's own words are out-of-vocabulary.
    row = data.x_test[data.y_test.tolist().index(1)]
    assert row[0] == 1 and row[1] > 1
    assert data.baseline()["n_test"] == 3
    # The test file joins the run id's content hashes.
    opts = text.CsvOptions(path=str(train), test_path=str(test))
    assert set(text.file_fingerprint(opts)) == {"path", "test_path"}


def test_a_relative_test_path_is_read_like_path_from_the_working_directory(tmp_path, monkeypatch):
    write_reviews_csv(tmp_path / "train.csv")
    _test_file(tmp_path / "test.csv", [("fine", "pos"), ("dull", "neg")])
    monkeypatch.chdir(tmp_path)
    data = text.csv_file(text.CsvOptions(path="train.csv", test_path="test.csv"))
    assert len(data.y_test) == 2


@pytest.mark.parametrize(
    "content, message",
    [
        (None, r"test_path file .*nope\.csv not found"),
        (
            "text,sentiment\nfine,pos\n",
            r"test\.csv: no column 'label'.*columns found: text, sentiment \(set the label_column",
        ),
        (
            "text,label\nfine,pos\nso so,meh\n",
            r"test\.csv line 3: label 'meh' never occurs in .*train\.csv",
        ),
    ],
    ids=["missing-file", "other-columns", "unseen-label"],
)
def test_a_bad_test_file_is_refused_naming_it_and_the_line(tmp_path, content, message):
    train = write_reviews_csv(tmp_path / "train.csv")
    test = tmp_path / ("nope.csv" if content is None else "test.csv")
    if content is not None:
        test.write_text(content, encoding="utf-8")
    opts = text.CsvOptions(path=str(train), test_path=str(test))
    for load in (text.csv_file, text.check_file):  # a run, and plan's check
        with pytest.raises(DataError, match=message):
            load(opts)


def test_plan_refuses_a_bad_test_file_with_exit_2_naming_the_experiment_and_the_key(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    write_reviews_csv(tmp_path / "train.csv")
    _test_file(tmp_path / "test.csv", [("fine", "pos"), ("so so", "meh")])
    path = tmp_path / "own.yaml"
    path.write_text(
        "name: own\ndataset: {name: csv, options: {path: train.csv, test_path: test.csv}}\n"
        "base: {epochs: 1, units: 4}\ngrid: {architecture: [cnn, lstm]}\n",
        encoding="utf-8",
    )
    err = _refused(capsys, path, tmp_path / "results")
    assert "dataset.options" in err and re.search(r"test\.csv line 3: label 'meh'", err), err
    _test_file(tmp_path / "test.csv", [("fine", "pos"), ("so so", "neg")])
    code, err = _cli(capsys, "plan", path, "--results-dir", tmp_path / "results")
    assert code == 0, err


def test_test_path_and_a_test_fraction_are_not_both_given():
    with pytest.raises(pydantic.ValidationError, match="set test_fraction or test_path, not both"):
        registry.validate_options(
            "csv", {"path": "x.csv", "test_path": "t.csv", "test_fraction": 0.1}
        )
    # Normalized options (every field, the default fraction included) still validate.
    opts = registry.validate_options("csv", {"path": "x.csv", "test_path": "t.csv"})
    assert registry.validate_options("csv", opts.model_dump(mode="json")).test_path == "t.csv"


def test_text_files_hold_out_a_test_split_by_default(tmp_path):
    opts = registry.validate_options("csv", {"path": str(write_reviews_csv(tmp_path / "r.csv"))})
    assert opts.test_fraction == 0.2
    assert registry.validate_options("rotten_tomatoes", {}).test_fraction == 0.2
    data = text.csv_file(opts)
    assert data.has_test and np.bincount(data.y_test).tolist() == [2, 2]


def test_imdb_splits_its_source_test_reviews_into_disjoint_validation_and_test(tmp_path):
    write_fake_imdb(tmp_path / "keras_home" / "datasets" / "imdb.npz", n=40)
    data = text.imdb(text.ImdbOptions(vocab_size=60, max_length=40, n_test=6))
    # Half of the 40 source test reviews are held out (6 of them kept), the other 20 validate.
    assert len(data.y_val) == 20 and len(data.y_test) == 6
    assert np.bincount(data.y_test).tolist() == [3, 3]
    # The fake reviews are random word lists of 3-29 words: equal rows are the same review.
    val_rows = {tuple(r) for r in data.x_val.tolist()}
    assert not any(tuple(r) in val_rows for r in data.x_test.tolist())
    none = text.imdb(text.ImdbOptions(vocab_size=60, max_length=40, test_fraction=0))
    assert not none.has_test and len(none.y_val) == 40
