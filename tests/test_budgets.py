"""Budgets per arm (analysis.budgets) on hand-built tables whose answers are counted by hand."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from keras_ablate.analysis import budgets
from keras_ablate.analysis.tables import Tables

NAN = math.nan
STEPS_PER_EPOCH = 10

# Per arm and seed: (status, val/accuracy per epoch, loss at the first step, final train loss,
# final test accuracy). Threshold 0.9.
RUNS = {
    ("lstm", 0): ("ok", [0.5, 0.8, 0.92, 0.95], 0.69, 0.20, 0.95),  # epoch 3 -> 30 steps
    ("lstm", 1): ("ok", [0.6, 0.91, 0.93, 0.94], 0.69, 0.18, 0.94),  # epoch 2 -> 20 steps
    ("lstm", 2): ("ok", [0.5, 0.6, 0.7, 0.8], 0.69, 0.40, 0.80),  # never
    # Reaches 0.95 in epoch 2, then diverges in epoch 3: not solved.
    ("rnn", 0): ("diverged", [0.5, 0.95, NAN], 0.69, NAN, NAN),
    ("rnn", 1): ("ok", [0.5, NAN, 0.52, 0.5], 0.693, 0.69, 0.50),  # a NaN epoch, never
    ("rnn", 2): ("ok", [0.5, 0.5, 0.5, 0.5], 0.693, 0.689, 0.52),  # never
    ("rnn", 3): ("failed", [], NAN, NAN, NAN),  # a crash: not a seed
    # The loss falls, but the score sits at the majority share (0.55).
    ("gru", 0): ("ok", [0.5, 0.55, 0.55, 0.56], 0.69, 0.40, 0.56),
    ("gru", 1): ("ok", [0.5, 0.54, 0.55, 0.54], 0.69, 0.41, 0.54),
    ("gru", 2): ("ok", [0.5, 0.55, 0.55, 0.55], 0.69, 0.39, 0.55),
}


def _tables(runs=RUNS, analysis=None) -> Tables:
    rows, history = [], []
    for (arch, seed), (status, curve, start, final_loss, test) in runs.items():
        run_id = f"{arch}{seed}"
        rows.append(
            {
                "run_id": run_id,
                "architecture": arch,
                "seed": seed,
                "status": status,
                "steps_per_epoch": STEPS_PER_EPOCH,
                "init/loss": start,
                "final/train/loss": final_loss,
                "final/test/accuracy": test,
                "baseline/chance": 0.5,
                "baseline/majority_test": 0.55,
                "baseline/n_test": 400.0,
                "baseline/n_val": 400.0,
            }
        )
        for epoch, value in enumerate(curve, start=1):
            history.append(
                {"run_id": run_id, "epoch": epoch, "metric": "val/accuracy", "value": value}
            )
    frame = pd.DataFrame(rows)
    frame["architecture"] = pd.Categorical(frame["architecture"], ["lstm", "rnn", "gru"])
    finished = frame["status"] != "failed"
    ok = frame["status"] == "ok"
    # The score rule (metrics.score), by hand: a diverged run takes the worst finished value.
    worst = frame.loc[ok, "final/test/accuracy"].min()
    frame["score"] = np.where(
        frame["status"] == "diverged", worst, np.where(finished, frame["final/test/accuracy"], NAN)
    )
    return Tables(
        runs=frame,
        history=pd.DataFrame(history),
        steps=pd.DataFrame(),
        axes=["architecture"],
        levels={"architecture": ["lstm", "rnn", "gru"]},
        info={
            "analysis": analysis or {},
            "derived": {"metric": "test/accuracy", "higher_is_better": True, "target": 0.9},
        },
    )


def test_solved_counts_seeds_that_reached_the_threshold_and_the_median_counts_the_others_as_never():
    table = budgets.solved(_tables()).set_index("architecture")
    assert table.attrs["threshold"] == 0.9
    assert table.loc["lstm", ["n_seeds", "n_solved"]].tolist() == [3, 2]
    assert table.loc["lstm", "solved_fraction"] == pytest.approx(2 / 3)
    # Sorted: 20, 30, never -> the median is 30.
    assert table.loc["lstm", "steps_to_threshold_median"] == 30
    assert table.loc["lstm", "seeds"] == (0, 1, 2)
    np.testing.assert_array_equal(table.loc["lstm", "steps_to_threshold"], [30, 20, NAN])
    # The diverged seed reached 0.95 before it diverged: not solved. The failed run is no seed.
    assert table.loc["rnn", ["n_seeds", "n_solved", "n_failed"]].tolist() == [3, 0, 1]
    assert table.loc["rnn", "steps_to_threshold_median"] == math.inf
    assert table.loc["gru", "n_solved"] == 0
    assert list(table.index) == ["lstm", "rnn", "gru"]  # the plan's level order


def test_a_lower_threshold_and_an_explicit_metric():
    table = budgets.solved(_tables(), metric="val/accuracy", threshold=0.55).set_index(
        "architecture"
    )
    # lstm: epochs 2, 1, 2 -> 20, 10, 20; gru: epochs 2, 3, 2 -> 20, 30, 20.
    np.testing.assert_array_equal(table.loc["lstm", "steps_to_threshold"], [20, 10, 20])
    assert table.loc["gru", "steps_to_threshold_median"] == 20
    assert table.loc["gru", "solved_fraction"] == 1.0


def test_did_not_learn_flags_a_stuck_loss_and_a_score_at_the_majority_share():
    tables = _tables()
    flags = budgets.did_not_learn(tables)
    assert flags.to_dict() == {"lstm": False, "rnn": True, "gru": True}
    assert flags.index.name == "architecture"
    detail = budgets.flags(tables).set_index("architecture")
    # rnn: mean final loss (0.69 + 0.689) / 2 over the undiverged seeds vs 0.693 at the start.
    assert detail.loc["rnn", "loss_ratio"] == pytest.approx(((0.69 + 0.689) / 2) / 0.693)
    assert detail.loc["rnn", "stuck"]
    # gru learned to lower its loss (0.4 / 0.69) but its score is not above the majority share.
    assert not detail.loc["gru", "stuck"]
    assert detail.loc["gru", "at_level"] == "majority share"
    assert "majority share 0.55" in detail.loc["gru", "reason"]
    # The score interval: Student t over the 3 seeds (scipy), since fewer than 5 runs.
    low, high = scipy_stats.t.interval(
        0.95, 2, loc=np.mean([0.56, 0.54, 0.55]), scale=scipy_stats.sem([0.56, 0.54, 0.55])
    )
    assert detail.loc["gru", ["ci_low", "ci_high"]].tolist() == pytest.approx([low, high])
    assert detail.loc["gru", "reason"] == (
        f"score 0.55 [{low:.3g}, {high:.3g}] is at majority share 0.55"
    )
    assert detail.loc["lstm", "reason"] == ""


def test_one_seed_is_at_a_level_when_within_the_baselines_tolerance():
    # One seed at 0.52 (no interval): 1/sqrt(400) = 0.05 from chance 0.5 -> at chance; at 0.56
    # it is 0.06 from chance but 0.01 from the majority share 0.55; at 0.61, neither.
    def one(test):
        runs = {("lstm", 0): ("ok", [0.5, test], 0.69, 0.2, test)}
        return budgets.flags(_tables(runs)).iloc[0]

    assert one(0.52)["at_level"] == "chance"
    assert one(0.56)["at_level"] == "majority share"
    assert one(0.61)["at_level"] == "" and not one(0.61)["did_not_learn"]


def test_two_axes_index_the_flags_by_a_multiindex():
    tables = _tables()
    tables.runs["clip"] = "none"
    tables.axes = ["architecture", "clip"]
    flags = budgets.did_not_learn(tables)
    assert isinstance(flags.index, pd.MultiIndex)
    assert flags[("rnn", "none")] and not flags[("lstm", "none")]


def test_anytime_is_the_mean_over_seeds_and_a_diverged_seed_takes_the_epochs_worst_value():
    frame = budgets.anytime(_tables())
    rnn = frame[frame["architecture"] == "rnn"].set_index("epoch")
    # Epoch 2: seed 1 has NaN (left out), seeds 0 and 2: (0.95 + 0.5) / 2.
    assert rnn.loc[2, "n"] == 2 and rnn.loc[2, "mean"] == pytest.approx(0.725)
    # Epoch 3: seed 0 diverged; the worst epoch-3 value of the undiverged runs is 0.5.
    assert rnn.loc[3, "n_diverged"] == 1
    assert rnn.loc[3, "mean"] == pytest.approx(np.mean([0.5, 0.52, 0.5]))
    assert rnn.loc[4, "mean"] == pytest.approx(np.mean([0.5, 0.5, 0.5]))  # and at epoch 4
    lstm = frame[frame["architecture"] == "lstm"].set_index("epoch")
    values = [0.92, 0.93, 0.7]
    low, high = scipy_stats.t.interval(0.95, 2, loc=np.mean(values), scale=scipy_stats.sem(values))
    assert lstm.loc[3, ["mean", "ci_low", "ci_high"]].tolist() == pytest.approx(
        [np.mean(values), low, high]
    )
    assert list(frame["architecture"].drop_duplicates()) == ["lstm", "rnn", "gru"]


# ---------------------------------------------------------------- in the report

# Per architecture: val/accuracy per epoch and the training loss per step (4 steps per epoch).
REPORT_CURVES = {
    "gru": ([0.5, 0.8, 0.95, 1.0], np.linspace(1.4, 0.1, 16)),  # learns
    "rnn": ([0.26, 0.24, 0.25, 0.25], np.full(16, 1.386)),  # loss stays at ln 4: stuck
    "lstm": ([0.35, 0.6, 0.7, 0.72], np.linspace(1.4, 0.8, 16)),  # learns, not to the target
}


def _write_report_runs(exp_dir, seeds=3, clips=None):
    from keras_ablate import store
    from keras_ablate.config import RunSpec

    rng = np.random.default_rng(0)
    run_ids = []
    for arch, clip, seed in itertools.product(REPORT_CURVES, clips or [None], range(seeds)):
        curve, loss = REPORT_CURVES[arch]
        axes = {"architecture": arch, **({"clip": clip} if clip else {})}
        spec = RunSpec(
            "b", f"run_{arch}_{clip}_{seed}", axes, {"name": "recall", "options": {}}, seed, axes
        )
        noisy = np.clip(np.asarray(curve) + rng.normal(0, 0.01, len(curve)), 0, 1)
        history = pd.DataFrame(
            {
                "epoch": np.arange(1, 5),
                "train/loss": loss[3::4],
                "val/accuracy": noisy,
            }
        )
        steps = pd.DataFrame({"step": np.arange(16), "loss": loss.astype(np.float32)})
        summary = {
            "run_id": spec.run_id,
            "status": "ok",
            "metric": "accuracy",
            "steps_per_epoch": 4,
            "baseline": {
                "n_classes": 4,
                "n_val": 256,
                "chance": 0.25,
                "majority_val": 0.3,
                "majority_train": 0.3,
            },
            "final": {"val/accuracy": float(noisy[-1]), "train/loss": float(loss[-1])},
            "best": {"val/accuracy": float(noisy.max())},
            "wall_time_s": 1.0,
        }
        store.write_run(exp_dir, spec, summary, {"history": history, "steps": steps})
        run_ids.append(spec.run_id)
    store.write_json_atomic(
        exp_dir / "experiment.json",
        {
            "name": "b",
            "axes": ["architecture", *(["clip"] if clips else [])],
            "run_ids": run_ids,
            "analysis": {"target": 0.9},
        },
    )


def test_the_flag_shows_in_the_reports_tables_and_every_effect_involving_the_arm(tmp_path):
    from keras_ablate.analysis import effects, load
    from keras_ablate.report.render import build_report

    exp = tmp_path / "b"
    _write_report_runs(exp)
    tables = load(exp)
    assert budgets.did_not_learn(tables).to_dict() == {"gru": False, "rnn": True, "lstm": False}
    main = effects.main_effects(tables).set_index("level")
    # rnn vs the reference gru involves the flagged rnn; lstm vs gru involves no flagged arm.
    assert main.loc["rnn", "n_flagged"] == 1
    assert "may be budget- or rate-limited" in main.loc["rnn", "budget_note"]
    assert "architecture=rnn" in main.loc["rnn", "budget_note"]
    assert main.loc["lstm", "budget_note"] == "" and main.loc["lstm", "n_flagged"] == 0
    build_report(exp)
    md = (exp / "report.md").read_text()
    lines = md.splitlines()

    def rows(start: str) -> list[str]:
        return [line for line in lines if line.startswith(start)]

    # The budget table: solved counts, steps and the flag with its reason.
    (gru,) = rows("| architecture=gru | 3/3")
    assert "| 12 |" in gru  # epoch 3 x 4 steps, every seed
    (rnn,) = rows("| architecture=rnn † | 0/3 | never |")
    assert "did not learn within budget: train loss 1.39 vs 1.39 at the start" in rnn
    # Best configurations, the factor table, the largest effects, the configurations and runs.
    assert any("architecture=rnn † did not learn within budget" in line for line in lines)
    (factor_rnn,) = rows("| rnn | 3 |")
    assert "may be budget- or rate-limited" in factor_rnn
    (factor_lstm,) = rows("| lstm | 3 |")
    assert "budget" not in factor_lstm
    assert any(line.startswith("| architecture: rnn vs gru (†") for line in lines)
    assert sum("| run_rnn_" in line and "† did not learn" in line for line in lines) == 3
    assert not any("| run_gru_" in line and "†" in line for line in lines)
    html = (exp / "report.html").read_text()
    assert html.count("may be budget- or rate-limited") >= 2
    assert (exp / "figures" / "anytime.png").exists()


def test_the_flagged_arm_is_dotted_and_labelled_in_the_figures(tmp_path):
    from keras_ablate.analysis import load
    from keras_ablate.report import budget_section, heatmaps, plots

    exp = tmp_path / "b"
    _write_report_runs(exp, seeds=2)
    tables = load(exp)
    figure = budget_section.anytime_figure(tables)
    styles = {line.get_label(): line.get_linestyle() for line in figure.axes[0].lines}
    assert styles["architecture=rnn †"] == ":" and styles["architecture=gru"] == "-"
    legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert "† did not learn within budget" in legend
    figure = plots.convergence(tables)
    styles = {line.get_label(): line.get_linestyle() for line in figure.axes[0].lines}
    assert styles["rnn"] == ":" and styles["lstm"] == "-"
    figure = plots.main_effects(tables)
    hollow = [c for c in figure.axes[0].collections if c.get_label().startswith("†")]
    assert len(hollow) == 1 and len(hollow[0].get_offsets()) == 2  # the rnn arm's two runs
    figure = heatmaps.heatmap_score(tables)
    cells = {t.get_text() for t in figure.axes[0].texts}
    assert any(t.endswith("†") for t in cells) and sum(t.endswith("†") for t in cells) == 1


def test_interaction_cells_holding_a_flagged_arm_are_marked(tmp_path):
    from keras_ablate.analysis import load
    from keras_ablate.report import sections

    exp = tmp_path / "b"
    _write_report_runs(exp, seeds=2, clips=["none", "norm:1.0"])
    (table,) = sections.interaction_tables(load(exp))
    cells = {row["level"]: [row[c] for c in table["columns"]] for row in table["rows"]}
    assert all(cell.endswith("†") for cell in cells["rnn"])
    assert not any("†" in cell for cell in cells["gru"] + cells["lstm"])


def test_an_effects_budget_note_names_three_arms_and_counts_the_rest(monkeypatch):
    from keras_ablate.analysis import budgets, effects

    arms = [f"architecture=rnn, seed_arm={i}" for i in range(5)]
    monkeypatch.setattr(budgets, "flagged_labels", lambda tables, where: arms)
    table = pd.DataFrame([{"axis": "architecture", "level": "rnn", "reference": "cnn"}])
    effects.add_budget_notes(None, table)
    note = table.loc[0, "budget_note"]
    assert table.loc[0, "n_flagged"] == 5
    assert all(a in note for a in arms[:3]) and arms[3] not in note
    assert "and 2 more: see Budgets" in note


# ------------------------------------------------- gaps found by mutation testing (issue 20)


def _with(runs=RUNS, **columns) -> Tables:
    """_tables() with extra or replaced run columns (a value, or a function of the frame)."""
    tables = _tables(runs)
    for name, value in columns.items():
        if value is None:
            tables.runs = tables.runs.drop(columns=name)
        else:
            tables.runs[name] = value(tables.runs) if callable(value) else value
    return tables


def _final_val(frame: pd.DataFrame) -> list[float]:
    # The last val/accuracy of each run of RUNS (the frame's rows, in order); a diverged run's is
    # 0.99, above every other.
    assert len(frame) == len(RUNS)
    out = []
    for status, curve, *_rest in RUNS.values():
        out.append(0.99 if status == "diverged" else (curve[-1] if curve else NAN))
    return out


def test_the_threshold_without_a_target_is_the_fraction_of_the_best_finished_ok_run():
    tables = _with(**{"final/val/accuracy": _final_val})
    # val/accuracy is not the derived metric: its target is 0.9 x the best ok run (0.95, lstm0);
    # the diverged run's 0.99 is not an ok run.
    assert budgets.threshold_for(tables, "val/accuracy") == pytest.approx(0.9 * 0.95)
    assert budgets.threshold_for(tables, "test/accuracy") == 0.9  # the derived target
    tables.info["analysis"] = {"target_fraction": 0.6}
    assert budgets.threshold_for(tables, "val/accuracy") == pytest.approx(0.6 * 0.95)
    # A loss: lower is better, the target is the best (lowest) ok final over the fraction.
    tables.runs["final/val/loss"] = np.linspace(0.3, 1.2, len(tables.runs))
    ok = (tables.runs["status"] == "ok").to_numpy()
    best = np.linspace(0.3, 1.2, len(tables.runs))[ok].min()
    assert budgets.threshold_for(tables, "val/loss") == pytest.approx(best / 0.6)
    # solved() counts to that threshold: 0.57 is met by lstm at epochs 2, 1, 2.
    table = budgets.solved(tables, metric="val/accuracy").set_index("architecture")
    assert table.attrs == {"metric": "val/accuracy", "threshold": pytest.approx(0.57)}
    np.testing.assert_array_equal(table.loc["lstm", "steps_to_threshold"], [20, 10, 20])
    seeds = budgets.per_seed(tables, metric="val/accuracy")
    assert seeds.attrs["metric"] == "val/accuracy"
    assert list(seeds.index) == list(range(9))  # the failed run left out, renumbered
    assert list(seeds.columns) == [
        "run_id", "architecture", "seed", "diverged", "epochs_to_threshold", "solved",
        "steps_to_threshold",
    ]  # fmt: skip
    assert seeds.set_index("run_id").loc["lstm1", "epochs_to_threshold"] == 1
    assert seeds["steps_to_threshold"].dtype == float  # NaN for the unsolved, not None


def test_seeds_are_listed_in_seed_order_and_an_arm_with_only_failed_runs_has_no_median():
    runs = {k: RUNS[k] for k in [("lstm", 2), ("lstm", 0), ("lstm", 1), ("rnn", 3)]}
    table = budgets.solved(_tables(runs)).set_index("architecture")
    assert table.loc["lstm", "seeds"] == (0, 1, 2)
    np.testing.assert_array_equal(table.loc["lstm", "steps_to_threshold"], [30, 20, NAN])
    assert table.loc["rnn", ["n_seeds", "n_failed"]].tolist() == [0, 1]
    assert math.isnan(table.loc["rnn", "solved_fraction"])
    assert math.isnan(table.loc["rnn", "steps_to_threshold_median"])
    # No finished run at all: per_seed is empty but has its columns.
    seeds = budgets.per_seed(_tables({("rnn", 3): RUNS[("rnn", 3)]}))
    assert seeds.empty and {"run_id", "seed", "steps_to_threshold"} <= set(seeds.columns)


def test_without_axes_every_run_is_one_arm_called_all_runs():
    gru = {k: v for k, v in RUNS.items() if k[0] == "gru"}  # at the majority share
    tables = _tables(gru)
    tables.axes = []
    flags = budgets.did_not_learn(tables)
    assert list(flags.index) == ["all runs"] and flags.index.name == "arm"
    assert flags.name == "did_not_learn" and flags.dtype == bool and flags.iloc[0]
    assert budgets.flagged_labels(tables) == ["all runs"]
    np.testing.assert_array_equal(budgets.run_flags(tables), [True, True, True])
    assert budgets.arm_label({"a": 1, "b": "x"}, ["a", "b"]) == "a=1, b=x"


def test_run_flags_of_given_runs_and_flagged_labels_of_some_levels():
    tables = _tables()
    picked = tables.runs.iloc[[0, 7, 3]]  # lstm0, gru0, rnn0
    flags = budgets.run_flags(tables, picked)
    assert flags.dtype == bool and flags.tolist() == [False, True, True]
    empty = budgets.run_flags(tables, picked.iloc[:0])
    assert empty.dtype == bool and empty.shape == (0,)
    assert budgets.flagged_labels(tables) == ["architecture=rnn", "architecture=gru"]
    assert budgets.flagged_labels(tables, {"architecture": "gru"}) == ["architecture=gru"]
    assert budgets.flagged_labels(tables, {"architecture": {"lstm"}}) == []
    # arm_flags is computed once and kept on the tables.
    assert budgets.arm_flags(tables) is tables.budget is budgets.arm_flags(tables)


def test_did_not_learn_of_another_metric_uses_that_metrics_score():
    # val/accuracy has no final values here: no score, so only the stuck rnn is flagged.
    tables = _tables()
    assert budgets.did_not_learn(tables, "val/accuracy").to_dict() == {
        "lstm": False,
        "rnn": True,
        "gru": False,
    }
    assert budgets.did_not_learn(tables).to_dict()["gru"]


def test_flags_compute_the_score_when_the_runs_have_none_for_the_metric():
    # Another metric: the score of final/val/accuracy, a diverged run taking the worst ok final.
    tables = _with(**{"final/val/accuracy": _final_val})
    detail = budgets.flags(tables, "val/accuracy").set_index("architecture")
    assert detail.attrs["metric"] == "val/accuracy"
    lstm = [0.95, 0.94, 0.8]
    assert detail.loc["lstm", "mean"] == pytest.approx(np.mean(lstm))
    # rnn: diverged -> worst ok final 0.5 (not its 0.99), then 0.5 and 0.5: at chance 0.5.
    assert detail.loc["rnn", "mean"] == pytest.approx(0.5)
    assert detail.loc["rnn", "n_seeds"] == 3
    assert detail.loc["rnn", "at_level"] == "chance"
    assert math.isnan(detail.loc["rnn", "majority"])  # no majority_val recorded
    # The comparison metric with no score column: computed from final/test/accuracy.
    tables = _with(score=None)
    detail = budgets.flags(tables).set_index("architecture")
    assert detail.loc["rnn", "mean"] == pytest.approx(np.mean([0.5, 0.50, 0.52]))
    assert detail.loc["gru", "mean"] == pytest.approx(np.mean([0.56, 0.54, 0.55]))


def test_the_flags_table_columns_and_a_reason_with_both_causes():
    runs = {("rnn", 0): ("ok", [0.5, 0.52], 0.69, 0.68, 0.52)}  # stuck and at chance
    row = budgets.flags(_tables(runs)).iloc[0]
    assert list(row.index) == [
        "architecture", "n_seeds", "start_loss", "final_loss", "loss_ratio", "stuck", "mean",
        "ci_low", "ci_high", "chance", "majority", "at_level", "did_not_learn", "reason",
    ]  # fmt: skip
    assert row[["n_seeds", "start_loss", "final_loss", "chance", "majority"]].tolist() == [
        1, 0.69, 0.68, 0.5, 0.55,
    ]  # fmt: skip
    assert row["reason"] == (
        "train loss 0.68 vs 0.69 at the start (ratio 0.986 > 0.95); score 0.52 is at chance 0.5"
    )


def test_the_start_loss_falls_back_to_the_first_epochs_and_the_count_to_n_val():
    tables = _with(**{"init/loss": NAN, "epoch1/train/loss": 0.693})
    detail = budgets.flags(tables).set_index("architecture")
    assert detail.loc["rnn", "loss_ratio"] == pytest.approx(((0.69 + 0.689) / 2) / 0.693)
    assert detail.loc["rnn", "stuck"]
    # Without baseline/n_test the count is baseline/n_val: 4 examples -> tolerance 0.5, so
    # lstm's 0.897 (one seed) is at chance 0.5 (0.397 away) but not with 400 examples.
    one = {("lstm", 0): ("ok", [0.5, 0.9], 0.69, 0.2, 0.9)}
    assert budgets.flags(_tables(one)).iloc[0]["at_level"] == ""
    tables = _with(one, **{"baseline/n_test": None, "baseline/n_val": 4.0})
    assert budgets.flags(tables).iloc[0]["at_level"] == "chance"


def test_the_edges_are_inclusive_and_a_ratio_at_the_limit_is_not_stuck():
    # tolerance 1/sqrt(4) = 0.5 exactly: one seed at 1.0 is at chance 0.5.
    one = {("lstm", 0): ("ok", [0.5, 1.0], 1.0, 0.95, 1.0)}
    row = budgets.flags(_with(one, **{"baseline/n_test": 4.0})).iloc[0]
    assert row["at_level"] == "chance"
    assert row["loss_ratio"] == 0.95 and not row["stuck"]  # 0.95 is not above 0.95
    # An accuracy interval is clipped to [0, 1]: a level at the clipped edge is inside it.
    # (No example counts: no tolerance, only the interval decides.)
    near = {("lstm", s): ("ok", [0.5, v], 0.69, 0.2, v) for s, v in enumerate([0.96, 1.0])}
    tables = _with(near, **{"baseline/n_test": None, "baseline/n_val": None})
    tables.runs["baseline/majority_test"] = 1.0
    row = budgets.flags(tables).iloc[0]
    assert row["ci_high"] == 1.0 and row["at_level"] == "majority share"
    low = {("lstm", s): ("ok", [0.5, v], 0.69, 0.2, v) for s, v in enumerate([0.0, 0.04])}
    tables = _with(low, **{"baseline/n_test": None, "baseline/n_val": None})
    tables.runs["baseline/chance"] = 0.0
    row = budgets.flags(tables).iloc[0]
    assert row["ci_low"] == 0.0 and row["at_level"] == "chance"
    # A NaN level or score is never "at".
    tables.runs["baseline/chance"] = NAN
    tables.runs["baseline/majority_test"] = NAN
    assert budgets.flags(tables).iloc[0]["at_level"] == ""


def test_anytime_of_a_loss_takes_the_epochs_highest_value_for_a_diverged_seed():
    rows = []
    curves = {"a": [1.0, 0.8, 0.6], "b": [1.0, 0.9, 0.7], "c": [1.0, NAN, NAN]}  # c diverged
    for run_id, curve in curves.items():
        for epoch, value in enumerate(curve, start=1):
            rows.append({"run_id": run_id, "epoch": epoch, "metric": "val/loss", "value": value})
    runs = pd.DataFrame(
        {"run_id": list(curves), "seed": [0, 1, 2], "status": ["ok", "ok", "diverged"]}
    )
    tables = Tables(
        runs=runs, history=pd.DataFrame(rows), steps=pd.DataFrame(), axes=[], levels={},
        info={"derived": {"metric": "val/loss"}},
    )  # fmt: skip
    frame = budgets.anytime(tables)
    assert frame.attrs == {"metric": "val/loss", "curve_metric": "val/loss"}
    assert list(frame.columns[:8]) == [
        "epoch", "n", "n_diverged", "mean", "std", "ci_low", "ci_high", "iqm",
    ]  # fmt: skip
    assert list(frame.index) == [0, 1, 2] and frame["epoch"].tolist() == [1, 2, 3]
    assert frame["epoch"].dtype.kind == "i" and frame["n_diverged"].dtype.kind == "i"
    assert frame["n_diverged"].tolist() == [0, 1, 1]
    # Epoch 2: c takes the worst (highest) loss 0.9; epoch 3: 0.7.
    assert frame["mean"].tolist() == pytest.approx(
        [1.0, (0.8 + 0.9 + 0.9) / 3, (0.6 + 0.7 + 0.7) / 3]
    )
    assert budgets.anytime(tables, "val/accuracy").empty  # no such curve


def test_anytime_with_an_interval_spec_keeps_the_interval_inside_the_accuracy_range():
    from keras_ablate.analysis import stats

    frame = budgets.anytime(_tables(), spec=stats.IntervalSpec(kind="t"))
    lstm = frame[frame["architecture"] == "lstm"].set_index("epoch")
    # Epoch 4: 0.95, 0.94, 0.8; the Student t interval's top (scipy) is above 1, kept at 1.
    values = [0.95, 0.94, 0.8]
    low, high = scipy_stats.t.interval(0.95, 2, loc=np.mean(values), scale=scipy_stats.sem(values))
    assert high > 1
    assert lstm.loc[4, ["ci_low", "ci_high"]].tolist() == pytest.approx([low, 1.0])
    assert {"interval", "clipped"} <= set(frame.columns)
    # Without a spec (the figures' bands): plain t, no extra columns.
    plain = budgets.anytime(_tables()).set_index(["architecture", "epoch"])
    assert plain.loc[("lstm", 4), "ci_high"] == pytest.approx(high)
    assert "interval" not in plain.columns
