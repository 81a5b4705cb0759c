"""Command line: plan, run, status, report, tune, claims and export (the flags; commands.py does the work).

plan, status and report never import TensorFlow; run, tune and claims import it once their
input is known to be valid. Each command imports the stage it needs when it runs, so
`keras-ablate --help` imports none of them.
"""

from __future__ import annotations

import argparse
import sys

from keras_ablate.commands import COMMANDS, DEFAULT_RESULTS
from keras_ablate.errors import UserError


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

    def add_results_dir(p):
        p.add_argument(
            "--results-dir",
            default=DEFAULT_RESULTS,
            help="root folder for results (default: results)",
        )

    def add_file(p):
        p.add_argument("file", help="experiment YAML file")
        add_results_dir(p)

    def add_target(p):
        p.add_argument("target", help="experiment YAML file or results/<experiment> folder")
        add_results_dir(p)

    p = sub.add_parser("plan", help="expand a grid and list its runs (no training, no TensorFlow)")
    add_file(p)
    p.add_argument(
        "--filter", action="append", default=[], metavar="AXIS=LEVEL", help="keep matching runs"
    )
    p.add_argument("--json", action="store_true", help="print the run specs as JSON")

    p = sub.add_parser("run", help="train every missing run of a grid")
    add_file(p)
    p.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="AXIS=LEVEL",
        help="only runs with this level (repeatable)",
    )
    p.add_argument("--max-runs", type=int, default=None, metavar="N", help="stop after N runs")
    p.add_argument("--force", action="store_true", help="rerun runs that are already complete")
    p.add_argument(
        "--until-resolved",
        action="store_true",
        help="adaptive seeds: after the file's seeds, add seeds to the arms of unresolved "
        "comparisons until all are resolved or --max-seeds is reached (docs/ADAPTIVE.md)",
    )
    p.add_argument(
        "--max-seeds",
        type=int,
        default=None,
        metavar="N",
        help="adaptive seeds: most seeds per arm (default: the file's seeds.max, else 10)",
    )
    p.add_argument(
        "--rerun",
        action="append",
        default=[],
        choices=["failed", "diverged"],
        help="run only the runs with this status (repeatable)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="local worker processes (default: from CPUs and model size; 1 = this process)",
    )
    p.add_argument(
        "--executor",
        default="local",
        choices=["local", "ray"],
        help="local processes (default) or one Ray task per run",
    )
    p.add_argument(
        "--address",
        default=None,
        metavar="ADDR",
        help="Ray cluster address for --executor ray (default: start a local Ray)",
    )

    p = sub.add_parser(
        "status",
        help="done / diverged / failed / missing runs of a grid, and the ETA while it runs",
    )
    add_target(p)
    p.add_argument("--json", action="store_true", help="print the status as JSON")

    p = sub.add_parser("report", help="build report.html and report.md for an experiment")
    add_target(p)

    p = sub.add_parser(
        "tune", help="search the tune: section's settings per arm with keras-tuner (resumable)"
    )
    add_file(p)
    p.add_argument(
        "--arm",
        action="append",
        default=[],
        metavar="AXIS=LEVEL",
        help="only arms with this level (repeatable)",
    )
    role = p.add_mutually_exclusive_group()
    role.add_argument(
        "--chief",
        action="store_true",
        help="distributed: serve one arm's search at --oracle for workers",
    )
    role.add_argument(
        "--worker",
        metavar="ID",
        help="distributed: run trials for the chief at --oracle (unique ID, e.g. tuner0)",
    )
    p.add_argument(
        "--oracle",
        metavar="HOST:PORT",
        help="chief address (default: $KERASTUNER_ORACLE_IP:$KERASTUNER_ORACLE_PORT)",
    )

    p = sub.add_parser(
        "claims",
        help="run experiments/claim_*.yaml and write results/claims/report.html with verdicts",
    )
    p.add_argument(
        "--only",
        type=int,
        action="append",
        default=[],
        metavar="ID",
        help="only this claim (repeatable)",
    )
    p.add_argument(
        "--experiments-dir",
        default="experiments",
        help="folder of claim_*.yaml (default: experiments)",
    )
    add_results_dir(p)
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="local worker processes per claim grid",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override base.X or dataset.X (quick checks)",
    )
    p.add_argument(
        "--report-only",
        action="store_true",
        help="evaluate and report what has finished; train nothing",
    )
    p = sub.add_parser(
        "export", help="write an experiment's runs for TensorBoard or MLflow (rerun: replaces)"
    )
    tools = p.add_subparsers(dest="tool", required=True, parser_class=_Parser)
    t = tools.add_parser(
        "tensorboard",
        help="one log folder per run: settings as HParams, epoch metrics and per-step "
        "gradient norms as scalars",
    )
    t.add_argument("folder", metavar="RESULTS_DIR", help="a results/<experiment> folder")
    t.add_argument(
        "--out", default=None, metavar="DIR", help="log folder (default: RESULTS_DIR/tensorboard)"
    )
    m = tools.add_parser(
        "mlflow",
        help="one MLflow run per run (params, metrics per step) under a parent run holding "
        "the report",
    )
    m.add_argument("folder", metavar="RESULTS_DIR", help="a results/<experiment> folder")
    m.add_argument(
        "--tracking-uri",
        default=None,
        metavar="URI",
        help="MLflow tracking URI (default: a local store in RESULTS_DIR/mlruns)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UserError as exc:
        print(f"keras-ablate: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(
            "keras-ablate: interrupted; finished runs are kept, rerun to continue", file=sys.stderr
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
