"""The API in-process (httpx's ASGI transport): the answer's schema and pixels, parameters, metadata, metrics, keys, CORS."""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest
import torch
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from serve_helpers import TRAINED, as_tensor, encode, running, shapes_image

from ssdlite.serve.app import DetectResponse, ServeSettings, create_app


def detect(app, content: bytes, params=None, headers=None, files=None):
    async def go():
        async with running(app) as client:
            if files is not None:
                return await client.post("/v1/detect", params=params, headers=headers, files=files)
            return await client.post("/v1/detect", params=params, headers=headers or {"Content-Type": "image/png"}, content=content)

    return asyncio.run(go())


def wide_image():
    """A trained image with every pixel doubled across: 256 x 128. Boxes must come back in these pixels, not the model's
    128 x 128 (the overfitted model is less sure of it than of the image itself, but still finds shapes)."""
    return np.repeat(shapes_image(TRAINED[1]), 2, axis=1)


def test_detections_are_the_predictors_in_the_uploads_pixels(predictor):
    image = wide_image()
    answer = detect(create_app(predictor), encode(image), params={"score_threshold": 0.1, "max_detections": 1000})
    assert answer.status_code == 200, answer.text
    body = DetectResponse.model_validate(answer.json())  # the documented schema, field by field
    assert (body.image.width, body.image.height) == (256, 128)
    expected = predictor([as_tensor(image)])[0]
    keep = expected["scores"] >= 0.1
    assert len(body.detections) == int(keep.sum()) >= 3
    boxes = torch.tensor([[d.box.xmin, d.box.ymin, d.box.xmax, d.box.ymax] for d in body.detections])
    torch.testing.assert_close(boxes, expected["boxes"][keep], atol=0.02, rtol=0)
    assert boxes[:, 2].max() > 128  # in the upload's 256 px width
    torch.testing.assert_close(torch.tensor([d.score for d in body.detections]), expected["scores"][keep], atol=1e-4, rtol=0)
    assert [d.class_id for d in body.detections] == expected["labels"][keep].tolist()
    assert [d.label for d in body.detections] == [predictor.classes[i - 1] for i in expected["labels"][keep].tolist()]
    assert set(answer.json()["timing_ms"]) == {"queue", "preprocess", "inference", "postprocess"}
    assert all(value >= 0 for value in answer.json()["timing_ms"].values())


