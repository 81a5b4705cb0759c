"""Experiment files: expansion, stable run ids, and errors that say where and what is valid."""

from __future__ import annotations

import json
import sys

import pytest
import yaml

from keras_ablate.cli import main
from keras_ablate.config import filter_specs, load_experiment, parse_clip, parse_experiment
from keras_ablate.errors import ConfigError, UserError

BASE = """
name: t
dataset: {name: ngram, options: {n_train: 64, n_val: 16}}
base: {epochs: 1, units: 8}
"""


def _specs(text):
    return parse_experiment(text, source="exp.yaml")[1]


def test_factorial_expansion_counts_runs_times_seeds():
    specs = _specs(
        BASE + "grid: {architecture: [cnn, rnn, lstm], activation: [tanh, relu]}\nseeds: [0, 1]\n"
    )
    assert len(specs) == 3 * 2 * 2
    assert len({s.run_id for s in specs}) == 12
    assert {s.seed for s in specs} == {0, 1}


def test_integer_seeds_means_that_many_seeds():
    specs = _specs(BASE + "grid: {architecture: [cnn]}\nseeds: 3\n")
    assert [s.seed for s in specs] == [0, 1, 2]


def test_exclude_drops_matching_partial_settings():
    text = (
        BASE
        + """
grid: {architecture: [cnn, rnn], normalization: [none, batch, layer], clip: [none, "norm:1"]}
exclude:
  - {architecture: cnn, normalization: batch}
  - {clip: "norm:1.0", architecture: rnn, normalization: layer}
"""
    )
    specs = _specs(text)
    assert len(specs) == 2 * 3 * 2 - 2 - 1
    assert not any(
        s.settings["architecture"] == "cnn" and s.settings["normalization"] == "batch"
        for s in specs
    )
    # 'norm:1' and 'norm:1.0' are the same level.
    assert not any(
        s.settings["architecture"] == "rnn"
        and s.settings["normalization"] == "layer"
        and s.settings["clip"] == "norm:1.0"
        for s in specs
    )


def test_one_at_a_time_is_baseline_plus_single_changes():
    text = (
        BASE
        + "design: one_at_a_time\ngrid: {architecture: [lstm, rnn, gru], activation: [tanh, relu], clip: [none, 'norm:1']}\n"
    )
    specs = _specs(text)
    assert len(specs) == 1 + 2 + 1 + 1
    baseline = {"architecture": "lstm", "activation": "tanh", "clip": "none"}
    assert specs[0].axes == baseline
    for s in specs[1:]:
        changed = [k for k in baseline if s.axes[k] != baseline[k]]
        assert len(changed) == 1


def test_run_id_is_stable_under_key_order_and_float_spelling():
    a = _specs(BASE + "grid: {learning_rate: [0.001], clip: ['norm:1']}\n")
    b = parse_experiment(
        """
base: {units: 8, epochs: 1}
grid: {clip: ['norm:1.0'], learning_rate: [1e-3]}
dataset: {options: {n_val: 16, n_train: 64}, name: ngram}
name: t
""",
        source="b.yaml",
    )[1]
    assert a[0].run_id == b[0].run_id


def test_run_id_changes_with_any_setting_seed_or_dataset_option():
    ids = {
        _specs(BASE + "grid: {architecture: [cnn]}\n")[0].run_id,
        _specs(BASE + "grid: {architecture: [rnn]}\n")[0].run_id,
        _specs(BASE + "grid: {architecture: [cnn]}\nseeds: [1]\n")[0].run_id,
        _specs(BASE.replace("n_val: 16", "n_val: 17") + "grid: {architecture: [cnn]}\n")[0].run_id,
    }
    assert len(ids) == 4


def test_dataset_option_can_be_an_axis():
    specs = _specs(BASE + "grid: {dataset.seq_len: [10, 30]}\n")
    assert [s.dataset["options"]["seq_len"] for s in specs] == [10, 30]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("none", ("none", None)),
        ("value:0.5", ("value", 0.5)),
        ("norm:1", ("norm", 1.0)),
        ("global_norm:5", ("global_norm", 5.0)),
    ],
)
def test_parse_clip(text, expected):
    assert parse_clip(text) == expected


@pytest.mark.parametrize("bad", ["norm", "nrm:1", "norm:x", "value:-1", "global_norm:0"])
def test_parse_clip_rejects(bad):
    with pytest.raises(ValueError, match="clip"):
        parse_clip(bad)


