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


def build_model(settings: dict, dataset, base_dir=None):
    """Build a fresh, uncompiled functional Keras model for `settings` on `dataset`.

    A user's architecture (settings hold its `builder`) is looked up in `base_dir`, the
    experiment file's folder, then on sys.path (models/user.py).
    """
    if "builder" in settings:
        from keras_ablate.models.user import build_user_model

        return build_user_model(settings, dataset, base_dir)
    return get_builder(settings["architecture"])(settings, dataset)
