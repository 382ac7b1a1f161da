"""Shared models and exports of the deployment tests (an ONNX export takes seconds: each is made once per session)."""

from __future__ import annotations

import pytest
from deploy_helpers import CLASSES, varied_model

from ssdlite.models.io import save_safetensors


@pytest.fixture(scope="session")
def model():
    return varied_model()


@pytest.fixture(scope="session")
def weights(tmp_path_factory, model):
    path = tmp_path_factory.mktemp("weights") / "model.safetensors"
    save_safetensors(model, path, classes=CLASSES)
    return path


@pytest.fixture(scope="session")
def onnx_raw(tmp_path_factory, model):
    from ssdlite.deploy.onnx_export import export_onnx

    path = tmp_path_factory.mktemp("onnx") / "raw.onnx"
    report = export_onnx(model, path, CLASSES, with_nms=False, dynamic_batch=True)
    return path, report


@pytest.fixture(scope="session")
def onnx_nms(tmp_path_factory, weights):
    """Exported through the command line, as a user would."""
    from ssdlite.cli import main

    path = tmp_path_factory.mktemp("onnx") / "nms.onnx"
    code = main(["export", "--weights", str(weights), "--out", str(path), "--with-nms", "--dynamic-batch"])
    assert code == 0
    return path
