"""Run the study note's claims: load experiments/claim_*.yaml, run their grids, build each claim's
per-run table, evaluate its rule and write the claims report.

A claim is evaluated under its file's protocol (each arm at the learning rate its validation
score selects, when the file has a `protocol:` section) and budget (`base.epochs`), then checked
at `claim.budget_check` (default 2) times that budget: every run the verdict used (each arm at
its selected rate, every seed) is trained again for that many times the epochs, into the folder
`<claim>--budget-x2` beside the claim's own, and the rule evaluated again. A verdict that
differs between the two budgets is reported as `budget-sensitive`, with both verdicts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from keras_ablate import store, yaml_input
from keras_ablate.analysis.stats import IntervalSpec
from keras_ablate.analysis.tables import load
from keras_ablate.claims.evaluation import Verdict, evaluate
from keras_ablate.claims.rules import Rule, check_rule, normalize_rule, parse_rule, planned_levels
from keras_ablate.config.expand import parse_experiment
from keras_ablate.config.schema import Experiment, RunSpec, make_run_id
from keras_ablate.errors import ConfigError, UserError

CLAIM_GLOB = "claim_*.yaml"
BUDGET_SENSITIVE = "budget-sensitive"


@dataclass
class ClaimExperiment:
    """One claim file: the validated experiment, its runs and its parsed rule."""

    path: Path
    experiment: Experiment
    specs: list[RunSpec]
    rule: Rule

    @property
    def claim_id(self) -> int:
        return self.experiment.claim.id


@dataclass
class BudgetCheck:
    """The rule evaluated again with every arm trained for `factor` x the epochs."""

    factor: float
    epochs: int
    verdict: Verdict
    table: pd.DataFrame
    exp_dir: Path
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Every run of the check has a folder (the check decides nothing before that)."""
        return not self.statuses.get("missing")


@dataclass
class ClaimResult:
    """What the report shows for one claim."""

    claim: ClaimExperiment
    verdict: Verdict
    table: pd.DataFrame
    exp_dir: Path
    statuses: dict[str, int] = field(default_factory=dict)
    wall_time_s: float = 0.0
    check: BudgetCheck | None = None
    # Training time summed over every run of the claim (all rates) and of its budget check.
    training_s: float = 0.0
    # Each arm's learning rate under the protocol (analysis.protocol.select_rates), if any.
    protocol: pd.DataFrame | None = None
    # analysis.load of the claim's folder (every rate in tables.all_runs under a protocol).
    tables: Any = None

    @property
    def final_verdict(self) -> str:
        """The verdict at the claim's budget, or budget-sensitive when the check disagrees."""
        check = self.check
        if check is not None and check.complete and check.verdict.verdict != self.verdict.verdict:
            return BUDGET_SENSITIVE
        return self.verdict.verdict

    @property
    def final_reason(self) -> str:
        if self.check is None:
            return self.verdict.reason
        if not self.check.complete:
            n = sum(self.check.statuses.values())
            return (
                f"{self.verdict.reason}; not yet checked at {self.check.epochs} epochs "
                f"({self.check.statuses.get('missing', 0)} of {n} runs not run)"
            )
        at = f"at {self.epochs} epochs {self.verdict.verdict} ({self.verdict.reason})"
        again = f"at {self.check.epochs} epochs {self.check.verdict.verdict}"
        if self.final_verdict == BUDGET_SENSITIVE:
            return f"{at}; {again} ({self.check.verdict.reason})"
        return f"{self.verdict.reason}; the same at {self.check.epochs} epochs"

    @property
    def epochs(self) -> int:
        return int(self.claim.experiment.base.get("epochs") or _default_epochs())


