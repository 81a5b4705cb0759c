"""keras-ablate: ablation experiments for sequence models in Keras 3.

In a notebook (docs/NOTEBOOK.md):

    import keras_ablate
    exp = keras_ablate.Experiment.from_yaml("ablations.yaml", results_dir="results")
    exp.plan(); exp.run(); tables = exp.tables()
    keras_ablate.figures.convergence(tables)

Importing the package is light: Experiment and figures are imported on first use (no pandas,
no TensorFlow until a method needs them).
"""

from keras_ablate.version import __version__

__all__ = ["Experiment", "__version__", "figures"]


def __getattr__(name: str):
    if name == "Experiment":
        from keras_ablate.notebook import Experiment

        return Experiment
    if name == "figures":
        import keras_ablate.figures as figures  # (`from keras_ablate import` would recurse here)

        return figures
    raise AttributeError(f"module 'keras_ablate' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "Experiment", "figures"])
