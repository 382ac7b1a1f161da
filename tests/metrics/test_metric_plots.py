"""Plots: the PNG files exist, are images, and survive odd class names and empty classes."""

from __future__ import annotations

import numpy as np
import pytest

from ssdlite.metrics import DetectionMetrics
from ssdlite.metrics.plots import save_plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_save_plots_writes_pngs(tmp_path, make_random_images):
    ground_truths, detections = make_random_images(np.random.default_rng(3), 10, 2)
    metrics = DetectionMetrics(["traffic light", "a/b"] + ["no boxes"])
    for g, d in zip(ground_truths, detections):
        metrics.update([{"boxes": d.boxes, "scores": d.scores, "labels": d.labels}], [{"boxes": g.boxes, "labels": g.labels, "difficult": g.difficult}])
    with pytest.raises(ValueError, match="compute"):
        save_plots(metrics, tmp_path)
    metrics.compute()
    written = save_plots(metrics, tmp_path / "plots")
    names = sorted(p.relative_to(tmp_path / "plots").as_posix() for p in written)
    assert names == [
        "confusion_matrix.png",
        "precision_recall.png",
        "precision_recall/001_traffic_light.png",
        "precision_recall/002_a_b.png",
        "precision_recall/003_no_boxes.png",
    ]
    for path in written:
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000
