"""Running models over data: evaluation and training."""

from ssdlite.engine.config import TrainConfig
from ssdlite.engine.evaluate import evaluate, evaluate_predictions
from ssdlite.engine.trainer import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "evaluate", "evaluate_predictions", "train"]
