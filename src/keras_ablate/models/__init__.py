"""Model registry: architecture names -> builders that return a fresh Keras model for one run."""

from __future__ import annotations

import importlib

from keras_ablate.config.levels import ARCHITECTURES
from keras_ablate.errors import ConfigError, unknown_name


def get_builder(architecture: str):
    """Return the builder for an architecture name (imports Keras)."""
    if architecture not in ARCHITECTURES:
        raise ConfigError(unknown_name("architecture", architecture, ARCHITECTURES))
    module, attr = ARCHITECTURES[architecture].split(":")
    return getattr(importlib.import_module(module), attr)


def build_model(settings: dict, dataset):
    """Build a fresh, uncompiled functional Keras model for `settings` on `dataset`."""
    return get_builder(settings["architecture"])(settings, dataset)