def claim_files(experiments_dir: str | Path = "experiments") -> list[Path]:
    folder = Path(experiments_dir)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder of claim experiments")
    return sorted(folder.glob(CLAIM_GLOB))


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """'base.epochs=1' / 'dataset.n_train=64' -> {'base.epochs': 1, ...} (values read as YAML)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot or section not in ("base", "dataset") or not name:
            raise UserError(f"--set {item!r}: use base.SETTING=VALUE or dataset.OPTION=VALUE")
        out[key] = yaml.safe_load(value)
    return out


def load_claim(path: str | Path, overrides: dict[str, Any] | None = None) -> ClaimExperiment:
    """Validate a claim file (experiment + claim section + rule against its grid)."""
    path = Path(path)
    text = yaml_input.read_text(path)
    raw, _lines = yaml_input.load(text, str(path))
    if overrides:
        if not isinstance(raw, dict):
            raise ConfigError(
                f"{path}: the file must be a mapping with at least 'name' and 'dataset'"
            )
        for key, value in overrides.items():
            section, _, name = key.partition(".")
            if section == "base":
                raw.setdefault("base", {})[name] = value
            else:
                raw.setdefault("dataset", {}).setdefault("options", {})[name] = value
        text = yaml.safe_dump(raw, sort_keys=False)
    exp, specs = parse_experiment(text, source=str(path))
    if exp.claim is None:
        raise ConfigError(f"{path}: a claim file needs a 'claim:' section (id, statement, rule)")
    rule = normalize_rule(parse_rule(exp.claim.rule, source=f"{path}: claim.rule"), str(path))
    check_rule(rule, planned_levels(specs), source=f"{path}: claim.rule")
    return ClaimExperiment(path, exp, specs, rule)


def select_claims(
    files: list[Path], only: list[int] | None, overrides=None
) -> list[ClaimExperiment]:
    claims = [load_claim(f, overrides) for f in files]
    if only:
        known = sorted({c.claim_id for c in claims})
        unknown = sorted(set(only) - set(known))
        if unknown:
            raise UserError(f"--only {unknown}: no such claim; claims: {known}")
        claims = [c for c in claims if c.claim_id in only]
    return sorted(claims, key=lambda c: (c.claim_id, c.path.name))


def run_claim(
    claim: ClaimExperiment,
    results_root: Path,
    workers: int | None = None,
    run: bool = True,
    console=None,
) -> ClaimResult:
    """Run the claim's grid (finished runs are skipped) and evaluate its rule."""
    exp = claim.experiment
    exp_dir = exp.folder(results_root)
    started = time.time()
    if run:
        from keras_ablate import runner

        exp_dir.mkdir(parents=True, exist_ok=True)
        store.write_experiment(exp_dir, store.experiment_record(exp, claim.specs, str(claim.path)))
        runner.run_grid(claim.specs, exp_dir, console=console, workers=workers)
    spec = interval_spec(exp)
    tables = load(exp_dir)
    # Every run of the claim: under a protocol, the rates not selected too.
    every = tables.all_runs if tables.all_runs is not None else tables.runs
    table = add_missing(
        claim_table(exp_dir, [s.run_id for s in claim.specs], tables),
        claim.specs,
        _run_ids(every),
    )
    verdict = evaluate(claim.rule, table, spec)
    result = ClaimResult(claim, verdict, table, exp_dir, _statuses(table))
    result.protocol = tables.protocol if exp.protocol is not None else None
    result.tables = tables
    result.training_s = _training_s(every)
    factor = float(exp.claim.budget_check)
    if factor > 1:
        specs = budget_specs(claim.specs, table, factor)
        check_dir = exp_dir.parent / f"{exp_dir.name}--budget-x{factor:g}"
        if run and specs:
            from keras_ablate import runner

            check_dir.mkdir(parents=True, exist_ok=True)
            check_exp = exp.model_copy(update={"protocol": None})
            store.write_experiment(
                check_dir, store.experiment_record(check_exp, specs, str(claim.path))
            )
            runner.run_grid(specs, check_dir, console=console, workers=workers)
        check_table = add_missing(claim_table(check_dir, [s.run_id for s in specs]), specs)
        result.check = BudgetCheck(
            factor,
            int(round(result.epochs * factor)),
            evaluate(claim.rule, check_table, spec),
            check_table,
            check_dir,
            _statuses(check_table),
        )
        result.training_s += _training_s(check_table)
    result.wall_time_s = time.time() - started
    return result


def interval_spec(exp: Experiment) -> IntervalSpec:
    """The claim file's `analysis.interval` and `resamples` (bootstrap, 2000 by default)."""
    return IntervalSpec(kind=exp.analysis.interval, resamples=exp.analysis.resamples)


