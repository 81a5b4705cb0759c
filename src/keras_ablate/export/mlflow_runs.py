"""`keras-ablate export mlflow`: one MLflow run per run, under one parent run holding the report.

Each run of the experiment becomes an MLflow run named by its run id, with its settings as
params, its epoch metrics (step = epoch) and per-step quantities (step = training step) as
metrics, and tags keras_ablate.run_id and keras_ablate.fingerprint. They are children of one
parent run per experiment (tag keras_ablate.role = experiment) that holds report.html and
report.md as artifacts: one copy of the report, not one per run.

A second export skips a run whose MLflow run has the same fingerprint (a hash of everything
exported) and replaces one whose records changed (a rerun), so runs are never duplicated.

The default store is a local folder, RESULTS_DIR/mlruns. MLflow 3 asks for an opt-in to its file
store (MLFLOW_ALLOW_FILE_STORE); this module gives it for a file store only.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from keras_ablate import store
from keras_ablate.errors import UserError
from keras_ablate.export.records import RunExport, read_experiment

RUN_TAG = "keras_ablate.run_id"
FINGERPRINT_TAG = "keras_ablate.fingerprint"
ROLE_TAG = "keras_ablate.role"
PARENT_TAG = "mlflow.parentRunId"
# MLflow's limits per log_batch call.
MAX_METRICS, MAX_PARAMS = 1000, 100
INSTALL = "pip install 'keras-ablate[mlflow]' (or `pip install mlflow-skinny`)"


def default_tracking_uri(exp_dir: str | Path) -> str:
    return (Path(exp_dir) / "mlruns").resolve().as_uri()


def _import_mlflow():
    try:
        import mlflow  # noqa: F401
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        raise UserError(
            f"export mlflow needs MLflow, which is not installed ({exc}); install the mlflow "
            f"extra: {INSTALL}"
        ) from None
    return MlflowClient


def fingerprint(run: RunExport) -> str:
    """A hash of what is exported for a run: a changed record (a rerun) changes it."""
    record = {"hparams": run.hparams, "epochs": run.epochs, "steps": run.steps}
    text = json.dumps(record, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def export_mlflow(exp_dir: str | Path, tracking_uri: str | None = None) -> dict:
    """Log an experiment folder's runs to MLflow; return counts of what was logged.

    Returns: {"tracking_uri", "experiment_id", "logged": runs written, "kept": runs already
    there unchanged, "replaced": runs written again because their records changed,
    "unreadable": {run_id: why}}.
    """
    exp_dir = Path(exp_dir)
    uri = tracking_uri or default_tracking_uri(exp_dir)
    if uri.startswith("file:") or "://" not in uri:
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client_class = _import_mlflow()
    experiment = read_experiment(exp_dir)
    client = client_class(tracking_uri=uri)
    from mlflow.entities import Metric, Param

    existing = client.get_experiment_by_name(experiment.name)
    experiment_id = (
        existing.experiment_id if existing else client.create_experiment(experiment.name)
    )
    found = _active_runs(client, experiment_id)
    parent = _parent_run(client, experiment_id, found, experiment.name)
    counts = {"logged": 0, "kept": 0, "replaced": 0}
    for run in experiment.runs:
        stamp = fingerprint(run)
        previous = found.get(run.run_id, [])
        if len(previous) == 1 and previous[0].data.tags.get(FINGERPRINT_TAG) == stamp:
            counts["kept"] += 1
            continue
        for old in previous:
            client.delete_run(old.info.run_id)
        counts["replaced" if previous else "logged"] += 1
        tags = {
            RUN_TAG: run.run_id,
            FINGERPRINT_TAG: stamp,
            ROLE_TAG: "run",
            PARENT_TAG: parent,
            "status": str(run.hparams.get("status")),
            "axes": ",".join(experiment.axes),
        }
        created = client.create_run(experiment_id, tags=tags, run_name=run.run_id)
        run_id = created.info.run_id
        params = [Param(k, str(v)) for k, v in sorted(run.hparams.items())]
        metrics = [
            Metric(name, value, 0, step)
            for series in (run.epochs, run.steps)
            for name, points in sorted(series.items())
            for step, value in points
        ]
        for i in range(0, len(params), MAX_PARAMS):
            client.log_batch(run_id, params=params[i : i + MAX_PARAMS])
        for i in range(0, len(metrics), MAX_METRICS):
            client.log_batch(run_id, metrics=metrics[i : i + MAX_METRICS])
        client.set_terminated(run_id, "FAILED" if run.hparams.get("status") == "failed" else None)
    for name in (store.REPORT_HTML, store.REPORT_MD):
        if (exp_dir / name).is_file():  # log_artifact replaces a file of the same name
            client.log_artifact(parent, str(exp_dir / name), artifact_path="report")
    return {
        "tracking_uri": uri,
        "experiment_id": experiment_id,
        "runs": len(experiment.runs),
        **counts,
        "unreadable": experiment.unreadable,
    }


def _active_runs(client, experiment_id: str) -> dict[str, list]:
    """The experiment's active MLflow runs by keras-ablate run id ('' for the parent)."""
    out: dict[str, list] = {}
    token = None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token)
        for run in page:
            tags = run.data.tags
            key = "" if tags.get(ROLE_TAG) == "experiment" else tags.get(RUN_TAG)
            if key is not None:
                out.setdefault(key, []).append(run)
        token = page.token
        if not token:
            return out


def _parent_run(client, experiment_id: str, found: dict, name: str) -> str:
    """The parent run of the experiment's runs: the one there is, or a new one."""
    parents = found.pop("", [])
    if parents:
        return parents[0].info.run_id
    created = client.create_run(
        experiment_id, tags={ROLE_TAG: "experiment"}, run_name=f"{name} (experiment)"
    )
    client.set_terminated(created.info.run_id)
    return created.info.run_id
