"""Report figures of the probe instruments: gradients through time and depth, clipping, unit health, gates."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from keras_ablate.analysis import (
    budgets,  # noqa: E402
    instruments,  # noqa: E402
)
from keras_ablate.config.levels import parse_clip  # noqa: E402
from keras_ablate.report.plots import level_colors  # noqa: E402

# With more configurations than this, lines are coloured by activation and dashed by
# normalization (one line per configuration still), so the legend stays readable.
MAX_LEGEND = 12


def probe_table(tables, name: str) -> pd.DataFrame | None:
    """A probe table (timesteps, depth, units, weights) of analysis.tables.Tables, run_id as plain strings."""
    frame = getattr(tables, name, None)
    if frame is None:
        frame = (getattr(tables, "extra", None) or {}).get(name)
    if frame is None or frame.empty:
        return None
    return frame.assign(run_id=frame["run_id"].astype(str))


def _settings(tables) -> pd.DataFrame:
    """run_id, architecture, activation, normalization, clip and a `configuration` label (axes but architecture)."""
    runs = tables.runs
    if runs is None or runs.empty:
        return pd.DataFrame(columns=["run_id", "configuration"])
    keep = [
        "run_id",
        *[c for c in ("architecture", "activation", "normalization", "clip") if c in runs.columns],
    ]
    out = runs[keep].copy()
    for col in keep:
        out[col] = out[col].astype(str)
    axes = [
        a
        for a in getattr(tables, "axes", [])
        if a in runs.columns and a not in ("architecture", "seed")
    ]
    if axes:
        out["configuration"] = (
            runs[axes].astype(str).apply(lambda r: ", ".join(f"{a}={r[a]}" for a in axes), axis=1)
        )
    else:
        out["configuration"] = "all"
    return out


def _init_and_final(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows at epoch 0 (`when` = init) and at each run's last epoch (final)."""
    last = frame.groupby("run_id")["epoch"].transform("max")
    init = frame[frame["epoch"] == 0].assign(when="init")
    final = frame[(frame["epoch"] == last) & (last > 0)].assign(when="final")
    return pd.concat([init, final], ignore_index=True)


def _line_style(data: pd.DataFrame, tables=None) -> dict:
    """One line per configuration: coloured by it when few, else by activation / normalization."""
    if data["configuration"].nunique() <= MAX_LEGEND:
        return {"hue": "configuration"}
    args = {"units": "configuration", "estimator": None}
    for role, col in (("hue", "activation"), ("style", "normalization")):
        if col in data.columns and data[col].nunique() > 1:
            args[role] = col
    return {**args, **_palette(tables, args.get("hue"), data)}


def _palette(tables, hue: str | None, data: pd.DataFrame) -> dict:
    """The report-wide colour of each level of `hue` (plots.level_colors), when hue is a grid axis."""
    if getattr(tables, "levels", None) is None or hue is None or hue not in data.columns:
        return {}
    colors = level_colors(tables).get(hue)
    present = [level for level in (colors or {}) if level in set(data[hue])]
    if not colors or set(data[hue].dropna()) - set(present):
        return {}
    return {"palette": {level: colors[level] for level in present}, "hue_order": present}


