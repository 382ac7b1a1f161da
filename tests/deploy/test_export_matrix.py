"""Every model ``ssdlite train`` can produce exports to every runtime, fp32 and INT8, and each export verifies.

The combinations: the architectures, heads and necks the training recipe (:mod:`ssdlite.engine.recipe`) and the
model defaults (:mod:`ssdlite.models.config`) lead to. The recipe adds ``residual_fpn`` with the stride-8 level when
small boxes are common (BCCD); the head is the architecture's default (``lite``; vgg16 takes none of these: no
neck, SSD's 3x3 heads); ``fpn`` is the neck a user can ask for. Each model is tiny (width 0.35, input 96: levels
12, 6, 3, 2, 1, 1, 1 with stride 8, so the FPN upsamples 2 -> 3, a ratio that is not whole) with seeded,
varied weights, saved as a weights file and exported through ``ssdlite export`` itself, which writes nothing unless
the runtime's file gives PyTorch's detections (fp32) or loads and runs (INT8, compared and reported).

By default the two exports of the recipe's small-object model that failed before run (LiteRT fp32: its resize
rounded the upsampling differently; ExecuTorch INT8: XNNPACK refused a convolution): 232 CPU-seconds together, most
of it ExecuTorch's INT8 lowering (measured on the 2-core development machine under heavy load; 21 minutes of wall
time there). Every other case, 43 exports of several seconds to minutes each, is marked ``slow``: ``-m slow`` runs
them (``-m "slow or not slow"`` the whole matrix).
"""

from __future__ import annotations

import importlib.util

import pytest
from deploy_helpers import CLASSES, varied_model, write_images

from ssdlite.cli import main
from ssdlite.models.io import save_safetensors

SIZE = 96
#: name -> model settings (beyond the architecture's defaults)
MODELS = {
    "mobilenet_v2": {"arch": "mobilenet_v2"},  # the default: SSDLite heads, no neck
    "mobilenet_v2-residual_fpn-stride8": {"arch": "mobilenet_v2", "neck": "residual_fpn", "fpn_stride8": True},  # the recipe, small boxes
    "mobilenet_v2-fpn": {"arch": "mobilenet_v2", "neck": "fpn"},
    "mobilenet_v3_large-residual_fpn-stride8": {"arch": "mobilenet_v3_large", "neck": "residual_fpn", "fpn_stride8": True},
    "mobilenet_v1-residual_fpn-stride8": {"arch": "mobilenet_v1", "neck": "residual_fpn", "fpn_stride8": True},
}
#: export -> (--format, its other flags, file suffix, the package it needs, that package's extra, whether it has --int8)
FORMATS = {
    "onnx": ("onnx", [], ".onnx", "onnxruntime", "export", False),
    "onnx-nms": ("onnx", ["--with-nms"], ".onnx", "onnxruntime", "export", False),
    "torchscript": ("torchscript", [], ".pt", "torch", "", False),
    "executorch": ("executorch", [], ".pte", "executorch", "executorch", True),
    "tflite": ("tflite", [], ".tflite", "litert_torch", "tflite", True),
    "openvino": ("openvino", [], ".xml", "openvino", "openvino", True),
}
#: The default run: the exports of the recipe's small-object model that this matrix first found failing.
DEFAULT = {("mobilenet_v2-residual_fpn-stride8", "tflite", False), ("mobilenet_v2-residual_fpn-stride8", "executorch", True)}


def _cases():
    for name in MODELS:
        for fmt, (*_, has_int8) in FORMATS.items():
            for int8 in (False, True) if has_int8 else (False,):
                marks = () if (name, fmt, int8) in DEFAULT else (pytest.mark.slow,)
                yield pytest.param(name, fmt, int8, marks=marks, id=f"{name}-{fmt}{'-int8' if int8 else ''}")


@pytest.fixture(autouse=True)
def _slow_only_when_asked(request):
    if request.node.get_closest_marker("slow") and "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("part of the full export matrix: run it with -m slow")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """``weights(name)``: the model's ``.safetensors`` file, written once per module."""
    files = {}

    def get(name: str):
        if name not in files:
            path = tmp_path_factory.mktemp("weights") / f"{name}.safetensors"
            save_safetensors(varied_model(size=SIZE, **MODELS[name]), path, classes=CLASSES)
            files[name] = path
        return files[name]

    return get


@pytest.fixture(scope="module")
def calibration(tmp_path_factory):
    return write_images(tmp_path_factory.mktemp("calib"), 4, seed=3)[0].parent


@pytest.mark.parametrize("name, fmt, int8", list(_cases()))
def test_the_model_exports_and_verifies(name, fmt, int8, weights, calibration, tmp_path):
    runtime, flags, suffix, package, extra, _ = FORMATS[fmt]
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"needs the '{package}' package: pip install 'ssdlite[{extra}]'")
    out = tmp_path / f"model{suffix}"
    flags = flags + (["--int8", "--calib", str(calibration)] if int8 else [])
    assert main(["export", "--weights", str(weights(name)), "--format", runtime, "--out", str(out), *flags]) == 0
    assert out.is_file()