@pytest.mark.parametrize(
    "snippet, expected",
    [
        (
            "grid: {activation: [tanh, rleu]}",
            r"exp.yaml:\d+: grid.activation\[1\]: unknown activation 'rleu' \(did you mean 'relu'\?\); known: .*elu",
        ),
        (
            "grid: {architecture: [lstn]}",
            r"grid.architecture\[0\]: unknown architecture 'lstn' \(did you mean 'lstm'\?\)",
        ),
        (
            "grid: {unitz: [1, 2]}",
            r"grid.unitz: unknown setting 'unitz' \(did you mean 'units'\?\); valid settings: .*architecture",
        ),
        ("grid: {units: [8, many]}", r"grid.units\[1\]: .*integer"),
        ("grid: {units: []}", r"grid.units: empty axis"),
        ("grid: {clip: [none, 'nrom:1']}", r"grid.clip\[1\]: clip must be .*did you mean 'norm'"),
        (
            "grid: {dataset.seq_lenn: [5]}",
            r"unknown option 'seq_lenn' of dataset 'ngram' \(did you mean 'seq_len'\?\)",
        ),
        (
            "gird: {units: [1]}",
            r"unknown key 'gird' \(did you mean 'grid'\?\); valid keys: name, description, dataset",
        ),
        ("grid: {units: [8]}\nexclude: [{units: 8}]", r"every run of the grid is excluded"),
        ("grid: {units: [8, 8]}", r"grid.units\[1\]: level 8 appears twice"),
        (
            "grid: {activation: [tanh]}\nreference: {activation: relu}",
            r"reference.activation: 'relu' is not a level",
        ),
    ],
)
def test_bad_experiment_names_file_key_and_valid_choices(snippet, expected):
    with pytest.raises(ConfigError, match=expected):
        parse_experiment(BASE + snippet + "\n", source="exp.yaml")


def test_unknown_dataset_lists_known_names():
    with pytest.raises(
        ConfigError,
        match=r"dataset.name: unknown dataset 'ngrm' \(did you mean 'ngram'\?\); known: adding, ",
    ):
        parse_experiment("name: t\ndataset: {name: ngrm}\n", source="exp.yaml")


def test_bad_dataset_option_names_the_key():
    with pytest.raises(
        ConfigError, match=r"exp.yaml:3: dataset.options.seq_len: .*greater than or equal to 4"
    ):
        parse_experiment(
            "name: t\ndataset:\n  options: {seq_len: 2}\n  name: ngram\n", source="exp.yaml"
        )


def test_yaml_syntax_error_has_line_and_column():
    with pytest.raises(ConfigError, match=r"exp.yaml:3:\d+: YAML syntax error"):
        parse_experiment(
            "name: t\ndataset: {name: ngram}\ngrid: {units: [1, 2}\n", source="exp.yaml"
        )


def test_filter_keeps_matching_runs_and_rejects_unknown_keys():
    specs = _specs(BASE + "grid: {architecture: [cnn, rnn], clip: [none, 'norm:1']}\n")
    kept = filter_specs(specs, ["architecture=rnn", "clip=norm:1"])
    assert [(s.settings["architecture"], s.settings["clip"]) for s in kept] == [("rnn", "norm:1.0")]
    with pytest.raises(ConfigError, match="unknown key 'archtecture'"):
        filter_specs(specs, ["archtecture=rnn"])


def test_cli_bad_yaml_exits_2_and_writes_nothing(write_yaml, tmp_path, capsys):
    path = write_yaml(BASE + "grid: {activation: [tanh, rleu]}\n")
    results = tmp_path / "results"
    assert main(["run", str(path), "--results-dir", str(results)]) == 2
    err = capsys.readouterr().err
    assert "exp.yaml" in err and "rleu" in err and "did you mean 'relu'" in err
    assert not results.exists()


def test_cli_missing_file_and_bad_flag_exit_2(tmp_path, capsys):
    assert main(["plan", str(tmp_path / "nope.yaml")]) == 2
    assert "no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["run", "x.yaml", "--max-runs", "many"])
    assert exc.value.code == 2


def test_plan_does_not_import_tensorflow(tiny_yaml, capsys):
    sys.modules.pop("tensorflow", None)
    before = set(sys.modules)
    assert main(["plan", str(tiny_yaml)]) == 0
    out = capsys.readouterr().out
    assert "4 runs" in out
    assert "tensorflow" not in set(sys.modules) - before


def test_shipped_experiment_files_are_valid():
    exp, specs = load_experiment("ablations.yaml")
    # 96 arms, each at the protocol's 3 learning rates.
    assert len(specs) == 4 * 4 * 3 * 2 * 3
    assert exp.protocol is not None and len(exp.protocol.learning_rate) == 3
    assert {s.settings["learning_rate"] for s in specs} == set(exp.protocol.learning_rate)
    assert set(exp.grid) >= {"architecture", "activation", "normalization", "clip"}


