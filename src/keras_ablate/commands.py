"""What each command does: plan, run, status, report, tune, claims, export (cli.py parses the flags).

Every stage is imported inside the command that needs it, so importing this module (and
`keras-ablate --help`) imports no stage, and plan, status and report never import TensorFlow.
Over 400 lines because every command's checks before anything is written (options, the user's
code, adaptive seeds) sit next to the command they guard, each a short function.
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
    _print_user_code(console, exp, specs)
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


def _print_user_code(console, exp, specs) -> None:
    """Say which of the user's modules the plan names, and that they were read, not imported."""
    from keras_ablate.usercode import find

    refs = sorted(
        {s.settings["builder"] for s in specs if "builder" in s.settings}
        | {s.dataset["name"] for s in specs if ":" in s.dataset["name"]}
    )
    for ref in refs:
        path = find(ref, exp.base_dir).path
        console.print(
            f"user code {ref}: {path} defines it (checked without importing it or TensorFlow; "
            "`run` imports it and builds each model once before writing anything)",
            soft_wrap=True,
        )


def _write_experiment_info(exp, specs, exp_dir: Path, source: str) -> None:
    """experiment.json of a `run`: the plan, and the command that ran it."""
    from keras_ablate import store

    command = "keras-ablate " + " ".join(sys.argv[1:])
    store.write_experiment(exp_dir, store.experiment_record(exp, specs, source, command))


def cmd_run(args) -> int:
    exp, specs, exp_dir, all_specs = _load(args)
    adaptive = _adaptive_plan(exp, args)
    if adaptive is not None:
        _preflight(
            exp,
            specs,
            all_specs,
            exp_dir,
            args.file,
            None,
            args.executor,
            args.workers,
            args.address,
        )
        return _run_adaptive(exp, exp_dir, all_specs, args, *adaptive)
    outcome = run_experiment(
        exp,
        specs,
        all_specs,
        exp_dir,
        args.file,
        force=args.force,
        rerun=tuple(args.rerun),
        max_runs=args.max_runs,
        workers=args.workers,
        executor=args.executor,
        address=args.address,
    )
    return 1 if outcome.failed else 0


def run_experiment(
    exp,
    specs,
    all_specs,
    exp_dir: Path,
    source: str,
    *,
    force: bool = False,
    rerun: tuple[str, ...] = (),
    max_runs: int | None = None,
    workers: int | None = None,
    executor: str = "local",
    address: str | None = None,
):
    """What `run` does once the file is read (the notebook's Experiment.run too): check every
    option before anything is written or locked, record the plan, run what is missing."""
    from keras_ablate.runner import run_grid

    _preflight(exp, specs, all_specs, exp_dir, source, max_runs, executor, workers, address)
    exp_dir.mkdir(parents=True, exist_ok=True)
    _write_experiment_info(exp, all_specs, exp_dir, source)
    return run_grid(
        specs,
        exp_dir,
        force=force,
        rerun=rerun,
        max_runs=max_runs,
        workers=workers,
        executor=executor,
        address=address,
        resources=exp.resources,
    )


def _preflight(
    exp, specs, all_specs, exp_dir: Path, source: str, max_runs, executor, workers, address
) -> None:
    """Every option and the user's code checked before anything is written or locked."""
    from keras_ablate.runner import check_options

    if max_runs is not None and max_runs < 1:
        raise UserError(
            f"--max-runs must be >= 1, got {max_runs} (to check a file without training, "
            "use `keras-ablate plan`)"
        )
    check_options(executor, workers, address)
    _check_owner(exp, exp_dir, source)
    if any("builder" in s.settings or ":" in s.dataset["name"] for s in all_specs):
        # The user's code is imported and run once here (TensorFlow with it), so that a module
        # that fails to import or a builder that returns no keras.Model stops before any write.
        from keras_ablate.data import load_dataset
        from keras_ablate.models.user import check_builds

        check_builds(exp, specs, load_dataset)


def planned_info(exp, all_specs, exp_dir: Path, source: str) -> dict:
    """The experiment as planned now, over experiment.json: what `report FILE` reports (only this
    plan's runs, whatever the last `run` planned)."""
    from keras_ablate import store

    _check_owner(exp, exp_dir, source)
    info = {
        **store.read_experiment(exp_dir),
        **store.experiment_record(exp, all_specs, source),
    }
    added = [r for r in store.adaptive_run_ids(exp_dir) if r not in set(info["run_ids"])]
    if added:  # seeds an adaptive loop added belong to the plan too
        info["run_ids"] = info["run_ids"] + added
        info["n_runs"] = len(info["run_ids"])
    return info


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
        # The report of FILE covers FILE's plan as it is now, whatever the last `run` planned.
        info = planned_info(exp, all_specs, exp_dir, args.target)
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
        print(f"claim {r.claim.claim_id:>2} {r.final_verdict:<16} {r.final_reason}")
    print(f"report: {paths['html']} and {paths['md']}")
    return 0


def cmd_export(args) -> int:
    folder = Path(args.folder)
    if not folder.is_dir():
        what = "is a file" if folder.exists() else "does not exist"
        raise UserError(
            f"{folder}: {what}; export takes a results folder (results/<experiment>, the folder "
            "`keras-ablate run` writes), e.g. `keras-ablate export "
            f"{args.tool} results/default`"
        )
    if args.tool == "tensorboard":
        from keras_ablate.export.tensorboard_logs import export_tensorboard

        done = export_tensorboard(folder, args.out)
        where = f"{done['out']}: {done['runs']} runs"
        if done["removed"]:
            where += f" ({done['removed']} no longer in the results removed)"
        print(f"tensorboard: {where}; view with `tensorboard --logdir {done['out']}`")
    else:
        from keras_ablate.export.mlflow_runs import export_mlflow

        done = export_mlflow(folder, args.tracking_uri)
        print(
            f"mlflow: {done['runs']} runs in {done['tracking_uri']} (experiment "
            f"{done['experiment_id']}): {done['logged']} logged, {done['replaced']} replaced, "
            f"{done['kept']} unchanged"
        )
    for run_id, why in done["unreadable"].items():
        print(
            f"keras-ablate: warning: {folder}/runs/{run_id} cannot be read and is left out ({why})",
            file=sys.stderr,
        )
    return 0


COMMANDS = {
    "plan": cmd_plan,
    "run": cmd_run,
    "report": cmd_report,
    "tune": cmd_tune,
    "status": cmd_status,
    "claims": cmd_claims,
    "export": cmd_export,
}