def budget_specs(specs: list[RunSpec], table: pd.DataFrame, factor: float) -> list[RunSpec]:
    """The runs the verdict used (under a protocol, every seed of each arm's selected rate; a
    planned run not finished yet counts as used), each with `factor` x its epochs."""
    used = set(table["run_id"].astype(str)) if "run_id" in table.columns else set()
    out = []
    for spec in specs:
        if spec.run_id not in used:
            continue
        epochs = int(round(int(spec.settings.get("epochs") or _default_epochs()) * factor))
        settings = {**spec.settings, "epochs": epochs}
        out.append(
            replace(
                spec,
                run_id=make_run_id(settings, spec.dataset, spec.seed),
                settings=settings,
                origins={**spec.origins, "epochs": f"budget check x{factor:g}"},
            )
        )
    return out


def _default_epochs() -> int:
    from keras_ablate.config.schema import RunSettings

    return int(RunSettings().epochs)


def _training_s(frame: pd.DataFrame) -> float:
    if "wall_time_s" not in frame.columns:
        return 0.0
    return float(pd.to_numeric(frame["wall_time_s"], errors="coerce").fillna(0).sum())


def _run_ids(frame: pd.DataFrame) -> set[str]:
    return set(frame["run_id"].astype(str)) if "run_id" in frame.columns else set()


def _statuses(table: pd.DataFrame) -> dict[str, int]:
    counts = (
        table["status"].astype(str).value_counts() if "status" in table else pd.Series(dtype=int)
    )
    return {k: int(n) for k, n in counts.items() if n}


def run_claims(
    experiments_dir: str | Path = "experiments",
    results_dir: str | Path = "results",
    only: list[int] | None = None,
    overrides: dict | None = None,
    workers: int | None = None,
    run: bool = True,
    console=None,
) -> tuple[list[ClaimResult], dict[str, Path]]:
    """Run every selected claim, then write results/claims/report.html and report.md."""
    from keras_ablate.claims.report import build_claims_report

    claims = select_claims(claim_files(experiments_dir), only, overrides)
    if not claims:
        raise UserError(f"{experiments_dir}: no {CLAIM_GLOB} files")
    root = Path(results_dir) / store.CLAIMS
    results = [run_claim(c, root, workers=workers, run=run, console=console) for c in claims]
    paths = build_claims_report(results, root)
    return results, paths


def claim_table(exp_dir: str | Path, run_ids: list[str] | None = None, tables=None) -> pd.DataFrame:
    """One row per planned run: settings, status, every derived metric (analysis.metrics).
    Under a protocol, only the runs at each arm's selected rate (analysis.load applies it).

    Args:
        run_ids: the runs of the current plan; other run folders (older plans) are left out.
        tables: `load(exp_dir)` when the caller has it already.
    """
    runs = (tables if tables is not None else load(Path(exp_dir))).runs.copy()
    if runs.empty:
        runs = pd.DataFrame(columns=["run_id", "status"])
    # Categorical columns would refuse the 'missing' status and new levels.
    runs = runs.astype(
        {c: object for c in runs.columns if isinstance(runs[c].dtype, pd.CategoricalDtype)}
    )
    if run_ids is not None:
        runs = runs[runs["run_id"].astype(str).isin(run_ids)]
    if "status" in runs.columns:
        runs["diverged"] = (runs["status"] == "diverged").astype(float)
    return runs.reset_index(drop=True)


def add_missing(runs: pd.DataFrame, specs, present: set[str] | None = None) -> pd.DataFrame:
    """Add a 'missing' row for each planned spec without a run folder (settings filled from the
    spec). `present`: the run ids that have one (default: those in `runs`; under a protocol, also
    the runs at rates that were not selected)."""
    have = set(runs["run_id"]) if "run_id" in runs.columns else set()
    have |= present or set()
    rows = []
    for spec in specs:
        if spec.run_id in have:
            continue
        row = {"run_id": spec.run_id, "seed": spec.seed, "status": "missing"}
        row.update(
            {
                k: (",".join(map(str, v)) if isinstance(v, list) else v)
                for k, v in spec.settings.items()
            }
        )
        row.update({f"dataset.{k}": v for k, v in spec.dataset["options"].items()})
        rows.append(row)
    return pd.concat([runs, pd.DataFrame(rows)], ignore_index=True) if rows else runs
