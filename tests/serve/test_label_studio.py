"""Label Studio's ML backend routes, in-process, with the requests Label Studio 1.2x sends replayed.

The request bodies follow Label Studio's ``ml/api_connector.py`` (``setup``: project uid, the labelling
config as ``schema``, its hostname and a token; ``make_predictions``: the tasks as Label Studio serializes
them, ``model_version``, project uid, ``label_config``, ``params``) and the answers what
``label_studio_ml/api.py`` of the official backend returns.
"""

from __future__ import annotations

import asyncio
import base64
import http.server
import logging
import threading

import numpy as np
import pytest
import torch
from serve_helpers import TRAINED, as_tensor, encode, running, shapes_image

from ssdlite.serve.app import ServeSettings, create_app

#: A labelling config as Label Studio's "Object Detection with Bounding Boxes" template writes it, with labels that
#: map to the model's classes in each of the three ways (case-insensitive name, predicted_values, exact name), one
#: label the model does not know, and two model classes (star, ring) that no label takes.
LABEL_CONFIG = """<View>
  <Image name="image" value="$image" zoom="true"/>
  <RectangleLabels name="label" toName="image">
    <Label value="Circle" background="#FF0000"/>
    <Label value="Box" background="#0000FF" predicted_values="square"/>
    <Label value="triangle" background="#00FF00"/>
    <Label value="Hexagon" background="#FFA500"/>
  </RectangleLabels>
</View>"""
LS_NAMES = {1: "Circle", 2: "Box", 3: "triangle"}  # model label -> the config's label; 4 (star) and 5 (ring) unmapped
PROJECT = "3.1765000000"  # Label Studio's project uid: "{id}.{created_at timestamp}"
API_KEY = "ls-backend-key"


def setup_request(config: str = LABEL_CONFIG) -> dict:
    return {"project": PROJECT, "schema": config, "hostname": "http://localhost:8080", "access_token": "0123456789abcdef", "model_version": None, "extra_params": None}


def task(task_id: int, image) -> dict:
    """A task as Label Studio serializes it for the backend."""
    return {
        "id": task_id,
        "data": {"image": image} if image is not None else {"text": "no image here"},
        "meta": {},
        "created_at": "2026-12-06T19:00:00.000000Z",
        "updated_at": "2026-12-06T19:00:00.000000Z",
        "is_labeled": False,
        "overlap": 1,
        "inner_id": task_id,
        "total_annotations": 0,
        "cancelled_annotations": 0,
        "total_predictions": 0,
        "comment_count": 0,
        "unresolved_comment_count": 0,
        "last_comment_updated_at": None,
        "project": 3,
        "updated_by": None,
        "file_upload": task_id,
        "comment_authors": [],
        "annotations": [],
        "predictions": [],
    }


def predict_request(tasks: list[dict], config: str | None = LABEL_CONFIG) -> dict:
    body = {"tasks": tasks, "model_version": None, "project": PROJECT, "params": {"login": None, "password": None, "context": None}}
    return body | ({"label_config": config} if config is not None else {})


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def wide_image() -> np.ndarray:
    """256 x 128: percentages of width and height differ from the pixels' by different factors."""
    return np.repeat(shapes_image(TRAINED[1]), 2, axis=1)


def exchange(app, *calls, headers=None):
    """Send ``(method, path, json)`` calls to ``app`` in turn; their answers."""

    async def go():
        async with running(app) as client:
            return [await client.request(method, path, json=body, headers=headers) for method, path, body in calls]

    return asyncio.run(go())


def expected_regions(predictor, image: np.ndarray, threshold: float = 0.3) -> list[dict]:
    """The predictor's detections on ``image`` as the regions the backend must answer, best first."""
    det = predictor([as_tensor(image)])[0]
    keep = (det["scores"] >= threshold) & torch.isin(det["labels"], torch.tensor(list(LS_NAMES)))
    order = det["scores"][keep].argsort(descending=True)
    height, width = image.shape[:2]
    out = []
    for (x1, y1, x2, y2), score, label in zip(det["boxes"][keep][order].tolist(), det["scores"][keep][order].tolist(), det["labels"][keep][order].tolist()):
        out.append({"x": x1 / width * 100, "y": y1 / height * 100, "width": (x2 - x1) / width * 100, "height": (y2 - y1) / height * 100, "label": LS_NAMES[label], "score": score})
    return out


def assert_regions(result: list[dict], expected: list[dict], size: tuple[int, int]) -> None:
    assert len(result) == len(expected) >= 2
    for region, want in zip(result, expected):
        assert region["from_name"] == "label" and region["to_name"] == "image" and region["type"] == "rectanglelabels"
        assert (region["original_width"], region["original_height"]) == size
        value = region["value"]
        assert value["rectanglelabels"] == [want["label"]] and value["rotation"] == 0
        for key in ("x", "y", "width", "height"):
            assert value[key] == pytest.approx(want[key], abs=1e-3), key
        assert region["score"] == pytest.approx(want["score"], abs=1e-5)


