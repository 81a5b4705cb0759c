"""Your own models, params and datasets in an experiment file: planned and checked without TensorFlow."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest

from keras_ablate.cli import main
from keras_ablate.config import parse_experiment
from keras_ablate.data import load_dataset
from keras_ablate.data.user import to_dataset
from keras_ablate.errors import DataError, UserError

BUILDER = """\
import keras


def build_bilstm(settings, dataset):
    return keras.Sequential([keras.layers.Dense(1)])
"""

DATA = """\
import numpy as np


def load(n=24, seed=0, offset=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(1, 9, size=(n, 5)) + offset
    y = (x[:, 0] > 4).astype("int32")
    return {"train": (x, y), "validation": (x[:8], y[:8]), "test": (x[:8], y[:8]), "task": "binary"}
"""

EXPERIMENT = """\
name: mine
dataset: {name: ngram, options: {n_train: 32, n_val: 16, seq_len: 6}}
models:
  bilstm: "my_models:build_bilstm"
base:
  epochs: 1
  params: {width: 4}
grid:
  architecture: [lstm, bilstm]
  params:
    merge_mode: [concat, sum]
"""


def _folder(tmp_path, experiment=EXPERIMENT, builder=BUILDER, data=None):
    (tmp_path / "exp.yaml").write_text(experiment, encoding="utf-8")
    if builder is not None:
        (tmp_path / "my_models.py").write_text(builder, encoding="utf-8")
    if data is not None:
        (tmp_path / "my_data.py").write_text(data, encoding="utf-8")
    return tmp_path / "exp.yaml"


def _plan(path):
    return parse_experiment(path.read_text(encoding="utf-8"), source=str(path))


def _refused(capsys, *argv):
    """Run the CLI, expect exit 2 and return its stderr."""
    assert main([*map(str, argv)]) == 2
    return capsys.readouterr().err


def test_a_models_name_is_a_grid_level_and_params_are_axes_in_the_run_id(tmp_path):
    exp, specs = _plan(_folder(tmp_path))
    assert [(s.axes["architecture"], s.axes["params.merge_mode"]) for s in specs] == [
        ("lstm", "concat"),
        ("lstm", "sum"),
        ("bilstm", "concat"),
        ("bilstm", "sum"),
    ]
    assert len({s.run_id for s in specs}) == 4
    mine = specs[2].settings
    assert mine["params"] == {"merge_mode": "concat", "width": 4}
    assert mine["builder"] == "my_models:build_bilstm"
    assert "builder" not in specs[0].settings  # built-ins keep their settings
    assert specs[2].base_dir == str(tmp_path.resolve())
    assert specs[0].base_dir is None


def test_an_inline_module_function_architecture_plans_too(tmp_path):
    text = EXPERIMENT.replace(
        "  architecture: [lstm, bilstm]", '  architecture: [lstm, "my_models:build_bilstm"]'
    )
    _, specs = _plan(_folder(tmp_path, text))
    assert specs[-1].settings["architecture"] == "my_models:build_bilstm"
    assert specs[-1].settings["builder"] == "my_models:build_bilstm"


def test_editing_the_model_module_changes_its_run_ids_only(tmp_path):
    path = _folder(tmp_path)
    before = {s.run_id for s in _plan(path)[1]}
    (tmp_path / "my_models.py").write_text(BUILDER + "\n# tuned\n", encoding="utf-8")
    after = {s.run_id for s in _plan(path)[1]}
    assert len(before & after) == 2  # the two lstm runs; the bilstm runs are new


@pytest.mark.parametrize(
    ("builder", "message"),
    [
        (None, r"module 'my_models' of 'my_models:build_bilstm' not found: no my_models.py"),
        (
            BUILDER.replace("build_bilstm", "build_bilstn"),
            r"defines no 'build_bilstm' \(did you mean 'build_bilstn'\?\)",
        ),
        (
            "def build_bilstm(settings, dataset)\n    pass\n",
            r"my_models.py:1: module 'my_models' of 'my_models:build_bilstm' does not parse",
        ),
    ],
    ids=["missing-module", "missing-function", "syntax-error"],
)
def test_plan_stops_at_a_missing_module_or_function_without_importing_tensorflow(
    tmp_path, capsys, builder, message
):
    import re

    path = _folder(tmp_path, builder=builder)
    sys.modules.pop("tensorflow", None)
    before = set(sys.modules)
    err = _refused(capsys, "plan", path)
    assert "tensorflow" not in set(sys.modules) - before
    assert re.search(r"exp.yaml:4: models.bilstm: ", err), err
    assert re.search(message, err), err
    assert "relative to the experiment file's folder" in err
    # run stops there too, before anything is written
    assert _refused(capsys, "run", path, "--results-dir", tmp_path / "results")
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    ("models", "message"),
    [
        ('{lstm: "my_models:build_bilstm"}', "'lstm' is a built-in architecture"),
        ('{bilstm: "my_models.build_bilstm"}', "is not MODULE:FUNCTION"),
    ],
)
def test_bad_models_entries_are_located(tmp_path, capsys, models, message):
    text = EXPERIMENT.replace('models:\n  bilstm: "my_models:build_bilstm"', f"models: {models}")
    err = _refused(capsys, "plan", _folder(tmp_path, text))
    assert "exp.yaml:3: models." in err and message in err, err


def test_an_unknown_architecture_names_the_models_and_the_grammar(tmp_path, capsys):
    text = EXPERIMENT.replace("[lstm, bilstm]", "[lstm, bilstn]")
    err = _refused(capsys, "plan", _folder(tmp_path, text))
    assert "exp.yaml:9: grid.architecture[1]" in err
    assert "did you mean 'bilstm'" in err and "MODULE:FUNCTION" in err, err


def test_a_params_block_must_be_a_mapping_of_plain_values(tmp_path, capsys):
    err = _refused(
        capsys, "plan", _folder(tmp_path, EXPERIMENT.replace("params: {width: 4}", "params: [4]"))
    )
    assert "exp.yaml:7: base.params: params is a mapping" in err, err
    text = EXPERIMENT.replace("merge_mode: [concat, sum]", "merge_mode: [concat, {a: 1}]")
    err = _refused(capsys, "plan", _folder(tmp_path, text))
    assert "exp.yaml:11: grid.params.merge_mode[1]" in err and "a param level is" in err, err


def test_a_params_axis_can_be_excluded_and_referenced(tmp_path):
    text = (
        EXPERIMENT
        + "exclude:\n  - {architecture: lstm, params.merge_mode: sum}\nreference: {params.merge_mode: sum}\n"
    )
    _, specs = _plan(_folder(tmp_path, text))
    assert [(s.axes["architecture"], s.axes["params.merge_mode"]) for s in specs] == [
        ("lstm", "concat"),
        ("bilstm", "concat"),
        ("bilstm", "sum"),
    ]


USER_DATA = """\
name: mine
dataset: {name: "my_data:load", options: {n: 24}}
grid: {architecture: [lstm], dataset.offset: [0, 1]}
"""


def test_a_user_dataset_plans_as_an_axis_and_its_source_hash_joins_run_ids_and_cache(tmp_path):
    path = _folder(tmp_path, USER_DATA, builder=None, data=DATA)
    _, specs = _plan(path)
    assert [s.dataset["options"] for s in specs] == [{"n": 24, "offset": 0}, {"n": 24, "offset": 1}]
    first = specs[0]
    data = load_dataset(first.dataset["name"], first.dataset["options"], base_dir=first.base_dir)
    assert data.task == "binary" and data.x_train.shape == (24, 5) and data.vocab_size == 9
    # Edit the module: another run id, and the cached data of the old version is not reused.
    (tmp_path / "my_data.py").write_text(DATA.replace("> 4", "> 6"), encoding="utf-8")
    edited = _plan(path)[1][0]
    assert edited.run_id != first.run_id
    again = load_dataset(
        edited.dataset["name"], edited.dataset["options"], base_dir=edited.base_dir
    )
    np.testing.assert_array_equal(again.y_train, (again.x_train[:, 0] > 6).astype("int32"))
    assert not np.array_equal(again.y_train, data.y_train)


def test_a_missing_user_dataset_function_is_located_at_dataset_name(tmp_path, capsys):
    path = _folder(tmp_path, USER_DATA, builder=None, data=DATA.replace("def load(", "def lode("))
    err = _refused(capsys, "plan", path)
    assert "exp.yaml:2: dataset.name: " in err and "defines no 'load'" in err, err


GOOD = {
    "train": (np.ones((4, 3), "int32"), np.array([0, 1, 0, 1])),
    "validation": (np.ones((2, 3), "int32"), np.array([0, 1])),
    "task": "binary",
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"task": "classes"}, "task 'classes'; valid: binary, multiclass, regression"),
        ({"train": np.ones((4, 3))}, "each split is an \\(x, y\\) pair"),
        (
            {"validation": (np.ones((2, 4), "int32"), np.array([0, 1]))},
            "same shape past the first axis",
        ),
        (
            {"train": (np.ones((4, 3), "float32"), np.array([0, 1, 0, 1]))},
            "int token ids \\(n, seq_len\\) or float features",
        ),
        (
            {"train": (np.ones((4, 3), "int32"), np.array([0, 1, 2, 1]))},
            "3 classes for task binary",
        ),
        (
            {"train": (np.ones((4, 3), "int32"), np.array([0, 1]))},
            "y must be one value per example",
        ),
        ({"extra": 1}, "unknown keys \\['extra'\\]"),
        ({"vocab_size": 1}, "token id 1 but vocab_size 1"),
    ],
    ids=["task", "not-a-pair", "shapes", "float-2d", "binary-classes", "lengths", "keys", "vocab"],
)
def test_bad_return_values_of_a_dataset_function_say_what_is_valid(change, message):
    import re

    with pytest.raises(DataError) as info:
        to_dataset("my_data:load", {**GOOD, **change})
    assert "the dataset function 'my_data:load' returned" in str(info.value)
    assert re.search(message, str(info.value)), str(info.value)
    assert to_dataset("my_data:load", GOOD).n_classes == 2


def test_a_bad_dataset_return_stops_run_before_anything_is_written(tmp_path, capsys):
    path = _folder(
        tmp_path, USER_DATA, builder=None, data=DATA.replace('"task": "binary"', '"task": "bin"')
    )
    err = _refused(capsys, "run", path, "--results-dir", tmp_path / "results")
    assert "exp.yaml:2: dataset.name: " in err and "task 'bin'" in err, err
    assert not (tmp_path / "results").exists()


def test_relative_data_paths_and_messages_are_from_the_experiment_folder(
    tmp_path, monkeypatch, capsys
):
    folder = tmp_path / "study"
    folder.mkdir()
    (folder / "reviews.csv").write_text(
        "text,label\n" + "".join(f"good film {i},pos\nbad film {i},neg\n" for i in range(10)),
        encoding="utf-8",
    )
    path = folder / "exp.yaml"
    path.write_text(
        "name: own\ndataset: {name: csv, options: {path: reviews.csv}}\ngrid: {architecture: [cnn]}\n",
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)  # elsewhere: the path is still read next to the experiment file
    assert main(["plan", str(path)]) == 0
    (folder / "reviews.csv").unlink()
    err = _refused(capsys, "plan", path)
    assert "reviews.csv not found" in err
    assert f"resolved relative to the experiment file's folder {folder.resolve()}" in err, err


def test_a_relative_base_from_says_where_it_was_resolved(tmp_path, capsys):
    path = tmp_path / "exp.yaml"
    path.write_text(
        textwrap.dedent("""\
        name: own
        dataset: {name: ngram}
        base_from: tuned/best.yaml
        """),
        encoding="utf-8",
    )
    err = _refused(capsys, "plan", path)
    assert f"no tuned settings at {tmp_path.resolve() / 'tuned/best.yaml'}" in err
    assert "resolved relative to the experiment file's folder" in err, err


def test_user_errors_are_user_errors():
    assert issubclass(DataError, UserError)


def test_params_and_layers_not_probed_reach_the_runs_table_and_the_timestep_caption():
    from types import SimpleNamespace

    import pandas as pd

    from keras_ablate.analysis.tables import _run_row
    from keras_ablate.report.render import _not_probed

    spec = {
        "run_id": "a",
        "seed": 0,
        "settings": {"architecture": "mine", "params": {"heads": 2}},
        "dataset": {"name": "d", "options": {}},
    }
    skipped = [{"layer": "enc/lstm", "reason": "inside nested model 'enc'"}]
    row = _run_row(spec, {"status": "ok", "probe_skipped": skipped})
    assert row["params.heads"] == 2 and "params" not in row
    assert row["probe_skipped"] == "enc/lstm (inside nested model 'enc')"
    other = _run_row({**spec, "run_id": "b"}, {"status": "ok"})
    assert "probe_skipped" not in other
    tables = SimpleNamespace(runs=pd.DataFrame([row, other]))
    assert _not_probed(tables) == " Not probed (no rows): enc/lstm (inside nested model 'enc')."
    assert _not_probed(SimpleNamespace(runs=pd.DataFrame([other]))) == ""
