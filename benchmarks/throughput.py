"""Wall time of one 16-run grid: the suite with 1 and 2 workers, plain Keras loops, keras-tuner GridSearch.

Every variant runs in a fresh Python process (so each pays the same interpreter and TensorFlow
start-up), one after the other in this one invocation, on the same runs: the 16 settings of
GRID below (the issue's default-grid shape), same data, same epochs, same seeds.

    suite-1   keras-ablate run --workers 1   (in-process, instrumented step, records written)
    suite-2   keras-ablate run --workers 2   (the suite with its defaults on this machine)
    plain     the reference: the loop a user writes: for each setting, build the same Keras
              model, compile(optimizer, loss, metrics) and fit(x, y, validation_data), with
              Keras's defaults (jit_compile "auto", default threads); nothing else
    matched   the same loop given the suite's settings: one intra/inter-op thread and the
              suite's compile arguments (jit policy, steps_per_execution); a second reference
    plain-2   the matched loop in two concurrent processes, each fitting half of the settings:
              what two bare Keras processes get out of this machine (for reference)
    tuner     keras_tuner.GridSearch over the same axes (hp.Choice each), Keras defaults

Goals (issue 15): suite-2 / plain <= 0.55; suite-1 / plain <= 1.0; suite-1 / suite-2 >= 1.7.
Next to each time: the CPU seconds it used and so the cores it kept busy on average, and the
load average: other processes on the machine slow every variant, the parallel ones most, so
numbers from a loaded machine are only indicative.

`--long` instead times the suite (2 workers) on a long-run grid (4 architectures, 30 epochs of
128 steps) with this tree and with the tree given by `--baseline SRC` (e.g. a worktree of an
earlier commit): goal <= 1.05x.

    .venv/bin/python benchmarks/throughput.py [--quick] [--rounds N]
    .venv/bin/python benchmarks/throughput.py --long --baseline /path/to/old/src
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GRID = """
name: throughput
dataset: {{name: ngram, options: {{n_train: {n_train}, n_val: 256, seq_len: {seq_len}, vocab_size: 50}}}}
base: {{epochs: {epochs}, units: {units}, embed_dim: 16, filters: 16, batch_size: 64}}
grid:
  architecture: [cnn, rnn, lstm, gru]
  activation: [tanh, relu]
  clip: [none, "norm:1.0"]
seeds: [0]
"""
FULL = {"n_train": 2048, "seq_len": 20, "epochs": 6, "units": 32}
QUICK = {"n_train": 512, "seq_len": 20, "epochs": 1, "units": 8}
LONG_GRID = """
name: throughput
dataset: {name: ngram, options: {n_train: 8192, n_val: 256, seq_len: 20, vocab_size: 50}}
base: {epochs: 30, units: 32, embed_dim: 16, filters: 16, batch_size: 64}
grid:
  architecture: [cnn, rnn, lstm, gru]
seeds: [0]
"""


def _threads_one() -> None:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def _specs(path: str):
    from keras_ablate.config import load_experiment

    return load_experiment(path)[1]


def user_loop(path: str) -> None:
    """The loop a user writes: build, compile(optimizer, loss, metrics), fit; Keras defaults."""
    import keras

    from keras_ablate.models.layers import loss_for

    def compile_as_a_user(model, s: dict, data) -> None:
        clip = {} if s["clip"] == "none" else {"clipnorm": float(s["clip"].split(":")[1])}
        model.compile(
            optimizer=keras.optimizers.Adam(s["learning_rate"], **clip),
            loss=loss_for(data),
            metrics=[data.metric],
        )

    _fit_each(_specs(path), compile_as_a_user)


def plain_loop(path: str, part: int = 0, parts: int = 1) -> None:
    """The same models (every `parts`-th from `part`), built and fitted one after the other with
    the suite's thread count and compile arguments."""
    _threads_one()
    from keras_ablate.training.loop import compile_model

    _fit_each(_specs(path)[part::parts], compile_model)


def _fit_each(specs, compile_fn) -> None:
    """Build, compile (compile_fn(model, settings, data)) and fit each run's model with plain Keras."""
    import keras

    from keras_ablate.data import load_dataset
    from keras_ablate.models import build_model

    inside = 0.0
    for spec in specs:
        started = time.perf_counter()
        s = spec.settings
        data = load_dataset(spec.dataset["name"], spec.dataset["options"])
        keras.utils.set_random_seed(spec.seed)
        model = build_model(s, data)
        compile_fn(model, s, data)
        model.fit(
            data.x_train,
            data.y_train,
            batch_size=s["batch_size"],
            epochs=s["epochs"],
            validation_data=(data.x_val, data.y_val),
            verbose=0,
        )
        keras.backend.clear_session()
        inside += time.perf_counter() - started
    # Same span as a suite run's wall_time_s: from loading the data to the trained model.
    print(json.dumps({"inside_runs_s": inside}))


