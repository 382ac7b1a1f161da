"""VOC07 mAP@0.5 of any file on any backend, with the evaluation code every model uses."""

from __future__ import annotations

import os


def voc07_map50(weights: str | os.PathLike, backend: str, dataset_path: str, split: str = "val") -> float:
    """``ssdlite.engine.evaluate`` of ``weights`` run by ``backend`` (scores kept down to 0) on ``split``."""
    from ssdlite.data import build_dataset
    from ssdlite.deploy.predictor import Predictor, PredictorModule
    from ssdlite.engine.evaluate import evaluate

    dataset = build_dataset(dataset_path, split=split, keep_difficult=True, hold_out=True)
    predictor = Predictor(weights, backend=backend, score_threshold=0.0)
    return evaluate(PredictorModule(predictor), dataset, progress=False)["voc07_map50"]
