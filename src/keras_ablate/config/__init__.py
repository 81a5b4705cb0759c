"""Experiment files: level names and grammar, schema, located errors, expansion into RunSpecs, tune: section.

Modules (each imports only those above it):

- levels:   registry names and the grammar of level strings (imports no other stage)
- schema:   RunSettings, the sections, Experiment, RunSpec, make_run_id
- locate:   Locator and line maps: errors that name file, line and key path
- validate: one setting validated and normalized, with its located error
- select:   --filter / --arm selection of runs
- tuning:   the tune: search space and base_from tuned settings
- expand:   load_experiment / parse_experiment, and expand in named stages

Code inside the package imports the submodule it needs; the names below are the public API
(`from keras_ablate.config import load_experiment`).
"""

from keras_ablate.config.design import MAX_RUNS
from keras_ablate.config.expand import expand, load_experiment, parse_experiment
from keras_ablate.config.levels import (
    DATASET_AXIS_PREFIX,
    parse_clip,
    parse_init,
    parse_kernel_init,
)
from keras_ablate.config.locate import Locator
from keras_ablate.config.schema import (
    MAX_SEED,
    SETTING_KEYS,
    AnalysisSection,
    ClaimSection,
    DatasetSection,
    Experiment,
    ResourcesSection,
    RunSettings,
    RunSpec,
    TuneSection,
    make_run_id,
)
from keras_ablate.config.select import filter_specs, planned_levels_text

__all__ = [
    "DATASET_AXIS_PREFIX",
    "MAX_RUNS",
    "MAX_SEED",
    "SETTING_KEYS",
    "AnalysisSection",
    "ClaimSection",
    "DatasetSection",
    "Experiment",
    "Locator",
    "ResourcesSection",
    "RunSettings",
    "RunSpec",
    "TuneSection",
    "expand",
    "filter_specs",
    "load_experiment",
    "make_run_id",
    "parse_clip",
    "parse_experiment",
    "parse_init",
    "parse_kernel_init",
    "planned_levels_text",
]
