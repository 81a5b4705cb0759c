"""What an export writes per run, read through analysis.load and the store: settings, metrics.

Both exports (TensorBoard, MLflow) take the same records, so a run, an axis or a metric is in
both or in neither. Values that are not finite (a diverged run's last steps) are left out: a
diverged run never produces a metric, and neither tool plots them usefully.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from keras_ablate import store
from keras_ablate.errors import UserError


@dataclass
class RunExport:
    """One run as the exports see it.

    hparams: every setting (dataset options as `dataset.<option>`), the dataset, the seed and the
        status; one plain value each (str, float, int or bool).
    epochs: history metric -> [(epoch, value)], the names of history.parquet (`val/accuracy`).
    steps: step quantity -> [(step, value)], the names of steps.parquet (`grad/global_norm`,
        `grad/norm/rnn_0`).
    """

    run_id: str
    hparams: dict
    epochs: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    steps: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    # The names in `steps` that are one layer's (grad/norm/rnn_0), not the whole model's.
    layer_steps: set[str] = field(default_factory=set)


@dataclass
class ExperimentExport:
    """Every readable run of an experiment folder, its axes and their levels (plan order)."""

    name: str
    folder: Path
    axes: list[str]
    levels: dict[str, list]
    runs: list[RunExport]
    unreadable: dict[str, str]

    def epoch_metrics(self) -> list[str]:
        return sorted({m for r in self.runs for m in r.epochs})

    def step_metrics(self, whole_model: bool = False) -> list[str]:
        """Every step quantity; with `whole_model`, only those not of one layer."""
        return sorted(
            {m for r in self.runs for m in r.steps if not (whole_model and m in r.layer_steps)}
        )


def plain(value):
    """A value either tool can store: bool, int, float or str (lists 'a,b', None 'none')."""
    if isinstance(value, bool | int | float | str):
        return value
    if value is None:
        return "none"
    if hasattr(value, "item"):  # numpy scalars
        return plain(value.item())
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return str(value)


def read_experiment(exp_dir: str | Path) -> ExperimentExport:
    """Load an experiment folder for export (analysis.tables.load; run specs from the store)."""
    from keras_ablate.analysis.tables import load

    exp_dir = Path(exp_dir)
    if not (exp_dir / store.RUNS).is_dir():
        raise UserError(
            f"{exp_dir}: no runs to export (expected a results/<experiment> folder with runs/); "
            "run `keras-ablate run FILE` first"
        )
    tables = load(exp_dir, derive=False)
    runs = tables.all_runs if tables.all_runs is not None else tables.runs
    specs = {spec["run_id"]: spec for _, spec, _ in store.iter_runs(exp_dir)}
    epochs: dict[str, dict] = {}
    for (run_id, metric), frame in tables.history.groupby(["run_id", "metric"], observed=True):
        points = _finite(frame["epoch"], frame["value"])
        if points:
            epochs.setdefault(str(run_id), {})[str(metric)] = points
    per_step: dict[str, dict] = {}
    layer_steps: dict[str, set] = {}
    keys = ["run_id", "quantity", "layer"]
    for (run_id, quantity, layer), frame in tables.steps.groupby(keys, observed=True):
        points = _finite(frame["step"], frame["value"])
        if points:
            name = f"{quantity}/{layer}" if layer else str(quantity)
            per_step.setdefault(str(run_id), {})[name] = points
            if layer:
                layer_steps.setdefault(str(run_id), set()).add(name)
    exports = []
    for row in runs.to_dict("records"):
        run_id = str(row["run_id"])
        spec = specs[run_id]
        hparams = {key: plain(value) for key, value in spec["settings"].items()}
        for key, value in spec["dataset"].get("options", {}).items():
            hparams[f"dataset.{key}"] = plain(value)
        hparams["dataset"] = plain(spec["dataset"]["name"])
        hparams["seed"] = int(spec["seed"])
        hparams["status"] = str(row["status"])
        # An axis's value as its level list spells it (load turns mixed-type levels to str).
        hparams.update({axis: plain(row[axis]) for axis in tables.axes})
        exports.append(
            RunExport(
                run_id,
                hparams,
                epochs.get(run_id, {}),
                per_step.get(run_id, {}),
                layer_steps.get(run_id, set()),
            )
        )
    axes = list(tables.axes)
    levels = {axis: [plain(v) for v in tables.levels.get(axis, [])] for axis in axes}
    # Under a protocol every arm ran at each rate: the rate is a dimension of the export too,
    # or the HParams view would show an arm's runs at different rates as one.
    rates = (tables.info.get("protocol") or {}).get("learning_rate")
    if rates and "learning_rate" not in axes:
        axes.append("learning_rate")
        levels["learning_rate"] = [float(r) for r in rates]
    name = str(tables.info.get("name") or exp_dir.name)
    return ExperimentExport(name, exp_dir, axes, levels, exports, tables.unreadable)


def _finite(index, values) -> list[tuple[int, float]]:
    return [
        (int(i), float(v))
        for i, v in zip(index.to_numpy(), values.to_numpy(dtype=float), strict=True)
        if math.isfinite(v)
    ]
