"""Run the study note's claims: load experiments/claim_*.yaml, run their grids, build each claim's
per-run table, evaluate its rule and write the claims report."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from keras_ablate import store, yaml_input
from keras_ablate.analysis.tables import load
from keras_ablate.claims.evaluation import Verdict, evaluate
from keras_ablate.claims.rules import Rule, check_rule, normalize_rule, parse_rule, planned_levels
from keras_ablate.config.expand import parse_experiment
from keras_ablate.config.schema import Experiment, RunSpec
from keras_ablate.errors import ConfigError, UserError

CLAIM_GLOB = "claim_*.yaml"


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
class ClaimResult:
    """What the report shows for one claim."""

    claim: ClaimExperiment
    verdict: Verdict
    table: pd.DataFrame
    exp_dir: Path
    statuses: dict[str, int] = field(default_factory=dict)
    wall_time_s: float = 0.0


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
    table = add_missing(claim_table(exp_dir, [s.run_id for s in claim.specs]), claim.specs)
    verdict = evaluate(claim.rule, table)
    counts = (
        table["status"].astype(str).value_counts() if "status" in table else pd.Series(dtype=int)
    )
    statuses = {k: int(n) for k, n in counts.items() if n}
    return ClaimResult(claim, verdict, table, exp_dir, statuses, time.time() - started)


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


def claim_table(exp_dir: str | Path, run_ids: list[str] | None = None) -> pd.DataFrame:
    """One row per planned run: settings, status, every derived metric (analysis.metrics).

    Args:
        run_ids: the runs of the current plan; other run folders (older plans) are left out.
    """
    runs = load(Path(exp_dir)).runs.copy()
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


def add_missing(runs: pd.DataFrame, specs) -> pd.DataFrame:
    """Add a 'missing' row for each planned spec without a run folder (settings filled from the spec)."""
    have = set(runs["run_id"]) if "run_id" in runs.columns else set()
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