def test_multipart_and_every_format_give_the_raw_bodys_answer(predictor):
    image = shapes_image(TRAINED[1])
    png = encode(image)
    raw = detect(create_app(predictor), png).json()["detections"]
    multipart = detect(create_app(predictor), b"", files={"file": ("shapes.png", png, "image/png")}).json()["detections"]
    assert multipart == raw and raw
    # Lossless formats decode to the same pixels, so to the same detections.
    for fmt, kind in (("BMP", "image/bmp"), ("WEBP", "image/webp")):
        options = {"lossless": True} if fmt == "WEBP" else {}
        answer = detect(create_app(predictor), encode(image, fmt, **options), headers={"Content-Type": kind})
        assert answer.json()["detections"] == raw, fmt
    # JPEG is lossy: its answer is the predictor's on the decoded JPEG's pixels.
    jpeg = encode(image, "JPEG", quality=95)
    answer = detect(create_app(predictor), jpeg, params={"score_threshold": 0.1}, headers={"Content-Type": "image/jpeg"})
    alone = predictor([as_tensor(np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")))])[0]
    assert answer.status_code == 200 and [d["score"] for d in answer.json()["detections"]] == pytest.approx(alone["scores"][alone["scores"] >= 0.1].tolist(), abs=1e-4)


def test_threshold_max_detections_and_classes_filter(predictor):
    png = encode(shapes_image(TRAINED[0]))
    app = create_app(predictor)
    everything = detect(app, png, params={"score_threshold": 0.0, "max_detections": 1000}).json()["detections"]
    scores = [d["score"] for d in everything]
    assert scores == sorted(scores, reverse=True) and len(everything) > 10
    confident = detect(create_app(predictor), png, params={"score_threshold": 0.5}).json()["detections"]
    assert confident == [d for d in everything if d["score"] >= 0.5]
    assert detect(create_app(predictor), png, params={"score_threshold": 0.0, "max_detections": 3}).json()["detections"] == everything[:3]
    name = confident[0]["label"]
    only = detect(create_app(predictor), png, params=[("score_threshold", "0"), ("max_detections", "1000"), ("classes", name)]).json()["detections"]
    assert only == [d for d in everything if d["label"] == name]
    two = sorted({d["label"] for d in confident})[:2]
    both = detect(create_app(predictor), png, params=[("score_threshold", "0.5"), ("classes", two[0]), ("classes", two[-1])]).json()["detections"]
    comma = detect(create_app(predictor), png, params={"score_threshold": 0.5, "classes": ",".join(two)}).json()["detections"]
    assert both == comma == [d for d in confident if d["label"] in two]


def test_metadata_openapi_and_health(predictor):
    async def go():
        async with running(create_app(predictor, ServeSettings(max_batch_size=4))) as client:
            return [await client.get(path) for path in ("/v1/metadata", "/openapi.json", "/health/live", "/health/ready")]

    metadata, openapi, live, ready = asyncio.run(go())
    meta = metadata.json()
    assert meta["classes"] == predictor.classes == ["circle", "square", "triangle", "star", "ring"]
    assert meta["input_size"] == 128 and meta["backend"] == "torch" and meta["max_batch_size"] == 4
    assert meta["model"] == predictor.config.to_dict() and meta["version"]
    schema = openapi.json()
    detect_op = schema["paths"]["/v1/detect"]["post"]
    assert {p["name"] for p in detect_op["parameters"]} == {"score_threshold", "max_detections", "classes"}
    assert {"image/png", "image/jpeg", "image/webp", "image/bmp", "multipart/form-data"} <= set(detect_op["requestBody"]["content"])
    assert set(schema["components"]["schemas"]["DetectResponse"]["properties"]) == {"image", "detections", "timing_ms"}
    assert live.json() == {"status": "live"} and ready.json() == {"status": "ready"}


def test_not_ready_until_warmed_up(predictor):
    """Before start-up has warmed the model (here: never started), ready and detect say 503 with Retry-After."""
    import httpx

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(predictor)), base_url="http://test") as client:
            return await client.get("/health/ready"), await client.post("/v1/detect", content=encode(shapes_image(0)), headers={"Content-Type": "image/png"})

    ready, detect_answer = asyncio.run(go())
    assert ready.status_code == 503 and ready.headers["retry-after"] == "1"
    assert detect_answer.status_code == 503 and detect_answer.json()["error"]["kind"] == "not_ready"


def metric_values(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_count_requests_errors_and_batches(predictor):
    async def go():
        async with running(create_app(predictor)) as client:
            png = encode(shapes_image(0))
            for _ in range(3):
                assert (await client.post("/v1/detect", content=png, headers={"Content-Type": "image/png"})).status_code == 200
            assert (await client.post("/v1/detect", content=b"", headers={"Content-Type": "image/png"})).status_code == 400
            assert (await client.post("/v1/detect", params={"score_threshold": -1}, content=png)).status_code == 422
            return await client.get("/metrics")

    answer = asyncio.run(go())
    assert answer.headers["content-type"].startswith("text/plain")
    values = metric_values(answer.text)
    assert values[("ssdlite_requests_total", (("endpoint", "/v1/detect"), ("status", "200")))] == 3
    assert values[("ssdlite_requests_total", (("endpoint", "/v1/detect"), ("status", "400")))] == 1
    assert values[("ssdlite_errors_total", (("kind", "empty_body"),))] == 1
    assert values[("ssdlite_errors_total", (("kind", "invalid_parameter"),))] == 1
    assert values[("ssdlite_batch_size_count", ())] == 3  # one model call per request: they came one at a time
    assert values[("ssdlite_request_latency_seconds_count", ())] == 5


def test_api_key_protects_the_api_but_not_health_or_page(predictor):
    app = create_app(predictor, ServeSettings(api_key="s3cret"))

    async def go():
        async with running(app) as client:
            png = encode(shapes_image(0))
            return {
                "no key": (await client.post("/v1/detect", content=png)).status_code,
                "wrong": (await client.post("/v1/detect", content=png, headers={"Authorization": "Bearer s3creT"})).status_code,
                "not bearer": (await client.get("/v1/metadata", headers={"Authorization": "Basic s3cret"})).status_code,
                "metrics": (await client.get("/metrics")).status_code,
                "right": (await client.post("/v1/detect", content=png, headers={"Authorization": "Bearer s3cret", "Content-Type": "image/png"})).status_code,
                "metadata": (await client.get("/v1/metadata", headers={"Authorization": "Bearer s3cret"})).status_code,
                "ready": (await client.get("/health/ready")).status_code,
                "page": (await client.get("/")).status_code,
            }

    assert asyncio.run(go()) == {"no key": 401, "wrong": 401, "not bearer": 401, "metrics": 401, "right": 200, "metadata": 200, "ready": 200, "page": 200}


@pytest.mark.parametrize("origins", [(), ("http://localhost:3000",)])
def test_cors_only_for_the_given_origins(predictor, origins):
    async def go():
        async with running(create_app(predictor, ServeSettings(cors_origins=origins))) as client:
            headers = {"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST"}
            return await client.options("/v1/detect", headers=headers), await client.get("/v1/metadata", headers={"Origin": "http://evil.example"})

    preflight, other = asyncio.run(go())
    assert ("access-control-allow-origin" in preflight.headers) == bool(origins)
    if origins:
        assert preflight.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert "access-control-allow-origin" not in other.headers  # never for an origin that was not given


class FailsOnce:
    """The predictor, except that its first call after the warm-up raises (a model failure inside a request)."""

    def __init__(self, predictor, warm_up_calls: int = 2) -> None:
        self.predictor, self.calls, self.fail_at = predictor, 0, warm_up_calls + 1

    def __getattr__(self, name):
        return getattr(self.predictor, name)

    def __call__(self, images):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("out of memory (simulated)")
        return self.predictor(images)


def test_a_model_failure_is_a_json_500_and_the_service_goes_on(predictor):
    async def go():
        async with running(create_app(FailsOnce(predictor))) as client:
            png = encode(shapes_image(TRAINED[0]))
            send = lambda: client.post("/v1/detect", content=png, headers={"Content-Type": "image/png"})  # noqa: E731
            return await send(), await send()

    failed, after = asyncio.run(go())
    assert failed.status_code == 500
    assert failed.json()["error"] == {"status": 500, "kind": "internal_error", "message": "the service failed on this request (RuntimeError); it is still running"}
    assert after.status_code == 200 and after.json()["detections"]