def test_editing_a_user_data_file_changes_the_run_ids(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "reviews.csv"
    data.write_text(
        "text,label\n" + "".join(f"good film {i},pos\nbad film {i},neg\n" for i in range(10)),
        encoding="utf-8",
    )
    text = "name: own\ndataset: {name: csv, options: {path: reviews.csv}}\ngrid: {architecture: [cnn]}\n"
    before = parse_experiment(text, source="own.yaml")[1][0]
    data.write_text(data.read_text(encoding="utf-8") + "great film,pos\n", encoding="utf-8")
    after = parse_experiment(text, source="own.yaml")[1][0]
    assert before.run_id != after.run_id
    assert before.dataset["fingerprint"]["path"] != after.dataset["fingerprint"]["path"]
    data.unlink()
    with pytest.raises(UserError, match="reviews.csv not found"):
        parse_experiment(text, source="own.yaml")


# Two valid levels for every option of the text datasets (file datasets' paths are filled in below).
TEXT_OPTION_LEVELS = {
    "vocab_size": [1000, 2000],
    "max_length": [20, 40],
    "padding": ["post", "pre"],
    "seed": [0, 1],
    "tokenize": ["word", "character"],
    "lowercase": [True, False],
    "strip_punctuation": [True, False],
    "val_fraction": [0.2, 0.3],
    "test_fraction": [0.0, 0.2],
    "n_max": [None, 100],
    "text_column": ["text", "body"],
    "label_column": ["label", "tag"],
    "encoding": ["utf-8", "latin-1"],
    "n_train": [None, 100],
    "n_val": [None, 50],
    "n_test": [None, 50],
}
TEXT_DATASETS = ("rotten_tomatoes", "imdb", "csv", "tsv", "jsonl")


def _valid_data(fmt: str) -> str:
    """A data file that passes the plan-time checks under every level above: columns text/body
    and label/tag, 8 examples per class, and for csv/tsv readable with both delimiter levels
    (split by either one, the line has columns named text, body, label and tag)."""
    rows = [("text", "body", "label", "tag")] + [
        (f"{word} film {i}", f"{word} film {i}", str(y), str(y))
        for i in range(8)
        for word, y in (("good", 1), ("bad", 0))
    ]
    if fmt == "jsonl":
        keys = rows[0]
        return "".join(json.dumps(dict(zip(keys, r, strict=True))) + "\n" for r in rows[1:])
    a, b = {"csv": (",", ";"), "tsv": ("\t", "|")}[fmt]
    return "".join(f"{b.join(r)}{b}q{a}{a.join(r)}\n" for r in rows)


@pytest.mark.parametrize("dataset", TEXT_DATASETS)
def test_every_option_of_a_text_dataset_can_be_an_axis(dataset, tmp_path):
    from keras_ablate.data import get_entry

    fmt = {"csv": "csv", "tsv": "tsv", "jsonl": "jsonl"}.get(dataset)
    files = []
    for name in ("a", "b", "val"):
        path = tmp_path / f"{name}.{fmt or 'npz'}"
        path.write_text(_valid_data(fmt) if fmt else "x", encoding="utf-8")
        files.append(str(path))
    levels = {
        **TEXT_OPTION_LEVELS,
        "path": files[:2] if fmt else [None, files[0]],
        "val_path": [None, files[2]],
        "test_path": [None, files[2]],
        "delimiter": {"csv": [",", ";"], "tsv": ["\t", "|"]}.get(dataset),
    }
    options = {"path": files[0]} if fmt else {}
    fields = list(get_entry(dataset).options_model().model_fields)
    assert fields and all(levels.get(o) for o in fields), "give every option two levels above"
    for option in fields:
        grid = {f"dataset.{option}": levels[option]}
        # An axis may also be the only place an option is given (a csv path).
        given = {k: v for k, v in options.items() if k != option}
        text = yaml.safe_dump(
            {"name": "axis", "dataset": {"name": dataset, "options": given}, "grid": grid}
        )
        path = tmp_path / f"{dataset}_{option}.yaml"
        path.write_text(text, encoding="utf-8")
        _, specs = load_experiment(path)
        assert [s.dataset["options"][option] for s in specs] == levels[option], option
        assert len({s.run_id for s in specs}) == 2


def test_dataset_option_axis_of_a_csv_file_plans_from_the_command_line(tmp_path, capsys):
    # Issue 13: "grid.dataset.padding[0]: Field required" (validated without the csv's path).
    data = tmp_path / "d.csv"
    data.write_text(_valid_data("csv"), encoding="utf-8")
    path = tmp_path / "pad.yaml"
    path.write_text(
        f"name: pad\ndataset: {{name: csv, options: {{path: {data}}}}}\n"
        "grid: {dataset.padding: [post, pre]}\n",
        encoding="utf-8",
    )
    assert main(["plan", str(path)]) == 0
    assert "2 runs" in capsys.readouterr().out


def test_a_bad_dataset_option_level_is_still_reported_at_its_level(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("text,label\nfine,1\nbad,0\n", encoding="utf-8")
    text = (
        f"name: pad\ndataset: {{name: csv, options: {{path: {data}}}}}\n"
        "grid: {dataset.padding: [post, middle]}\n"
    )
    with pytest.raises(ConfigError, match=r"grid\.dataset\.padding\[1\]: .*'post' or 'pre'"):
        parse_experiment(text, source="exp.yaml")


def test_dataset_options_that_only_work_together_can_be_axes():
    # seq_len 4 needs ngram_len 2 (ngram_len 3 needs seq_len >= 6); each level meets a valid partner.
    specs = _specs(
        "name: t\ndataset: {name: ngram, options: {n_train: 32, n_val: 16}}\n"
        "grid: {dataset.seq_len: [4, 8], dataset.ngram_len: [2]}\n"
    )
    assert [s.dataset["options"]["seq_len"] for s in specs] == [4, 8]
