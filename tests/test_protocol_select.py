"""Protocol rate selection on hand-built run tables (no training)."""

from __future__ import annotations

import math

import pandas as pd

from keras_ablate.analysis.protocol import apply_protocol, select_rates, selected_runs
from keras_ablate.analysis.tables import Tables
from keras_ablate.report.protocol_section import protocol_section, sensitivity
from keras_ablate.report.sections import status_counts


def _runs(rows):
    return pd.DataFrame(
        rows, columns=["run_id", "architecture", "learning_rate", "seed", "final/val/loss"]
    )


def test_each_arm_gets_the_rate_with_the_best_mean_over_seeds():
    runs = _runs(
        [
            ("a1", "rnn", 0.001, 0, 0.50), ("a2", "rnn", 0.001, 1, 0.70),  # mean 0.60
            ("a3", "rnn", 0.01, 0, 0.40), ("a4", "rnn", 0.01, 1, 0.90),  # mean 0.65
            ("b1", "lstm", 0.001, 0, 0.69), ("b2", "lstm", 0.001, 1, 0.69),
            ("b3", "lstm", 0.01, 0, 0.20), ("b4", "lstm", 0.01, 1, 0.30),
        ]
    )  # fmt: skip
    table = select_rates(runs, ["architecture"], "val/loss", [0.001, 0.01])
    chosen = table[table["selected"]].set_index("architecture")["learning_rate"].to_dict()
    # rnn: 0.60 < 0.65 (the best single seed, 0.40, must not decide); lstm: 0.25 < 0.69.
    assert chosen == {"rnn": 0.001, "lstm": 0.01}
    assert table.loc[table["architecture"] == "rnn", "select_value"].round(6).tolist() == [
        0.6,
        0.65,
    ]
    kept = selected_runs(runs, table, ["architecture"])
    assert sorted(kept["run_id"]) == ["a1", "a2", "b3", "b4"]


def test_higher_is_better_metrics_pick_the_largest_mean():
    runs = pd.DataFrame(
        {
            "run_id": ["x", "y"],
            "architecture": ["cnn", "cnn"],
            "learning_rate": [0.1, 0.2],
            "final/val/accuracy": [0.7, 0.9],
        }
    )
    table = select_rates(runs, ["architecture"], "val/accuracy", [0.1, 0.2])
    assert table.loc[table["selected"], "learning_rate"].tolist() == [0.2]


def test_a_rate_where_a_seed_diverged_ranks_after_complete_rates():
    runs = _runs(
        [
            ("a", "gru", 0.1, 0, 0.01), ("b", "gru", 0.1, 1, math.nan),  # one seed diverged
            ("c", "gru", 0.01, 0, 0.30), ("d", "gru", 0.01, 1, 0.35),
        ]
    )  # fmt: skip
    table = select_rates(runs, ["architecture"], "val/loss", [0.1, 0.01])
    assert table.loc[table["selected"], "learning_rate"].tolist() == [0.01]
    assert table.set_index("learning_rate").loc[0.1, "finished"] == 1


def test_ties_go_to_the_rate_listed_first():
    runs = _runs([("a", "rnn", 0.01, 0, 0.5), ("b", "rnn", 0.001, 0, 0.5)])
    table = select_rates(runs, ["architecture"], "val/loss", [0.01, 0.001])
    assert table.loc[table["selected"], "learning_rate"].tolist() == [0.01]


def test_file_order_decides_ties_and_the_table_order_whatever_the_row_order():
    # The runs list the later rate first: only the protocol's file order may break the tie.
    runs = _runs(
        [
            ("b", "rnn", 0.001, 0, 0.5), ("a", "rnn", 0.01, 0, 0.5),
            ("d", "lstm", 0.001, 0, 0.2), ("c", "lstm", 0.01, 0, 0.4),
        ]
    )  # fmt: skip
    table = select_rates(runs, ["architecture"], "val/loss", [0.01, 0.001])
    assert table[["architecture", "learning_rate", "selected"]].values.tolist() == [
        ["lstm", 0.01, False],
        ["lstm", 0.001, True],
        ["rnn", 0.01, True],
        ["rnn", 0.001, False],
    ]
    assert list(table.columns) == [
        "architecture",
        "learning_rate",
        "seeds",
        "finished",
        "select_value",
        "selected",
        "at_edge",
    ]


def test_without_axes_one_rate_is_selected_for_the_whole_grid():
    runs = _runs(
        [("a", "rnn", 0.1, 0, 0.9), ("b", "rnn", 0.01, 0, 0.3), ("c", "rnn", 0.001, 0, 0.6)]
    )
    table = select_rates(runs, [], "val/loss", [0.1, 0.01, 0.001])
    assert table["learning_rate"].tolist() == [0.1, 0.01, 0.001]
    assert table["selected"].tolist() == [False, True, False]
    assert sorted(selected_runs(runs, table, [])["run_id"]) == ["b"]


