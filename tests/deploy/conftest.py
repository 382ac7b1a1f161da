"""Shared models and exports of the deployment tests (an ONNX export takes seconds: each is made once per session)."""

from __future__ import annotations

import pytest
from deploy_helpers import CLASSES, RUNTIMES, skip_without, varied_model, weights_file


@pytest.fixture(scope="session")
def model():
    return varied_model()


@pytest.fixture(scope="session")
def weights(tmp_path_factory, model):
    return weights_file(model, tmp_path_factory.mktemp("weights"))


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


@pytest.fixture(scope="session")
def export_once(tmp_path_factory, weights):
    """``export_once(runtime)``: the runtime's fp32 file, exported through the command line as a user would, once
    per session (an ExecuTorch or LiteRT export takes about a minute here)."""
    from ssdlite.cli import main

    files = {}

    def export(runtime: str):
        skip_without(runtime)
        if runtime not in files:
            path = tmp_path_factory.mktemp(runtime) / f"model{RUNTIMES[runtime][1]}"
            code = main(["export", "--weights", str(weights), "--format", runtime, "--out", str(path)])
            assert code == 0 and path.is_file()
            files[runtime] = path
        return files[runtime]

    return export
