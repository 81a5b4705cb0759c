"""What each command does: plan, run, status, report, tune, claims (cli.py parses the flags).

Every stage is imported inside the command that needs it, so importing this module (and
`keras-ablate --help`) imports no stage, and plan, status and report never import TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from keras_ablate.errors import UserError

DEFAULT_RESULTS = "results"


def _load(args, warn: bool = True):
    from keras_ablate.config.expand import load_experiment
    from keras_ablate.config.select import filter_specs, planned_levels_text

    exp, all_specs = load_experiment(
        args.file, results_dir=getattr(args, "results_dir", DEFAULT_RESULTS)
    )
    if warn:
        for warning in exp.warnings:
            print(f"keras-ablate: warning: {warning}", file=sys.stderr)
    specs = all_specs
    if getattr(args, "filter", None):
        specs = filter_specs(all_specs, args.filter)
        if not specs:
            raise UserError(
                f"--filter {' '.join(args.filter)}: no run of {args.file} matches; levels in this "
                f"plan: {planned_levels_text(all_specs, args.filter)}"
            )
    exp_dir = exp.folder(args.results_dir)
    return exp, specs, exp_dir, all_specs


def _check_owner(exp, exp_dir: Path, source: str) -> None:
    """Refuse to write into a results folder that holds another experiment's runs."""
    from keras_ablate import store

    owner = store.read_experiment(exp_dir).get("name")
    if isinstance(owner, str) and owner != exp.name:
        raise UserError(
            f"{source}: {exp_dir} holds the results of experiment {owner!r}, not {exp.name!r}; "
            "give this experiment another name, or use another --results-dir"
        )


def cmd_plan(args) -> int:
    from rich.console import Console
    from rich.table import Table

    exp, specs, exp_dir, _ = _load(args)
    if args.json:
        print(json.dumps([s.to_json() for s in specs], indent=2))
        return 0
    axes = list(specs[0].axes) if specs else []
    rates = exp.protocol.learning_rate if exp.protocol else []
    per_arm = f", {len(rates)} learning rates per arm (protocol)" if rates else ""
    table = Table(
        title=f"{exp.name}: {len(specs)} runs ({exp.design}, {len(exp.seed_list)} seed(s)"
        f"{per_arm}) -> {exp_dir}"
    )
    if exp.adaptive is not None:
        from keras_ablate.adaptive import rule_for

        rule = rule_for(exp, True, None)
        most = len(specs) // max(len(exp.seed_list), 1) * rule.max
        adaptive_line = (
            f"adaptive seeds: {rule.describe()}; {len(specs)} runs at the first look, at most "
            f"{most} runs (every arm at {rule.max} seeds)"
        )
    else:
        adaptive_line = ""
    # Values from base_from or the protocol are shown per run with where they came from.
    tuned_from = sorted({o for s in specs for o in s.origins.values() if o not in ("base", "grid")})
    title = "tuned (base_from)" if "protocol" not in tuned_from else "tuned / protocol"
    for col in ["#", "run_id", *axes, "seed", *([title] if tuned_from else [])]:
        table.add_column(col)
    for i, s in enumerate(specs, 1):
        tuned = (
            [
                ", ".join(
                    f"{k}={s.settings[k]:.4g}"
                    if isinstance(s.settings[k], float)
                    else f"{k}={s.settings[k]}"
                    for k, o in s.origins.items()
                    if o in tuned_from
                )
            ]
            if tuned_from
            else []
        )
        table.add_row(str(i), s.run_id, *[str(s.axes[a]) for a in axes], str(s.seed), *tuned)
    console = Console()
    console.print(table)
    if adaptive_line:
        console.print(adaptive_line, soft_wrap=True)
    if tuned_from:
        tuned_files = [o for o in tuned_from if o != "protocol"]
        console.print(
            "values: axes from grid"
            + ("; tuned values from " + ", ".join(tuned_files) if tuned_files else "")
            + (
                f"; learning_rate from protocol (each arm at {', '.join(f'{r:g}' for r in rates)}; "
                f"the report compares each arm at the rate with the best {exp.protocol.select_on})"
                if rates
                else ""
            ),
            soft_wrap=True,
        )
        console.print(
            "everything else from base, or the defaults where base does not set it", soft_wrap=True
        )
    return 0