def test_an_arm_with_nothing_finished_keeps_its_first_listed_rate():
    # Every seed diverged (NaN) at both rates of gru; a metric never recorded at all gives the
    # same: nothing to compare, so the first rate in the file, and finished = 0.
    runs = _runs(
        [
            ("a", "gru", 0.001, 0, math.nan), ("b", "gru", 0.1, 0, math.nan),
            ("c", "rnn", 0.001, 0, 0.2), ("d", "rnn", 0.1, 0, 0.1),
        ]
    )  # fmt: skip
    table = select_rates(runs, ["architecture"], "val/loss", [0.1, 0.001])
    chosen = table[table["selected"]].set_index("architecture")["learning_rate"].to_dict()
    assert chosen == {"gru": 0.1, "rnn": 0.1}
    assert table.loc[table["architecture"] == "gru", "finished"].tolist() == [0, 0]
    missing = select_rates(runs, ["architecture"], "val/accuracy", [0.1, 0.001])
    assert missing.loc[missing["selected"], "learning_rate"].tolist() == [0.1, 0.1]
    assert missing["finished"].tolist() == [0, 0, 0, 0] and missing["select_value"].isna().all()


def test_apply_protocol_keeps_every_frame_to_the_selected_runs():
    runs = _runs(
        [
            ("a", "rnn", 0.001, 0, 0.5), ("b", "rnn", 0.01, 0, 0.3),
            ("c", "lstm", 0.001, 0, 0.2), ("d", "lstm", 0.01, 0, 0.4),
        ]
    )  # fmt: skip
    ids = pd.Categorical(["a", "b", "c", "d"])

    def per_run(name):
        return pd.DataFrame({"run_id": ids, name: [1.0, 2.0, 3.0, 4.0]})

    tables = Tables(
        runs=runs,
        history=per_run("value"),
        steps=per_run("value"),
        axes=["architecture"],
        timesteps=per_run("grad_norm"),
        extra={"units": per_run("value")},
    )
    apply_protocol(tables, {"select_on": "val/loss", "learning_rate": [0.001, 0.01]})
    assert tables.all_runs is runs and tables.protocol["selected"].sum() == 2
    assert tables.runs["run_id"].tolist() == ["b", "c"]
    for frame in (tables.history, tables.steps, tables.timesteps, tables.extra["units"]):
        assert frame["run_id"].astype(str).tolist() == ["b", "c"]
        assert frame.index.tolist() == [0, 1] and "index" not in frame.columns
        assert list(frame["run_id"].cat.categories) == ["b", "c"]  # no empty categories left
    # No learning-rate column (a grid without the protocol's runs): nothing changes.
    plain = Tables(
        runs=runs.drop(columns="learning_rate"), history=per_run("v"), steps=per_run("v"), axes=[]
    )
    apply_protocol(plain, {"select_on": "val/loss", "learning_rate": [0.1]})
    assert plain.all_runs is None and len(plain.runs) == 4


def test_an_axis_level_that_is_missing_or_an_unused_category_is_handled_as_in_the_runs():
    # A setting absent from some runs reads NaN: those runs are an arm of their own. A
    # categorical axis (as load() gives) with a level no run has makes no arm.
    runs = _runs(
        [
            ("a", "rnn", 0.1, 0, 0.5), ("b", "rnn", 0.01, 0, 0.3),
            ("c", None, 0.1, 0, 0.2), ("d", None, 0.01, 0, 0.4),
        ]
    )  # fmt: skip
    runs["architecture"] = pd.Categorical(runs["architecture"], categories=["gru", "rnn"])
    table = select_rates(runs, ["architecture"], "val/loss", [0.1, 0.01])
    assert len(table) == 4 and table["seeds"].tolist() == [1, 1, 1, 1]
    chosen = table.loc[table["selected"], ["architecture", "learning_rate"]]
    assert chosen.astype(object).where(chosen.notna(), None).values.tolist() == [
        ["rnn", 0.01],
        [None, 0.1],
    ]
    kept = selected_runs(runs, table, ["architecture"])
    assert sorted(kept["run_id"]) == ["b", "c"] and list(kept.columns) == list(runs.columns)


