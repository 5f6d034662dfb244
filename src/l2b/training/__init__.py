"""From a config to a trained model: data preparation, set-up, the training loop and the runner."""

from .batches import TensorData
from .config import AUTOCAST_DTYPES, TrainConfig
from .optim import Optimization
from .prepare import PreparedData, prepare_data
from .run import run_experiment
from .setup import build_augmentation, build_model, build_trainer, resolve_device, trainer_for_config
from .trainer import FitResult, Trainer, evaluate, predict_proba

__all__ = [
    "AUTOCAST_DTYPES",
    "FitResult",
    "Optimization",
    "PreparedData",
    "TensorData",
    "TrainConfig",
    "Trainer",
    "build_augmentation",
    "build_model",
    "build_trainer",
    "evaluate",
    "predict_proba",
    "prepare_data",
    "resolve_device",
    "run_experiment",
    "trainer_for_config",
]
