"""Synthetic run folders in the real store format (no TensorFlow), for tests, demos and the scale benchmark."""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from keras_ablate import store
from keras_ablate.config.schema import AnalysisSection, DatasetSection, Experiment, RunSpec

LAYERS = ("embed", "rnn_0", "dense_0", "dense_out")


def default_effect(axes: dict) -> float:
    """Final accuracy of a configuration: LSTM helps, clipping helps a little, the rest does nothing."""
    value = 0.7
    value += 0.15 if axes.get("architecture") in ("lstm", "gru") else 0.0
    value += 0.03 if str(axes.get("clip", "none")) != "none" else 0.0
    return value


def default_divergence(axes: dict) -> float:
    """Probability that a configuration diverges: ReLU without clipping is the risky arm."""
    return (
        0.5 if axes.get("activation") == "relu" and str(axes.get("clip", "none")) == "none" else 0.0
    )


def write_experiment(
    exp_dir: str | Path,
    grid: dict[str, list],
    seeds: int = 2,
    epochs: int = 5,
    steps_per_epoch: int = 10,
    layers: tuple[str, ...] = LAYERS,
    effect: Callable[[dict], float] = default_effect,
    divergence: Callable[[dict], float] = default_divergence,
    failed: Callable[[dict, int], bool] = lambda axes, seed: False,
    noise: float = 0.02,
    name: str = "synthetic",
    reference: dict | None = None,
    analysis: dict | None = None,
    seed: int = 0,
) -> list[str]:
    """Write one run folder per grid point and seed plus experiment.json; return the run ids."""
    exp_dir = Path(exp_dir)
    rng = np.random.default_rng(seed)
    specs = []
    for values in itertools.product(*grid.values()):
        axes = dict(zip(grid, values, strict=False))
        for s in range(seeds):
            specs.append(_spec(name, axes, s, epochs))
    exp = Experiment(
        name=name,
        description="synthetic records",
        dataset=DatasetSection(name="ngram"),
        reference=reference or {},
        analysis=AnalysisSection(**(analysis or {})),
    )
    store.write_experiment(
        exp_dir, store.experiment_record(exp, specs, "keras_ablate.analysis.simulate")
    )
    for spec in specs:
        if failed(spec.axes, spec.seed):
            summary = {
                "run_id": spec.run_id,
                "status": "failed",
                "error": "ValueError: <synthetic> failure",
                "wall_time_s": 0.1,
            }
            store.write_run(exp_dir, spec, summary, {})
            continue
        summary, tables = _records(
            spec, rng, epochs, steps_per_epoch, layers, effect, divergence, noise
        )
        store.write_run(exp_dir, spec, summary, tables)
    return [spec.run_id for spec in specs]


def write_runs(
    exp_dir: str | Path,
    specs: list[RunSpec],
    effect: Callable[[dict], float] = default_effect,
    noise: float = 0.02,
    epochs: int = 3,
    steps_per_epoch: int = 4,
) -> None:
    """Write simulated records for these specs (a stand-in for training: a test's `run_round`).
    Each run's noise is seeded by its run id, so the same spec always gets the same records."""
    for spec in specs:
        if store.run_status(Path(exp_dir), spec.run_id) in store.DONE_STATUSES:
            continue
        rng = np.random.default_rng(int(spec.run_id[:12], 16))
        summary, tables = _records(
            spec, rng, epochs, steps_per_epoch, LAYERS, effect, lambda axes: 0.0, noise
        )
        store.write_run(Path(exp_dir), spec, summary, tables)


def _spec(name: str, axes: dict, seed: int, epochs: int) -> RunSpec:
    settings = {
        "architecture": "lstm",
        "activation": "tanh",
        "normalization": "none",
        "clip": "none",
        "learning_rate": 0.001,
        "epochs": epochs,
        **axes,
    }
    key = json.dumps({"settings": settings, "seed": seed}, sort_keys=True)
    run_id = hashlib.sha256(key.encode()).hexdigest()[:12]
    dataset = {"name": "ngram", "options": {"seq_len": 12}}
    return RunSpec(
        experiment=name,
        run_id=run_id,
        settings=settings,
        dataset=dataset,
        seed=seed,
        axes=dict(axes),
    )


