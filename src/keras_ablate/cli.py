"""Command line: plan, run, report (TensorFlow is imported only by commands that train)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from keras_ablate.errors import UserError

DEFAULT_RESULTS = "results"


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on bad flags already; keep its message but add what would be valid."""

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="keras-ablate",
        description="Ablation experiments for sequence models in Keras 3: expand a YAML grid, "
        "train every run with gradient instruments, and report what each factor did.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def add_file(p, help_text="experiment YAML file"):
        p.add_argument("file", help=help_text)
        p.add_argument("--results-dir", default=DEFAULT_RESULTS, help="root folder for results (default: results)")

    p = sub.add_parser("plan", help="expand a grid and list its runs (no training, no TensorFlow)")
    add_file(p)
    p.add_argument("--filter", action="append", default=[], metavar="AXIS=LEVEL", help="keep matching runs")
    p.add_argument("--json", action="store_true", help="print the run specs as JSON")

    p = sub.add_parser("run", help="train every missing run of a grid")
    add_file(p)
    p.add_argument("--filter", action="append", default=[], metavar="AXIS=LEVEL", help="only runs with this level (repeatable)")
    p.add_argument("--max-runs", type=int, default=None, metavar="N", help="stop after N runs")
    p.add_argument("--force", action="store_true", help="rerun runs that are already complete")
    p.add_argument("--rerun", action="append", default=[], choices=["failed", "diverged"], help="also rerun runs with this status")

    p = sub.add_parser("report", help="build report.html and report.md for an experiment")
    p.add_argument("target", help="experiment YAML file or results/<experiment> folder")
    p.add_argument("--results-dir", default=DEFAULT_RESULTS, help="root folder for results (default: results)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except UserError as exc:
        print(f"keras-ablate: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("keras-ablate: interrupted; finished runs are kept, rerun to continue", file=sys.stderr)
        return 130


def _load(args):
    from keras_ablate.config import filter_specs, load_experiment

    exp, all_specs = load_experiment(args.file)
    specs = all_specs
    if getattr(args, "filter", None):
        specs = filter_specs(all_specs, args.filter)
        if not specs:
            raise UserError(f"--filter {' '.join(args.filter)}: no run of {args.file} matches")
    exp_dir = Path(args.results_dir) / exp.slug
    return exp, specs, exp_dir, all_specs


def cmd_plan(args) -> int:
    from rich.console import Console
    from rich.table import Table

    exp, specs, exp_dir, _ = _load(args)
    if args.json:
        print(json.dumps([s.to_json() for s in specs], indent=2))
        return 0
    axes = list(specs[0].axes) if specs else []
    table = Table(title=f"{exp.name}: {len(specs)} runs ({exp.design}, {len(exp.seed_list)} seed(s)) -> {exp_dir}")
    for col in ["#", "run_id", *axes, "seed"]:
        table.add_column(col)
    for i, s in enumerate(specs, 1):
        table.add_row(str(i), s.run_id, *[str(s.axes[a]) for a in axes], str(s.seed))
    Console().print(table)
    return 0


def _write_experiment_info(exp, specs, exp_dir: Path, source: str) -> None:
    from keras_ablate import store

    store.write_json_atomic(
        exp_dir / "experiment.json",
        {
            "name": exp.name,
            "description": exp.description,
            "source": source,
            "design": exp.design,
            "axes": list(specs[0].axes) if specs else [],
            "reference": exp.reference,
            "analysis": exp.analysis.model_dump(),
            "n_runs": len(specs),
            "run_ids": [s.run_id for s in specs],
        },
    )


def cmd_run(args) -> int:
    from keras_ablate.runner import run_grid

    exp, specs, exp_dir, all_specs = _load(args)
    if args.max_runs is not None and args.max_runs < 0:
        raise UserError(f"--max-runs must be >= 0, got {args.max_runs}")
    exp_dir.mkdir(parents=True, exist_ok=True)
    _write_experiment_info(exp, all_specs, exp_dir, args.file)
    outcome = run_grid(specs, exp_dir, force=args.force, rerun=tuple(args.rerun), max_runs=args.max_runs)
    return 1 if outcome.failed else 0


def cmd_report(args) -> int:
    from keras_ablate.report.render import build_report

    target = Path(args.target)
    if target.is_dir():
        exp_dir = target
    elif target.exists():
        _exp, _specs, exp_dir, _ = _load(argparse.Namespace(file=args.target, results_dir=args.results_dir))
    else:
        raise UserError(f"{target}: no such experiment file or results folder")
    if not (exp_dir / "runs").is_dir():
        raise UserError(f"{exp_dir}: no runs yet; run `keras-ablate run FILE` first")
    paths = build_report(exp_dir)
    print(f"report: {paths['html']} and {paths['md']} ({paths['seconds']:.1f}s)")
    return 0


_COMMANDS = {"plan": cmd_plan, "run": cmd_run, "report": cmd_report}


if __name__ == "__main__":
    sys.exit(main())
