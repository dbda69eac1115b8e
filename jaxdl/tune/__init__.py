"""Hyperparameter search over experiment configs and scaling-law fits (book sections 988,
1000): random search, successive halving, Hyperband; power laws of loss vs size and data."""

from jaxdl.tune.scaling import ChinchillaLaw, PowerLaw, fit_chinchilla, fit_power_law
from jaxdl.tune.search import (
    Trial,
    best_trial,
    check_space,
    hyperband,
    random_search,
    sample,
    successive_halving,
    training_objective,
)

__all__ = [
    "ChinchillaLaw", "PowerLaw", "Trial", "best_trial", "check_space", "fit_chinchilla",
    "fit_power_law", "hyperband", "random_search", "sample", "successive_halving",
    "training_objective",
]
