"""Claim verdicts: the rule engine on hand-built run tables, every claim file, and one claim end to end."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from keras_ablate import executors
from keras_ablate.claims import claim_files, load_claim, planned_levels, run_claims
from keras_ablate.claims.evaluation import evaluate
from keras_ablate.claims.rules import check_rule, parse_rule
from keras_ablate.cli import main
from keras_ablate.errors import ConfigError

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def frame(
    groups: dict[str, list], status: dict[str, list] | None = None, metric: str = "final/val/loss"
) -> pd.DataFrame:
    """One row per value: column `arm` = the group name, `metric` = the value, status ok unless given."""
    rows = []
    for arm, values in groups.items():
        statuses = (status or {}).get(arm, ["ok"] * len(values))
        for seed, (value, st) in enumerate(zip(values, statuses, strict=False)):
            rows.append(
                {"run_id": f"{arm}{seed}", "arm": arm, "seed": seed, "status": st, metric: value}
            )
    return pd.DataFrame(rows)


def compare(direction="less", metric="final/val/loss", **extra):
    return parse_rule(
        {
            "compare": {
                "metric": metric,
                "a": {"arm": "a"},
                "b": {"arm": "b"},
                "direction": direction,
                **extra,
            }
        }
    )


def test_compare_supported_with_the_welch_interval_of_statsmodels():
    a, b = [0.20, 0.25, 0.22, 0.21], [0.50, 0.61, 0.55]
    verdict = evaluate(compare("less"), frame({"a": a, "b": b}))
    assert verdict.verdict == "supported"
    expected = CompareMeans(DescrStatsW(np.array(a)), DescrStatsW(np.array(b))).tconfint_diff(
        usevar="unequal"
    )
    assert verdict.estimate == pytest.approx(np.mean(a) - np.mean(b))
    assert verdict.ci == pytest.approx(expected, rel=1e-9)


def test_paired_compare_uses_per_seed_differences():
    # Big seed-to-seed spread, constant +0.1 shift: unpaired Welch cannot tell, paired can.
    runs = frame({"a": [1.1, 2.1, 3.1], "b": [1.0, 2.0, 3.0]})
    assert evaluate(compare("greater"), runs).verdict == "inconclusive"
    paired = evaluate(compare("greater", paired=True), runs)
    assert paired.verdict == "supported"
    assert paired.ci == pytest.approx((0.1, 0.1))


def test_compare_contradicted_when_the_interval_is_on_the_other_side():
    verdict = evaluate(
        compare("greater"), frame({"a": [0.20, 0.25, 0.22], "b": [0.50, 0.61, 0.55]})
    )
    assert verdict.verdict == "contradicted"


def test_compare_inconclusive_when_the_interval_covers_the_margin():
    verdict = evaluate(compare("less"), frame({"a": [0.2, 0.6, 0.4], "b": [0.3, 0.5, 0.45]}))
    assert verdict.verdict == "inconclusive"
    assert verdict.ci[0] < 0 < verdict.ci[1]


def test_a_failed_run_is_counted_and_leaves_too_few_seeds():
    runs = frame(
        {"a": [0.2, 0.21, None], "b": [0.5, 0.6, 0.55]}, status={"a": ["ok", "ok", "failed"]}
    )
    verdict = evaluate(compare("less"), runs)
    assert verdict.verdict == "inconclusive"
    assert "1 failed" in verdict.reason and "needs 3" in verdict.reason
    assert verdict.groups[0].n_failed == 1 and verdict.groups[0].n_planned == 3


def test_a_diverged_run_without_a_value_gets_the_worst_value_of_the_experiment():
    # Lower loss is better, so the worst is the largest finite loss anywhere (0.9 here).
    runs = frame(
        {"a": [0.2, 0.21, float("nan")], "b": [0.5, 0.6, 0.9]},
        status={"a": ["ok", "ok", "diverged"]},
    )
    verdict = evaluate(compare("less"), runs)
    assert verdict.groups[0].values == [0.2, 0.21, 0.9]
    assert verdict.groups[0].n_diverged == 1
    assert verdict.verdict == "inconclusive"  # the diverged seed now pulls arm a up
    excluded = evaluate(compare("less", diverged="exclude"), runs)
    assert excluded.verdict == "inconclusive" and "diverged" in excluded.reason
    fixed = evaluate(compare("less", diverged=10.0), runs)
    assert fixed.groups[0].values[-1] == 10.0


def test_a_diverged_run_keeps_a_finite_metric():
    runs = frame(
        {"a": [3.0, 3.1, 3.2], "b": [1.0, 1.1, 1.05]},
        status={"a": ["diverged"] * 3},
        metric="init/grad/global_norm",
    )
    verdict = evaluate(compare("greater", metric="init/grad/global_norm"), runs)
    assert verdict.groups[0].values == [3.0, 3.1, 3.2]
    assert verdict.verdict == "supported"


def test_a_metric_that_was_not_recorded_is_inconclusive_not_an_error():
    verdict = evaluate(
        compare(metric="decay_factor/rnn_0/final"), frame({"a": [1, 2, 3], "b": [1, 2, 3]})
    )
    assert verdict.verdict == "inconclusive"
    assert verdict.reason == "inconclusive: metric decay_factor/rnn_0/final not recorded"


def test_threshold_and_equivalent_reach_every_verdict():
    runs = frame({"a": [0.5, 0.52, 0.48], "b": [0.5, 0.51, 0.49]})

    def threshold(value, direction="less"):
        return evaluate(
            parse_rule(
                {
                    "threshold": {
                        "metric": "final/val/loss",
                        "where": {"arm": "a"},
                        "direction": direction,
                        "value": value,
                    }
                }
            ),
            runs,
        ).verdict

    assert (threshold(1.0), threshold(0.1), threshold(0.5)) == (
        "supported",
        "contradicted",
        "inconclusive",
    )
    # The estimate and interval of a skewed group (mean 0.49, median 0.46) are the mean and the
    # t interval statsmodels gives for it.
    skewed = [0.46, 0.45, 0.56]
    verdict = evaluate(
        parse_rule({"threshold": {"metric": "final/val/loss", "where": {"arm": "a"}, "value": 1}}),
        frame({"a": skewed}),
    )
    assert verdict.estimate == pytest.approx(np.mean(skewed), rel=1e-12)
    assert verdict.ci == pytest.approx(DescrStatsW(np.array(skewed)).tconfint_mean(), rel=1e-9)

    def equivalent(margin, b=None):
        data = runs if b is None else frame({"a": [0.5, 0.52, 0.48], "b": b})
        rule = parse_rule(
            {
                "equivalent": {
                    "metric": "final/val/loss",
                    "a": {"arm": "a"},
                    "b": {"arm": "b"},
                    "margin": margin,
                }
            }
        )
        return evaluate(rule, data).verdict

    assert equivalent(0.2) == "supported"
    assert equivalent(0.1, b=[0.9, 0.91, 0.92]) == "contradicted"
    assert equivalent(0.01) == "inconclusive"


def test_all_and_any_combine_and_evidence_does_not_vote():
    runs = frame({"a": [0.20, 0.25, 0.22], "b": [0.50, 0.61, 0.55]})
    good = {
        "compare": {
            "metric": "final/val/loss",
            "a": {"arm": "a"},
            "b": {"arm": "b"},
            "direction": "less",
        }
    }
    bad = {"compare": {**good["compare"], "direction": "greater"}}
    missing = {"compare": {**good["compare"], "metric": "nope"}}
    assert evaluate(parse_rule({"all": [good, good]}), runs).verdict == "supported"
    assert evaluate(parse_rule({"all": [good, bad]}), runs).verdict == "contradicted"
    assert evaluate(parse_rule({"all": [good, missing]}), runs).verdict == "inconclusive"
    assert evaluate(parse_rule({"any": [bad, good]}), runs).verdict == "supported"
    assert evaluate(parse_rule({"any": [bad, bad]}), runs).verdict == "contradicted"
    evidence = {"compare": {**bad["compare"], "counts": False}}
    verdict = evaluate(parse_rule({"all": [good, evidence]}), runs)
    assert verdict.verdict == "supported" and verdict.children[1].verdict == "contradicted"


def test_bad_rules_name_the_problem():
    with pytest.raises(ConfigError, match="exactly one of"):
        parse_rule(
            {"compare": {"metric": "m", "a": {}, "b": {}}, "threshold": {"metric": "m", "value": 1}}
        )
    with pytest.raises(ConfigError, match="direction"):
        parse_rule({"compare": {"metric": "m", "a": {}, "b": {}, "direction": "up"}})
    rule = parse_rule(
        {"compare": {"metric": "m", "a": {"architecture": "lstm"}, "b": {"architectur": "rnn"}}}
    )
    with pytest.raises(ConfigError, match="'architectur' is not a setting"):
        check_rule(rule, {"architecture": ["lstm", "rnn"]})
    rule = parse_rule(
        {"compare": {"metric": "m", "a": {"architecture": "lstm"}, "b": {"architecture": "gru"}}}
    )
    with pytest.raises(ConfigError, match="architecture='gru' is not a level"):
        check_rule(rule, {"architecture": ["lstm", "rnn"]})


def test_every_claim_file_loads_expands_and_points_at_its_grid():
    files = claim_files(EXPERIMENTS)
    ids = set()
    for path in files:
        claim = load_claim(
            path
        )  # validates the experiment, the claim section and the rule's selectors
        ids.add(claim.claim_id)
        levels = planned_levels(claim.specs)
        for leaf in claim.rule.leaves():
            body = leaf.body
            selectors = [body.where] if leaf.kind == "threshold" else [body.a, body.b]
            for where in selectors:
                assert where, f"{path.name}: a rule selects all runs"
                assert all(key in levels for key in where)
        assert len(claim.experiment.seed_list) >= 3
    assert ids == set(range(1, 12))


TINY_CLAIM = """
name: tiny_claim
dataset: {{name: recall, options: {{seq_len: 3, vocab_size: 10, n_classes: 2, n_train: 64, n_val: 32}}}}
base: {{architecture: rnn, units: 4, embed_dim: 4, epochs: 1, batch_size: 32, jit_compile: false}}
grid: {{clip: [none, "global_norm:1"]}}
seeds: 3
claim:
  id: 3
  statement: "{statement}"
  budget_check: 1
  rule:
    all:
      - threshold: {{name: above chance, metric: final/val/accuracy, where: {{clip: none}}, direction: greater, value: 0.5}}
      - equivalent: {{name: same, metric: init/grad/global_norm, a: {{clip: "global_norm:1"}}, b: {{clip: none}}, margin: 0.001, paired: true}}
      - threshold: {{name: probe, metric: decay_factor/rnn_0/init, where: {{clip: none}}, value: 1, counts: false}}
