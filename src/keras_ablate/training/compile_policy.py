"""Whether a run's train step is compiled with XLA: `jit_compile: auto` decides from the work it will do.

XLA makes each steady-state step faster, but compiling costs seconds per model, so it pays only
on long runs. Measured here (benchmarks/jit_break_even.py, one thread as a worker runs, the
default grid's shapes, 2026-12-02): compiling with XLA took 2.1-3.6 s more than tracing without
it, and saved per train step 0.9 ms (SimpleRNN), 1.6 ms (LSTM) and 3.7 ms (GRU) at 20
timesteps; the CNN was not faster in those short runs, but was over 3,840 steps (long-run grid of
benchmarks/throughput.py). The break-even is that cost divided by that
saving (an earlier, more loaded measurement gave about 1.5x these numbers for the LSTM and GRU).

The work of a run is its planned train steps, times the sequence length for recurrent models
(their saving per step grows with the timesteps the loop runs). The decision depends on the
architecture family and the work only, never on activation, normalization or clipping: XLA and
non-XLA runs differ in their last bits, so the arms that compare those factors within one
architecture always share one setting (KERAS_NOTES.md).
"""

from __future__ import annotations

import math

# architecture family -> work (train steps, x timesteps if recurrent) from which XLA pays back.
BREAK_EVEN_WORK: dict[str, float] = {
    # No saving in 192-step runs, but 3.5 vs ~2 ms per step over 3,840 steps (two workers,
    # benchmarks/throughput.py --long): XLA pays from about 2,000 steps.
    "cnn": 2_000,
    "mlp": 2_000,  # no recurrent loop either: treated like the CNN
    "rnn": 60_000,  # 2.7 s / 0.9 ms per step at T=20
    "lstm": 26_000,  # 2.1 s / 1.6 ms per step at T=20
    "gru": 11_000,  # 2.1 s / 3.7 ms per step at T=20
}
RECURRENT_FAMILIES = ("rnn", "lstm", "gru")


def family(architecture: str) -> str:
    """'cnn', 'mlp', 'rnn', 'lstm' or 'gru' (the gate-ablated LSTMs are LSTMs)."""
    return "lstm" if architecture.startswith("lstm") else architecture


def planned_work(architecture: str, train_steps: int, seq_len: int) -> int:
    """Train steps, times the timesteps for recurrent families."""
    return train_steps * (seq_len if family(architecture) in RECURRENT_FAMILIES else 1)


def resolve_jit(settings: dict, n_train: int, seq_len: int) -> bool:
    """The jit_compile value a run trains with: `true`/`false` as given, `auto` by the break-even."""
    setting = settings["jit_compile"]
    if setting != "auto":
        return bool(setting)
    train_steps = math.ceil(n_train / settings["batch_size"]) * settings["epochs"]
    work = planned_work(settings["architecture"], train_steps, seq_len)
    return work >= BREAK_EVEN_WORK.get(family(settings["architecture"]), math.inf)