def test_a_rate_selected_at_either_end_of_the_list_is_flagged_as_the_edge():
    runs = _runs(
        [
            ("a1", "rnn", 0.001, 0, 0.30), ("a2", "rnn", 0.003, 0, 0.50), ("a3", "rnn", 0.01, 0, 0.70),
            ("b1", "lstm", 0.001, 0, 0.70), ("b2", "lstm", 0.003, 0, 0.20), ("b3", "lstm", 0.01, 0, 0.40),
            ("c1", "gru", 0.001, 0, 0.90), ("c2", "gru", 0.003, 0, 0.60), ("c3", "gru", 0.01, 0, 0.10),
        ]
    )  # fmt: skip
    # The list's order is not the rates' order: the ends are the smallest and largest rate.
    table = select_rates(runs, ["architecture"], "val/loss", [0.003, 0.01, 0.001])
    edge = table[table["selected"]].set_index("architecture")["at_edge"].to_dict()
    assert edge == {"rnn": True, "lstm": False, "gru": True}
    assert not table.loc[~table["selected"], "at_edge"].any()
    # One rate: nothing to extend past.
    single = select_rates(
        runs[runs["learning_rate"] == 0.001], ["architecture"], "val/loss", [0.001]
    )
    assert not single["at_edge"].any()
    # Two rates: both are ends, so every selection is at the edge.
    two = select_rates(
        runs[runs["learning_rate"] != 0.003], ["architecture"], "val/loss", [0.001, 0.01]
    )
    assert two.loc[two["selected"], "at_edge"].tolist() == [True, True, True]
    # The report's protocol part counts them and marks each one.
    ids = pd.Categorical(runs["run_id"])
    frame = pd.DataFrame({"run_id": ids, "value": 1.0})
    protocol = {"select_on": "val/loss", "learning_rate": [0.003, 0.01, 0.001]}
    tables = Tables(
        runs=runs, history=frame, steps=frame, axes=["architecture"], info={"protocol": protocol}
    )
    apply_protocol(tables, protocol)
    part = protocol_section(tables)
    assert (part["edge"], part["n_arms"]) == (2, 3)
    rates = {row["arm"]: row["rate"] for row in part["rows"]}
    assert rates == {
        "architecture=rnn": "0.001 (edge)",
        "architecture=lstm": "0.003",
        "architecture=gru": "0.01 (edge)",
    }


def test_the_reports_run_counts_include_the_rates_that_were_not_selected():
    runs = _runs(
        [
            ("a", "rnn", 0.001, 0, 0.5), ("b", "rnn", 0.01, 0, 0.3),
            ("c", "lstm", 0.001, 0, 0.2), ("d", "lstm", 0.01, 0, 0.4),
        ]
    )  # fmt: skip
    runs["status"] = "ok"
    frame = pd.DataFrame({"run_id": pd.Categorical(runs["run_id"]), "value": 1.0})
    protocol = {"select_on": "val/loss", "learning_rate": [0.001, 0.01]}
    info = {"protocol": protocol, "run_ids": ["a", "b", "c", "d", "e"]}  # e: planned, not run
    tables = Tables(runs=runs, history=frame, steps=frame, axes=["architecture"], info=info)
    apply_protocol(tables, protocol)
    assert len(tables.runs) == 2
    counts = status_counts(tables)
    assert counts["ok"] == 4 and counts["missing"] == 1


def test_the_sensitivity_figure_has_a_panel_per_first_axis_level_and_a_colour_per_second():
    rows = []
    for arch in ("rnn", "lstm"):
        for act in ("tanh", "relu", "elu"):
            for i, rate in enumerate((0.001, 0.01)):
                for seed in (0, 1):
                    score = 0.6 + 0.1 * i + 0.01 * seed
                    rows.append(
                        (f"{arch}{act}{rate}{seed}", arch, act, rate, seed, 1 - score, score)
                    )
    runs = pd.DataFrame(
        rows,
        columns=[
            "run_id",
            "architecture",
            "activation",
            "learning_rate",
            "seed",
            "final/val/loss",
            "score",
        ],
    )
    runs["status"] = "ok"
    frame = pd.DataFrame({"run_id": pd.Categorical(runs["run_id"]), "value": 1.0})
    protocol = {"select_on": "val/loss", "learning_rate": [0.001, 0.01]}
    tables = Tables(
        runs=runs,
        history=frame,
        steps=frame,
        axes=["architecture", "activation"],
        levels={"architecture": ["rnn", "lstm"], "activation": ["tanh", "relu", "elu"]},
        info={"protocol": protocol, "derived": {"metric": "test/accuracy"}},
    )
    apply_protocol(tables, protocol)
    fig = sensitivity(tables)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["architecture=rnn", "architecture=lstm"]
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[:3] == ["activation=tanh", "activation=relu", "activation=elu"]
    # Six arms, three per panel; each arm's curve ends at its mean score at 0.01 (0.705).
    for ax in panels:
        curves = [
            line
            for line in ax.get_lines()
            if line.get_marker() == "o" and line.get_linestyle() != "None"
        ]
        assert len(curves) == 3
        assert all(abs(line.get_ydata()[-1] - 0.705) < 1e-9 for line in curves)
