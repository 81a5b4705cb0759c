"""XLA's break-even per architecture family: compile cost over per-step saving, side by side in one run.

For cnn, rnn, lstm and gru at the default grid's shape (ngram, T=20, 2048 examples, batch 64,
units 32), one run with jit_compile false and one with true, each in a fresh one-thread process
(as a worker runs them). From each run's timing breakdown (summary.json "timing"): the extra
compile time of XLA, the saving per train step, and the break-even work (train steps x
timesteps for recurrent families) that training/compile_policy.py's table should hold.

    .venv/bin/python benchmarks/jit_break_even.py [--epochs 6] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = """
import json, sys
from keras_ablate.executors import configure_threads, run_spec
configure_threads(1)
from keras_ablate.config import RunSettings, RunSpec, make_run_id
arch, jit, epochs = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3])
s = RunSettings(architecture=arch, units=32, embed_dim=16, filters=32, learning_rate=0.005,
                batch_size=64, epochs=epochs, jit_compile=jit).model_dump(mode="json")
ds = {"name": "ngram", "options": {"seq_len": 20, "vocab_size": 30, "n_train": 2048,
      "n_val": 256, "seed": 0}}
summary, _ = run_spec(RunSpec("t", make_run_id(s, ds, 0), s, ds, 0, {}), threads=1)
print(json.dumps({"steps": summary["steps_done"], **summary["timing"]}))
"""


def _measure(arch: str, jit: bool, epochs: int, env: dict) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, arch, "1" if jit else "0", str(epochs)],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2, help="best (lowest) of N per variant")
    args = parser.parse_args()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env["KERAS_ABLATE_CACHE"] = tempfile.mkdtemp(prefix="jit-")
    print(
        f"one thread, T=20, {args.epochs} epochs x 32 steps, best of {args.rounds}; load {os.getloadavg()[0]:.2f}"
    )
    print(
        f"{'family':7s} {'compile off':>11s} {'on':>6s} {'ms/step off':>11s} {'on':>6s}  break-even work"
    )
    for arch in ("cnn", "rnn", "lstm", "gru"):
        best = {}
        for jit in (False, True):
            runs = [_measure(arch, jit, args.epochs, env) for _ in range(args.rounds)]
            best[jit] = {
                "compile": min(r["compile_s"] for r in runs),
                "step_ms": min(1000 * r["steps_s"] / r["steps"] for r in runs),
            }
        extra = best[True]["compile"] - best[False]["compile"]
        saving = (best[False]["step_ms"] - best[True]["step_ms"]) / 1000
        per = 20 if arch != "cnn" else 1
        even = f"{extra / saving * per:,.0f}" if saving > 0 else "never (no saving)"
        print(
            f"{arch:7s} {best[False]['compile']:10.2f}s {best[True]['compile']:5.2f}s "
            f"{best[False]['step_ms']:10.2f}  {best[True]['step_ms']:5.2f}  {even}"
        )


if __name__ == "__main__":
    main()