"""


def test_a_claim_end_to_end_gives_a_verdict_and_the_report(tmp_path, monkeypatch):
    folder = tmp_path / "experiments"
    folder.mkdir()
    (folder / "claim_03_tiny.yaml").write_text(
        textwrap.dedent(TINY_CLAIM.format(statement="h_t = F(h_{t-1}, x_t) <script>x</script>"))
    )
    results, paths = run_claims(folder, tmp_path / "results", only=[3], workers=1)
    (result,) = results
    assert result.statuses == {"ok": 6}
    leaves = result.verdict.leaves()
    # Independent of the analysis: the unclipped runs' accuracies and epoch-0 ||dL/dh_t|| read
    # from their own files.
    accuracy, decay = [], []
    for run in sorted((result.exp_dir / "runs").iterdir()):
        if json.loads((run / "spec.json").read_text())["settings"]["clip"] != "none":
            continue
        accuracy.append(json.loads((run / "summary.json").read_text())["final"]["val/accuracy"])
        probe = pd.read_parquet(run / "timesteps.parquet")
        probe = probe[(probe["epoch"] == 0) & (probe["layer"] == "rnn_0")]
        d, log_norm = probe["distance"].to_numpy(float), np.log(probe["grad_norm"].to_numpy())
        slope = np.sum((d - d.mean()) * (log_norm - log_norm.mean())) / np.sum((d - d.mean()) ** 2)
        decay.append(float(np.exp(slope)))  # ||dL/dh_t|| ~ a * r**distance, least squares
    # 3 runs: the Student t interval, cut to accuracy's range [0, 1]; the only counted test, so
    # Holm's correction leaves scipy's one-sample t test as it is.
    lo, hi = DescrStatsW(np.array(accuracy)).tconfint_mean()
    lo, hi = max(lo, 0.0), min(hi, 1.0)
    significant = scipy.stats.ttest_1samp(accuracy, 0.5).pvalue < 0.05
    side = "supported" if lo > 0.5 else ("contradicted" if hi < 0.5 else "inconclusive")
    expected = side if significant else "inconclusive"
    assert leaves[0].estimate == pytest.approx(np.mean(accuracy))
    assert leaves[0].ci == pytest.approx((lo, hi)) and leaves[0].verdict == expected
    # The step-0 gradient does not depend on the clip setting.
    assert leaves[1].verdict == "supported"
    # The evidence rule has one decay factor per seed: the fit of the recorded norms.
    assert sorted(leaves[2].groups[0].values) == pytest.approx(sorted(decay), rel=1e-6)
    html = paths["html"].read_text()
    assert "<script>x" not in html and "&lt;script&gt;" in html
    assert "data:image/png;base64," in html and "Claim 3" in html
    md = paths["md"].read_text()
    assert "| 3 |" in md and "(figures/claim_03_tiny.png)" in md
    assert (paths["md"].parent / "figures" / "claim_03_tiny.png").exists()

    # Resumable: a second invocation trains nothing and gives the same verdict. Checked by what
    # happened, not by time: no run is handed to training, no run folder is rewritten.
    def stamps():
        return {
            path: (path.stat().st_ino, path.stat().st_mtime_ns)
            for path in (tmp_path / "results").rglob("summary.json")
        }

    before, trained, train = stamps(), [], executors.run_spec
    assert len(before) >= 6  # the claim's runs (and its twice-the-budget check's)

    def counted(spec, *args, **kwargs):
        trained.append(spec.run_id)
        return train(spec, *args, **kwargs)

    monkeypatch.setattr(executors, "run_spec", counted)
    again, _ = run_claims(folder, tmp_path / "results", only=[3], workers=1)
    assert trained == [] and stamps() == before
    assert again[0].verdict.verdict == result.verdict.verdict


def test_cli_rejects_an_unknown_claim(tmp_path, capsys):
    assert (
        main(
            [
                "claims",
                "--only",
                "99",
                "--results-dir",
                str(tmp_path),
                "--experiments-dir",
                str(EXPERIMENTS),
                "--report-only",
            ]
        )
        == 2
    )
    assert "no such claim" in capsys.readouterr().err


# Six seeds: the bootstrap interval; paired differences with a one-sample t p-value of 0.027.
SHIFT = [0.005, 0.042, 0.061, 0.041, 0.151, 0.13]
BASE = [0.50, 0.62, 0.55, 0.58, 0.47, 0.60]


def two_metric_frame() -> pd.DataFrame:
    """Arms a and b over six seeds; metrics m1 and m2 carry the same paired differences."""
    rows = []
    for seed, (b, d) in enumerate(zip(BASE, SHIFT, strict=True)):
        for arm, value in (("a", b + d), ("b", b)):
            rows.append(
                {"run_id": f"{arm}{seed}", "arm": arm, "seed": seed, "status": "ok"}
                | {"final/m1": value, "final/m2": value}
            )
    return pd.DataFrame(rows)


def leaf(metric: str) -> dict:
    return {
        "compare": {
            "metric": metric,
            "a": {"arm": "a"},
            "b": {"arm": "b"},
            "direction": "greater",
            "paired": True,
            "better": "higher",
        }
    }


def test_holm_across_a_claims_tests_changes_a_decision():
    runs = two_metric_frame()
    p = scipy.stats.ttest_1samp(SHIFT, 0.0).pvalue
    assert 0.025 < p < 0.05  # alone significant at 0.05; two of them, Holm: 2p > 0.05
    alone = evaluate(parse_rule(leaf("final/m1")), runs)
    assert alone.verdict == "supported" and alone.p_value == pytest.approx(p)
    assert "BCa" in alone.reason or "percentile" in alone.reason  # six seeds: bootstrap
    both = evaluate(parse_rule({"all": [leaf("final/m1"), leaf("final/m2")]}), runs)
    assert [v.verdict for v in both.leaves()] == ["inconclusive", "inconclusive"]
    assert both.leaves()[0].p_holm == pytest.approx(min(1.0, 2 * p))
    assert both.verdict == "inconclusive"
    # An evidence-only second leaf is not in the family: the first keeps its decision.
    evidence = leaf("final/m2")
    evidence["compare"]["counts"] = False
    mixed = evaluate(parse_rule({"all": [leaf("final/m1"), evidence]}), runs)
    assert mixed.verdict == "supported"


def test_compare_reports_probability_of_improvement_by_hand_count():
    # Paired: A beats B in 3 of 6 seeds, ties 1 (counts one half), loses 2 -> (3 + 0.5) / 6.
    a = [0.6, 0.7, 0.5, 0.9, 0.4, 0.8]
    b = [0.5, 0.6, 0.5, 0.7, 0.45, 0.85]
    runs = frame({"a": a, "b": b}, metric="final/val/accuracy")
    verdict = evaluate(compare("greater", metric="final/val/accuracy", paired=True), runs)
    assert verdict.p_better.value == pytest.approx(3.5 / 6)
    assert "P(A > B) = 0.58" in verdict.reason
    # Accuracy differences stay inside [-1, 1] whatever the interval.
    assert -1.0 <= verdict.ci[0] <= verdict.ci[1] <= 1.0


BUDGET_CLAIM = """
name: budget_claim
dataset: {name: recall, options: {seq_len: 3, vocab_size: 10, n_classes: 2, n_train: 64, n_val: 32}}
base: {architecture: rnn, units: 4, embed_dim: 4, epochs: 1, batch_size: 32, jit_compile: false}
grid: {clip: [none, "global_norm:1"]}
protocol: {learning_rate: [0.001, 0.05], select_on: val/loss}
seeds: 3
claim:
  id: 4
  statement: a verdict that holds at one epoch and not at two
  rule:
    threshold: {name: trained for under 1.5 epochs, metric: epochs, where: {clip: none}, direction: less, value: 1.5}