def tuner_grid(path: str, workdir: str) -> None:
    """keras-tuner GridSearch over the grid's axes, each an hp.Choice, same fit arguments."""
    _threads_one()
    import keras_tuner as kt

    from keras_ablate.data import load_dataset
    from keras_ablate.models import build_model
    from keras_ablate.training.loop import compile_model

    specs = _specs(path)
    base = specs[0].settings
    axes = {k: list(dict.fromkeys(s.axes[k] for s in specs)) for k in specs[0].axes}
    data = load_dataset(specs[0].dataset["name"], specs[0].dataset["options"])

    class Model(kt.HyperModel):
        def build(self, hp):
            settings = {**base, **{k: hp.Choice(k, levels) for k, levels in axes.items()}}
            model = build_model(settings, data)
            return compile_model(model, settings, data)

    tuner = kt.GridSearch(
        Model(),
        objective="val_loss",
        directory=workdir,
        project_name="grid",
        overwrite=True,
        seed=specs[0].seed,
    )
    tuner.search(
        data.x_train,
        data.y_train,
        batch_size=base["batch_size"],
        epochs=base["epochs"],
        validation_data=(data.x_val, data.y_val),
        verbose=0,
    )
    trials = len(tuner.oracle.trials)
    if trials != len(specs):
        raise SystemExit(f"tuner ran {trials} trials, expected {len(specs)}")


def _timed(commands: list[list[str]], env: dict) -> tuple[float, float, float, str]:
    """Run the commands concurrently: (wall seconds, CPU seconds, load average before, stdout)."""
    load = os.getloadavg()[0]
    cpu_before = _children_cpu()
    started = time.perf_counter()
    processes = [
        subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in commands
    ]
    outputs = [p.communicate() for p in processes]
    seconds = time.perf_counter() - started
    for command, process, (_, stderr) in zip(commands, processes, outputs, strict=True):
        if process.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{stderr[-3000:]}")
    return seconds, _children_cpu() - cpu_before, load, "".join(out for out, _ in outputs)


