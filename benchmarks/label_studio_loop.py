"""The full pre-annotation loop with a real Label Studio: a project's images annotated by `ssdlite serve`.

What it does, through Label Studio's own REST API:

1. starts ``ssdlite serve --weights W --label-studio-url URL`` on a loopback port (the key in its environment);
2. creates a project with a RectangleLabels config whose labels are the model's classes;
3. uploads the images (they become tasks with ``/data/upload/...`` URLs, which the backend fetches from Label Studio);
4. connects the backend to the project (``POST /api/ml``), then asks Label Studio for every task's predictions
   (the data manager's ``retrieve_tasks_predictions`` action) and waits until each task has one;
5. reads the predictions back and compares them, box by box, with ``ssdlite.deploy.Predictor`` on the same
   files (class, IoU, score), and prints the counts and the time the loop took.

Label Studio is a 1 GB install, not part of ``make test``. Install and start it in its own environment::

    python -m venv /tmp/label-studio && /tmp/label-studio/bin/pip install 'label-studio>=1.20,<2'
    LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true USE_DEFAULT_BANNED_SUBNETS=false \\
    /tmp/label-studio/bin/label-studio start --no-browser --port 8080 --data-dir /tmp/ls-data \\
        --username bench@example.com --password bench-password-1 --user-token 0123456789abcdef0123456789abcdef01234567

(Label Studio 1.23 turns legacy tokens off for a new organization unless ``LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN``
is set, and refuses an ML backend on a loopback or private address unless ``USE_DEFAULT_BANNED_SUBNETS=false``:
"URL resolves to a reserved network address"; a backend on another host needs neither. ``--user-token`` sets the
user's legacy API token; with a personal access token from the account page instead,
pass that: the script and the backend exchange it at ``/api/token/refresh``. If the organization has legacy
tokens turned off, turn them on in Organization > Access Token Settings or use a personal access token.)
Then, from this project's environment::

    LABEL_STUDIO_API_KEY=0123456789abcdef0123456789abcdef01234567 python benchmarks/label_studio_loop.py \\
        --weights runs/raccoon --images ../shared/datasets/raccoon/JPEGImages --limit 40

Record the printed result in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import torch
from torchvision.ops import box_iou

from ssdlite.deploy.predictor import Predictor

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def label_config(classes: list[str]) -> str:
    from xml.sax.saxutils import quoteattr

    labels = "\n".join(f"    <Label value={quoteattr(name)}/>" for name in classes)
    return f'<View>\n  <Image name="image" value="$image"/>\n  <RectangleLabels name="label" toName="image">\n{labels}\n  </RectangleLabels>\n</View>'


class LabelStudio:
    """The few Label Studio REST calls the loop needs."""

    def __init__(self, url: str, key: str) -> None:
        self.url = url.rstrip("/")
        if key.count(".") == 2:  # a personal access token: a refresh token for short-lived access tokens
            access = httpx.post(f"{self.url}/api/token/refresh", json={"refresh": key}, timeout=30).raise_for_status().json()["access"]
            authorization = f"Bearer {access}"
        else:
            authorization = f"Token {key}"
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": authorization}, timeout=120)

    def call(self, method: str, path: str, **kwargs):
        answer = self.http.request(method, path, **kwargs)
        if answer.status_code >= 400:
            raise SystemExit(f"Label Studio {method} {path}: {answer.status_code} {answer.text[:500]}")
        return answer.json() if answer.content else None


def start_backend(weights: str, port: int, url: str, key: str) -> subprocess.Popen:
    env = dict(os.environ) | {"LABEL_STUDIO_API_KEY": key}
    command = [sys.executable, "-m", "ssdlite", "serve", "--weights", weights, "--port", str(port), "--label-studio-url", url, "--no-access-log"]
    process = subprocess.Popen(command, env=env)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"ssdlite serve exited with {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    process.terminate()
    raise SystemExit("ssdlite serve was not ready in 300 s")


def compare(prediction: dict, path: Path, predictor: Predictor, iou: float, score_tol: float) -> tuple[int, int, int]:
    """``(matched, Label Studio's regions, the predictor's detections)`` for one image."""
    from ssdlite.data.decode import decode_image

    image = decode_image(path).as_subclass(torch.Tensor)
    det = predictor([image])[0]
    height, width = image.shape[-2:]
    names = predictor.classes
    regions = [r for r in prediction["result"] if r.get("type") == "rectanglelabels"]
    if not regions or not len(det["scores"]):
        return 0, len(regions), len(det["scores"])
    theirs = torch.tensor(
        [[r["value"]["x"] * width / 100, r["value"]["y"] * height / 100, (r["value"]["x"] + r["value"]["width"]) * width / 100, (r["value"]["y"] + r["value"]["height"]) * height / 100] for r in regions]
    )
    overlap = box_iou(theirs, det["boxes"])  # (R, D)
    matched, used = 0, set()
    for i, region in enumerate(regions):
        for j in overlap[i].argsort(descending=True).tolist():
            if j in used or overlap[i, j] < iou:
                break
            same = names[int(det["labels"][j]) - 1] == region["value"]["rectanglelabels"][0] and abs(float(det["scores"][j]) - region["score"]) <= score_tol
            if same:
                matched += 1
                used.add(j)
                break
    return matched, len(regions), len(det["scores"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True, help="what `ssdlite serve --weights` takes")
    parser.add_argument("--images", required=True, type=Path, help="a folder of images to import as tasks")
    parser.add_argument("--limit", type=int, default=40, help="import at most this many images (default 40)")
    parser.add_argument("--label-studio-url", default=os.environ.get("LABEL_STUDIO_URL", "http://localhost:8080"))
    parser.add_argument("--port", type=int, default=9090, help="the backend's port (default 9090, the official backend's)")
    parser.add_argument("--score-threshold", type=float, default=0.3, help="as `ssdlite serve --score-threshold` (default 0.3)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for every task's prediction")
    args = parser.parse_args()
    key = os.environ.get("LABEL_STUDIO_API_KEY")
    if not key:
        raise SystemExit("set LABEL_STUDIO_API_KEY to a Label Studio API key (see this script's docstring)")
    paths = sorted(p for p in args.images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[: args.limit]
    if not paths:
        raise SystemExit(f"{args.images}: no images")

    predictor = Predictor(args.weights, score_threshold=args.score_threshold)
    studio = LabelStudio(args.label_studio_url, key)
    backend = start_backend(args.weights, args.port, args.label_studio_url, key)
    try:
        project = studio.call("POST", "/api/projects", json={"title": f"ssdlite loop {time.strftime('%H:%M:%S')}", "label_config": label_config(predictor.classes)})
        # One form field per file: Label Studio reads request.FILES.items(), which keeps one file per field name.
        files = [(p.name, (p.name, p.read_bytes())) for p in paths]
        studio.call("POST", f"/api/projects/{project['id']}/import", files=files)
        tasks = studio.call("GET", "/api/tasks", params={"project": project["id"], "page_size": len(paths) + 10})
        tasks = tasks["tasks"] if isinstance(tasks, dict) else tasks
        by_task = {task["id"]: paths[[p.name for p in paths].index(Path(task["data"]["image"]).name.split("-", 1)[-1])] for task in tasks}

        start = time.perf_counter()
        studio.call("POST", "/api/ml", json={"url": f"http://127.0.0.1:{args.port}", "project": project["id"], "title": "ssdlite"})
        studio.call(
            "POST", "/api/dm/actions", params={"id": "retrieve_tasks_predictions", "project": project["id"]}, json={"selectedItems": {"all": True, "excluded": []}}
        )
        deadline = time.monotonic() + args.timeout
        while True:
            predictions = studio.call("GET", "/api/predictions", params={"project": project["id"]})
            predictions = predictions.get("results", predictions) if isinstance(predictions, dict) else predictions
            done = {p["task"] for p in predictions}
            if done >= set(by_task) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        seconds = time.perf_counter() - start
    finally:
        backend.terminate()
        backend.wait(timeout=60)

    matched = regions = detections = 0
    for prediction in predictions:
        m, r, d = compare(prediction, by_task[prediction["task"]], predictor, iou=0.95, score_tol=2e-3)
        matched, regions, detections = matched + m, regions + r, detections + d
    print(f"Label Studio {args.label_studio_url}: {len(done & set(by_task))}/{len(by_task)} tasks pre-annotated in {seconds:.1f} s")
    print(f"regions {regions}, predictor detections {detections} (score >= {args.score_threshold}), matched {matched} (same class, IoU >= 0.95, score within 2e-3)")
    return 0 if done >= set(by_task) and matched == regions == detections else 1


if __name__ == "__main__":
    sys.exit(main())