def _seed_mean(data: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    """Mean over seeds (runs that share a configuration) so that each configuration is one line."""
    return data.groupby(keys, observed=True, dropna=False)[value].mean().reset_index()


def _log_norm_by_configuration(tables, frame: pd.DataFrame, x: str) -> pd.DataFrame | None:
    """Finite, positive grad_norm rows at init and at the end, as log10, averaged over seeds per
    configuration and `x`; None when nothing is left to draw."""
    data = frame[np.isfinite(frame["grad_norm"]) & (frame["grad_norm"] > 0)]
    if data.empty:
        return None
    data = _init_and_final(data).assign(log_norm=lambda d: np.log10(d["grad_norm"]))
    data = data.merge(_settings(tables), on="run_id", how="left")
    keys = [
        c
        for c in ("architecture", "activation", "normalization", "configuration", "direction")
        if c in data.columns
    ]
    return _seed_mean(data, [*keys, "when", x], "log_norm")


def mark_flagged(g, tables, data: pd.DataFrame, x: str) -> int:
    """Write the budget flag (analysis.budgets.FLAG) at the end of every line, in the rows after
    training, of a configuration that holds an arm which did not learn within budget. Returns
    how many lines were marked."""
    runs = getattr(tables, "runs", None)
    if runs is None or runs.empty or "configuration" not in data.columns:
        return 0
    if getattr(tables, "info", None) is None:  # a bare frame holder (no analysis.load Tables)
        return 0
    settings = _settings(tables)
    flagged = settings[budgets.run_flags(tables, runs)]
    keys = [c for c in ("architecture", "configuration") if c in data.columns]
    hits = {tuple(r[k] for k in keys) for r in flagged.to_dict("records")}
    marked = 0
    for key, ax in g.axes_dict.items():
        row, col = key if isinstance(key, tuple) else (key, None)
        if row != "final":
            continue
        here = data[data["when"] == "final"]
        if col is not None and "architecture" in here.columns:
            here = here[here["architecture"] == col]
        for label, line in here.groupby(keys, observed=True):
            if tuple(label if isinstance(label, tuple) else (label,)) not in hits:
                continue
            end = line.sort_values(x).iloc[-1]
            ax.annotate(budgets.FLAG, (end[x], end["log_norm"]), fontsize=9, color="0.3")
            marked += 1
    return marked


def timestep_profiles(tables):
    """log10 ||dL/dh_t|| vs distance from the output, top recurrent layer, at init and after training."""
    timesteps = probe_table(tables, "timesteps")
    if timesteps is None:
        return None
    # The top recurrent layer (read by the head) of each run, both directions of a Bidirectional
    # one (its rows are named <layer>/forward and <layer>/backward).
    parts = timesteps["layer"].str.split("/", n=1, expand=True)
    timesteps = timesteps.assign(base=parts[0], direction=parts[1] if parts.shape[1] > 1 else None)
    timesteps["direction"] = timesteps["direction"].fillna("one-way")
    # Per example that reaches the distance, as the decay factor is fitted (padded text).
    timesteps["grad_norm"] = instruments.per_example_norm(timesteps)
    order = _layer_order(tables, timesteps)
    top = order.groupby(timesteps["run_id"]).transform("max")
    data = _log_norm_by_configuration(tables, timesteps[order == top], "distance")
    if data is None:
        return None
    args = _line_style(data, tables)
    if data["direction"].nunique() > 1 and "style" not in args:
        args["style"] = "direction"
    g = sns.relplot(
        data=data, x="distance", y="log_norm", kind="line", errorbar=None, height=2.8, aspect=1.3,
        row="when", row_order=[w for w in ("init", "final") if w in set(data["when"])],
        col="architecture" if "architecture" in data.columns else None,
        facet_kws={"sharey": False}, **args,
    )  # fmt: skip
    g.set_axis_labels("distance from the output (steps)", "log10 ||dL/dh_t|| per example")
    g.set_titles(row_template="{row_name}", col_template="{col_name}")
    mark_flagged(g, tables, data, "distance")
    return g.figure


def _layer_order(tables, timesteps: pd.DataFrame) -> pd.Series:
    """Each row's layer position in its model: the depth table's position (model order), else
    the number its name ends with (rnn_0, rnn_1, ...)."""
    suffix = timesteps["base"].str.extract(r"(\d+)$")[0].astype(float)
    depth = probe_table(tables, "depth")
    if depth is None:
        return suffix
    positions = depth.drop_duplicates(["run_id", "layer"]).set_index(["run_id", "layer"])[
        "position"
    ]
    keys = pd.MultiIndex.from_arrays([timesteps["run_id"], timesteps["base"]])
    found = pd.Series(positions.reindex(keys).to_numpy(dtype=float), index=timesteps.index)
    return found.fillna(suffix)


def depth_profile(tables):
    """Per-layer gradient norm on the probe batch, input side to output side, at init and after training."""
    depth = probe_table(tables, "depth")
    if depth is None:
        return None
    data = _log_norm_by_configuration(tables, depth, "position")
    if data is None:
        return None
    g = sns.relplot(
        data=data, x="position", y="log_norm", kind="line", marker="o", errorbar=None, height=2.8,
        aspect=1.3, row="when", row_order=[w for w in ("init", "final") if w in set(data["when"])],
        col="architecture" if "architecture" in data.columns else None,
        facet_kws={"sharey": False, "sharex": False}, **_line_style(data, tables),
    )  # fmt: skip
    # Name the positions after the layers of each architecture (the same for all its runs).
    names = depth.merge(_settings(tables), on="run_id", how="left")
    for key, ax in g.axes_dict.items():
        architecture = key[-1] if isinstance(key, tuple) else key
        chosen = (
            names[names["architecture"] == architecture]
            if "architecture" in names.columns
            else names
        )
        layers = chosen.drop_duplicates("position").sort_values("position")
        ax.set_xticks(
            layers["position"].tolist(),
            layers["layer"].tolist(),
            rotation=45,
            ha="right",
            fontsize=7,
        )
    g.set_axis_labels("layer (input side first)", "log10 gradient norm")
    g.set_titles(row_template="{row_name}", col_template="{col_name}")
    mark_flagged(g, tables, data, "position")
    g.tight_layout()
    return g.figure


def clip_threshold(tables):
    """Fraction of steps clipped and the raw-vs-clipped gradient cosine against the clip threshold."""
    runs = tables.runs
    if runs is None or runs.empty or "clip" not in runs.columns:
        return None
    per_epoch = (
        runs.set_index(runs["run_id"].astype(str))["steps_per_epoch"]
        if "steps_per_epoch" in runs
        else None
    )
    clipped = instruments.clip_steps(tables.steps, per_epoch)
    if clipped.empty:
        return None
    clipped = clipped.assign(
        run_id=clipped["run_id"].astype(str),
        clipped_cosine=clipped["cosine"].where(clipped["clipped"] > 0),
    )
    per_run = clipped.groupby("run_id").agg(
        clip_rate=("clipped", "mean"), cosine=("clipped_cosine", "mean")
    )
    data = per_run.reset_index().merge(_settings(tables), on="run_id", how="left")
    parsed = data["clip"].map(parse_clip)
    data["kind"], data["threshold"] = parsed.map(lambda p: p[0]), parsed.map(lambda p: p[1])
    data = data[data["kind"] != "none"]
    if data.empty:
        return None
    hue = (
        "architecture"
        if "architecture" in data.columns and data["architecture"].nunique() > 1
        else None
    )
    fig, axes = plt.subplots(1, 2, figsize=(8.5, 3.2))
    for ax, column, label in ((axes[0], "clip_rate", "fraction of steps clipped"),
                              (axes[1], "cosine", "cosine(raw, clipped) on clipped steps")):  # fmt: skip
        sns.lineplot(
            data=data,
            x="threshold",
            y=column,
            hue=hue,
            **_palette(tables, hue, data),
            style="kind",
            marker="o",
            errorbar=None,
            ax=ax,
        )
        ax.set_xscale("log")
        ax.set_xlabel("clip threshold")
        ax.set_ylabel(label)
    axes[0].set_ylim(-0.03, 1.03)
    fig.tight_layout()
    return fig


def unit_health(tables):
    """Saturated (tanh / sigmoid) and dead (relu) unit fractions after training, by activation x normalization."""
    units = probe_table(tables, "units")
    if units is None:
        return None
    data = units[units["quantity"].isin(["saturated", "dead"])]
    if data.empty:
        return None
    last = data.groupby("run_id")["epoch"].transform("max")
    data = data[data["epoch"] == last]
    data = data.groupby(["run_id", "quantity"], observed=True)["value"].mean().reset_index()
    data = data.merge(_settings(tables), on="run_id", how="left")
    g = sns.catplot(
        data=data, x="activation" if "activation" in data.columns else None, y="value", kind="bar",
        hue="normalization" if "normalization" in data.columns else None, errorbar=None,
        **_palette(tables, "normalization", data),
        col="architecture" if "architecture" in data.columns else None, row="quantity",
        height=2.6, aspect=1.1, sharex=False,
    )  # fmt: skip
    g.set(ylim=(0, 1))
    g.set_axis_labels("activation", "fraction of units")
    g.set_titles(row_template="{row_name}", col_template="{col_name}")
    return g.figure


def gate_means(tables):
    """Mean of each gate on the probe batch per epoch (LSTM / GRU variants), mean over runs."""
    units = probe_table(tables, "units")
    if units is None:
        return None
    data = units[units["quantity"].str.startswith("gate_mean/")]
    if data.empty:
        return None
    data = data.assign(gate=data["quantity"].str.removeprefix("gate_mean/"))
    data = data.groupby(["run_id", "epoch", "gate"], observed=True)["value"].mean().reset_index()
    data = data.merge(_settings(tables), on="run_id", how="left")
    g = sns.relplot(
        data=data, x="epoch", y="value", hue="gate", kind="line", errorbar=("pi", 100), height=2.6,
        aspect=1.2, col="architecture" if "architecture" in data.columns else None,
        col_wrap=min(4, data["architecture"].nunique()) if "architecture" in data.columns else None,
    )  # fmt: skip
    g.set(ylim=(0, 1))
    g.set_axis_labels("epoch (0 = initialization)", "mean gate value")
    return g.figure


# (slug, title, function, caption) for report/render.py's figure list.
FIGURES = [
    ("timestep_gradients", "Gradients through time", timestep_profiles,
     "log10 of ||dL/dh_t||, the gradient of the loss on a fixed probe batch (first 64 validation "
     "examples) with respect to the hidden state at step t, against the distance from the output, "
     "for the top recurrent layer; one line per configuration (mean over seeds), at initialization "
     "(top) and after the last epoch (bottom). A line that falls as the distance grows is a gradient "
     "that vanishes going back in time (its slope is log10 of the per-step decay factor); a rising "
     "line explodes. † at the end of a line after training: its arm did not learn within budget."),
    ("depth_gradients", "Gradients through depth", depth_profile,
     "log10 of each layer's weight-gradient norm on the probe batch, layers in model order (input "
     "side first), at initialization and after the last epoch. Falling toward the input side means "
     "the early layers learn slowly (vanishing with depth). † at the end of a line after training: its "
     "arm did not learn within budget."),
    ("clipping", "Clip rate and gradient direction", clip_threshold,
     "Per run, the fraction of steps where clipping changed the gradient (left) and the mean cosine "
     "between the raw and the clipped gradient over those steps (right), against the threshold. "
     "Norm clipping keeps the direction (cosine 1); value clipping turns it."),
    ("unit_health", "Saturated and dead units", unit_health,
     "After the last epoch, on the probe batch: fraction of tanh/sigmoid outputs beyond 0.99 "
     "(|tanh| > 0.99, sigmoid < 0.01 or > 0.99) and fraction of ReLU units that are zero on the whole "
     "probe batch, mean over layers and runs. For recurrent layers the unit is the candidate."),
    ("gate_means", "Gate means", gate_means,
     "Mean value of each gate of the recurrent layers on the probe batch per epoch (0 = before "
     "training), mean over runs with the full range as a band. A forget gate near 1 keeps the cell "
     "state (and its gradient) alive; gates stuck at 0 or 1 have saturated."),
]  # fmt: skip
