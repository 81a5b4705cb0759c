"""Analysis: run folders -> tidy pandas frames, derived metrics, effects and claim verdicts."""

from keras_ablate.analysis.aggregate import Tables, load

__all__ = ["Tables", "load"]
