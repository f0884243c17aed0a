"""BOASF: Bayesian optimisation + adaptive successive filtering for AutoML (`papersuite tune`).

`boasf.load_pipeline(path).predict(pandas.read_csv(f))` loads a pipeline saved by `tune`.
"""
from boasf.artifacts import load_pipeline

__all__ = ["load_pipeline"]
