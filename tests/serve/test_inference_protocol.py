"""The Open Inference Protocol routes of a real ``ssdlite serve``, spoken to by Triton's own client, ``tritonclient.http``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from serve_helpers import TRAINED, ServerProcess, as_tensor, encode, shapes_image

httpclient = pytest.importorskip("tritonclient.http", reason="tritonclient is not installed: pip install 'tritonclient[http]'")
from tritonclient.utils import InferenceServerException  # noqa: E402

MODEL = "shapes"


@pytest.fixture(scope="module")
def triton(weights, tmp_path_factory):
    server = ServerProcess(weights, tmp_path_factory.mktemp("v2") / "server.log", "--model-name", MODEL)
    try:
        server.wait_ready()
        client = httpclient.InferenceServerClient(f"127.0.0.1:{server.port}", network_timeout=120.0)
        yield client
        client.close()
    finally:
        server.stop()


def wide_image() -> np.ndarray:
    return np.repeat(shapes_image(TRAINED[1]), 2, axis=1)  # 256 x 128


def expected(predictor, image: np.ndarray, threshold: float = 0.3) -> dict[str, torch.Tensor]:
    det = predictor([as_tensor(image)])[0]
    keep = det["scores"] >= threshold
    order = det["scores"][keep].argsort(descending=True)
    return {k: v[keep][order] for k, v in det.items()}


def assert_matches(result, index: int, want: dict[str, torch.Tensor], at_least: int = 2) -> None:
    n = int(result.as_numpy("count")[index])
    assert n == len(want["scores"]) >= at_least
    torch.testing.assert_close(torch.from_numpy(result.as_numpy("boxes")[index, :n].copy()), want["boxes"], atol=2e-3, rtol=0)
    torch.testing.assert_close(torch.from_numpy(result.as_numpy("scores")[index, :n].copy()), want["scores"], atol=1e-5, rtol=0)
    assert result.as_numpy("labels")[index, :n].tolist() == want["labels"].tolist()
    assert not result.as_numpy("scores")[index, n:].any()  # rows past the count are padding


def bytes_input(*images: np.ndarray):
    tensor = httpclient.InferInput("image_bytes", [len(images)], "BYTES")
    tensor.set_data_from_numpy(np.array([encode(image) for image in images], dtype=np.object_))
    return tensor


def test_health_and_metadata(triton, predictor):
    assert triton.is_server_live() and triton.is_server_ready() and triton.is_model_ready(MODEL)
    assert not triton.is_model_ready("yolo")
    server = triton.get_server_metadata()
    assert server["name"] == "ssdlite" and "binary_tensor_data" in server["extensions"]
    meta = triton.get_model_metadata(MODEL)
    assert meta["name"] == MODEL and meta["versions"] == ["1"]
    assert {t["name"]: (t["datatype"], t["shape"]) for t in meta["inputs"]} == {"image_bytes": ("BYTES", [-1]), "images": ("FP32", [-1, 3, 128, 128])}
    assert {t["name"]: (t["datatype"], t["shape"]) for t in meta["outputs"]} == {
        "boxes": ("FP32", [-1, -1, 4]), "scores": ("FP32", [-1, -1]), "labels": ("INT64", [-1, -1]), "count": ("INT64", [-1])
    }
    assert meta["parameters"]["classes"] == predictor.classes
    with pytest.raises(InferenceServerException, match="unknown model 'yolo'"):
        triton.get_model_metadata("yolo")


def test_infer_on_raw_image_bytes_matches_the_predictor(triton, predictor):
    images = [shapes_image(TRAINED[0]), wide_image()]
    result = triton.infer(MODEL, [bytes_input(*images)], request_id="req-1")  # binary tensors both ways (the client's default)
    assert result.get_response()["id"] == "req-1"
    for index, image in enumerate(images):
        assert_matches(result, index, expected(predictor, image))  # boxes in each image's own pixels
    assert result.as_numpy("boxes")[1, :, 2].max() > 128

    # Plain JSON outputs, and the request's score_threshold.
    outputs = [httpclient.InferRequestedOutput(name, binary_data=False) for name in ("boxes", "scores", "labels", "count")]
    strict = triton.infer(MODEL, [bytes_input(images[1])], outputs=outputs, parameters={"score_threshold": 0.6})
    assert "parameters" not in strict.get_output("boxes") and isinstance(strict.get_output("boxes")["data"], list)
    assert_matches(strict, 0, expected(predictor, images[1], threshold=0.6), at_least=1)
    assert strict.as_numpy("count")[0] < result.as_numpy("count")[1]  # the threshold left some out


def test_infer_on_a_preprocessed_tensor_matches_the_predictor(triton, predictor):
    images = [shapes_image(TRAINED[0]), shapes_image(TRAINED[1])]
    batch, _ = predictor.preprocess([as_tensor(image) for image in images])  # (2, 3, 128, 128): the network's input
    for binary in (True, False):
        tensor = httpclient.InferInput("images", list(batch.shape), "FP32")
        tensor.set_data_from_numpy(batch.numpy(), binary_data=binary)
        result = triton.infer(MODEL, [tensor])
        for index, image in enumerate(images):
            assert_matches(result, index, expected(predictor, image))


def test_bad_inference_requests_are_protocol_errors(triton):
    wrong_shape = httpclient.InferInput("images", [1, 3, 64, 64], "FP32")
    wrong_shape.set_data_from_numpy(np.zeros((1, 3, 64, 64), np.float32))
    with pytest.raises(InferenceServerException, match=r"shape must be \[N, 3, 128, 128\]"):
        triton.infer(MODEL, [wrong_shape])
    not_an_image = httpclient.InferInput("image_bytes", [1], "BYTES")
    not_an_image.set_data_from_numpy(np.array([b"hello"], dtype=np.object_))
    with pytest.raises(InferenceServerException, match="not a JPEG, PNG, WebP or BMP image"):
        triton.infer(MODEL, [not_an_image])
    unknown = httpclient.InferInput("pixels", [1], "BYTES")
    unknown.set_data_from_numpy(np.array([b"x"], dtype=np.object_))
    with pytest.raises(InferenceServerException, match="unknown input 'pixels'"):
        triton.infer(MODEL, [unknown])
    with pytest.raises(InferenceServerException, match="score_threshold must be a number in"):
        triton.infer(MODEL, [bytes_input(shapes_image(TRAINED[0]))], parameters={"score_threshold": 2})
    assert triton.is_server_ready()  # and it goes on serving
