"""The notebook API: keras_ablate.Experiment.from_yaml(path) with plan, run, status, tables, report.

Each method calls what the command of the same name calls (commands.py), so a notebook and the
command line read, validate, run and report an experiment the same way and share its results
folder. Nothing is imported until a method needs it: from_yaml, plan and status never import
TensorFlow; run does, once it trains.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from keras_ablate.analysis.tables import Tables
    from keras_ablate.config.schema import Experiment as ExperimentConfig
    from keras_ablate.config.schema import RunSpec
    from keras_ablate.runner import GridOutcome


class Experiment:
    """One experiment file and its results folder (results_dir/<experiment name>).

    Attributes:
        path: the experiment file. config: the validated experiment. specs: every planned run.
        folder: where its results are (and `keras-ablate report`/`status` look).
    """

    def __init__(
        self, path: Path, results_dir: Path, config: ExperimentConfig, specs: list[RunSpec]
    ):
        self.path, self.results_dir, self.config, self.specs = path, results_dir, config, specs
        self.folder: Path = config.folder(results_dir)
        self.warnings: list[str] = list(config.warnings)

    @classmethod
    def from_yaml(cls, path: str | Path, results_dir: str | Path = "results") -> Experiment:
        """Read and validate an experiment file, as `keras-ablate plan` does.

        Raises:
            ConfigError: naming the file, line and key of a mistake, with what would be valid.
        """
        from keras_ablate.config.expand import load_experiment

        config, specs = load_experiment(path, results_dir=results_dir)
        return cls(Path(path), Path(results_dir), config, specs)

    @property
    def name(self) -> str:
        return self.config.name

    def __repr__(self) -> str:
        return f"Experiment({self.name!r}: {len(self.specs)} runs -> {self.folder})"

    def _select(self, where: Mapping[str, Any] | Iterable[str] | None) -> list[RunSpec]:
        from keras_ablate.config.select import filter_specs
        from keras_ablate.errors import UserError

        if not where:
            return self.specs
        flags = (
            [f"{axis}={level}" for axis, level in where.items()]
            if isinstance(where, Mapping)
            else list(where)
        )
        chosen = filter_specs(self.specs, flags)
        if not chosen:
            raise UserError(f"where={where!r}: no run of {self.path} matches")
        return chosen

    def plan(self, where: Mapping[str, Any] | Iterable[str] | None = None) -> pd.DataFrame:
        """One row per planned run: run_id, each axis, seed, and its status in the results folder
        (missing, ok, diverged, failed). `where` keeps matching runs: {"architecture": "lstm"} or
        ["architecture=lstm"], as `--filter`."""
        import pandas as pd

        from keras_ablate import store

        rows = [
            {
                "run_id": s.run_id,
                **s.axes,
                "seed": s.seed,
                "status": store.run_status(self.folder, s.run_id),
            }
            for s in self._select(where)
        ]
        return pd.DataFrame(rows)

    def run(
        self,
        where: Mapping[str, Any] | Iterable[str] | None = None,
        *,
        max_runs: int | None = None,
        force: bool = False,
        rerun: Iterable[str] = (),
        workers: int | None = None,
        executor: str = "local",
        address: str | None = None,
    ) -> GridOutcome:
        """Train every missing run (or those `where` selects), as `keras-ablate run` does; the
        options are run's flags (workers=1 trains in this process)."""
        from keras_ablate.commands import run_experiment

        return run_experiment(
            self.config,
            self._select(where),
            self.specs,
            self.folder,
            str(self.path),
            force=force,
            rerun=tuple(rerun),
            max_runs=max_runs,
            workers=workers,
            executor=executor,
            address=address,
        )

    def status(self) -> dict:
        """Counts over the plan (done, diverged, failed, missing), as `keras-ablate status --json`."""
        from keras_ablate.progress import grid_status

        return grid_status(self.folder, [s.run_id for s in self.specs])

    def _info(self) -> dict:
        from keras_ablate.commands import planned_info

        return planned_info(self.config, self.specs, self.folder, str(self.path))

    def tables(self) -> Tables:
        """The plan's runs as analysis.load reads them (the frames the report is made from):
        runs, history, steps, timesteps and the probe tables, axes and levels."""
        from keras_ablate.analysis.tables import load

        info = self._info()
        return load(self.folder, run_ids=info["run_ids"], info=info)

    def report(self) -> dict:
        """Write report.html and report.md, as `keras-ablate report FILE`; return their paths."""
        from keras_ablate import store
        from keras_ablate.errors import UserError
        from keras_ablate.report.render import build_report

        if not (self.folder / store.RUNS).is_dir():
            raise UserError(f"{self.folder}: no runs yet; call run() first")
        return build_report(self.folder, self._info())
