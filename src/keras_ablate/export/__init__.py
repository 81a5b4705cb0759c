"""Hand an experiment's runs to the tools people already use: TensorBoard logs and MLflow runs."""
