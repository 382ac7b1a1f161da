"""Running models over data: evaluation and training."""

from ssdlite.engine.config import TrainConfig
from ssdlite.engine.datasets import build_datasets
from ssdlite.engine.evaluate import evaluate, evaluate_predictions
from ssdlite.engine.trainer import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "build_datasets", "evaluate", "evaluate_predictions", "train"]