def _write_experiment_info(exp, specs, exp_dir: Path, source: str) -> None:
    """experiment.json of a `run`: the plan, and the command that ran it."""
    from keras_ablate import store

    command = "keras-ablate " + " ".join(sys.argv[1:])
    store.write_experiment(exp_dir, store.experiment_record(exp, specs, source, command))


def cmd_run(args) -> int:
    from keras_ablate.runner import check_options, run_grid

    exp, specs, exp_dir, all_specs = _load(args)
    # Every option is checked before anything is written or locked.
    if args.max_runs is not None and args.max_runs < 1:
        raise UserError(
            f"--max-runs must be >= 1, got {args.max_runs} (to check a file without training, "
            "use `keras-ablate plan`)"
        )
    check_options(args.executor, args.workers, args.address)
    _check_owner(exp, exp_dir, args.file)
    adaptive = _adaptive_plan(exp, args)
    if adaptive is not None:
        return _run_adaptive(exp, exp_dir, all_specs, args, *adaptive)
    exp_dir.mkdir(parents=True, exist_ok=True)
    _write_experiment_info(exp, all_specs, exp_dir, args.file)
    outcome = run_grid(
        specs,
        exp_dir,
        force=args.force,
        rerun=tuple(args.rerun),
        max_runs=args.max_runs,
        workers=args.workers,
        executor=args.executor,
        address=args.address,
        resources=exp.resources,
    )
    return 1 if outcome.failed else 0


def _adaptive_plan(exp, args):
    """(rule, seeds, specs at max seeds) for adaptive seeds, None otherwise; options checked first."""
    from keras_ablate.adaptive import rule_for, seed_sequence
    from keras_ablate.config.expand import expand_seeds

    rule = rule_for(exp, getattr(args, "until_resolved", False), getattr(args, "max_seeds", None))
    if rule is None:
        return None
    for flag, given in (
        ("--filter", args.filter),
        ("--max-runs", args.max_runs is not None),
        ("--rerun", args.rerun),
        ("--force", args.force),
    ):
        if given:
            raise UserError(
                f"{flag} cannot be combined with adaptive seeds (--until-resolved or seeds: "
                "{min, max, until}): the loop decides which runs to train; run without it"
            )
    seeds = seed_sequence(exp.seed_list, rule.max)
    return rule, seeds, expand_seeds(exp, seeds, args.results_dir)


def _run_adaptive(exp, exp_dir: Path, all_specs, args, rule, seeds, specs) -> int:
    from keras_ablate import store
    from keras_ablate.adaptive import run_until_resolved
    from keras_ablate.runner import run_grid

    exp_dir.mkdir(parents=True, exist_ok=True)
    command = "keras-ablate " + " ".join(sys.argv[1:])
    record = store.experiment_record(exp, all_specs, args.file, command)
    print(f"adaptive seeds: {rule.describe()}", file=sys.stderr)
    failed = []

    def run_round(round_specs):
        outcome = run_grid(
            round_specs,
            exp_dir,
            workers=args.workers,
            executor=args.executor,
            address=args.address,
            resources=exp.resources,
        )
        failed.append(outcome.failed)

    run_until_resolved(
        specs, seeds, rule, exp_dir, record, run_round, say=lambda t: print(t, file=sys.stderr)
    )
    return 1 if any(failed) else 0


