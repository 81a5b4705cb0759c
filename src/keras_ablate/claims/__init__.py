"""Claims of the study note confronted with experiments: a claim file is an experiment plus a rule.

Modules: rules (the rule schema and its checks against a grid), evaluation (a verdict per rule,
one function per rule kind), running (load claim files, run their grids, build each claim's
per-run table), report (results/claims/report.html and report.md).
"""

from keras_ablate.claims.evaluation import Verdict, evaluate
from keras_ablate.claims.rules import Rule, check_rule, parse_rule, planned_levels
from keras_ablate.claims.running import (
    ClaimExperiment,
    ClaimResult,
    add_missing,
    claim_files,
    claim_table,
    load_claim,
    parse_overrides,
    run_claim,
    run_claims,
    select_claims,
)

__all__ = [
    "ClaimExperiment",
    "ClaimResult",
    "Rule",
    "Verdict",
    "add_missing",
    "check_rule",
    "claim_files",
    "claim_table",
    "evaluate",
    "load_claim",
    "parse_overrides",
    "parse_rule",
    "planned_levels",
    "run_claim",
    "run_claims",
    "select_claims",
]
