"""The training loop and the experiment runner."""
from .config import TrainConfig
from .run import resolve_device, run_experiment
from .trainer import FitResult, TensorData, Trainer, evaluate

__all__ = ["FitResult", "TensorData", "TrainConfig", "Trainer", "evaluate", "resolve_device", "run_experiment"]
