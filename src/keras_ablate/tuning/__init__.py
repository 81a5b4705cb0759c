"""keras-tuner over the run builders: search each arm's nuisance settings, score trials, report them.

Modules: search (the HyperModel and the search per arm; imports TensorFlow), objectives (what a
trial is scored by; no TensorFlow, config validates `tune.objective` against it), report (the
report's tuning section). The `tune:` section itself is validated in config/tuning.py.

Nothing is imported here, so that importing tuning.objectives stays free of TensorFlow.
"""
