"""Metrics of the probe tables: decay per timestep, depth ratio, unit health, clip rate per epoch.

run_metrics turns them into per-run columns (init and final), which analysis.metrics adds to
`load(dir).runs`; the report's instrument figures draw the per-epoch tables.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# Columns that locate one measurement series; everything else in a probe table is a key.
_TIMESTEP_VALUES = ("t", "distance", "grad_norm", "n_examples")
_DEPTH_VALUES = ("layer", "position", "grad_norm")


def fit_decay(distance, grad_norm) -> float:
    """Per-step factor r of ||dL/dh|| ~ a * r**distance: exp of the least-squares slope of log-norm vs distance.

    r < 1: the gradient shrinks going back in time (vanishing); r > 1: it grows (exploding).
    Zero and non-finite norms are dropped (a log cannot take them); fewer than two points
    left, or a single distinct distance, gives NaN.
    """
    distance = np.asarray(distance, dtype=float)
    norm = np.asarray(grad_norm, dtype=float)
    keep = np.isfinite(norm) & (norm > 0) & np.isfinite(distance)
    d, log_norm = distance[keep], np.log(norm[keep])
    if len(d) < 2 or np.ptp(d) == 0:
        return float("nan")
    slope = np.polyfit(d, log_norm, 1)[0]
    return float(np.exp(slope))


def _ratio(numerator: float, denominator: float) -> float:
    if not (np.isfinite(numerator) and np.isfinite(denominator)) or denominator == 0:
        return float("nan")
    return float(numerator / denominator)


def per_example_norm(timesteps: pd.DataFrame) -> pd.Series:
    """||dL/dh|| per example that reaches the distance: grad_norm / sqrt(n_examples).

    A probe row's grad_norm is the root of the sum of squares over the examples that reach that
    distance (training/probes.py). On padded text fewer examples reach far back, so the sum
    shrinks with the distance even where no example's gradient does; dividing by the root of
    the count gives the root mean square per example, whose decay is the gradient's own. Without
    padding every row has the whole batch and this only rescales the series. Rows no example
    reaches are NaN; a table without `n_examples` (older runs) keeps grad_norm.
    """
    norm = timesteps["grad_norm"].astype(float)
    if "n_examples" not in timesteps.columns:
        return norm
    count = timesteps["n_examples"].astype(float)
    return (norm / np.sqrt(count)).where(count > 0)


def timestep_metrics(timesteps: pd.DataFrame) -> pd.DataFrame:
    """One row per series (run_id, epoch, layer, ...) of the per-example norm (per_example_norm):
    `decay_factor` (fit_decay) and `t0_ratio` = norm at the earliest position any example reaches
    (t = 0 without padding) / norm at the last one (t = T-1)."""
    keys = [c for c in timesteps.columns if c not in _TIMESTEP_VALUES]
    rows = []
    if not timesteps.empty:
        frame = timesteps.assign(grad_norm=per_example_norm(timesteps))
        if "n_examples" in frame.columns:
            frame = frame[frame["n_examples"] > 0]
        for key, group in frame.groupby(keys, sort=True):
            group = group.sort_values("t")
            rows.append(
                (
                    *key,
                    fit_decay(group["distance"], group["grad_norm"]),
                    _ratio(group["grad_norm"].iloc[0], group["grad_norm"].iloc[-1]),
                )
            )
    return pd.DataFrame(rows, columns=[*keys, "decay_factor", "t0_ratio"])


def is_body_layer(name: str) -> bool:
    """Layers the depth ratio compares: not the embedding (sparse gradient) and not normalization layers."""
    return name != "embed" and not name.endswith("_norm")


def depth_metrics(depth: pd.DataFrame) -> pd.DataFrame:
    """One row per series (run_id, epoch, ...): `depth_ratio` = gradient norm of the first body layer / the last.

    Body layers are taken in model order (input side first), skipping the embedding and
    normalization layers, so for an MLP it is dense_0 / dense_out and for one recurrent
    layer rnn_0 / dense_out. Below 1: the input side learns more slowly (vanishing with depth).
    """
    keys = [c for c in depth.columns if c not in _DEPTH_VALUES]
    rows = []
    if not depth.empty:
        body = depth[depth["layer"].map(is_body_layer)]
        for key, group in body.groupby(keys, sort=True):
            group = group.sort_values("position")
            first, last = group["grad_norm"].iloc[0], group["grad_norm"].iloc[-1]
            rows.append(
                (*key, group["layer"].iloc[0], group["layer"].iloc[-1], _ratio(first, last))
            )
    return pd.DataFrame(rows, columns=[*keys, "first_layer", "last_layer", "depth_ratio"])


def unit_metrics(units: pd.DataFrame) -> pd.DataFrame:
    """Per series (run_id, epoch, ...) and quantity: the mean over layers (saturated, dead, gate_mean/<gate>, ...)."""
    keys = [c for c in units.columns if c not in ("layer", "value")]
    if units.empty:
        return pd.DataFrame(columns=[*keys, "value"])
    return units.groupby(keys, sort=True, observed=True)["value"].mean().reset_index()


def clip_steps(steps: pd.DataFrame, steps_per_epoch: pd.Series | None = None) -> pd.DataFrame:
    """run_id, step, epoch (from 0), clipped, cosine from a steps table, long or wide.

    Long (analysis.tables.load): run_id, step, quantity, layer, value; the epoch comes from
    `steps_per_epoch` (run_id -> steps per epoch). Wide (one run folder): run_id, step,
    epoch, grad/clipped, grad/cosine.
    """
    columns = ["run_id", "step", "epoch", "clipped", "cosine"]
    if steps is None or steps.empty:
        return pd.DataFrame(columns=columns)
    if "quantity" in steps.columns:
        wanted = steps[steps["quantity"].isin(["grad/clipped", "grad/cosine"]).to_numpy()]
        if wanted.empty:
            return pd.DataFrame(columns=columns)
        wide = wanted.pivot_table(
            index=["run_id", "step"], columns="quantity", values="value", observed=True
        )
        wide = wide.reset_index().rename(
            columns={"grad/clipped": "clipped", "grad/cosine": "cosine"}
        )
        wide["run_id"] = wide["run_id"].astype(str)
        per_epoch = wide["run_id"].map(steps_per_epoch) if steps_per_epoch is not None else np.nan
        wide["epoch"] = (wide["step"] // per_epoch).astype(float)
    else:
        if "grad/clipped" not in steps.columns:
            return pd.DataFrame(columns=columns)
        wide = steps.rename(columns={"grad/clipped": "clipped", "grad/cosine": "cosine"})
    return wide.reindex(columns=columns)


def clip_rates(clipped: pd.DataFrame) -> pd.DataFrame:
    """Per run and epoch (from 0) of a `clip_steps` frame: fraction of steps clipped and the gradient cosine.

    `cosine_clipped` is the mean cosine between raw and clipped gradient over the steps where
    clipping fired (NaN when none did); `cosine_min` is the smallest over all steps.
    """
    columns = ["run_id", "epoch", "clip_rate", "cosine_clipped", "cosine_min", "n_steps"]
    if clipped.empty:
        return pd.DataFrame(columns=columns)
    data = clipped.assign(clipped_cosine=clipped["cosine"].where(clipped["clipped"] > 0))
    grouped = data.groupby(["run_id", "epoch"], sort=True, observed=True)
    out = pd.DataFrame(
        {
            "clip_rate": grouped["clipped"].mean(),
            "cosine_clipped": grouped["clipped_cosine"].mean(),
            "cosine_min": grouped["cosine"].min(),
            "n_steps": grouped["clipped"].size(),
        }
    ).reset_index()
    return out[columns]


def run_metrics(source) -> pd.DataFrame:
    """One row per run of an analysis.tables.Tables: the instrument metrics.

    Columns (where the tables exist): decay_factor/<layer>/{init,final}, t0_ratio/<layer>/{init,final}
    (init = epoch 0, before training; final = the run's last probed epoch), depth_ratio/{init,final},
    saturated/final and dead/final (mean over layers), and cosine_clipped over the run (the clip
    rate over the run is analysis.metrics' grad/clip_rate).
    """
    extra = getattr(source, "extra", {}) or {}
    parts = []
    timesteps = getattr(source, "timesteps", None)
    if timesteps is None:
        timesteps = extra.get("timesteps")
    if timesteps is not None and not timesteps.empty:
        parts.append(
            _init_and_final(
                _plain(timestep_metrics(_plain(timesteps))), ["decay_factor", "t0_ratio"], True
            )
        )
    depth = extra.get("depth")
    if depth is not None and not depth.empty:
        parts.append(_init_and_final(_plain(depth_metrics(_plain(depth))), ["depth_ratio"], False))
    units = extra.get("units")
    if units is not None and not units.empty:
        health = unit_metrics(_plain(units))
        health = health[health["quantity"].isin(["saturated", "dead"])]
        if not health.empty:
            # Not pivot_table: it drops a last epoch without values (a diverged run's), which would
            # make an earlier epoch "final".
            wide = (
                health.groupby(["run_id", "epoch", "quantity"], observed=True)["value"]
                .mean()
                .unstack("quantity")
                .reset_index()
            )
            wide.columns.name = None
            last = wide[wide["epoch"] == wide.groupby("run_id")["epoch"].transform("max")]
            parts.append(last.set_index("run_id").drop(columns="epoch").add_suffix("/final"))
    runs = getattr(source, "runs", pd.DataFrame())
    per_epoch = (
        runs.set_index(runs["run_id"].astype(str))["steps_per_epoch"]
        if "steps_per_epoch" in runs
        else None
    )
    clipped = clip_steps(source.steps, per_epoch)
    if not clipped.empty:
        data = clipped.assign(clipped_cosine=clipped["cosine"].where(clipped["clipped"] > 0))
        grouped = data.groupby("run_id", observed=True)
        parts.append(pd.DataFrame({"cosine_clipped": grouped["clipped_cosine"].mean()}))
    if not parts:
        return pd.DataFrame(columns=["run_id"])
    out = parts[0]
    for part in parts[1:]:
        out = out.join(part, how="outer")
    out.columns.name = None
    return out.rename_axis("run_id").reset_index()


def _plain(frame: pd.DataFrame) -> pd.DataFrame:
    """Categorical run_id (analysis.tables.load) as plain strings, so group keys are only the observed runs."""
    if "run_id" in frame.columns and isinstance(frame["run_id"].dtype, pd.CategoricalDtype):
        frame = frame.assign(run_id=frame["run_id"].astype(str))
    return frame


def _init_and_final(metrics: pd.DataFrame, values: list[str], by_layer: bool) -> pd.DataFrame:
    """Wide frame indexed by run_id: each value at epoch 0 (init) and at each run's last epoch (final)."""
    last = metrics.groupby("run_id")["epoch"].transform("max")
    frames = []
    for when, mask in (("init", metrics["epoch"] == 0), ("final", metrics["epoch"] == last)):
        chosen = metrics[mask]
        for value in values:
            if by_layer:
                wide = chosen.pivot_table(
                    index="run_id", columns="layer", values=value, aggfunc="first", dropna=False
                )
                wide.columns = [f"{value}/{layer}/{when}" for layer in wide.columns]
            else:
                wide = chosen.set_index("run_id")[[value]].rename(
                    columns={value: f"{value}/{when}"}
                )
            frames.append(wide)
    return pd.concat(frames, axis=1)
