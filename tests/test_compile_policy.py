"""jit_compile: auto and the per-run time breakdown (issue 15)."""

from __future__ import annotations

import itertools

import pytest

from keras_ablate.config import RunSettings, RunSpec, make_run_id
from keras_ablate.progress import format_status, grid_status
from keras_ablate.training.compile_policy import BREAK_EVEN_WORK, resolve_jit


def _settings(**overrides) -> dict:
    return RunSettings(**overrides).model_dump(mode="json")


def test_auto_is_the_default_and_true_false_still_force_it():
    assert RunSettings().jit_compile == "auto"
    assert resolve_jit(_settings(jit_compile=True), n_train=64, seq_len=5) is True
    assert resolve_jit(_settings(jit_compile=False), n_train=10**6, seq_len=100) is False


def test_auto_compiles_long_recurrent_runs_and_leaves_short_ones_alone():
    # The default grid: 2048 examples / 64 = 32 steps x 6 epochs at T=20: nothing pays back XLA.
    for architecture in ("cnn", "rnn", "lstm", "gru", "mlp"):
        settings = _settings(architecture=architecture, epochs=6, batch_size=64)
        assert resolve_jit(settings, n_train=2048, seq_len=20) is False
    # 30 epochs of 128 steps at T=20: every family passes its break-even (the recurrent ones
    # with 76,800 step-timesteps, the CNN with 3,840 steps).
    long = {"epochs": 30, "batch_size": 64}
    decisions = {
        a: resolve_jit(_settings(architecture=a, **long), n_train=8192, seq_len=20)
        for a in ("cnn", "rnn", "lstm", "lstm_cifg", "gru")
    }
    assert decisions == {"cnn": True, "rnn": True, "lstm": True, "lstm_cifg": True, "gru": True}


def test_the_break_even_is_a_threshold_on_the_work():
    settings = _settings(architecture="lstm", epochs=1, batch_size=1)
    steps_needed = int(BREAK_EVEN_WORK["lstm"]) // 10
    assert resolve_jit(settings, n_train=steps_needed, seq_len=10) is True
    assert resolve_jit(settings, n_train=steps_needed - 1, seq_len=10) is False


@pytest.mark.parametrize("architecture", ["cnn", "rnn", "lstm", "gru"])
def test_arms_within_an_architecture_always_share_the_decision(architecture):
    # XLA changes the last bits: activation, normalization and clip arms must never be split.
    for epochs in (1, 6, 30, 200):
        decisions = {
            resolve_jit(
                _settings(
                    architecture=architecture, activation=a, normalization=n, clip=c, epochs=epochs
                ),
                n_train=8192,
                seq_len=20,
            )
            for a, n, c in itertools.product(
                ("tanh", "relu", "maxout"), ("none", "batch", "layer"), ("none", "norm:1.0")
            )
        }
        assert len(decisions) == 1


@pytest.mark.slow
def test_a_run_records_where_its_time_went(tmp_path):
    from keras_ablate.executors import run_spec

    settings = _settings(architecture="lstm", units=4, embed_dim=4, epochs=3, batch_size=32)
    dataset = {"name": "ngram", "options": {"n_train": 256, "n_val": 64, "seq_len": 10}}
    spec = RunSpec("t", make_run_id(settings, dataset, 0), settings, dataset, 0, {})
    summary, _ = run_spec(spec)
    assert summary["status"] == "ok" and summary["jit_compiled"] is False
    timing = summary["timing"]
    phases = ("load_s", "build_s", "compile_s", "steps_s", "eval_s", "probe_s", "other_fit_s")
    assert set(timing) == {*phases, "teardown_s"}
    assert all(timing[p] >= 0 for p in timing)
    assert timing["steps_s"] > 0 and timing["compile_s"] > 0 and timing["probe_s"] > 0
    # The phases account for the run: together neither more than its wall time nor much less.
    inside = sum(timing[p] for p in phases)
    assert 0.8 * summary["wall_time_s"] <= inside <= summary["wall_time_s"] + 0.05
    # Tracing the first step costs more than the 23 steady steps together (8 steps an epoch).
    assert timing["compile_s"] > timing["steps_s"] / 24


def test_status_sums_the_time_by_phase(tmp_path):
    from keras_ablate import store

    settings = _settings()
    dataset = {"name": "ngram", "options": {}}
    for seed, steps in ((0, 1.5), (1, 2.0)):
        spec = RunSpec("exp", make_run_id(settings, dataset, seed), settings, dataset, seed, {})
        summary = {"run_id": spec.run_id, "status": "ok", "wall_time_s": 4.0}
        summary["timing"] = {"compile_s": 1.0, "steps_s": steps}
        store.write_run(tmp_path, spec, summary, {})
    status = grid_status(tmp_path)
    assert status["time_by_phase_s"] == {"compile_s": 2.0, "steps_s": 3.5}
    assert "time in runs: compile 2.0 s, steps 3.5 s" in format_status(status)
