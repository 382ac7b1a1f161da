"""``ssdlite export --format web``: the folder's page, in headless Chromium, detects with MediaPipe Tasks (the
npm package's WebAssembly, copied into the folder) what PyTorch detects, on real images, fully offline."""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import threading
from pathlib import Path

import pytest
import torch
from torchvision.io import decode_image

from ssdlite.cli import main
from ssdlite.deploy.samples import sample_images

#: Made by `make test` (npm pack of the pinned version; the tests fetch nothing themselves).
MEDIAPIPE = Path(__file__).resolve().parents[2] / ".venv" / "mediapipe-web" / "package"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Issue 33's bar: every detection above 0.3, the same class, score within 2e-3. MediaPipe's boxes are whole pixels:
# origin and size each rounded down (measured: PyTorch's 14.72..33.01 is 14 + 18), so the far corner may be up to
# 2 px off. On these 128 px images with boxes of 15-40 px that is the bound (issue 33's IoU >= 0.95 is for the
# larger boxes of real photos at 320 px; here 2 px of 18 would not pass it whatever the model).
SCORE, MAX_PX, SCORE_TOL = 0.3, 2.0, 2e-3


class _Quiet(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript",
                      ".js": "text/javascript", ".wasm": "application/wasm"}

    def log_message(self, *args):  # noqa: D102 (the test's output stays readable)
        pass


@pytest.fixture(scope="module")
def web_folder(tmp_path_factory, weights, model):
    if shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed (make test installs it: apt-get install chromium)")
    if not (MEDIAPIPE / "vision_bundle.mjs").is_file():
        pytest.skip(f"MediaPipe's web files are not in {MEDIAPIPE} (make test fetches them with npm)")
    pytest.importorskip("litert_torch", reason="needs the tflite extra")
    root = tmp_path_factory.mktemp("web")
    size = model.config.size
    pngs = []
    for i, image in enumerate(sample_images(4, size, size, seed=31)):  # at the input size: no resize differs
        path = root / f"image{i}.png"
        from PIL import Image

        Image.fromarray(image.permute(1, 2, 0).numpy()).save(path)
        pngs.append(path)
    out = root / "site"
    assert main(["export", "--weights", str(weights), "--format", "web", "--out", str(out), "--mediapipe", str(MEDIAPIPE),
                 "--images", *map(str, pngs)]) == 0
    return out, pngs


def _matched(expected: dict, got: list[dict], classes: list[str], min_iou: float = 0.0) -> list[str]:
    """Problems: a detection scored clearly above the threshold on one side without its match on the other (same
    class, score within SCORE_TOL, corners within MAX_PX and, with ``min_iou``, that IoU with PyTorch's box as
    MediaPipe truncates it to whole pixels)."""
    from torchvision.ops import box_iou

    from ssdlite.deploy.runtimes.litert import mediapipe_boxes

    problems = []
    boxes = torch.tensor([[d["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")] for d in got]).reshape(-1, 4)
    scores = torch.tensor([d["score"] for d in got])
    names = [d["label"] for d in got]
    far = (expected["boxes"][:, None, :] - boxes[None, :, :]).abs().amax(dim=2)  # (expected, got): worst corner, px
    iou = box_iou(mediapipe_boxes(expected["boxes"], boxes), boxes)  # (expected, got)
    used = set()
    for i, (score, label) in enumerate(zip(expected["scores"].tolist(), expected["labels"].tolist())):
        candidates = [j for j in range(len(got)) if j not in used and names[j] == classes[label - 1]
                      and far[i, j] <= MAX_PX and iou[i, j] >= min_iou and abs(scores[j] - score) <= SCORE_TOL]
        if candidates:
            used.add(min(candidates, key=lambda j: float(far[i, j])))
        elif score >= SCORE + SCORE_TOL:
            problems.append(f"PyTorch {classes[label - 1]} {score:.4f} at {expected['boxes'][i].tolist()} not in the page")
    problems += [f"page {names[j]} {float(scores[j]):.4f} not in PyTorch" for j in range(len(got))
                 if j not in used and scores[j] >= SCORE + SCORE_TOL]
    return problems


