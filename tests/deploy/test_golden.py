"""Files exported before a change keep loading and giving the same detections.

``golden/`` holds a tiny model (MobileNetV3-small x0.1, 64 px, 3 classes; ternary sparse weights so the files
compress) exported to every runtime by the code of commit "golden exports" (``golden/make_golden.py``), and the
detections that code's backends gave on three fixed synthetic images. Each file is opened here through today's
loading path (:class:`~ssdlite.deploy.predictor.Predictor`, by the backend its suffix names, and by the name the
file was opened with then) and must give the same detections: same labels in the same order, boxes within 1e-3
pixels, scores within 1e-5.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from ssdlite.deploy.predictor import Predictor

GOLDEN = Path(__file__).parent / "golden"
sys.path.insert(0, str(GOLDEN))
from make_golden import SCORE_THRESHOLD, golden_images, torchscript_detections  # noqa: E402

EXPECTED = json.loads((GOLDEN / "detections.json").read_text())
PACKAGES = {"onnxruntime": "onnxruntime", "executorch": "executorch", "tflite": "ai_edge_litert", "openvino": "openvino"}


def assert_same(got: list[dict[str, torch.Tensor]], expected: list[dict[str, list]], what: str) -> None:
    assert len(got) == len(expected)
    for i, (g, e) in enumerate(zip(got, expected)):
        assert g["labels"].tolist() == e["labels"], f"{what}, image {i}: labels"
        torch.testing.assert_close(g["scores"].double(), torch.tensor(e["scores"], dtype=torch.float64), atol=1e-5, rtol=0, msg=f"{what}, image {i}")
        torch.testing.assert_close(g["boxes"].double(), torch.tensor(e["boxes"], dtype=torch.float64).view(-1, 4), atol=1e-3, rtol=0, msg=f"{what}, image {i}")


def test_golden_files_are_small():
    """The files stay a few MB on disk (465k float32 parameters each) and compress in git (weights mostly zero)."""
    import zlib

    files = [p for p in GOLDEN.iterdir() if p.name.startswith("model")]
    assert len(files) == 8
    assert sum(len(zlib.compress(p.read_bytes())) for p in files) < 3_000_000


@pytest.mark.parametrize("name", sorted(n for n in EXPECTED["files"] if n != "model.torchscript"))
def test_golden_export_gives_the_same_detections(name):
    backend = EXPECTED["files"][name]["backend"]
    package = PACKAGES.get(backend)
    if package and importlib.util.find_spec(package) is None:
        pytest.skip(f"needs the '{package}' package")
    images = golden_images()
    expected = EXPECTED["files"][name]["detections"]
    from ssdlite.deploy import runtimes

    # By the runtime its suffix names (the commands' default), and by the name the file was opened with then.
    for how in dict.fromkeys((runtimes.for_file(GOLDEN / name).name, backend)):
        predictor = Predictor(GOLDEN / name, backend=how, score_threshold=SCORE_THRESHOLD, batch_size=2)
        assert_same(predictor(images), expected, f"{name} (backend {how})")


def test_golden_torchscript_gives_the_same_detections():
    """Read as it was then (its traced core around the eager postprocess of its config), and through the TorchScript
    backend (the runtime its suffix names now)."""
    expected = EXPECTED["files"]["model.torchscript"]["detections"]
    assert_same(torchscript_detections(GOLDEN / "model.torchscript", golden_images()), expected, "model.torchscript")
    from ssdlite.deploy import runtimes

    backend = runtimes.for_file(GOLDEN / "model.torchscript").name
    predictor = Predictor(GOLDEN / "model.torchscript", backend=backend, score_threshold=SCORE_THRESHOLD, batch_size=2)
    assert_same(predictor(golden_images()), expected, f"model.torchscript (backend {backend})")
