"""Training: state, objectives, compiled steps, the experiment builder and the one loop."""

from jaxdl.train import (  # noqa: F401  (importing them registers their objectives)
    autoencoder_objective,
    sequence_objectives,  # seq2seq, tbptt_language_model
)
from jaxdl.train.experiment import Experiment, build_experiment, validate_config
from jaxdl.train.loop import TrainResult, evaluate, train_and_evaluate
from jaxdl.train.objectives import OBJECTIVES, Objective
from jaxdl.train.state import TrainState, create_train_state
from jaxdl.train.step import CompiledStep, check_batch, make_eval_step, make_train_step

__all__ = [
    "OBJECTIVES", "CompiledStep", "Experiment", "Objective", "TrainResult", "TrainState",
    "build_experiment", "check_batch", "create_train_state", "evaluate", "make_eval_step",
    "make_train_step", "train_and_evaluate", "validate_config",
]
