"""Bad input never takes the service down: each gets its JSON error and status, and a good request still succeeds."""

from __future__ import annotations

import asyncio

import pytest
from serve_helpers import API_KEY, MAX_BODY_MB, TRAINED, bad_requests, encode, running, shapes_image

from ssdlite.serve.app import ServeSettings, create_app

CASES = bad_requests()


@pytest.fixture(scope="module")
def answers(predictor):
    """Every bad request, each followed by a good one, against one app (so the good ones prove it survived them all)."""
    app = create_app(predictor, ServeSettings(api_key=API_KEY, max_body_mb=MAX_BODY_MB))
    good = {"content": encode(shapes_image(TRAINED[0])), "headers": {"Content-Type": "image/png", "Authorization": f"Bearer {API_KEY}"}}

    async def go():
        async with running(app) as client:
            results = {}
            for case in CASES:
                bad = await client.request("POST", case.path, **case.send_arguments())
                results[case.name] = (bad, await client.post("/v1/detect", **good))

            async def chunks():  # a body without Content-Length: the limit must hold while it streams in
                for _ in range(int(MAX_BODY_MB * 4) + 1):
                    yield b"\x89PNG\r\n\x1a\n" + b"\x00" * 2**18

            streamed = await client.post("/v1/detect", content=chunks(), headers=good["headers"])
            results["streamed body over the limit"] = (streamed, await client.post("/v1/detect", **good))
            return results

    return asyncio.run(go())


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_gets_its_json_error_and_the_next_good_request_succeeds(answers, case):
    bad, good = answers[case.name]
    assert bad.status_code == case.status, bad.text
    error = bad.json()["error"]
    assert error["status"] == case.status and error["kind"] == case.kind and error["message"]
    if case.status == 401:
        assert bad.headers["www-authenticate"] == "Bearer"
    assert good.status_code == 200 and good.json()["detections"]


def test_a_streamed_body_over_the_limit_is_refused(answers):
    bad, good = answers["streamed body over the limit"]
    assert "content-length" not in bad.request.headers
    assert bad.status_code == 413 and bad.json()["error"]["kind"] == "body_too_large"
    assert good.status_code == 200