def test_setup_then_predict_answers_percent_boxes_mapped_by_name(predictor, caplog):
    image = wide_image()
    app = create_app(predictor)
    with caplog.at_level(logging.WARNING, logger="uvicorn.error"):
        health, setup, first, second = exchange(
            app,
            ("GET", "/health", None),
            ("POST", "/setup", setup_request()),
            ("POST", "/predict", predict_request([task(7, data_url(encode(image))), task(8, data_url(encode(shapes_image(TRAINED[0]))))])),
            ("POST", "/predict", predict_request([task(9, data_url(encode(image)))])),
        )
    assert health.status_code == 200 and health.json()["status"] == "UP" and health.json()["model_class"] == "ssdlite"
    assert setup.status_code == 200, setup.text
    version = setup.json()["model_version"]
    assert version.startswith("ssdlite-model-") and version == health.json()["model_version"]

    assert first.status_code == 200, first.text
    results = first.json()["results"]
    assert len(results) == 2  # one per task, in order
    expected = expected_regions(predictor, image)
    assert {r["label"] for r in expected} <= set(LS_NAMES.values())
    assert_regions(results[0]["result"], expected, (256, 128))
    assert_regions(results[1]["result"], expected_regions(predictor, shapes_image(TRAINED[0])), (128, 128))
    assert results[0]["model_version"] == version
    assert results[0]["score"] == pytest.approx(sum(r["score"] for r in expected) / len(expected), abs=1e-5)
    assert_regions(second.json()["results"][0]["result"], expected, (256, 128))  # alone in its batch this time

    # The unmatched label is reported once, though three requests carried the config.
    reports = [r.getMessage() for r in caplog.records if "match no model class" in r.getMessage()]
    assert len(reports) == 1 and "'Hexagon'" in reports[0]


def test_predict_without_label_config_uses_the_projects_setup(predictor):
    png = encode(shapes_image(TRAINED[0]))
    setup, answer = exchange(create_app(predictor), ("POST", "/setup", setup_request()), ("POST", "/predict", predict_request([task(1, data_url(png))], config=None)))
    assert setup.status_code == 200 and answer.status_code == 200, answer.text
    assert_regions(answer.json()["results"][0]["result"], expected_regions(predictor, shapes_image(TRAINED[0])), (128, 128))


def test_local_files_under_the_root_only(predictor, tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a b.png").write_bytes(encode(shapes_image(TRAINED[0])))
    (tmp_path.parent / "outside.png").write_bytes(encode(shapes_image(TRAINED[0])))
    app = create_app(predictor, ServeSettings(local_files_root=str(tmp_path)))
    answers = exchange(
        app,
        ("POST", "/predict", predict_request([task(1, "/data/local-files/?d=images/a%20b.png"), task(2, "images/a b.png"), task(3, str(tmp_path / "images" / "a b.png"))])),
        ("POST", "/predict", predict_request([task(4, "images/missing.png")])),
        ("POST", "/predict", predict_request([task(5, "../outside.png")])),
        ("POST", "/predict", predict_request([task(6, "/data/local-files/?d=../outside.png")])),
    )
    ok, missing, outside, outside_ls = (a.json() for a in answers)
    results = [r["result"] for r in ok["results"]]
    assert results[0] == results[1] == results[2] and results[0]
    assert_regions(results[0], expected_regions(predictor, shapes_image(TRAINED[0])), (128, 128))
    assert [a.status_code for a in answers[1:]] == [404, 403, 403]
    assert missing["error"]["kind"] == "image_not_found" and missing["error"]["message"].startswith("task 4: 'images/missing.png': no such file")
    assert outside["error"]["kind"] == outside_ls["error"]["kind"] == "path_not_allowed"
    assert "task 5" in outside["error"]["message"] and "outside --local-files-root" in outside["error"]["message"]


class FakeLabelStudio(http.server.BaseHTTPRequestHandler):
    """Label Studio's file serving: /data/upload/3/shapes.png with 'Authorization: Token KEY', /moved redirects away."""

    png = b""

    def do_GET(self):
        if self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.end_headers()
        elif self.headers.get("Authorization") != "Token ls-token":
            self.send_response(401)
            self.end_headers()
        elif self.path == "/data/upload/3/shapes.png":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(self.png)))
            self.end_headers()
            self.wfile.write(self.png)
        else:
            self.send_response(404)
            self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def label_studio():
    FakeLabelStudio.png = encode(shapes_image(TRAINED[0]))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeLabelStudio)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_images_from_the_label_studio_host_only(predictor, label_studio):
    url = f"{label_studio}/data/upload/3/shapes.png"
    settings = ServeSettings(label_studio_url=label_studio, label_studio_api_key="ls-token")
    answers = exchange(
        create_app(predictor, settings),
        ("POST", "/predict", predict_request([task(1, "/data/upload/3/shapes.png"), task(2, url)])),
        ("POST", "/predict", predict_request([task(3, "http://example.com/data/upload/3/shapes.png")])),
        ("POST", "/predict", predict_request([task(4, f"{label_studio}/moved")])),
        ("POST", "/predict", predict_request([task(5, "s3://bucket/shapes.png")])),
    )
    ok, other_host, redirect, cloud = answers
    assert ok.status_code == 200, ok.text
    relative, absolute = (r["result"] for r in ok.json()["results"])
    assert relative == absolute
    assert_regions(relative, expected_regions(predictor, shapes_image(TRAINED[0])), (128, 128))
    assert other_host.status_code == 403 and other_host.json()["error"]["kind"] == "url_not_allowed"
    assert other_host.json()["error"]["message"].startswith("task 3: image URL host 'example.com' is not the Label Studio URL")
    assert redirect.status_code == 502 and "redirect, not followed" in redirect.json()["error"]["message"]
    assert cloud.status_code == 400 and cloud.json()["error"]["kind"] == "unsupported_url"

    wrong_key = exchange(create_app(predictor, ServeSettings(label_studio_url=label_studio, label_studio_api_key="nope")), ("POST", "/predict", predict_request([task(6, url)])))[0]
    assert wrong_key.status_code == 502 and "API key was refused" in wrong_key.json()["error"]["message"]
    # Without --label-studio-url nothing is fetched, even from loopback.
    unconfigured = exchange(create_app(predictor), ("POST", "/predict", predict_request([task(7, url), task(8, "/data/upload/3/shapes.png")])))[0]
    assert unconfigured.status_code == 403 and unconfigured.json()["error"]["kind"] == "url_not_allowed"