"""


def test_a_verdict_that_changes_at_twice_the_budget_is_budget_sensitive(tmp_path):
    folder = tmp_path / "experiments"
    folder.mkdir()
    (folder / "claim_04_budget.yaml").write_text(textwrap.dedent(BUDGET_CLAIM))
    results, paths = run_claims(folder, tmp_path / "results", only=[4], workers=1)
    (result,) = results
    assert result.verdict.verdict == "supported"  # every run trained for 1 epoch
    check = result.check
    assert check is not None and check.complete and check.epochs == 2
    assert check.verdict.verdict == "contradicted"
    assert result.final_verdict == "budget-sensitive"

    # The check retrains, for twice the epochs, exactly the runs the verdict used: every seed
    # of each arm at the rate the protocol selected for it (read from the runs' own files).
    def specs(folder):
        return [json.loads(p.read_text()) for p in sorted(folder.glob("runs/*/spec.json"))]

    selection = result.protocol
    chosen = {
        row["clip"]: row["learning_rate"] for _, row in selection[selection["selected"]].iterrows()
    }
    assert len(chosen) == 2
    checked = specs(check.exp_dir)
    assert len(checked) == 6 and {s["settings"]["epochs"] for s in checked} == {2}
    assert sorted(
        (s["settings"]["clip"], s["settings"]["learning_rate"], s["seed"]) for s in checked
    ) == sorted((clip, rate, seed) for clip, rate in chosen.items() for seed in range(3))
    # 12 runs at one epoch (2 arms x 2 rates x 3 seeds) in the claim's own folder.
    assert len(specs(result.exp_dir)) == 12
    html, md = paths["html"].read_text(), paths["md"].read_text()
    for text in (html, md):
        assert "budget-sensitive" in text and "Budget check" in text
        assert "selected on the mean val/loss" in text
    assert "| 4 |" in md and "**budget-sensitive**" in md
    # The protocol's rate curve per arm, as in the experiment report.
    assert "score against learning rate" in html and "score against learning rate" in md
    assert (paths["md"].parent / "figures" / "claim_04_budget_rates.png").exists()
    # Per arm at its selected rate: the seeds that reached the target (counted here from the
    # runs' own histories) and the did-not-learn flag.
    target = result.tables.info["derived"]["target"]
    for clip, rate in chosen.items():
        reached = 0
        for spec in specs(result.exp_dir):
            if (spec["settings"]["clip"], spec["settings"]["learning_rate"]) != (clip, rate):
                continue
            history = pd.read_parquet(result.exp_dir / "runs" / spec["run_id"] / "history.parquet")
            reached += bool((history["val/accuracy"] >= target).any())
        assert f"| clip={clip} | {reached}/3 |" in md


# ---------------------------------------------------------------------------------------------
# Gaps found by mutation testing (docs/MUTATION.md): every expected number computed independently.


def threshold_rule(**extra) -> object:
    body = {"metric": "final/val/loss", "where": {"arm": "a"}, "value": 0.5, **extra}
    return parse_rule({"threshold": body})


def test_threshold_reason_p_value_and_greater_direction_by_hand():
    values = [0.61, 0.72, 0.66, 0.7]
    verdict = evaluate(threshold_rule(direction="greater"), frame({"a": values}))
    low, high = DescrStatsW(np.array(values)).tconfint_mean()
    mean = np.mean(values)
    assert verdict.side == verdict.verdict == "supported" and verdict.kind == "threshold"
    assert verdict.ci == pytest.approx((low, high), rel=1e-9)
    assert verdict.p_value == pytest.approx(scipy.stats.ttest_1samp(values, 0.5).pvalue, rel=1e-9)
    assert verdict.reason.startswith(f"mean > 0.5: mean {mean:.4g}, 95% ")
    assert f"CI [{low:.4g}, {high:.4g}], n=4; p = " in verdict.reason
    assert "None" not in verdict.reason
    assert [g.label for g in verdict.groups] == ["arm=a"]
    assert evaluate(
        threshold_rule(direction="greater", value=0.9), frame({"a": values})
    ).verdict == ("contradicted")
    less = evaluate(threshold_rule(value=0.9), frame({"a": values}))
    assert less.reason.startswith("mean < 0.9: ") and less.verdict == "supported"


def test_a_threshold_with_too_few_values_names_every_reason():
    # 6 planned: 1 ok, 1 failed, 1 missing, 2 diverged left out, 1 ok without a value.
    runs = frame(
        {"a": [0.3, None, None, np.nan, np.nan, np.nan]},
        status={"a": ["ok", "failed", "missing", "diverged", "diverged", "ok"]},
    )
    verdict = evaluate(threshold_rule(diverged="exclude"), runs)
    assert verdict.verdict == "inconclusive" and verdict.p_value != verdict.p_value  # NaN
    assert verdict.reason == (
        "inconclusive: group arm=a has 1 usable value(s) of final/val/loss (4 finished, 1 failed,"
        " 1 not run yet, 2 diverged, 3 without a finite value of 6 planned); needs 3"
    )
    assert len(verdict.groups) == 1 and verdict.groups[0].n_excluded == 3
    # The excluded runs come first: the values after them are still collected.
    later = frame({"a": [np.nan, np.nan, 0.3, 0.4]}, status={"a": ["diverged", "ok", "ok", "ok"]})
    group = evaluate(threshold_rule(diverged="exclude", min_seeds=2), later).groups[0]
    assert group.values == [0.3, 0.4] and group.seeds == [2, 3] and group.n_excluded == 2


def test_the_interval_sides_are_strict_at_the_boundary():
    # Three equal values: the interval is the point 0.5 itself, on neither side of 0.5.
    runs = frame({"a": [0.5, 0.5, 0.5]})
    for direction in ("less", "greater"):
        verdict = evaluate(threshold_rule(direction=direction, counts=False), runs)
        assert verdict.ci == (0.5, 0.5) and verdict.side == "inconclusive"
    # Paired differences of exactly +-0.25 against a margin of 0.25: inside is strict too.
    base = [1.0, 2.0, 3.0]

    def equivalent(shift, margin=0.25):
        runs = frame({"a": [x + shift for x in base], "b": base})
        rule = {"metric": "final/val/loss", "a": {"arm": "a"}, "b": {"arm": "b"}, "margin": margin}
        return evaluate(parse_rule({"equivalent": {**rule, "paired": True}}), runs)

    for shift in (0.25, -0.25):
        verdict = equivalent(shift)
        assert verdict.ci == (shift, shift) and verdict.verdict == "inconclusive"
    outside = equivalent(-0.5)
    assert outside.verdict == "contradicted" and outside.estimate == -0.5
    assert outside.reason == "|A-B| < 0.25: A-B = -0.5, 95% constant CI [-0.5, -0.5] (3 seed pairs)"
    assert [g.label for g in outside.groups] == ["arm=a", "arm=b"]
    few = evaluate(
        parse_rule(
            {
                "equivalent": {
                    "metric": "final/val/loss",
                    "a": {"arm": "a"},
                    "b": {"arm": "b"},
                    "margin": 0.1,
                }
            }
        ),
        frame({"a": [0.2, 0.3], "b": [0.2, 0.3, 0.4]}),
    )
    assert few.verdict == "inconclusive" and few.kind == "equivalent" and "needs 3" in few.reason


def test_holm_covers_threshold_leaves_and_reads_the_leafs_confidence():
    values = [0.55, 0.60, 0.58]  # one-sample t against 0.5: p between 0.025 and 0.05
    p = scipy.stats.ttest_1samp(values, 0.5).pvalue
    assert 0.025 < p < 0.05
    rows = frame({"a": values})
    rows["final/val/accuracy"] = rows["final/val/loss"]
    one = {"where": {"arm": "a"}, "value": 0.5, "direction": "greater"}
    both = evaluate(
        parse_rule(
            {
                "all": [
                    {"threshold": {"metric": "final/val/loss", **one}},
                    {"threshold": {"metric": "final/val/accuracy", **one}},
                ]
            }
        ),
        rows,
    )
    assert [v.verdict for v in both.leaves()] == ["inconclusive", "inconclusive"]
    assert both.leaves()[0].p_holm == pytest.approx(2 * p)
    assert both.leaves()[0].reason.endswith(
        f"; p = {p:.3g}, Holm-adjusted p = {2 * p:.3g} over 2 test(s)"
        ": not significant after the correction"
    )
    assert both.reason == "all of 2 rules: 2 inconclusive"
    # p = 0.06 > 0.05 but < 0.10: significant at confidence 0.90 only.
    wide = [0.54, 0.62, 0.57]
    p90 = scipy.stats.ttest_1samp(wide, 0.5).pvalue
    assert 0.05 < p90 < 0.10
    rule = {"metric": "final/val/loss", **one, "confidence": 0.9}
    at90 = evaluate(parse_rule({"threshold": rule}), frame({"a": wide}))
    low, high = DescrStatsW(np.array(wide)).tconfint_mean(alpha=0.1)
    assert at90.ci == pytest.approx((low, high), rel=1e-9) and at90.verdict == "supported"
    # An interval that covers the value is inconclusive without blaming the correction.
    covered = evaluate(threshold_rule(), frame({"a": [0.4, 0.6, 0.5]}))
    assert covered.verdict == "inconclusive" and "not significant" not in covered.reason


def test_combine_reasons_and_any_without_a_supported_rule():
    runs = frame({"a": [0.20, 0.25, 0.22], "b": [0.50, 0.61, 0.55]})
    good = {"metric": "final/val/loss", "a": {"arm": "a"}, "b": {"arm": "b"}, "direction": "less"}
    bad = {**good, "direction": "greater"}
    missing = {**good, "metric": "nope"}
    mixed = evaluate(parse_rule({"all": [{"compare": good}, {"compare": bad}]}), runs)
    assert mixed.reason == "all of 2 rules: 1 supported, 1 contradicted"
    undecided = evaluate(parse_rule({"any": [{"compare": bad}, {"compare": missing}]}), runs)
    assert undecided.verdict == "inconclusive"
    assert undecided.reason == "any of 2 rules: 1 contradicted, 1 inconclusive"
    evidence = evaluate(parse_rule({"any": [{"compare": {**good, "counts": False}}]}), runs)
    assert (evidence.verdict, evidence.reason) == ("inconclusive", "any: no rule that counts")


def test_transforms_use_the_transformed_values_and_their_worst():
    # Accuracy, log10: negative values, so the metric's [0, 1] range must not cut the interval.
    acc = [0.5, 0.25, 0.125, np.nan]
    runs = frame(
        {"a": acc}, status={"a": ["ok", "ok", "ok", "diverged"]}, metric="final/val/accuracy"
    )
    rule = {"metric": "final/val/accuracy", "where": {"arm": "a"}, "value": 0.0, "better": "higher"}
    logs = np.log10([0.5, 0.25, 0.125])
    verdict = evaluate(parse_rule({"threshold": {**rule, "transform": "log10"}}), runs)
    # The diverged run gets the worst (smallest, higher is better) transformed value.
    assert verdict.groups[0].values == pytest.approx([*logs, logs.min()])
    expected = DescrStatsW(np.array([*logs, logs.min()])).tconfint_mean()
    assert verdict.ci == pytest.approx(expected, rel=1e-9) and verdict.ci[1] < 0
    absolute = evaluate(parse_rule({"threshold": {**rule, "transform": "abs_log10"}}), runs)
    assert absolute.groups[0].values == pytest.approx([*-logs, (-logs).min()])
    # Zero and negative values have no logarithm: left out, not -inf.
    zero = frame({"a": [0.0, -1.0, 10.0, 100.0, 1000.0]}, metric="final/val/accuracy")
    for how, expected_values in (("log10", [1.0, 2.0, 3.0]), ("abs_log10", [1.0, 2.0, 3.0])):
        group = evaluate(parse_rule({"threshold": {**rule, "transform": how}}), zero).groups[0]
        assert group.values == pytest.approx(expected_values) and group.n_excluded == 2
    tiny = frame({"a": [0.01, 0.1, 0.001]}, metric="final/val/accuracy")
    group = evaluate(parse_rule({"threshold": {**rule, "transform": "abs_log10"}}), tiny).groups[0]
    assert group.values == pytest.approx([2.0, 1.0, 3.0])
    # negate: a loss (lower is better) negated is higher-is-better, so its worst is the minimum.
    loss = frame({"a": [0.2, 0.4, np.nan]}, status={"a": ["ok", "ok", "diverged"]})
    group = evaluate(threshold_rule(transform="negate", min_seeds=2), loss).groups[0]
    assert group.values == pytest.approx([-0.2, -0.4, -0.4])


def test_an_accuracy_interval_is_cut_to_the_metric_range_by_hand():
    values = [0.99, 0.6, 0.98]
    low, high = DescrStatsW(np.array(values)).tconfint_mean()
    assert high > 1.0
    rule = {"metric": "final/val/accuracy", "where": {"arm": "a"}, "value": 0.5}
    verdict = evaluate(parse_rule({"threshold": rule}), frame({"a": values}, metric=rule["metric"]))
    assert verdict.ci == pytest.approx((low, 1.0), rel=1e-9)
    # The difference of two accuracies stays inside [-1, 1].
    a, b = [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]
    welch = CompareMeans(DescrStatsW(np.array(a)), DescrStatsW(np.array(b))).tconfint_diff(
        usevar="unequal"
    )
    assert -1 < welch[0] and welch[1] > 1
    runs = frame({"a": a, "b": b}, metric="final/val/accuracy")
    difference = evaluate(compare("greater", metric="final/val/accuracy"), runs)
    assert difference.ci == pytest.approx((welch[0], 1.0), rel=1e-9)


def test_an_interval_spec_reaches_every_leaf_and_seeds_the_bootstrap():
    from keras_ablate.analysis.stats import IntervalSpec

    # Six values: the default is a bootstrap; a `t` spec gives statsmodels' t interval.
    values = [0.31, 0.35, 0.29, 0.4, 0.33, 0.37]
    other = [0.5, 0.52, 0.49, 0.55, 0.6, 0.51]
    runs = frame({"a": values, "b": other})
    t = IntervalSpec(kind="t")
    nested = parse_rule(
        {
            "all": [
                {
                    "threshold": {
                        "metric": "final/val/loss",
                        "where": {"arm": "a"},
                        "value": 0.5,
                        "confidence": 0.9,
                    }
                }
            ]
        }
    )
    leaf = evaluate(nested, runs, t).leaves()[0]
    assert leaf.ci == pytest.approx(DescrStatsW(np.array(values)).tconfint_mean(0.1), rel=1e-9)
    welch = CompareMeans(DescrStatsW(np.array(values)), DescrStatsW(np.array(other)))
    for kind in ("compare", "equivalent"):
        body = {"metric": "final/val/loss", "a": {"arm": "a"}, "b": {"arm": "b"}}
        body |= {"margin": 0.5} if kind == "equivalent" else {}
        verdict = evaluate(parse_rule({"all": [{kind: body}]}), runs, t).leaves()[0]
        assert verdict.ci == pytest.approx(welch.tconfint_diff(usevar="unequal"), rel=1e-9)
        assert verdict.groups[0].ci == pytest.approx(DescrStatsW(np.array(values)).tconfint_mean())
        assert verdict.groups[1].ci == pytest.approx(DescrStatsW(np.array(other)).tconfint_mean())
    # The bootstrap's seed is the spec's: two seeds, two intervals; the same seed, the same one.
    one = evaluate(threshold_rule(), runs, IntervalSpec(seed=1)).ci
    assert evaluate(threshold_rule(), runs, IntervalSpec(seed=1)).ci == one
    assert evaluate(threshold_rule(), runs, IntervalSpec(seed=2)).ci != one
    # P(A > B)'s bootstrap too.
    mixed = frame({"a": [0.5, 0.3, 0.6, 0.4, 0.55, 0.35], "b": [0.45, 0.5, 0.4, 0.6, 0.5, 0.42]})
    better = [evaluate(compare(), mixed, IntervalSpec(seed=s)).p_better for s in (1, 1, 2)]
    assert better[0] == better[1] and (better[0].low, better[0].high) != (
        better[2].low,
        better[2].high,
    )


def test_paired_runs_match_by_seed_not_by_row_order():
    rows = [
        {"run_id": "a2", "arm": "a", "seed": 2, "status": "ok", "final/val/loss": 3.1},
        {"run_id": "a0", "arm": "a", "seed": 0, "status": "ok", "final/val/loss": 1.1},
        {"run_id": "a1", "arm": "a", "seed": 1, "status": "ok", "final/val/loss": 2.1},
        {"run_id": "b0", "arm": "b", "seed": 0, "status": "ok", "final/val/loss": 1.0},
        {"run_id": "b1", "arm": "b", "seed": 1, "status": "ok", "final/val/loss": 2.0},
        {"run_id": "b3", "arm": "b", "seed": 3, "status": "ok", "final/val/loss": 9.0},
    ]
    runs = pd.DataFrame(rows)
    verdict = evaluate(compare("greater", paired=True, min_seeds=2), runs)
    assert verdict.groups[0].seeds == [2, 0, 1]
    assert verdict.estimate == pytest.approx(0.1) and verdict.ci == pytest.approx((0.1, 0.1))
    assert verdict.reason.startswith("A > B: A-B = 0.1, 95% constant CI [0.1, 0.1] (2 seed pairs)")
    few = evaluate(compare("greater", paired=True), runs)
    assert few.verdict == "inconclusive" and few.kind == "compare"
    assert few.reason == "inconclusive: 2 seed pair(s), needs 3"
    assert [g.label for g in few.groups] == ["arm=a", "arm=b"]


def test_compare_margin_reason_and_p_value_by_hand():
    a, b = [0.2, 0.25, 0.22], [0.5, 0.6, 0.55]
    verdict = evaluate(compare("less", margin=-0.1), frame({"a": a, "b": b}))
    p = scipy.stats.ttest_ind(np.array(a) + 0.1, b, equal_var=False).pvalue
    assert verdict.p_value == pytest.approx(p, rel=1e-9)
    low, high = verdict.ci
    assert verdict.reason.startswith(f"A < B by -0.1: A-B = {np.mean(a) - np.mean(b):.4g}, 95% ")
    assert f"CI [{low:.4g}, {high:.4g}] (n=3, 3); P(A < B) = 1.00 [1.00, 1.00]; p = " in (
        verdict.reason
    )
    # Unpaired P(A > B) counts all 9 pairs: A wins 2 (0.6 > 0.5, 0.6 > 0.55), ties none.
    unpaired = evaluate(compare("greater"), frame({"a": [0.6, 0.1, 0.2], "b": [0.5, 0.55, 0.7]}))
    assert unpaired.p_better.value == pytest.approx(2 / 9)
    assert unpaired.reason.startswith("A > B: ") and "; P(A > B) = 0.22" in unpaired.reason
    assert unpaired.side == "inconclusive"
    # Paired, the same values: A wins seed 0 only -> 1/3.
    paired = evaluate(
        compare("greater", paired=True), frame({"a": [0.6, 0.1, 0.2], "b": [0.5, 0.55, 0.7]})
    )
    assert paired.p_better.value == pytest.approx(1 / 3)


def test_a_selector_key_that_is_not_a_column_selects_nothing():
    rule = {"metric": "final/val/loss", "where": {"optimizer": "adam"}, "value": 0.5}
    verdict = evaluate(parse_rule({"threshold": rule}), frame({"a": [0.1, 0.2, 0.3]}))
    assert verdict.groups[0].n_planned == 0 and verdict.verdict == "inconclusive"
    everything = evaluate(parse_rule({"threshold": {**rule, "where": {}}}), frame({"a": [0.1]}))
    assert everything.groups[0].label == "all runs" and everything.groups[0].n_planned == 1
    two = evaluate(
        parse_rule({"threshold": {**rule, "where": {"arm": "a", "seed": 0}}}),
        frame({"a": [0.1, 0.2]}),
    )
    assert two.groups[0].label == "arm=a, seed=0" and two.groups[0].values == [0.1]


def test_the_worst_value_ignores_failed_runs_and_may_not_exist():
    # The failed run of b recorded 5.0 before failing: not a finished run, so not the worst.
    runs = frame(
        {"a": [0.2, 0.21, np.nan], "b": [0.5, 0.6, 5.0]},
        status={"a": ["ok", "ok", "diverged"], "b": ["ok", "ok", "failed"]},
    )
    assert evaluate(compare("less"), runs).groups[0].values == [0.2, 0.21, 0.6]
    # No finite value anywhere: every diverged run is left out and counted.
    nothing = frame({"a": [np.nan] * 3}, status={"a": ["diverged"] * 3})
    group = evaluate(threshold_rule(), nothing).groups[0]
    assert group.values == [] and group.n_excluded == 3


def test_a_run_table_without_a_status_column_counts_every_run_as_finished():
    # claim_table always writes `status`; a hand-built table may not. Its runs are all "ok".
    runs = frame({"a": [0.4, 0.3, 0.2]}).drop(columns="status")
    verdict = evaluate(
        parse_rule(
            {"threshold": {"metric": "final/val/loss", "where": {"arm": "a"}, "value": 0.5}}
        ),
        runs,
    )
    (group,) = verdict.groups
    assert (group.n_finished, group.n_diverged, len(group.values)) == (3, 0, 3)
    assert group.mean == pytest.approx(0.3)