def cmd_status(args) -> int:
    from keras_ablate import store
    from keras_ablate.progress import format_status, grid_status

    target = Path(args.target)
    if target.is_dir():
        exp_dir = target
        run_ids = store.read_experiment(exp_dir).get("run_ids")
        if not isinstance(run_ids, list) or not all(isinstance(r, str) for r in run_ids):
            run_ids = None  # no grid recorded: count the folders there are
    elif target.exists():
        _exp, _specs, exp_dir, all_specs = _load(
            argparse.Namespace(file=args.target, results_dir=args.results_dir), warn=False
        )
        run_ids = [s.run_id for s in all_specs]
        # Seeds an adaptive loop added belong to the plan too.
        run_ids += [r for r in store.adaptive_run_ids(exp_dir) if r not in set(run_ids)]
    else:
        raise UserError(f"{target}: no such experiment file or results folder")
    status = grid_status(exp_dir, run_ids)
    adaptive = store.read_adaptive(exp_dir)
    if adaptive:
        from keras_ablate.adaptive import summary_line

        status["adaptive"] = {
            "stopped": adaptive.get("stopped"),
            "looks": len(adaptive.get("looks") or []),
            "seeds_per_arm": adaptive.get("seeds_per_arm"),
            "summary": summary_line(adaptive),
        }
    print(json.dumps(status, indent=2) if args.json else format_status(status))
    if adaptive and not args.json:
        print(f"adaptive seeds: {status['adaptive']['summary']}")
    for run_id, why in status["unreadable_runs"].items():
        print(
            f"keras-ablate: warning: {exp_dir}/runs/{run_id} cannot be read: {why}", file=sys.stderr
        )
    return 0


def cmd_report(args) -> int:
    from keras_ablate import store
    from keras_ablate.report.render import build_report

    target = Path(args.target)
    info = None  # the folder's experiment.json: the plan of the last `run`
    if target.is_dir():
        exp_dir = target
    elif target.exists():
        exp, _specs, exp_dir, all_specs = _load(
            argparse.Namespace(file=args.target, results_dir=args.results_dir), warn=False
        )
        _check_owner(exp, exp_dir, args.target)
        # The report of FILE covers FILE's plan as it is now, whatever the last `run` planned.
        info = {
            **store.read_experiment(exp_dir),
            **store.experiment_record(exp, all_specs, args.target),
        }
        added = [r for r in store.adaptive_run_ids(exp_dir) if r not in set(info["run_ids"])]
        if added:  # seeds an adaptive loop added belong to the plan too
            info["run_ids"] = info["run_ids"] + added
            info["n_runs"] = len(info["run_ids"])
    else:
        raise UserError(f"{target}: no such experiment file or results folder")
    if not (exp_dir / store.RUNS).is_dir():
        raise UserError(f"{exp_dir}: no runs yet; run `keras-ablate run FILE` first")
    paths = build_report(exp_dir, info)
    for run_id, why in paths["unreadable"].items():
        print(
            f"keras-ablate: warning: {exp_dir}/runs/{run_id} cannot be read and is left out "
            f"({why}); the next `keras-ablate run` trains it again",
            file=sys.stderr,
        )
    if paths["unplanned"]:
        print(
            f"keras-ablate: note: {len(paths['unplanned'])} run(s) in {exp_dir} are not in this "
            "plan: listed apart in the report, left out of every number",
            file=sys.stderr,
        )
    print(f"report: {paths['html']} and {paths['md']} ({paths['seconds']:.1f}s)")
    return 0


def cmd_tune(args) -> int:
    from keras_ablate.config.expand import load_experiment
    from keras_ablate.config.tuning import search_space, select_arms

    # Tuning starts from base, so a base_from that points at these very results is ignored here.
    exp, specs = load_experiment(args.file, results_dir=args.results_dir, use_base_from=False)
    space = search_space(exp)
    arms = select_arms(specs, args.arm)
    # TensorFlow is imported only now, once the file is known to be valid.
    from keras_ablate.tuning.search import tune_arms

    role = "chief" if args.chief else args.worker
    return tune_arms(exp, space, arms, args.results_dir, role=role, oracle=args.oracle)


def cmd_claims(args) -> int:
    from keras_ablate.claims.running import parse_overrides, run_claims

    results, paths = run_claims(
        args.experiments_dir,
        args.results_dir,
        only=args.only,
        overrides=parse_overrides(args.set),
        workers=args.workers,
        run=not args.report_only,
    )
    for r in results:
        print(f"claim {r.claim.claim_id:>2} {r.verdict.verdict:<12} {r.verdict.reason}")
    print(f"report: {paths['html']} and {paths['md']}")
    return 0


COMMANDS = {
    "plan": cmd_plan,
    "run": cmd_run,
    "report": cmd_report,
    "tune": cmd_tune,
    "status": cmd_status,
    "claims": cmd_claims,
}
