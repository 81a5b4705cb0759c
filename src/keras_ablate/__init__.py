"""keras-ablate: ablation experiments for sequence models in Keras 3."""

__version__ = "0.1.0"
