"""Report build time and peak memory for a large synthetic grid (default 1000 runs x 20 epochs x 200 steps).

Usage: python benchmarks/report_scale.py [--runs-dir DIR] [--seeds 10] [--epochs 20] [--steps-per-epoch 10]
The run folders are written in the real store format (store.write_run) by analysis.simulate; the
report is then built in a fresh child process so its peak RSS is the report's alone.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from keras_ablate.analysis import simulate

GRID = {
    "architecture": ["rnn", "lstm", "gru", "cnn", "mlp"],
    "activation": ["tanh", "relu", "elu", "sigmoid", "gelu"],
    "normalization": ["none", "layer"],
    "clip": ["none", "norm:1.0"],
}  # 100 configurations

CHILD = """
import json, resource, sys, time
t0 = time.perf_counter()
from keras_ablate.analysis import load
from keras_ablate.analysis import effects
from keras_ablate.report.render import build_report
t1 = time.perf_counter()
tables = load(sys.argv[1])
t2 = time.perf_counter()
paths = build_report(sys.argv[1])
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "build_report_s": t3 - t2, "total_s": t3 - t0,
                  "steps_rows": len(tables.steps), "steps_mb": tables.steps.memory_usage(deep=True).sum() / 2**20,
                  "html_mb": paths["html"].stat().st_size / 2**20,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs-dir", default=None, help="reuse or create the experiment here (default: a temp dir)"
    )
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--steps-per-epoch", type=int, default=10)
    args = parser.parse_args()
    exp = Path(args.runs_dir or tempfile.mkdtemp(prefix="report_scale_")) / "scale"
    if not (exp / "runs").is_dir():
        started = time.perf_counter()
        simulate.write_experiment(
            exp,
            GRID,
            seeds=args.seeds,
            epochs=args.epochs,
            steps_per_epoch=args.steps_per_epoch,
            failed=lambda axes, seed: seed == 0 and axes["architecture"] == "mlp",
            name="scale",
        )
        print(
            f"generated {len(list((exp / 'runs').iterdir()))} run folders in {time.perf_counter() - started:.1f} s"
        )
    result = subprocess.run([sys.executable, "-c", CHILD, str(exp)], capture_output=True, text=True)
    if result.returncode:
        print(result.stderr[-3000:])
        return 1
    print(result.stdout.strip().splitlines()[-1])
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak RSS of the report process: {child:.0f} MB (goal < 2048 MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
