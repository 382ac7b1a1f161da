"""The real server: ``ssdlite serve`` as a subprocess on a loopback port, driven by headless Chromium and stopped by SIGTERM."""

from __future__ import annotations

import re
import shutil
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from serve_helpers import TRAINED, ServerProcess, encode, shapes_image

from ssdlite.cli import main
from ssdlite.serve import require_serve_extra

#: Headless Chromium on a machine without a display, a GPU or a network, with a fresh profile.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PNG = {"Content-Type": "image/png"}


@pytest.fixture
def server(weights, tmp_path):
    process = ServerProcess(weights, tmp_path / "server.log")
    yield process
    process.stop()


def test_the_page_draws_as_many_boxes_as_the_api_returns(server, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (make test installs it: apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    server.wait_ready()
    image = tmp_path / "shapes.png"
    image.write_bytes(encode(shapes_image(TRAINED[0])))
    detections = httpx.post(f"{server.url}/v1/detect", content=image.read_bytes(), headers=PNG).json()["detections"]
    assert len(detections) >= 3  # at the default threshold 0.3, what the page shows first

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=chromium, headless=True, args=CHROMIUM_FLAGS, viewport={"width": 900, "height": 640}
        )
        try:
            page = browser.new_page()
            problems, requested = [], []
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
            page.on("request", lambda request: requested.append(request.url))
            page.goto(f"{server.url}/")
            # Locator assertions, not wait_for_function: the page's Content-Security-Policy forbids the eval() that uses.
            expect(page.locator("#status")).to_have_text(re.compile("^Ready"), timeout=20_000)
            assert "circle" in page.text_content("#model")

            page.set_input_files("#file", str(image))
            expect(page.locator("#count")).not_to_have_attribute("data-boxes", "", timeout=20_000)
            assert int(page.get_attribute("#count", "data-boxes")) == len(detections)
            assert page.locator("#detections li").count() == len(detections)
            assert "ms round trip" in page.text_content("#latency")
            page.screenshot(path=str(tmp_path / "page.png"))
            drawn = page.evaluate(CANVAS_PIXELS)

            # The slider filters live, without asking the service again.
            asked = len(requested)
            page.fill("#threshold", "0.98")
            assert int(page.get_attribute("#count", "data-boxes")) == sum(d["score"] >= 0.98 for d in detections)
            page.fill("#threshold", "1")
            assert page.get_attribute("#count", "data-boxes") == "0"
            plain = page.evaluate(CANVAS_PIXELS)
            assert len(requested) == asked
        finally:
            browser.close()

    assert problems == []
    assert all(url.startswith(server.url) for url in requested), requested  # nothing from a CDN or elsewhere
    # The boxes are on the canvas: drawn and undrawn differ in at least half of the boxes' outlines.
    outline = sum(2 * ((d["box"]["xmax"] - d["box"]["xmin"]) + (d["box"]["ymax"] - d["box"]["ymin"])) for d in detections)
    changed = sum(a != b for a, b in zip(drawn, plain)) / 4
    assert changed >= outline / 2, (changed, outline)


#: The canvas's RGBA bytes, as a list.
CANVAS_PIXELS = "(() => { const c = document.getElementById('canvas'); return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data); })()"


def test_sigterm_lets_the_request_in_flight_finish_then_exits_0(weights, tmp_path):
    # A request alone waits 1.5 s for others to batch with: long enough to send SIGTERM while it is inside.
    server = ServerProcess(weights, tmp_path / "server.log", "--batch-timeout-ms", "1500")
    try:
        server.wait_ready()
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(httpx.post, f"{server.url}/v1/detect", content=encode(shapes_image(TRAINED[0])), headers=PNG, timeout=30)
            deadline = time.monotonic() + 10
            while "ssdlite_queue_requests 1.0" not in httpx.get(f"{server.url}/metrics").text:
                assert time.monotonic() < deadline, "the request never reached the service"
                time.sleep(0.02)
            server.process.send_signal(signal.SIGTERM)
            answer = pending.result()
        assert answer.status_code == 200 and answer.json()["detections"]
        assert server.process.wait(timeout=30) == 0, server.log()
    finally:
        server.stop()
    assert "Application shutdown complete" in server.log()


def test_cli_refuses_bad_flags_and_a_missing_extra_in_one_line(weights, capsys, monkeypatch):
    # The flags are ServeSettings' fields: their ranges are the parser's checks (exit 2, the flag named).
    for flag, value, rule in (("--max-batch-size", "0", "in [1, 256]"), ("--port", "70000", "in [0, 65535]"),
                              ("--batch-timeout-ms", "-1", "in [0, 10000]"), ("--max-body-mb", "0", "in (0, 4096]")):
        with pytest.raises(SystemExit) as exit_:
            main(["serve", "--weights", str(weights), flag, value])
        assert exit_.value.code == 2
        assert f"argument {flag}: invalid value '{value}': must be {rule}" in capsys.readouterr().err
    assert main(["serve", "--weights", "no/such/model.safetensors"]) == 2
    assert "no/such/model.safetensors" in capsys.readouterr().err

    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("fastapi", "multipart") else find_spec(name, *a))
    with pytest.raises(Exception) as raised:
        require_serve_extra()
    assert str(raised.value) == "ssdlite serve needs the 'serve' extra (missing: fastapi, python-multipart); install it with: pip install 'ssdlite[serve]'"
