"""Analysis: run folders -> tidy pandas frames with every derived per-run metric, intervals, effects.

Modules: tables (load -> Tables; long_tables builds its long frames), metrics (every derived
per-run metric, one name each), instruments (probe-table metrics), baselines (chance and
majority levels), stats (the only place an interval is computed), effects (factor effects,
interactions, ANOVA), simulate (synthetic run folders).
"""

from keras_ablate.analysis.tables import Tables, load

__all__ = ["Tables", "load"]
