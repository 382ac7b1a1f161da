"""Label Studio's ML backend protocol: a Label Studio project pre-annotates its images with the model.

Label Studio (1.2x) connects to an "ML backend" URL and calls three routes (the protocol of
``label_studio_ml/api.py`` in HumanSignal/label-studio-ml-backend, and Label Studio's ``ml/api_connector.py``):

- ``GET /health``: ``{"status": "UP", "model_class": ...}`` when the backend answers;
- ``POST /setup`` with ``{"project": "ID.TIMESTAMP", "schema": LABEL_CONFIG_XML, ...}``: the model version;
- ``POST /predict`` with ``{"tasks": [{"id", "data": {"image": URL}}, ...], "label_config", "project", ...}``:
  ``{"results": [{"result": [region, ...], "score", "model_version"}, ...]}``, one per task, in order, each
  region a ``rectanglelabels`` box in percent of the image.

Classes are mapped by name, as the official backend does: a ``<Label>``'s ``predicted_values`` (model class
names, comma-separated) if it has any that the model knows, else its ``value`` equal to a class name, else equal
ignoring case. A model class that no label takes is not predicted; a label that no class takes is logged once.

**Where task images come from.** Task data holds a URL or path chosen by whoever made the task, so reading
it is a server-side request forgery risk: nothing is fetched unless configured.

- ``data:`` URLs: decoded in place;
- http(s) URLs on the origin of ``--label-studio-url``, and Label Studio's relative ``/data/...`` and
  ``/tasks/.../resolve/...`` paths: fetched from there with ``--label-studio-api-key`` (no redirects
  followed); any other host is refused (403 ``url_not_allowed``);
- file paths and Label Studio's local storage (``/data/local-files/?d=PATH``): read under
  ``--local-files-root`` only (403 ``path_not_allowed`` outside it);
- cloud URIs (``s3://``, ``gs://``, ...): refused; Label Studio resolves them for the browser, not for backends.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from defusedxml import ElementTree
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ssdlite.deploy.preannotations import label_studio_region
from ssdlite.serve.service import Detected, Service, select
from ssdlite.serve.uploads import RequestError, parse_json, read_body

log = logging.getLogger("uvicorn.error")

#: What ``/health`` names as the model class (the official backend names its Python class there).
MODEL_CLASS = "ssdlite"
#: Seconds a task image may take to arrive from Label Studio.
FETCH_TIMEOUT_S = 10.0
#: Task data paths that are Label Studio's URLs relative to it (uploads, local storage, cloud storage proxies).
LABEL_STUDIO_PATHS = ("/data/", "/tasks/", "/api/")
#: Projects whose labelling config ``/setup`` remembers for a ``/predict`` that sends none.
MAX_PROJECTS = 256


@dataclass(frozen=True)
class RectangleControl:
    """One ``<RectangleLabels>`` of the labelling config, on an ``<Image>``."""

    from_name: str  # the control's name
    to_name: str  # the Image's name
    image_value: str  # the Image's value: "$image" (a key of task data) or a literal URL
    label_map: dict[str, str]  # model class name -> Label Studio label
    unmatched: tuple[str, ...]  # labels no model class maps to
    score_threshold: float | None  # the control's model_score_threshold, as the official examples read it


def _tag(element) -> str:
    return element.tag.lower() if isinstance(element.tag, str) else ""


def label_map(labels: list[tuple[str, str]], classes: list[str]) -> tuple[dict[str, str], tuple[str, ...]]:
    """``[(label value, predicted_values attribute), ...]`` -> (model class -> label, labels without a class)."""
    mapping, unmatched = {}, []
    lower = {name.lower(): name for name in reversed(classes)}  # the first class of a case-insensitive clash wins
    for value, predicted in labels:
        named = [name.strip() for name in predicted.split(",") if name.strip() in classes]
        if not named:
            named = [value] if value in classes else [lower[value.lower()]] if value.lower() in lower else []
        for name in named:
            mapping.setdefault(name, value)
        if not named:
            unmatched.append(value)
    return mapping, tuple(unmatched)


def parse_label_config(text: object, classes: list[str]) -> list[RectangleControl]:
    """The ``<RectangleLabels>`` controls on ``<Image>`` objects of a labelling config, or a 422 naming the problem."""
    if not isinstance(text, str) or not text.strip():
        raise RequestError(422, "bad_label_config", "the labelling config is missing: send it as 'label_config' (or 'schema' to /setup)")
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as err:
        raise RequestError(422, "bad_label_config", f"the labelling config is not XML: {err}") from None
    except Exception as err:  # defusedxml's refusals (entities, DTDs) are their own exception types
        raise RequestError(422, "bad_label_config", f"the labelling config is refused: {type(err).__name__}") from None
    images = {element.get("name"): element.get("value", "") for element in root.iter() if _tag(element) == "image"}
    controls = []
    for element in root.iter():
        if _tag(element) != "rectanglelabels":
            continue
        targets = [name.strip() for name in element.get("toName", "").split(",") if name.strip() in images]
        if not targets:
            continue
        labels = [(label.get("value", ""), label.get("predicted_values", "")) for label in element.iter() if _tag(label) == "label"]
        mapping, unmatched = label_map(labels, classes)
        threshold = element.get("model_score_threshold")
        try:
            threshold = None if threshold is None else float(threshold)
        except ValueError:
            raise RequestError(422, "bad_label_config", f"<RectangleLabels name={element.get('name')!r}>: model_score_threshold {threshold!r} is not a number") from None
        for target in targets:
            controls.append(RectangleControl(element.get("name", ""), target, images[target], mapping, unmatched, threshold))
    if not controls:
        raise RequestError(422, "bad_label_config", "the labelling config has no <RectangleLabels> on an <Image>: ssdlite predicts boxes only")
    return controls


def weights_version(weights: str) -> str:
    """A model version that changes when the weights do: the file's SHA-256 prefix (a run directory: its name)."""
    path = Path(weights)
    if path.is_file():
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        return f"ssdlite-{path.stem}-{digest.hexdigest()[:12]}"
    return f"ssdlite-{path.name}"


class NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect could lead anywhere: it is an error, never followed."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def _origin(url: urllib.parse.SplitResult) -> tuple[str, str, int]:
    return url.scheme, (url.hostname or "").lower(), url.port or {"http": 80, "https": 443}.get(url.scheme, 0)


class TaskImages:
    """Reads the image a task names, from the sources the service was configured with, and nowhere else."""

    def __init__(self, label_studio_url: str | None, api_key: str | None, local_root: str | None, max_bytes: int) -> None:
        self.url = urllib.parse.urlsplit(label_studio_url.rstrip("/") + "/") if label_studio_url else None
        self.api_key = api_key
        self.root = Path(local_root).resolve() if local_root else None
        self.max_bytes = max_bytes
        self._opener = urllib.request.build_opener(NoRedirects)
        self._access: str | None = None  # a personal access token's short-lived access token
        self._lock = threading.Lock()

    def read(self, ref: str) -> bytes:
        """The bytes of the image ``ref`` names (blocking: run it in a thread)."""
        if ref.startswith("data:"):
            return self._data_url(ref)
        parts = urllib.parse.urlsplit(ref)
        if parts.scheme in ("http", "https"):
            return self._fetch(ref, parts)
        if not parts.scheme and ref.startswith(LABEL_STUDIO_PATHS):  # Label Studio's own URLs, relative to it
            if parts.path == "/data/local-files/" and self.root is not None:  # its local storage: the same files, read here
                return self._file(urllib.parse.parse_qs(parts.query).get("d", [""])[0], ref)
            return self._fetch(ref, parts)
        if parts.scheme and len(parts.scheme) > 1:  # a one-letter scheme is a Windows drive
            raise RequestError(400, "unsupported_url", f"{parts.scheme}:// image URLs are not supported: use http(s) on --label-studio-url, a data: URL or a file under --local-files-root")
        return self._file(ref, ref)

    def _data_url(self, ref: str) -> bytes:
        header, comma, payload = ref.partition(",")
        if not comma:
            raise RequestError(400, "bad_task", "a data: URL without ',' before its data")
        if len(payload) > self.max_bytes * 4 // 3 + 4:
            raise RequestError(413, "body_too_large", f"the data: URL's image is over the limit of {self.max_bytes} bytes (--max-body-mb)")
        if header.endswith(";base64"):
            try:
                return base64.b64decode(payload, validate=True)
            except binascii.Error as err:
                raise RequestError(400, "bad_task", f"the data: URL is not valid base64 ({err})") from None
        return urllib.parse.unquote_to_bytes(payload)

    def _file(self, wanted: str, ref: str) -> bytes:
        if self.root is None:
            raise RequestError(
                403, "path_not_allowed", f"the task names a file ({ref!r}) but ssdlite serve reads no files: start it with --local-files-root DIR"
            )
        path = (self.root / wanted).resolve()  # symlinks resolved too: one pointing out of the root is refused
        if not path.is_relative_to(self.root):
            raise RequestError(403, "path_not_allowed", f"{ref!r} is outside --local-files-root {self.root}")
        if not path.is_file():
            raise RequestError(404, "image_not_found", f"{ref!r}: no such file under --local-files-root {self.root}")
        if path.stat().st_size > self.max_bytes:
            raise RequestError(413, "body_too_large", f"{ref!r} is over the limit of {self.max_bytes} bytes (--max-body-mb)")
        return path.read_bytes()

    def _fetch(self, ref: str, parts: urllib.parse.SplitResult) -> bytes:
        if self.url is None:
            raise RequestError(
                403, "url_not_allowed", f"the task's image is a URL ({ref!r}) but no --label-studio-url is set: ssdlite serve fetches images only from Label Studio"
            )
        if not parts.scheme:
            parts = urllib.parse.urlsplit(urllib.parse.urljoin(self.url.geturl(), ref.lstrip("/")))
        if _origin(parts) != _origin(self.url):
            raise RequestError(403, "url_not_allowed", f"image URL host {parts.netloc!r} is not the Label Studio URL ({self.url.netloc}): ssdlite serve fetches images only from there")
        url = parts.geturl()
        try:
            return self._get(url, self._authorization())
        except urllib.error.HTTPError as err:
            if err.code == 401 and self._access is not None:  # the access token expired: one fresh one, one retry
                with self._lock:
                    self._access = None
                try:
                    return self._get(url, self._authorization())
                except urllib.error.HTTPError as again:
                    err = again
            refused = " (the Label Studio API key was refused: --label-studio-api-key)" if err.code in (401, 403) else ""
            if 300 <= err.code < 400:
                refused = " (a redirect, not followed)"
            raise RequestError(502, "image_fetch_failed", f"Label Studio answered {err.code} for {url}{refused}") from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise RequestError(502, "image_fetch_failed", f"cannot fetch {url}: {reason}") from None

    def _get(self, url: str, authorization: str | None) -> bytes:
        request = urllib.request.Request(url, headers={"Authorization": authorization} if authorization else {})
        with self._opener.open(request, timeout=FETCH_TIMEOUT_S) as answer:
            data = answer.read(self.max_bytes + 1)
        if len(data) > self.max_bytes:
            raise RequestError(413, "body_too_large", f"{url} is over the limit of {self.max_bytes} bytes (--max-body-mb)")
        return data

    def _authorization(self) -> str | None:
        """Label Studio's legacy tokens go as ``Token KEY``; a personal access token (a JWT) is a refresh token,
        exchanged at ``/api/token/refresh`` for a short-lived access token sent as ``Bearer``."""
        if not self.api_key:
            return None
        if self.api_key.count(".") != 2:
            return f"Token {self.api_key}"
        with self._lock:
            if self._access is None:
                url = urllib.parse.urljoin(self.url.geturl(), "api/token/refresh")
                body = json.dumps({"refresh": self.api_key}).encode()
                request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
                with self._opener.open(request, timeout=FETCH_TIMEOUT_S) as answer:
                    self._access = json.loads(answer.read(1 << 16))["access"]
            return f"Bearer {self._access}"


