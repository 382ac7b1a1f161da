"""Make the golden exports of tests/deploy/test_golden.py: a tiny deterministic model exported to every runtime by
the code of the day, and the detections that code's backends give on three fixed synthetic images.

Run once, from the repository root, with the code whose files later code must keep reading:
    PYTHONPATH=src:tests/deploy python tests/deploy/golden/make_golden.py
Rerunning it with newer code would make the test compare the new code with itself: do not, unless a file format
changes on purpose (then say so in the commit).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from deploy_helpers import CLASSES, varied_model

from ssdlite.deploy.predictor import Predictor
from ssdlite.deploy.torchscript import load_torchscript
from ssdlite.models.io import save_safetensors

HERE = Path(__file__).parent
SIZE = 64
SCORE_THRESHOLD = 0.05
KEEP = 0.05  # of the weights of each tensor above 4096 entries (the extras, fixed in width, are 87% of the model)


def golden_model():
    """:func:`varied_model` at its smallest (MobileNetV3-small x0.1, 64 px: 465k parameters, fixed by the extras),
    with every convolution's weights made ternary, ``{-s, 0, s}`` (``s`` keeps the tensor's scale), and those of
    the large tensors 95% zero: the detections stay varied while each exported file compresses ~20x in git."""
    model = varied_model(seed=3, arch="mobilenet_v3_small", size=SIZE, width_mult=0.1)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for conv in model.core.modules():
            if isinstance(conv, torch.nn.Conv2d):
                w = conv.weight
                keep = KEEP if w.numel() > 4096 else 1.0
                mask = (torch.rand(w.shape, generator=g) < keep).float()
                w.copy_(w.sign() * w.std() * mask / keep**0.5)
    return model


def golden_images() -> list[torch.Tensor]:
    """Three uint8 (3, H, W) images of different sizes and aspect ratios, from a fixed seed."""
    g = torch.Generator().manual_seed(32)
    return [(torch.rand(3, h, w, generator=g) * 255).to(torch.uint8) for h, w in ((64, 64), (48, 80), (90, 60))]


def as_json(detections: list[dict[str, torch.Tensor]]) -> list[dict[str, list]]:
    return [{"boxes": d["boxes"].tolist(), "scores": d["scores"].tolist(), "labels": d["labels"].tolist()} for d in detections]


def torchscript_detections(path, images) -> list[dict[str, torch.Tensor]]:
    """The TorchScript file's core, with the preprocess and postprocess of the config it carries around it."""
    from ssdlite.models.config import ModelConfig
    from ssdlite.models.factory import build_model

    module, info = load_torchscript(path)
    model = build_model(ModelConfig.from_dict(info["config"], str(path)), load_backbone=False).eval()
    with torch.no_grad():
        x, sizes = model.preprocess(images)
        return model.postprocess(*module(x), sizes)


def main() -> None:
    from ssdlite.cli import main as cli

    model = golden_model()
    weights = HERE / "model.safetensors"
    save_safetensors(model, weights, classes=CLASSES)
    files = {
        "onnxruntime": ("model_raw.onnx", []),
        "onnxruntime-nms": ("model_nms.onnx", ["--with-nms"]),
        "torchscript": ("model.torchscript", []),
        "executorch": ("model.pte", []),
        "tflite": ("model.tflite", []),
        "openvino": ("model.xml", []),
    }
    for key, (name, extra) in files.items():
        fmt = {"onnxruntime": "onnx", "onnxruntime-nms": "onnx"}.get(key, key)
        assert cli(["export", "--weights", str(weights), "--format", fmt, "--out", str(HERE / name), *extra]) == 0
    images = golden_images()
    expected = {}
    for backend, name in (("torch", "model.safetensors"), ("onnxruntime", "model_raw.onnx"), ("onnxruntime", "model_nms.onnx"),
                          ("executorch", "model.pte"), ("tflite", "model.tflite"), ("openvino", "model.xml")):
        predictor = Predictor(HERE / name, backend=backend, score_threshold=SCORE_THRESHOLD, batch_size=2)
        expected[name] = {"backend": backend, "detections": as_json(predictor(images))}
    expected["model.torchscript"] = {"backend": "torchscript", "detections": as_json(torchscript_detections(HERE / "model.torchscript", images))}
    (HERE / "detections.json").write_text(json.dumps({"score_threshold": SCORE_THRESHOLD, "files": expected}, indent=1) + "\n")


if __name__ == "__main__":
    main()
