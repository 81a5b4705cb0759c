"""keras-tuner over the same builders as the runs: one search per arm, a trials table and best.yaml."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import keras_tuner as kt
import numpy as np
import pandas as pd
from rich.console import Console

from keras_ablate import store
from keras_ablate.config.schema import Experiment, RunSettings
from keras_ablate.config.tuning import Arm, SearchDim, tuning_root
from keras_ablate.data import load_dataset
from keras_ablate.errors import ConfigError, UserError
from keras_ablate.scoring import blank_history
from keras_ablate.training.loop import build_instrumented, fit_data, history_frame
from keras_ablate.training.step import StopOnDivergence
from keras_ablate.tuning.objectives import Objective, get_objective, last_value
from keras_ablate.tuning.trials import write_outputs

KT_PROJECT = "keras_tuner"
# Diverged trials are marked failed (never best); a run of them is a result, so never abort the search.
MAX_CONSECUTIVE_FAILED = 10**6


class ArmHyperModel(kt.HyperModel):
    """Builds one arm's model from hp values with build_instrumented, exactly as `run` does.

    hp names are the setting names. `fit` returns a dict of last-epoch values (a History
    would be scored at its best epoch) with the objective set to NaN for a diverged trial,
    which keras-tuner then marks failed.
    """

    def __init__(
        self,
        arm: Arm,
        space: dict[str, SearchDim],
        objective: Objective,
        seed: int,
        max_epochs=None,
    ):
        super().__init__(name=arm.name)
        self.arm, self.space, self.objective, self.seed = arm, space, objective, seed
        self.dataset = load_dataset(
            arm.dataset["name"], arm.dataset["options"], base_dir=arm.base_dir
        )
        if (
            objective.needs
            and objective.needs.startswith("val/")
            and objective.needs[4:] not in ("loss", self.dataset.metric)
        ):
            raise ConfigError(
                f"tune.objective: '{objective.name}' reads {objective.needs}, but dataset '{arm.dataset['name']}' "
                f"records val/loss and val/{self.dataset.metric}"
            )
        self.max_epochs = max_epochs
        self.trials_run = 0
        self.console = Console(stderr=True)

    def declare_hyperparameters(self, hp: kt.HyperParameters) -> None:
        declare(hp, self.space)

    def settings_for(self, hp: kt.HyperParameters) -> dict:
        """The arm's settings with this trial's hp values (validated like any run's settings)."""
        values = {name: hp.get(name) for name in self.space}
        if "tuner/epochs" in hp.values:  # Hyperband's budget for this trial.
            values["epochs"] = int(hp.values["tuner/epochs"])
        return RunSettings.model_validate({**self.arm.settings, **values}).model_dump(mode="json")

    def build(self, hp: kt.HyperParameters):
        self.declare_hyperparameters(hp)
        settings = self.settings_for(hp)
        # Hyperband reloads a trial's weights into a longer one: keep the record buffer one size.
        capacity = self._steps_per_epoch(settings) * (self.max_epochs or settings["epochs"])
        return build_instrumented(settings, self.dataset, self.seed, capacity, self.arm.base_dir)

    def fit(self, hp: kt.HyperParameters, model, *args, **kwargs) -> dict:
        started = time.time()
        settings = self.settings_for(hp)
        data = self.dataset
        initial_epoch = int(kwargs.get("initial_epoch", 0))
        fit = model.fit(
            **fit_data(data, settings["batch_size"]),
            epochs=int(kwargs.get("epochs", settings["epochs"])),
            initial_epoch=initial_epoch,
            shuffle=False,  # the pipeline shuffles; Keras warns about its default True with one
            verbose=0,
            callbacks=[*kwargs.get("callbacks", []), StopOnDivergence()],
        )
        diverged_step = model.first_nonfinite_step
        # As in a run: nothing measured on the diverged weights (epochs and steps of this fit).
        history = blank_history(
            history_frame(fit.history, data.metric), diverged_step, self._steps_per_epoch(settings)
        )
        columns, rows = model.step_records()
        steps = pd.DataFrame(rows, columns=columns)
        steps.insert(
            0, "epoch", np.arange(len(steps)) // self._steps_per_epoch(settings) + initial_epoch
        )
        value = self.objective.compute(history, steps)
        # A diverged trial is scored NaN, so keras-tuner marks it failed and never ranks it: the
        # flag decides, whatever the objective read.
        diverged = diverged_step is not None or not math.isfinite(value)
        metrics = {col: last_value(history, col) for col in history.columns if col != "epoch"}
        metrics.update(
            {
                self.objective.name: math.nan if diverged else value,
                "diverged": float(diverged),
                "wall_time_s": round(time.time() - started, 3),
            }
        )
        if diverged_step is not None:
            metrics["diverged_step"] = float(diverged_step)
        self.trials_run += 1
        shown = " ".join(f"{k}={_short(hp.get(k))}" for k in self.space)
        outcome = (
            f"diverged at step {diverged_step}"
            if diverged
            else f"{self.objective.name}={value:.4g}"
        )
        self.console.print(
            f"{self.arm.name}: trial {shown} -> {outcome} [{metrics['wall_time_s']:.1f}s]",
            soft_wrap=True,
        )
        return metrics

    def _steps_per_epoch(self, settings: dict) -> int:
        return math.ceil(len(self.dataset.x_train) / settings["batch_size"])


def declare(hp: kt.HyperParameters, space: dict[str, SearchDim]) -> None:
    """Declare each dimension with keras-tuner's own call and arguments (config/tuning.SearchDim)."""
    for dim in space.values():
        if dim.kind == "boolean":
            hp.Boolean(dim.name, default=bool(dim.default))
        elif dim.kind == "choice":
            hp.Choice(dim.name, list(dim.values), ordered=dim.ordered, default=dim.default)
        elif dim.kind == "int":
            hp.Int(
                dim.name,
                int(dim.min),
                int(dim.max),
                step=None if dim.step is None else int(dim.step),
                sampling=dim.sampling,
                default=None if dim.default is None else int(dim.default),
            )
        else:
            hp.Float(
                dim.name,
                float(dim.min),
                float(dim.max),
                step=dim.step,
                sampling=dim.sampling,
                default=dim.default,
            )


def _short(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def make_tuner(exp: Experiment, hypermodel: ArmHyperModel, directory: Path) -> kt.Tuner:
    """The keras-tuner tuner named in `tune.tuner`, resuming whatever is in `directory` (overwrite=False)."""
    tune = exp.tune
    common = dict(
        hypermodel=hypermodel,
        objective=kt.Objective(hypermodel.objective.name, hypermodel.objective.direction),
        seed=tune.seed,
        directory=str(directory),
        project_name=KT_PROJECT,
        overwrite=False,
        max_consecutive_failed_trials=MAX_CONSECUTIVE_FAILED,
    )
    if tune.tuner == "hyperband":
        return kt.Hyperband(max_epochs=hypermodel.max_epochs, factor=tune.factor, **common)
    if tune.tuner == "grid":
        return kt.GridSearch(max_trials=tune.max_trials, **common)
    tuner_class = {"random": kt.RandomSearch, "bayesian": kt.BayesianOptimization}[tune.tuner]
    return tuner_class(max_trials=tune.max_trials or 10, **common)


def tune_arms(
    exp: Experiment,
    space: dict[str, SearchDim],
    arms: list[Arm],
    results_dir: str | Path,
    role: str | None = None,
    oracle: str | None = None,
    console: Console | None = None,
) -> int:
    """Tune each arm in turn (or serve / work for one arm's distributed search); return the exit code.

    role: None (local), 'chief' (serve the oracle at `oracle` = HOST:PORT until every trial
    has ended, then write the outputs) or a worker id such as 'tuner0'.
    """
    console = console or Console(stderr=True)
    objective = get_objective(exp.tune.objective)
    if role is not None:
        if len(arms) != 1:
            names = ", ".join(a.name for a in arms)
            raise UserError(
                f"distributed tuning runs one arm at a time: choose one with --arm ({len(arms)} match: {names})"
            )
        _set_distributed_env(role, oracle)
    code = 0
    for arm in arms:
        max_epochs = (
            (exp.tune.max_epochs or arm.settings["epochs"])
            if exp.tune.tuner == "hyperband"
            else None
        )
        hypermodel = ArmHyperModel(arm, space, objective, exp.tune.seed, max_epochs)
        directory = tuning_root(exp, results_dir) / arm.name
        _check_same_search(exp, arm, space, directory)
        tuner = make_tuner(exp, hypermodel, directory)
        if role is None or role == "chief":
            done = sum(t.status in ("COMPLETED", "FAILED") for t in tuner.oracle.trials.values())
            console.print(
                f"{arm.name}: {done} trial(s) already ended; searching with {exp.tune.tuner} -> {directory}",
                soft_wrap=True,
            )
        if role == "chief":
            serve_oracle(tuner)
        else:
            tuner.search(verbose=0)
        if role not in (None, "chief"):
            console.print(
                f"worker {role}: ran {hypermodel.trials_run} trial(s) for {arm.name}",
                soft_wrap=True,
            )
            continue
        if role is None:
            console.print(
                f"{arm.name}: ran {hypermodel.trials_run} trial(s) this time", soft_wrap=True
            )
        best = write_outputs(exp, arm, space, objective, tuner.oracle, directory)
        if best is None:
            console.print(
                f"[red]{arm.name}: no trial finished with a finite {objective.name}; no {store.BEST_FILE} written",
                soft_wrap=True,
            )
            code = 1
        else:
            console.print(
                f"{arm.name}: best {objective.name}={best['score']:.4g} with {best['settings']}",
                soft_wrap=True,
            )
    return code


def _check_same_search(
    exp: Experiment, arm: Arm, space: dict[str, SearchDim], directory: Path
) -> None:
    """Resuming continues one search: refuse a folder searched with another tuner, space or arm setting.

    Only max_trials may change between invocations (to run more trials).
    """
    search = {
        **exp.tune.model_dump(mode="json", exclude={"max_trials", "space"}),
        "space": {name: dim.record() for name, dim in space.items()},
        "settings": arm.settings,
        "dataset": arm.dataset,
    }
    search = json.loads(json.dumps(search))  # Tuples -> lists, as they read back.
    # What the search was (tuner, objective, space, arm settings), to refuse resuming a different one.
    path = directory / store.SEARCH_FILE
    if path.is_file():
        before = json.loads(path.read_text(encoding="utf-8"))
        changed = sorted(k for k in {*before, *search} if before.get(k) != search.get(k))
        if changed:
            raise UserError(
                f"{directory} holds a search with different {', '.join(changed)}: restore the tune: section, "
                f"or delete that folder (or rename the experiment) to start a new search"
            )
        return
    store.write_json_atomic(path, search)


def _set_distributed_env(role: str, oracle: str | None) -> None:
    """keras-tuner reads its distributed mode from these variables (chief id must contain 'chief')."""
    address = oracle or (
        f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
        if "KERASTUNER_ORACLE_IP" in os.environ and "KERASTUNER_ORACLE_PORT" in os.environ
        else None
    )
    host, sep, port = (address or "").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise UserError(
            f"--oracle must be HOST:PORT (e.g. 127.0.0.1:8000) for --chief/--worker, got {address!r}"
        )
    if role != "chief" and "chief" in role:
        raise UserError(
            f"--worker {role}: a worker id must not contain 'chief' (keras-tuner treats it as the chief)"
        )
    os.environ.update(
        KERASTUNER_TUNER_ID=role, KERASTUNER_ORACLE_IP=host, KERASTUNER_ORACLE_PORT=port
    )


def serve_oracle(tuner: kt.Tuner, poll_s: float = 0.5) -> None:
    """Serve the tuner's oracle to workers until the search is over and every worker has left.

    keras-tuner's own chief loop does the same but re-checks only every 20 s once the last
    trial is handed out; this one polls every `poll_s`.
    """
    from concurrent import futures

    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    address = f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
    tuner.save()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = oracle_chief.OracleServicer(tuner.oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if not bound:
        raise UserError(
            f"--chief: cannot listen on {address} (is an earlier chief still running there?)"
        )
    server.start()
    try:
        while not (servicer.stop_triggered and oracle_chief.exit_chief(tuner.oracle)):
            time.sleep(poll_s)
    finally:
        server.stop(grace=1)
