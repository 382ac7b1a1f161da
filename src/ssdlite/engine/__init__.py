"""Running models over data: evaluation (and training)."""

from ssdlite.engine.evaluate import evaluate, evaluate_predictions
from ssdlite.engine.config import TrainConfig
from ssdlite.engine.trainer import TrainResult, train