def _records(spec, rng, epochs, steps_per_epoch, layers, effect, divergence, noise):
    n_steps = epochs * steps_per_epoch
    ceiling = effect(spec.axes) + rng.normal(0, noise)
    epoch = np.arange(1, epochs + 1)
    val_acc = 0.5 + (ceiling - 0.5) * (1 - np.exp(-epoch / 2))
    val_loss = -np.log(np.clip(val_acc, 1e-3, 1))
    steps = np.arange(n_steps)
    loss = 0.7 * np.exp(-steps / max(n_steps / 3, 1)) + 0.1 + rng.normal(0, noise, n_steps)
    norm = np.exp(rng.normal(0, 0.3, n_steps)) * (1 + steps / n_steps)
    _, threshold = _clip(spec.settings["clip"])
    diverged_step = None
    if rng.random() < divergence(spec.axes):
        diverged_step = int(rng.integers(1, n_steps))
        loss[diverged_step:] = np.nan
        norm[diverged_step] = np.inf
        norm[diverged_step + 1 :] = np.nan
        last_epoch = diverged_step // steps_per_epoch + 1
        val_acc, val_loss = val_acc[:last_epoch], val_loss[:last_epoch]
        val_acc[-1], val_loss[-1] = np.nan, np.nan
        n_done = diverged_step + 1
        loss, norm, steps = loss[:n_done], norm[:n_done], steps[:n_done]
    clipped = norm > threshold if threshold else np.zeros(len(norm), bool)
    norm_clipped = np.where(clipped, threshold or 0.0, norm)
    table = {
        "step": steps.astype(np.int64),
        "epoch": (steps // steps_per_epoch).astype(np.int64),
        "loss": loss.astype(np.float32),
        "grad/global_norm": norm.astype(np.float32),
        "grad/global_norm_clipped": norm_clipped.astype(np.float32),
        "grad/clipped": clipped.astype(np.float32),
        "grad/cosine": np.ones(len(norm), np.float32),
        "grad/nonfinite": (~np.isfinite(norm)).astype(np.float32),
    }
    share = rng.dirichlet(np.ones(len(layers)))
    for i, layer in enumerate(layers):
        table[f"grad/norm/{layer}"] = (norm * np.sqrt(share[i])).astype(np.float32)
    for i, layer in enumerate(layers):
        table[f"grad/norm_clipped/{layer}"] = (norm_clipped * np.sqrt(share[i])).astype(np.float32)
    n_epochs = len(val_acc)
    history = pd.DataFrame(
        {
            "epoch": np.arange(1, n_epochs + 1, dtype=np.int64),
            "train/accuracy": val_acc + 0.02,
            "train/loss": val_loss - 0.02,
            "val/accuracy": val_acc,
            "val/loss": val_loss,
        }
    )
    last = history.iloc[-1]
    summary = {
        "run_id": spec.run_id,
        "status": "diverged" if diverged_step is not None else "ok",
        "diverged_step": diverged_step,
        "metric": "accuracy",
        "epochs_done": n_epochs,
        "steps_done": len(steps),
        "steps_per_epoch": steps_per_epoch,
        "n_params": 1234,
        "final": {
            k: (float(v) if np.isfinite(v) else None) for k, v in last.items() if k != "epoch"
        },
        "best": {k: _best(history[k].to_numpy(), "acc" in k) for k in history.columns[1:]},
        "wall_time_s": round(float(rng.uniform(1, 3)), 3),
        "environment": {"python": "3.11", "keras_ablate": "synthetic", "platform": "synthetic"},
    }
    return summary, {"history": history, "steps": pd.DataFrame(table)}


def _best(values: np.ndarray, higher: bool) -> float | None:
    finite = values[np.isfinite(values)]
    if not len(finite):
        return None
    return float(finite.max() if higher else finite.min())


def _clip(text: str) -> tuple[str, float | None]:
    from keras_ablate.config.levels import parse_clip

    return parse_clip(text)
