"""OpenCV's DNN module (``cv2.dnn.readNetFromONNX``, OpenCV 5.x) runs both ONNX exports as onnxruntime does.

OpenCV is where many C++ and embedded apps run an ONNX detector, so the test loads the files as such an app
would: ``readNetFromONNX``, ``setInput`` by name, ``forward`` of every output; the input blob made with
``cv2.dnn.blobFromImageWithParams`` from the file's own metadata (the recipe in docs/deploy.md). OpenCV 4.x
is not supported (measured with 4.x: it computes the raw export's 1x1 level wrong and cannot load the NMS
export's GatherND); the test skips on it, saying so.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ssdlite.deploy.compare import compare_detections
from ssdlite.deploy.onnx_postprocess import NMS_OUTPUTS, detections_from_padded
from ssdlite.deploy.onnx_runtime import make_session
from ssdlite.deploy.samples import sample_images

cv2 = pytest.importorskip("cv2", reason="needs opencv-python-headless 5.x (the test extra)")
if int(cv2.__version__.split(".")[0]) < 5:
    pytest.skip(f"OpenCV {cv2.__version__}: ssdlite's ONNX files need OpenCV 5.x (4.x mis-runs them)", allow_module_level=True)

EXACT = {"min_iou": 0.999, "score_tol": 1e-5}


def _forward(path, x: np.ndarray) -> dict[str, np.ndarray]:
    """What an OpenCV app does with the file: every output by name, for one input blob ``x (N, 3, S, S)``."""
    net = cv2.dnn.readNetFromONNX(str(path))
    names = list(net.getUnconnectedOutLayersNames())
    net.setInput(x, "images")
    return dict(zip(names, net.forward(names)))


def _metadata(path) -> dict[str, str]:
    return make_session(path).get_modelmeta().custom_metadata_map


def test_blob_from_the_files_metadata_is_ssdlites_preprocess(onnx_raw, model):
    """docs/deploy.md's recipe: mean and 1/std scaled to 0..255, both in RGB order with ``swapRB`` (the image is BGR)."""
    path, _ = onnx_raw
    meta = _metadata(path)
    size, mean, std = int(meta["input_size"]), json.loads(meta["image_mean"]), json.loads(meta["image_std"])
    rgb = sample_images(1, size, size, seed=3)[0]  # (3, S, S) uint8: at the input size, so no resize differs
    bgr = np.ascontiguousarray(rgb.permute(1, 2, 0).numpy()[..., ::-1])  # (S, S, 3), as cv2.imread gives it
    params = cv2.dnn.Image2BlobParams(
        scalefactor=tuple(1 / (255 * s) for s in std), size=(size, size), mean=tuple(255 * m for m in mean),
        swapRB=True, ddepth=cv2.CV_32F,
    )
    blob = cv2.dnn.blobFromImageWithParams(bgr, params)  # (1, 3, S, S)
    expected, _ = model.preprocess([rgb])
    assert blob.shape == tuple(expected.shape)
    assert np.abs(blob - expected.numpy()).max() < 1e-5


@pytest.mark.parametrize("n", [1, 3])
def test_opencv_runs_the_raw_export_like_onnxruntime(onnx_raw, model, n):
    path, _ = onnx_raw
    images = sample_images(n, 150, 200, seed=21)
    x, sizes = model.preprocess(images)
    got = _forward(path, x.numpy())
    session = make_session(path)
    reference = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"images": x.numpy()})))
    assert set(got) == set(reference) == {"cls_logits", "bbox_deltas"}
    for name, value in reference.items():
        assert got[name].shape == value.shape and np.abs(got[name] - value).max() < 1e-4, name
    # The app's detections: ssdlite's postprocess (its settings are in the file's ssdlite_config) on OpenCV's outputs.
    with torch.no_grad():
        detections = model.postprocess(torch.from_numpy(got["cls_logits"]), torch.from_numpy(got["bbox_deltas"]), sizes)
        expected = model(images)
    assert sum(len(d["scores"]) for d in expected) > 0
    comparison = compare_detections(expected, detections, min_iou=0.99, score_tol=1e-4)
    assert comparison.ok, comparison.problems


@pytest.mark.parametrize("n", [1, 3])
def test_opencv_runs_the_nms_export_with_the_same_detections(onnx_nms, model, n):
    images = sample_images(n, 150, 200, seed=22)
    x, sizes = model.preprocess(images)
    got = _forward(onnx_nms, x.numpy())
    assert set(got) == set(NMS_OUTPUTS)
    detections = detections_from_padded(*(got[k] for k in NMS_OUTPUTS), sizes)
    with torch.no_grad():
        expected = model(images)
    assert sum(len(d["scores"]) for d in expected) > 0
    comparison = compare_detections(expected, detections, **EXACT)
    assert comparison.ok, comparison.problems
    assert comparison.detections == sum(len(d["scores"]) for d in expected)