def check_page(folder: Path, cases: list[tuple[Path, torch.Tensor]], model, classes: list[str], min_iou: float = 0.0) -> int:
    """Serve ``folder``, open its page in headless Chromium and give it each ``(PNG, its (3, H, W) uint8 pixels)``:
    every detection above ``SCORE`` on either side matches one of PyTorch's on the pixels (:func:`_matched`, with
    ``min_iou``), and the page loads nothing from elsewhere. Returns how many PyTorch detections above ``SCORE`` were
    compared."""
    from playwright.sync_api import expect, sync_playwright

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    compared = 0
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), headless=True, args=CHROMIUM_FLAGS)
            try:
                page = browser.new_page()
                requested, problems = [], []
                page.on("request", lambda request: requested.append(request.url))
                page.on("pageerror", lambda error: problems.append(str(error)))
                page.goto(url)
                expect(page.locator("#status")).to_have_text(re.compile("^Ready"), timeout=60_000)
                for png, pixels in cases:
                    page.set_input_files("#file", str(png))
                    expect(page.locator("#status")).to_have_text(re.compile(f"^{png.name}: "), timeout=30_000)
                    got = [d for d in page.evaluate("() => window.ssdlite.detections") if d["score"] >= SCORE - SCORE_TOL]
                    with torch.no_grad():
                        expected = model([pixels])[0]
                    keep = expected["scores"] >= SCORE - SCORE_TOL
                    expected = {k: v[keep] for k, v in expected.items()}
                    problems_here = _matched(expected, got, classes, min_iou)
                    assert not problems_here, (png.name, problems_here)
                    assert all(d["class_id"] == classes.index(d["label"]) + 1 for d in got)
                    compared += int((expected["scores"] >= SCORE).sum())
                assert not problems, problems
                assert all(r.startswith(url) for r in requested), "the page loaded something from elsewhere"
            finally:
                browser.close()
    finally:
        server.shutdown()
    return compared


def test_the_page_detects_what_pytorch_detects(web_folder, model):
    from deploy_helpers import CLASSES

    folder, pngs = web_folder
    assert {p.name for p in (folder / "mediapipe").rglob("*")} >= {"vision_bundle.mjs", "vision_wasm_internal.wasm"}
    compared = check_page(folder, [(png, decode_image(str(png))) for png in pngs], model, CLASSES)
    assert compared > 0  # the model detects something above the threshold on these images


def test_a_folder_without_mediapipes_files_is_refused_before_any_work(weights, tmp_path, capsys):
    code = main(["export", "--weights", str(weights), "--format", "web", "--out", str(tmp_path / "site"), "--mediapipe", str(tmp_path)])
    assert code != 0 and not (tmp_path / "site").exists()
    assert "not a copy of the npm package @mediapipe/tasks-vision (no vision_bundle.mjs" in capsys.readouterr().err


def test_without_npm_or_a_copy_the_error_says_how_to_get_one(monkeypatch, tmp_path):
    from ssdlite.deploy.runtimes import web
    from ssdlite.errors import UserError

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(web.shutil, "which", lambda name: None)
    with pytest.raises(UserError, match=r"install npm .* 'npm pack @mediapipe/tasks-vision@1\.1\.0'.* --mediapipe DIR"):
        web.find_mediapipe()
    # ./node_modules, as `npm install @mediapipe/tasks-vision` leaves it, is found without a flag.
    installed = tmp_path / "node_modules" / "@mediapipe" / "tasks-vision"
    for name in web.MEDIAPIPE_FILES:
        (installed / name).parent.mkdir(parents=True, exist_ok=True)
        (installed / name).write_bytes(b"x")
    (installed / "package.json").write_text('{"version": "1.1.0"}')
    assert web.find_mediapipe() == (installed, "")


def test_the_folder_may_not_hold_the_weights(weights, capsys):
    """The folder is replaced whole: --out naming the folder the weights are in would delete them."""
    code = main(["export", "--weights", str(weights), "--format", "web", "--out", str(weights.parent)])
    assert code != 0 and weights.is_file()
    assert "holds the --weights input" in capsys.readouterr().err


def test_a_folder_of_other_files_is_refused_not_replaced(weights, tmp_path, capsys):
    """The export replaces its folder whole: a folder it did not write (and not empty) is refused before any work."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    assert main(["export", "--weights", str(weights), "--format", "web", "--out", str(mine)]) != 0
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    assert "a folder of other files" in capsys.readouterr().err