def _children_cpu() -> float:
    # Finished children and everything they waited for (a suite's worker processes included).
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _inside_runs(name: str, results: Path, stdout: str) -> str:
    """Time spent inside the runs themselves (suite: sum of wall_time_s and probe_time_s)."""
    if name.startswith("suite"):
        summaries = [
            json.loads(f.read_text()) for f in results.glob("throughput/runs/*/summary.json")
        ]
        wall = sum(s.get("wall_time_s", 0.0) for s in summaries)
        probe = sum(s.get("probe_time_s", 0.0) for s in summaries)
        return f"inside runs {wall:6.1f} s (probes {probe:.1f} s)"
    if name.startswith(("plain", "matched")):
        inside = sum(json.loads(line)["inside_runs_s"] for line in stdout.strip().splitlines())
        return f"inside runs {inside:6.1f} s"
    return ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="tiny data and 1 epoch (a smoke test, ~2 min)"
    )
    parser.add_argument(
        "--rounds", type=int, default=None, help="rounds of all variants (default 2, --quick 1)"
    )
    parser.add_argument(
        "--long", action="store_true", help="long-run grid: this tree vs --baseline (minutes)"
    )
    parser.add_argument("--baseline", help="the src/ folder of the tree to compare with (--long)")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "YAML"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, path = args.child
        if kind == "user":
            user_loop(path)
        elif kind.startswith("plain"):  # plain or plain:PART:PARTS
            part, parts = (int(n) for n in (kind.split(":")[1:] or ["0", "1"]))
            plain_loop(path, part, parts)
        else:
            tuner_grid(path, tempfile.mkdtemp(prefix="kt-"))
        return

    sizes = QUICK if args.quick else FULL
    args.rounds = args.rounds or (1 if args.quick else 2)
    root = Path(tempfile.mkdtemp(prefix="throughput-"))
    grid = root / "grid.yaml"
    grid.write_text(LONG_GRID if args.long else GRID.format(**sizes), encoding="utf-8")
    # A private dataset cache, filled once before timing so no variant pays data generation.
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_ABLATE_CACHE": str(root / "cache")}
    warm = "from keras_ablate.data import load_dataset as L; from keras_ablate.config import load_experiment as E; "
    warm += f"s = E({str(grid)!r})[1][0]; L(s.dataset['name'], s.dataset['options'])"
    subprocess.run([sys.executable, "-c", warm], env=env, check=True)

    cli = [sys.executable, "-m", "keras_ablate.cli", "run", str(grid)]
    child = [sys.executable, __file__, "--child"]
    if args.long:
        _long(args, root, cli, env)
        return
    variants = {
        "suite-1": [cli + ["--results-dir", str(root / "w1"), "--workers", "1"]],
        "suite-2": [cli + ["--results-dir", str(root / "w2"), "--workers", "2"]],
        "plain": [child + ["user", str(grid)]],
        "matched": [child + ["plain", str(grid)]],
        "plain-2": [child + [f"plain:{part}:2", str(grid)] for part in (0, 1)],
        "tuner": [child + ["tuner", str(grid)]],
    }
    # Rounds run every variant once, in turn, so a change of load hits all of them alike; load
    # only ever slows a variant down, so the best round of each is its least disturbed time.
    rounds: dict[str, list[float]] = {name: [] for name in variants}
    print(
        f"16 runs {json.dumps(sizes)}, {os.cpu_count()} CPUs, {args.rounds} round(s); each variant in a fresh process"
    )
    for round_index in range(args.rounds):
        for name, command in variants.items():
            if round_index:
                shutil.rmtree(root / name.replace("suite-", "w"), ignore_errors=True)
            seconds, cpu, load, stdout = _timed(command, env)
            rounds[name].append(seconds)
            inside = _inside_runs(name, root / name.replace("suite-", "w"), stdout)
            print(
                f"  round {round_index + 1} {name:8s} {seconds:7.1f} s  CPU {cpu:6.1f} s = "
                f"{cpu / seconds:4.2f} cores  {inside:36s} (load average {load:.2f})",
                flush=True,
            )
    times = {name: min(values) for name, values in rounds.items()}
    print("best round: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in times.items()))
    goals = [
        ("suite-2 / plain   (the suite with its defaults)", times["suite-2"] / times["plain"], "<= 0.55"),
        ("suite-1 / plain   (one worker)", times["suite-1"] / times["plain"], "<= 1.0"),
        ("suite-1 / suite-2 (speed-up with 2 workers)", times["suite-1"] / times["suite-2"], ">= 1.7"),
        ("suite-1 / matched (instruments and records)", times["suite-1"] / times["matched"], "(reference)"),
        ("matched / plain-2 (2 bare Keras processes)", times["matched"] / times["plain-2"], "(reference)"),
        ("suite-2 / tuner   (keras-tuner GridSearch)", times["suite-2"] / times["tuner"], "(reference)"),
    ]  # fmt: skip
    for label, ratio, goal in goals:
        print(f"  {label:52s} {ratio:5.2f}   goal {goal}")


def _long(args, root: Path, cli: list[str], env: dict) -> None:
    """This tree vs --baseline on the long-run grid, suite with 2 workers, alternating rounds."""
    if not args.baseline:
        raise SystemExit(
            "--long needs --baseline SRC (the src/ folder of the tree to compare with)"
        )
    trees = {"this": env, "baseline": {**env, "PYTHONPATH": str(Path(args.baseline).resolve())}}
    rounds: dict[str, list[float]] = {name: [] for name in trees}
    print(f"long-run grid (4 runs x 30 epochs x 128 steps), {args.rounds} round(s)")
    for round_index in range(args.rounds):
        for name, tree_env in trees.items():
            results = root / f"long-{name}-{round_index}"
            seconds, cpu, load, _ = _timed([cli + ["--results-dir", str(results)]], tree_env)
            rounds[name].append(seconds)
            print(
                f"  round {round_index + 1} {name:8s} {seconds:7.1f} s  CPU {cpu:6.1f} s = "
                f"{cpu / seconds:4.2f} cores  {_inside_runs('suite', results, ''):36s} "
                f"(load average {load:.2f})",
                flush=True,
            )
    this, baseline = min(rounds["this"]), min(rounds["baseline"])
    print(f"  this / baseline on the long-run grid: {this / baseline:.2f}   goal <= 1.05")


if __name__ == "__main__":
    main()