def regions(found: Detected, control: RectangleControl, classes: list[str], score_threshold: float) -> list[dict[str, Any]]:
    """One image's detections -> Label Studio ``rectanglelabels`` regions, in percent of the image."""
    kept = select({"boxes": found.boxes, "scores": found.scores, "labels": found.labels}, score_threshold, None, len(found.scores))
    height, width = found.image_size
    out = []
    for box, score, label in zip(kept["boxes"].tolist(), kept["scores"].tolist(), kept["labels"].tolist()):
        name = classes[label - 1] if 1 <= label <= len(classes) else None
        if name not in control.label_map:
            continue
        out.append(label_studio_region(box, score, control.label_map[name], height, width, len(out), control.from_name, control.to_name))
    return out


def label_studio_router(service: Service, max_body: int, protected) -> APIRouter:
    """``/health``, ``/setup`` and ``/predict`` around ``service`` (``protected``: the API-key dependency)."""
    settings = service.settings
    images = TaskImages(settings.label_studio_url, settings.label_studio_api_key, settings.local_files_root, max_body)
    model_version = weights_version(service.predictor.weights)
    configs: dict[str, str] = {}  # project id -> the labelling config /setup received
    reported: set[tuple[str, tuple[str, ...]]] = set()
    router = APIRouter(tags=["label studio"])

    def controls_for(config: object, project: str) -> list[RectangleControl]:
        controls = parse_label_config(config, service.classes)
        for control in controls:
            if control.unmatched and (control.from_name, control.unmatched) not in reported:
                reported.add((control.from_name, control.unmatched))
                log.warning(
                    "Label Studio project %s: label(s) %s of <RectangleLabels name=%r> match no model class (%s): never predicted",
                    project or "?", ", ".join(map(repr, control.unmatched)), control.from_name, ", ".join(service.classes),
                )
        return controls

    async def read_object(request: Request) -> dict[str, Any]:
        body = parse_json(await read_body(request, max_body))
        if not isinstance(body, dict):
            raise RequestError(400, "bad_json", "the body must be a JSON object")
        return body

    @router.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "UP", "model_class": MODEL_CLASS, "model_version": model_version}

    @router.post("/setup", dependencies=[protected])
    async def setup(request: Request) -> dict[str, str]:
        body = await read_object(request)
        project = str(body.get("project") or "").split(".", 1)[0]
        controls_for(body.get("schema"), project)  # a config that cannot be served is refused now, not at the first task
        if project:
            configs.pop(project, None)
            configs[project] = body["schema"]
            while len(configs) > MAX_PROJECTS:
                configs.pop(next(iter(configs)))
        return {"model_version": model_version}

    @router.post("/predict", dependencies=[protected])
    async def predict(request: Request) -> JSONResponse:
        service.require_ready()
        with service.admission():
            body = await read_object(request)
            project = str(body.get("project") or "").split(".", 1)[0]
            controls = controls_for(body.get("label_config") or configs.get(project), project)
            tasks = body.get("tasks")
            if not isinstance(tasks, list) or not all(isinstance(task, dict) for task in tasks):
                raise RequestError(400, "bad_task", "'tasks' must be a list of task objects")
            # Each task's image(s), one per distinct <Image> the controls draw on.
            refs = [{control.to_name: image_ref(task, i, control) for control in controls} for i, task in enumerate(tasks)]
            # A chunk of at most --max-batch-size images at a time: a request's images share model calls,
            # and never hold more than one batch of decoded images.
            flat = [(i, name, ref) for i, task_refs in enumerate(refs) for name, ref in task_refs.items()]
            results: dict[tuple[int, str], Detected] = {}
            for start in range(0, len(flat), settings.max_batch_size):
                chunk = flat[start : start + settings.max_batch_size]
                datas = await asyncio.gather(*(read_task_image(tasks[i], ref) for i, _, ref in chunk))
                for (i, name, _), detected in zip(chunk, await detect_all(tasks, chunk, datas)):
                    results[i, name] = detected
            found = [{name: results[i, name] for name in task_refs} for i, task_refs in enumerate(refs)]
        answers = []
        for per_image in found:
            result = []
            for control in controls:
                threshold = settings.score_threshold if control.score_threshold is None else control.score_threshold
                result += regions(per_image[control.to_name], control, service.classes, threshold)
            score = sum(region["score"] for region in result) / len(result) if result else 0.0
            answers.append({"result": result, "score": score, "model_version": model_version})
        return JSONResponse({"results": answers, "model_version": model_version})

    def image_ref(task: dict, index: int, control: RectangleControl) -> str:
        name = f"task {task.get('id', f'#{index}')}"
        if not control.image_value.startswith("$"):
            return control.image_value
        key = control.image_value[1:]
        data = task.get("data")
        value = data.get(key) if isinstance(data, dict) else None
        if not isinstance(value, str) or not value:
            raise RequestError(400, "bad_task", f"{name}: its data has no image '{key}' (the <Image name={control.to_name!r} value={control.image_value!r}> of the labelling config)")
        return value

    async def read_task_image(task: dict, ref: str) -> bytes:
        try:
            return await asyncio.to_thread(images.read, ref)
        except RequestError as err:
            err.message = f"task {task.get('id', '?')}: {err.message}"
            raise

    async def detect_all(tasks: list[dict], chunk: list[tuple[int, str, str]], datas: list[bytes]) -> list[Detected]:
        async def one(i: int, data: bytes) -> Detected:
            try:
                return await service.detect_image(data)
            except RequestError as err:
                err.message = f"task {tasks[i].get('id', '?')}: {err.message}"
                raise

        return list(await asyncio.gather(*(one(i, data) for (i, _, _), data in zip(chunk, datas))))

    return router