BILLION_LAUGHS = '<?xml version="1.0"?><!DOCTYPE v [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]><View>&b;</View>'


def test_bad_tasks_and_configs_are_clean_json_errors(predictor):
    png = data_url(encode(shapes_image(TRAINED[0])))
    no_boxes = '<View><Image name="image" value="$image"/><Choices name="c" toName="image"><Choice value="x"/></Choices></View>'
    answers = exchange(
        create_app(predictor),
        ("POST", "/predict", predict_request([task(1, png), task(2, None)])),
        ("POST", "/predict", predict_request([task(3, png)], config=no_boxes)),
        ("POST", "/setup", setup_request("<View><Image name=")),
        ("POST", "/setup", setup_request(BILLION_LAUGHS)),
        ("POST", "/predict", {"tasks": "not a list", "label_config": LABEL_CONFIG}),
        ("POST", "/predict", predict_request([task(4, "data:image/png;base64,!!!")])),
        ("POST", "/predict", predict_request([task(5, "data:image/png;base64," + base64.b64encode(b"not an image").decode())])),
        ("POST", "/predict", predict_request([task(6, "images/a.png")])),
    )
    expected = [
        (400, "bad_task", "task 2: its data has no image 'image'"),
        (422, "bad_label_config", "the labelling config has no <RectangleLabels> on an <Image>"),
        (422, "bad_label_config", "the labelling config is not XML"),
        (422, "bad_label_config", "the labelling config is refused"),
        (400, "bad_task", "'tasks' must be a list"),
        (400, "bad_task", "task 4: the data: URL is not valid base64"),
        (400, "not_an_image", "task 5: the body is not a JPEG"),
        (403, "path_not_allowed", "task 6: the task names a file ('images/a.png') but ssdlite serve reads no files"),
    ]
    for answer, (status, kind, start) in zip(answers, expected, strict=True):
        assert answer.status_code == status, answer.text
        error = answer.json()["error"]
        assert error["kind"] == kind and error["message"].startswith(start), error


def test_api_key_by_bearer_or_basic_and_health_stays_open(predictor):
    app = create_app(predictor, ServeSettings(api_key=API_KEY))
    body = predict_request([task(1, data_url(encode(shapes_image(TRAINED[0]))))])
    basic = "Basic " + base64.b64encode(f"labelstudio:{API_KEY}".encode()).decode()
    wrong = "Basic " + base64.b64encode(b"labelstudio:guess").decode()

    async def go():
        async with running(app) as client:
            return {
                "health": (await client.get("/health")).status_code,
                "none": (await client.post("/predict", json=body)).status_code,
                "wrong": (await client.post("/predict", json=body, headers={"Authorization": wrong})).status_code,
                "basic": (await client.post("/predict", json=body, headers={"Authorization": basic})).status_code,
                "bearer": (await client.post("/predict", json=body, headers={"Authorization": f"Bearer {API_KEY}"})).status_code,
                "setup": (await client.post("/setup", json=setup_request())).status_code,
                "v1 refuses basic": (await client.get("/v1/metadata", headers={"Authorization": basic})).status_code,
            }

    assert asyncio.run(go()) == {"health": 200, "none": 401, "wrong": 401, "basic": 200, "bearer": 200, "setup": 401, "v1 refuses basic": 401}


def test_cli_refuses_a_label_studio_url_that_is_not_http_and_a_missing_root(weights, capsys):
    from ssdlite.cli import main

    assert main(["serve", "--weights", str(weights), "--label-studio-url", "localhost:8080", "--local-files-root", "/no/such/dir"]) == 2
    assert capsys.readouterr().err.strip() == (
        "ssdlite serve: error: --label-studio-url must be an http(s) URL, got localhost:8080; --local-files-root must be a folder, got /no/such/dir"
    )
