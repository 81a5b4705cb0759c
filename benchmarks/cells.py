"""Steps/second of each ZooCell variant next to the built-in Keras layer of the same size, in one process.

Model (KERAS_NOTES): Embedding(5000, 64) + recurrent layer(64) + Dense(1), batch 64, length 100,
Adam, jit_compile=True. Rounds are interleaved (every model once per round) so a change in
machine load hits all models alike. Reported per model: the median over rounds and the best
round (load only ever slows a round down, so the best is the least disturbed), each with its
ratio to the built-in layer of the same kind.

    .venv/bin/python benchmarks/cells.py [--steps 20] [--rounds 3] [--only lstm]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_ablate.models.cells import VARIANTS, ZooCell, ZooRNN  # noqa: E402

VOCAB, EMBED, UNITS, BATCH, LENGTH = 5000, 64, 64, 64, 100

BUILT_IN = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU, "rnn": keras.layers.SimpleRNN}

# name -> (kind of the built-in baseline, ZooCell keyword arguments or None for the built-in).
CASES = {
    "lstm built-in": ("lstm", None),
    "lstm zoo (standard)": ("lstm", {"kind": "lstm"}),
    **{
        f"{a} zoo": ("lstm", {"kind": "lstm", **VARIANTS[a][1]})
        for a in VARIANTS
        if a.startswith("lstm_")
    },
    "lstm zoo layer norm": ("lstm", {"kind": "lstm", "normalization": "layer"}),
    "lstm zoo batch norm": ("lstm", {"kind": "lstm", "normalization": "batch"}),
    "lstm zoo maxout k=2": ("lstm", {"kind": "lstm", "activation": "maxout"}),
    "gru built-in": ("gru", None),
    "gru zoo (standard)": ("gru", {"kind": "gru"}),
    "gru zoo layer norm": ("gru", {"kind": "gru", "normalization": "layer"}),
    "gru zoo batch norm": ("gru", {"kind": "gru", "normalization": "batch"}),
    "rnn built-in": ("rnn", None),
    "rnn zoo layer norm": ("rnn", {"kind": "rnn", "normalization": "layer"}),
    "rnn zoo batch norm": ("rnn", {"kind": "rnn", "normalization": "batch"}),
    "rnn zoo maxout k=2": ("rnn", {"kind": "rnn", "activation": "maxout"}),
}


def build(kind: str, cell_kwargs: dict | None) -> keras.Model:
    inputs = keras.Input(shape=(LENGTH,), dtype="int32")
    x = keras.layers.Embedding(VOCAB, EMBED)(inputs)
    if cell_kwargs is None:
        x = BUILT_IN[kind](UNITS)(x)
    else:
        x = ZooRNN(ZooCell(UNITS, **cell_kwargs))(x)  # the layer runs use
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))
    model.compile(optimizer="adam", loss="binary_crossentropy", jit_compile=True)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=int, default=20, help="timed train steps per model per round"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="", help="keep cases whose name contains this text")
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.integers(1, VOCAB, size=(BATCH * args.steps, LENGTH)).astype("int32")
    y = rng.integers(0, 2, size=(BATCH * args.steps, 1)).astype("float32")
    cases = {name: case for name, case in CASES.items() if args.only in name}
    models, compile_s = {}, {}
    for name, (kind, kwargs) in cases.items():
        started = time.perf_counter()
        models[name] = build(kind, kwargs)
        # Trace and compile on the very arrays timed later, so no timed round retraces.
        models[name].fit(x, y, batch_size=BATCH, epochs=1, verbose=0, shuffle=False)
        compile_s[name] = time.perf_counter() - started
    speeds = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            started = time.perf_counter()
            model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, shuffle=False)
            speeds[name].append(args.steps / (time.perf_counter() - started))
    median = {n: statistics.median(v) for n, v in speeds.items()}
    best = {n: max(v) for n, v in speeds.items()}
    base_median = {cases[n][0]: median[n] for n in models if cases[n][1] is None}
    base_best = {cases[n][0]: best[n] for n in models if cases[n][1] is None}
    print(
        f"batch {BATCH}, length {LENGTH}, units {UNITS}, jit on; {args.rounds} rounds x {args.steps} steps"
    )
    print(
        f"{'case':26s} {'median/s':>9s} {'ratio':>6s} {'best/s':>8s} {'ratio':>6s} {'first fit s':>12s}"
    )
    for name in models:
        kind = cases[name][0]
        r_median = f"{median[name] / base_median[kind]:5.2f}x" if kind in base_median else "     -"
        r_best = f"{best[name] / base_best[kind]:5.2f}x" if kind in base_best else "     -"
        print(
            f"{name:26s} {median[name]:9.1f} {r_median} {best[name]:8.1f} {r_best} {compile_s[name]:12.1f}"
        )


if __name__ == "__main__":
    main()
