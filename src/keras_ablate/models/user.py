"""A user's own builder (`architecture: "my_models:build_bilstm"` or a `models:` name): called and checked.

The builder gets the run's settings (every built-in setting, `settings["params"]` with the
user's own) and the Dataset, and returns an uncompiled `keras.Model`. A functional or
Sequential model is used as it is; a subclassed one is wrapped in a functional model with one
input, so the train step and the probes see it as one layer.
"""

from __future__ import annotations

import keras
from keras.src.utils.naming import reset_uids  # Keras's own reset of its automatic names

from keras_ablate.errors import UserError
from keras_ablate.usercode import UserCodeError, call_error, find, load_function


def build_user_model(settings: dict, dataset, base_dir=None) -> keras.Model:
    """Build the run's model with the user's builder; UserCodeError says what is wrong."""
    ref = settings["builder"]
    found = find(ref, base_dir)
    if found.sha256[:16] != settings.get("builder_sha256"):
        raise UserCodeError(
            f"{found.path}: the module of '{ref}' changed since the runs were planned (hash "
            f"{found.sha256[:16]}, planned {settings.get('builder_sha256')}); run the command again "
            "to plan runs for the new version"
        )
    builder = load_function(ref, base_dir)
    # `params` is always there for the builder (empty when the file sets none).
    settings = {**settings, "params": dict(settings.get("params", {}))}
    # Layers the builder leaves unnamed get Keras's automatic names (dense, dense_1, ...) from
    # a process-wide counter: start it afresh so that every build of this model, in any process
    # and after any other model, names its layers alike (grad/norm/<layer> columns, reuse).
    reset_uids()
    try:
        model = builder(settings, dataset)
    except Exception as exc:
        raise call_error(ref, exc, base_dir) from exc
    if not isinstance(model, keras.Model):
        raise UserCodeError(
            f"{found.path}: '{ref}' returned a {type(model).__module__}.{type(model).__name__}; a "
            "builder must return an uncompiled keras.Model (functional, Sequential or subclassed)"
        )
    return as_functional(model, dataset)


def as_functional(model: keras.Model, dataset) -> keras.Model:
    """The model as a graph of layers (inputs/outputs known): itself if it has one, else wrapped."""
    try:
        model.inputs  # noqa: B018  (a subclassed or unbuilt Sequential model has none)
        if model.inputs and model.outputs:
            return model
    except (AttributeError, ValueError):
        pass
    dtype = "int32" if dataset.input_kind == "tokens" else "float32"
    inputs = keras.Input(shape=dataset.x_train.shape[1:], dtype=dtype, name="inputs")
    return keras.Model(inputs, model(inputs), name=model.name)


def check_builds(exp, specs, load_dataset) -> None:
    """Build each distinct user model of the plan once (and load every dataset it needs) before
    `run` writes anything: an import error, a builder that raises or returns something other
    than a keras.Model stops the command with the file, line and key that named it. Models
    that differ only in seed or training settings (RunSpec.model_key) are built once."""
    from keras_ablate.config.locate import Locator
    from keras_ablate.config.usermodels import architecture_path

    loc = exp.locator or Locator("<experiment>")
    seen_models = set()
    for spec in specs:
        user_model = "builder" in spec.settings
        user_data = ":" in spec.dataset["name"]
        if not (user_model or user_data):
            continue
        try:
            dataset = load_dataset(
                spec.dataset["name"], spec.dataset["options"], base_dir=spec.base_dir
            )
        except UserError as exc:
            raise loc.error(("dataset", "name"), str(exc)) from None
        architecture = spec.settings["architecture"]
        if user_model and spec.model_key() not in seen_models:
            seen_models.add(spec.model_key())
            keras.utils.set_random_seed(spec.seed)
            try:
                build_user_model(spec.settings, dataset, spec.base_dir)
            except UserError as exc:
                levels = ", ".join(f"{k}={v}" for k, v in spec.axes.items())
                where = f" (building the runs with {levels})" if levels else ""
                raise loc.error(architecture_path(exp, architecture), f"{exc}{where}") from None
            finally:
                keras.backend.clear_session()
