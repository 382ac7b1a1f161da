"""The HTTP API and the web page: :func:`create_app` wraps a loaded ``Predictor`` in a FastAPI app.

Endpoints (``docs/serve.md`` documents them; ``/openapi.json`` is the schema):

- ``POST /v1/detect``: one image (raw body or multipart file) -> its detections in its own pixels;
- ``GET /v1/metadata``: classes, input size, backend, model configuration, version;
- ``GET /health/live`` (the process answers), ``GET /health/ready`` (503 until the model is warmed up);
- ``GET /metrics``: Prometheus text format;
- ``GET /``: the page (``static/``), which calls the same API;
- Label Studio's ML backend routes (``/health``, ``/setup``, ``/predict``: :mod:`ssdlite.serve.label_studio`);
- the Open Inference Protocol v2 routes (``/v2/...``, as Triton and KServe: :mod:`ssdlite.serve.inference_protocol`).

Every error is JSON ``{"error": {"status", "kind", "message"}}`` with its HTTP status, from a bad
parameter to a failure inside the model (under ``/v2`` the protocol's ``{"error": "message"}``):
a request can fail, the service cannot.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import importlib.metadata
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import torch
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from ssdlite.deploy.draw import PALETTE
from ssdlite.deploy.page import FOLDER as PAGE_FOLDER
from ssdlite.deploy.page import render as render_page
from ssdlite.deploy.predictor import SCORE_THRESHOLD
from ssdlite.serve.batcher import MicroBatcher
from ssdlite.serve.inference_protocol import inference_protocol_router
from ssdlite.serve.label_studio import label_studio_router
from ssdlite.serve.metrics import Metrics
from ssdlite.serve.service import Service, select
from ssdlite.serve.settings import ServeSettings
from ssdlite.serve.uploads import RequestError, media_type, read_body

# uvicorn configures its own loggers only: log through its error logger so these lines reach the server's output.
log = logging.getLogger("uvicorn.error")

STATIC = Path(__file__).resolve().parent / "static"  # this page's own script, app.js
#: The page: ssdlite.deploy.page's page.html (shared with the page of `ssdlite export --format web`), with the API-key form.
PAGE_HTML = render_page(
    title="ssdlite serve",
    script='<script src="/static/app.js" defer></script>',
    loading="Loading the model's description…",
    footer='API: <code>POST /v1/detect</code> &middot; <a href="/openapi.json">OpenAPI schema</a> &middot; <a href="/v1/metadata">metadata</a>',
    before_controls="""<form id="key-form" hidden>
        <label for="key">This service needs an API key</label>
        <input id="key" type="password" autocomplete="off" placeholder="API key">
        <button type="submit">Use key</button>
      </form>""",
    page="/page/",
)
#: The most detections one answer may ask for: far above a model's per-image limit, low enough to refuse nonsense.
MAX_DETECTIONS = 1000
#: The page loads nothing from elsewhere; the policy makes the browser refuse it too (and blob: URLs hold the upload).
PAGE_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: mediastream:; "
    "style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'"
)


# The answer's shape, for the OpenAPI schema (the endpoint builds plain dicts; a test validates them against these).
class Box(BaseModel):
    xmin: float
    ymin: float
    xmax: float
    ymax: float


class Detection(BaseModel):
    box: Box = Field(description="corners in the uploaded image's pixels")
    score: float
    label: str = Field(description="class name")
    class_id: int = Field(description="1..K; 0 is the background and never appears")


class ImageSize(BaseModel):
    width: int
    height: int


class Timing(BaseModel):
    queue: float = Field(description="waiting for the model (micro-batching)")
    preprocess: float = Field(description="decoding and resizing the upload")
    inference: float = Field(description="the model call of this request's batch (shared by the batch)")
    postprocess: float = Field(description="filtering and formatting this request's detections")


class DetectResponse(BaseModel):
    image: ImageSize
    detections: list[Detection]
    timing_ms: Timing


class ErrorBody(BaseModel):
    status: int
    kind: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


_ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 413, 415, 422, 500, 503)}
_IMAGE_BODY = {
    "requestBody": {
        "required": True,
        "description": "One JPEG, PNG, WebP or BMP image: the raw body, or a multipart/form-data file field named `file`.",
        "content": {
            **{kind: {"schema": {"type": "string", "format": "binary"}} for kind in ("image/jpeg", "image/png", "image/webp", "image/bmp", "application/octet-stream")},
            "multipart/form-data": {"schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}, "required": ["file"]}},
        },
    }
}


#: Routes under this prefix speak the Open Inference Protocol, whose errors are ``{"error": "message"}``.
V2_PREFIX = "/v2"


def error_response(status: int, kind: str, message: str, headers: dict[str, str] | None = None, path: str = "") -> JSONResponse:
    if path == V2_PREFIX or path.startswith(V2_PREFIX + "/"):
        return JSONResponse({"error": message}, status_code=status, headers=headers)
    return JSONResponse({"error": {"status": status, "kind": kind, "message": message}}, status_code=status, headers=headers)


def key_checker(api_key: str | None, basic: bool = False):
    """A FastAPI dependency: with an ``api_key``, refuse (401) a request without ``Authorization: Bearer KEY``;
    ``basic`` also accepts HTTP Basic with the key as the password (what Label Studio's ML backend
    connection can send)."""

    def check(request: Request) -> None:
        if api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token, scheme = token.strip(), scheme.lower()
        if basic and scheme == "basic":
            try:
                token = base64.b64decode(token, validate=True).decode().partition(":")[2]
            except (binascii.Error, UnicodeDecodeError):
                token = ""
        elif scheme != "bearer":
            token = ""
        # compare_digest takes the same time wherever the strings differ: the answer's timing tells nothing of the key.
        if not (token and hmac.compare_digest(token.encode(), api_key.encode())):
            how = "'Authorization: Bearer KEY'" + (" or HTTP Basic with the key as the password" if basic else "")
            challenge = "Basic" if basic else "Bearer"
            raise RequestError(401, "unauthorized", f"missing or wrong API key: send the header {how}", {"WWW-Authenticate": challenge})

    return Depends(check)


async def read_image(request: Request, limit: int) -> tuple[bytes, str]:
    """``(image bytes, declared media type)`` from a raw body or a multipart file field (``file``, else the first file)."""
    body = await read_body(request, limit)
    declared = media_type(request.headers.get("content-type"))
    if declared != "multipart/form-data":
        return body, declared

    async def replay() -> dict[str, Any]:  # the form parser reads the body we already hold, checked for size
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=1, max_fields=16)
    except HTTPException as err:  # Starlette's word for a malformed multipart body
        raise RequestError(400, "bad_multipart", f"cannot read the multipart body: {err.detail}") from None
    try:
        files = [value for key, value in form.multi_items() if isinstance(value, UploadFile) and key == "file"]
        files = files or [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
        if not files:
            raise RequestError(400, "empty_body", "the multipart body has no file field: send the image as the field 'file'")
        return await files[0].read(), media_type(files[0].content_type)
    finally:
        await form.close()


def parse_classes(values: Sequence[str] | None, classes: Sequence[str]) -> set[int] | None:
    """``["cat,dog", "bird"]`` -> their labels ``{1, 2, 3}``; ``None`` keeps every class; an unknown name is a 422."""
    if not values:
        return None
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in classes]
    if unknown:
        raise RequestError(422, "invalid_parameter", f"classes: unknown class {', '.join(map(repr, unknown))}; the model has {', '.join(classes)}")
    return {classes.index(name) + 1 for name in names}


def create_app(predictor, settings: ServeSettings = ServeSettings()) -> FastAPI:
    """The service around a loaded ``ssdlite.deploy.predictor.Predictor`` (set its ``score_threshold`` low:
    each request filters with its own). The model is warmed up in the background after start-up;
    ``/health/ready`` says 503 until then."""
    size = predictor.config.size
    classes = list(predictor.classes)
    metrics = Metrics(settings.max_batch_size)
    batcher = MicroBatcher(
        predictor,
        max_batch_size=settings.max_batch_size,
        batch_timeout_s=settings.batch_timeout_ms / 1000,
        max_queue=settings.max_queue,
        on_batch=metrics.observe_batch,
    )
    max_body = int(settings.max_body_mb * 1024 * 1024)
    service = Service(predictor, settings, batcher)
    state = service.state

    async def warm_up() -> None:
        # The first calls of a model allocate and pick kernels: run one alone and one full batch before saying ready.
        try:
            for n in (1, settings.max_batch_size):
                await batcher.run_alone([torch.rand(3, size, size) for _ in range(n)])
        except Exception:  # the service stays up and says not ready; the log says why
            log.exception("the model failed its warm-up: /health/ready stays 503")
            return
        state["ready"] = True
        log.info("model warmed up: ready")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        decode_pool = ThreadPoolExecutor(max_workers=settings.decode_threads, thread_name_prefix="ssdlite-decode")
        app.state.decode_pool = service.decode_pool = decode_pool
        batcher.start()
        warming = asyncio.create_task(warm_up())
        try:
            yield
        finally:
            # uvicorn calls this after the last request was answered (SIGTERM drains first).
            warming.cancel()
            state["ready"] = False
            await batcher.stop()
            decode_pool.shutdown(wait=True)

    app = FastAPI(
        title="ssdlite serve",
        version=importlib.metadata.version("ssdlite"),
        description="SSDLite object detection over HTTP. Boxes are in the uploaded image's pixels.",
        lifespan=lifespan,
        docs_url=None,  # Swagger UI and ReDoc load their scripts from a CDN; the schema is at /openapi.json
        redoc_url=None,
    )
    app.state.batcher = batcher
    app.state.metrics = metrics
    app.state.serve = state
    app.state.service = service

    protected = [key_checker(settings.api_key)]

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, err: RequestError) -> JSONResponse:
        metrics.errors.labels(err.kind).inc()
        return error_response(err.status, err.kind, err.message, err.headers, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _invalid_parameter(request: Request, err: RequestValidationError) -> JSONResponse:
        messages = [f"{'.'.join(str(part) for part in e['loc'][1:]) or e['loc'][0]}: {e['msg']}" for e in err.errors()]
        metrics.errors.labels("invalid_parameter").inc()
        return error_response(422, "invalid_parameter", "; ".join(messages), path=request.url.path)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, err: HTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(err.status_code, "http_error")
        return error_response(err.status_code, kind, str(err.detail), getattr(err, "headers", None), request.url.path)

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, err: Exception) -> JSONResponse:
        log.exception("request %s %s failed", request.method, request.url.path)
        metrics.errors.labels("internal_error").inc()
        return error_response(500, "internal_error", f"the service failed on this request ({type(err).__name__}); it is still running", path=request.url.path)

    @app.middleware("http")
    async def _count(request: Request, call_next):
        start = time.perf_counter()
        response = await call_next(request)
        # One label per route (its template: /v2/models/{name}/infer); unknown paths share one, so a scanner's
        # guesses cannot grow the metrics without bound.
        endpoint = getattr(request.scope.get("route"), "path", None) or "other"
        metrics.requests.labels(endpoint, str(response.status_code)).inc()
        if endpoint == "/v1/detect":
            metrics.latency.observe(time.perf_counter() - start)
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    @app.get("/health/live", tags=["health"])
    async def live() -> dict[str, str]:
        return {"status": "live"}

    @app.get("/health/ready", tags=["health"], responses={503: {"description": "the model is not warmed up yet"}})
    async def ready() -> JSONResponse:
        if state["ready"]:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "warming_up"}, status_code=503, headers={"Retry-After": "1"})

    @app.get("/v1/metadata", dependencies=protected, responses=_ERRORS)
    async def metadata() -> dict[str, Any]:
        return {
            "classes": classes,
            "input_size": size,
            "backend": predictor.backend,
            "model": predictor.config.to_dict(),
            "version": app.version,
            "max_batch_size": settings.max_batch_size,
            "max_detections": MAX_DETECTIONS,
            "default_score_threshold": settings.score_threshold,
            "colors": [PALETTE[i % len(PALETTE)] for i in range(len(classes))],  # class k: colors[k - 1], as `ssdlite predict` draws
        }

    @app.get("/metrics", dependencies=protected, response_class=Response)
    async def prometheus() -> Response:
        metrics.queue.set(batcher.admitted)
        return Response(metrics.render(), media_type=metrics.content_type)

    @app.post("/v1/detect", dependencies=protected, response_model=DetectResponse, responses=_ERRORS, openapi_extra=_IMAGE_BODY)
    async def detect(
        request: Request,
        score_threshold: Annotated[float, Query(ge=0, le=1, allow_inf_nan=False, description="keep detections scored at least this")] = settings.score_threshold,
        max_detections: Annotated[int, Query(ge=1, le=MAX_DETECTIONS, description="at most this many, best first")] = 100,
        classes_: Annotated[list[str] | None, Query(alias="classes", description="class names to keep (repeat or comma-separate); all if absent")] = None,
    ) -> JSONResponse:
        wanted = parse_classes(classes_, classes)
        service.require_ready()
        with service.admission():
            # No name holds the upload's bytes: they are freed once decoded, while the request waits for the model.
            found = await service.detect_image(*await read_image(request, max_body))
        start = time.perf_counter()
        kept = select({"boxes": found.boxes, "scores": found.scores, "labels": found.labels}, score_threshold, wanted, max_detections)
        boxes = kept["boxes"].tolist()
        (height, width), result = found.image_size, found.result
        detections = [
            {
                "box": {"xmin": round(x1, 2), "ymin": round(y1, 2), "xmax": round(x2, 2), "ymax": round(y2, 2)},
                "score": round(score, 5),
                "label": classes[label - 1] if 1 <= label <= len(classes) else f"class{label}",
                "class_id": label,
            }
            for (x1, y1, x2, y2), score, label in zip(boxes, kept["scores"].tolist(), kept["labels"].tolist())
        ]
        postprocess = time.perf_counter() - start
        timing = {"queue": result.queue_s, "preprocess": found.preprocess_s, "inference": result.inference_s, "postprocess": postprocess}
        return JSONResponse(
            {
                "image": {"width": width, "height": height},
                "detections": detections,
                "timing_ms": {name: round(seconds * 1000, 3) for name, seconds in timing.items()},
            }
        )

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE_HTML, headers={"Content-Security-Policy": PAGE_POLICY, "Cache-Control": "no-cache"})

    app.include_router(label_studio_router(service, max_body, key_checker(settings.api_key, basic=True)))
    app.include_router(inference_protocol_router(service, max_body, protected))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.mount("/page", StaticFiles(directory=PAGE_FOLDER), name="page")

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    return app
