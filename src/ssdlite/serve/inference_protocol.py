"""The Open Inference Protocol (v2), the HTTP API of Triton, KServe and Seldon: ``tritonclient.http`` talks to it.

Routes (``{name}`` is ``--model-name``, ``ssdlite`` by default; the one version is ``1``):

- ``GET /v2``: server metadata (the ``binary_tensor_data`` extension is supported);
- ``GET /v2/health/live``, ``GET /v2/health/ready``, ``GET /v2/models/{name}/ready``: 200 when true, 503 when not;
- ``GET /v2/models/{name}``: the model's inputs and outputs with their datatypes and shapes;
- ``POST /v2/models/{name}/infer``: named tensors in, named tensors out.

Inputs (a request sends one of them):

- ``image_bytes`` ``BYTES [N]``: N encoded images (JPEG, PNG, WebP, BMP), raw with the binary extension,
  base64 strings in JSON; decoded and resized like ``/v1/detect``; boxes come back in each image's pixels;
- ``images`` ``FP32 [N, 3, S, S]``: the network's own input, as the ONNX export takes it (RGB in [0, 1]
  resized to ``S x S``, then ``(x - image_mean) / image_std``); boxes come back in those ``S x S`` pixels.

Outputs, ``D`` the most detections of any image in the request (rows past an image's ``count`` are zeros):
``boxes`` ``FP32 [N, D, 4]`` (xmin, ymin, xmax, ymax), ``scores`` ``FP32 [N, D]``, ``labels`` ``INT64 [N, D]``
(1..K; 0 pads), ``count`` ``INT64 [N]``. Request parameters ``score_threshold`` and ``max_detections`` filter
as ``/v1/detect``'s do. Binary tensor data (Triton's extension, ``tritonclient``'s default) works both ways:
a body of the JSON header then the tensors' bytes, its length in ``Inference-Header-Content-Length``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from typing import Any

import numpy as np
import torch
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from ssdlite.serve.service import Detected, Service, select
from ssdlite.serve.uploads import RequestError, parse_json, read_body

#: The one version of the served model.
VERSION = "1"
#: The most detections one answer may ask for (as ``/v1/detect``).
MAX_DETECTIONS = 1000
#: Datatype -> the little-endian numpy dtype of its binary form.
NUMPY = {"FP32": np.dtype("<f4"), "INT64": np.dtype("<i8")}
IMAGE_BYTES, IMAGES = "image_bytes", "images"
OUTPUTS = {"boxes": "FP32", "scores": "FP32", "labels": "INT64", "count": "INT64"}
HEADER_LENGTH = "Inference-Header-Content-Length"


def bad(message: str, status: int = 400, kind: str = "bad_inference_request") -> RequestError:
    return RequestError(status, kind, message)


def model_metadata(service: Service, name: str) -> dict[str, Any]:
    size = service.size
    config = service.predictor.config
    return {
        "name": name,
        "versions": [VERSION],
        "platform": f"ssdlite_{service.predictor.backend}",
        "inputs": [
            {"name": IMAGE_BYTES, "datatype": "BYTES", "shape": [-1]},
            {"name": IMAGES, "datatype": "FP32", "shape": [-1, 3, size, size]},
        ],
        "outputs": [
            {"name": "boxes", "datatype": "FP32", "shape": [-1, -1, 4]},
            {"name": "scores", "datatype": "FP32", "shape": [-1, -1]},
            {"name": "labels", "datatype": "INT64", "shape": [-1, -1]},
            {"name": "count", "datatype": "INT64", "shape": [-1]},
        ],
        # Not in the protocol's schema, which allows no more: what a client needs to feed `images` and name `labels`.
        "parameters": {
            "classes": service.classes,
            "input_size": size,
            "image_mean": list(config.image_mean),
            "image_std": list(config.image_std),
            "max_batch_size": service.settings.max_batch_size,
        },
    }


def split_bytes_tensor(data: bytes, name: str) -> list[bytes]:
    """The binary form of a BYTES tensor (each element: a 4-byte little-endian length, then the bytes) -> its elements."""
    elements, offset = [], 0
    while offset < len(data):
        if offset + 4 > len(data):
            raise bad(f"input {name!r}: the binary data ends inside an element's length")
        (length,) = struct.unpack_from("<I", data, offset)
        offset += 4
        if offset + length > len(data):
            raise bad(f"input {name!r}: an element of {length} bytes runs past the binary data")
        elements.append(data[offset : offset + length])
        offset += length
    return elements


def flatten(data: Any) -> list:
    """A JSON tensor's ``data``, flat or nested row-major -> the flat list."""
    if not isinstance(data, list):
        return [data]
    out = []
    for item in data:
        out.extend(flatten(item) if isinstance(item, list) else [item])
    return out


def parse_request(body: bytes, header_length: str | None, max_batch: int, size: int) -> tuple[dict[str, Any], str, Any]:
    """``(the JSON header, the input's name, its value)``: a list of encoded images, or an ``(N, 3, S, S)`` tensor."""
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise bad(f"{HEADER_LENGTH} {header_length!r} is not a length within the body's {len(body)} bytes")
        header, binary = parse_json(body[: int(header_length)], "the inference header"), body[int(header_length) :]
    else:
        header, binary = parse_json(body), b""
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list):
        raise bad("the request must be a JSON object with a list 'inputs'")
    if len(header["inputs"]) != 1:
        raise bad(f"send exactly one input, {IMAGE_BYTES!r} (encoded images) or {IMAGES!r} (a preprocessed FP32 tensor); got {len(header['inputs'])}")
    tensor = header["inputs"][0]
    if not isinstance(tensor, dict):
        raise bad("an input must be an object with 'name', 'datatype', 'shape' and 'data' (or binary data)")
    name, datatype, shape = tensor.get("name"), tensor.get("datatype"), tensor.get("shape")
    expected = {IMAGE_BYTES: "BYTES", IMAGES: "FP32"}
    if name not in expected:
        raise bad(f"unknown input {name!r}: the model takes {IMAGE_BYTES!r} (BYTES) or {IMAGES!r} (FP32)")
    if datatype != expected[name]:
        raise bad(f"input {name!r} must be {expected[name]}, got {datatype!r}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise bad(f"input {name!r}: shape must be a list of non-negative integers, got {shape!r}")
    batch = shape[0] if shape else -1
    wanted = [batch, 3, size, size] if name == IMAGES else [batch]
    if shape != wanted or not 1 <= shape[0] <= max_batch:
        what = f"[N, 3, {size}, {size}]" if name == IMAGES else "[N]"
        raise bad(f"input {name!r}: shape must be {what} with 1 <= N <= {max_batch} (--max-batch-size), got {shape}")
    parameters = tensor.get("parameters") or {}
    binary_size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
    count = math.prod(shape)
    if binary_size is not None:
        if not isinstance(binary_size, int) or binary_size != len(binary):
            raise bad(f"input {name!r}: binary_data_size {binary_size!r} is not the {len(binary)} bytes after the header")
        if name == IMAGES:
            if binary_size != count * 4:
                raise bad(f"input {name!r}: {binary_size} bytes of binary data for {count} FP32 values ({count * 4} bytes)")
            values = torch.from_numpy(np.frombuffer(binary, dtype=NUMPY["FP32"]).astype(np.float32))
        else:
            values = split_bytes_tensor(binary, name)
    else:
        if binary:
            raise bad(f"{len(binary)} bytes after the header that no input claims (binary_data_size)")
        data = flatten(tensor.get("data"))
        if name == IMAGES:
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in data):
                raise bad(f"input {name!r}: 'data' must hold numbers")
            values = torch.tensor(data, dtype=torch.float32)
        else:
            try:  # JSON holds text, so an encoded image travels as base64
                values = [base64.b64decode(v, validate=True) for v in data if isinstance(v, str)]
            except binascii.Error:
                raise bad(f"input {name!r}: in JSON each element must be the image base64-encoded (or send binary tensor data)") from None
            if len(values) != len(data):
                raise bad(f"input {name!r}: in JSON each element must be a base64 string")
    if len(values) != count:
        raise bad(f"input {name!r}: {len(values)} elements for shape {shape} ({count})")
    if name == IMAGES:
        values = values.reshape(shape)
        if not torch.isfinite(values).all():
            raise bad(f"input {name!r}: NaN or infinite values")
    return header, name, values


def request_options(header: dict[str, Any], default_threshold: float) -> tuple[float, int, dict[str, bool]]:
    """``(score_threshold, max_detections, {output: as binary})`` from the request's parameters and outputs."""
    parameters = header.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise bad("'parameters' must be an object")
    threshold = parameters.get("score_threshold", default_threshold)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        raise bad(f"parameter score_threshold must be a number in [0, 1], got {threshold!r}", 422, "invalid_parameter")
    limit = parameters.get("max_detections", 100)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_DETECTIONS:
        raise bad(f"parameter max_detections must be an integer in 1..{MAX_DETECTIONS}, got {limit!r}", 422, "invalid_parameter")
    binary_default = parameters.get("binary_data_output") is True
    requested = header.get("outputs")
    if requested is None:
        return float(threshold), limit, {name: binary_default for name in OUTPUTS}
    if not isinstance(requested, list) or not all(isinstance(o, dict) for o in requested):
        raise bad("'outputs' must be a list of objects with a 'name'")
    outputs = {}
    for output in requested:
        if output.get("name") not in OUTPUTS:
            raise bad(f"unknown output {output.get('name')!r}: the model gives {', '.join(OUTPUTS)}")
        options = output.get("parameters") or {}
        outputs[output["name"]] = options.get("binary_data", binary_default) is True if isinstance(options, dict) else binary_default
    return float(threshold), limit, outputs


def output_tensors(found: list[Detected], threshold: float, limit: int) -> dict[str, np.ndarray]:
    """Each image's kept detections, padded with zeros to the request's most."""
    kept = [select({"boxes": f.boxes, "scores": f.scores, "labels": f.labels}, threshold, None, limit) for f in found]
    count = np.array([len(k["scores"]) for k in kept], dtype=np.int64)
    d = int(count.max(initial=0))
    boxes = np.zeros((len(kept), d, 4), np.float32)
    scores = np.zeros((len(kept), d), np.float32)
    labels = np.zeros((len(kept), d), np.int64)
    for i, k in enumerate(kept):
        n = int(count[i])
        boxes[i, :n], scores[i, :n], labels[i, :n] = k["boxes"].numpy(), k["scores"].numpy(), k["labels"].numpy()
    return {"boxes": boxes, "scores": scores, "labels": labels, "count": count}


def encode_response(header: dict[str, Any], tensors: dict[str, np.ndarray], binary: dict[str, bool]) -> Response:
    outputs, tail = [], []
    for name, as_binary in binary.items():
        array = tensors[name]
        entry: dict[str, Any] = {"name": name, "datatype": OUTPUTS[name], "shape": list(array.shape)}
        if as_binary:
            data = array.astype(NUMPY[OUTPUTS[name]], copy=False).tobytes()
            entry["parameters"] = {"binary_data_size": len(data)}
            tail.append(data)
        else:
            entry["data"] = array.reshape(-1).tolist()
        outputs.append(entry)
    body = header | {"outputs": outputs}
    if not tail:
        return JSONResponse(body)
    text = json.dumps(body).encode()
    return Response(text + b"".join(tail), media_type="application/octet-stream", headers={HEADER_LENGTH: str(len(text))})


def inference_protocol_router(service: Service, max_body: int, protected: list) -> APIRouter:
    """The ``/v2`` routes around ``service`` (``protected``: the API-key dependencies; health stays open)."""
    settings = service.settings
    model = settings.model_name
    router = APIRouter(prefix="/v2", tags=["open inference protocol"])
    config = service.predictor.config
    mean = torch.tensor(config.image_mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(config.image_std, dtype=torch.float32).view(1, 3, 1, 1)

    def check_model(name: str, version: str = VERSION) -> None:
        if name != model:
            raise bad(f"unknown model {name!r}: this server serves {model!r}", 404, "not_found")
        if version != VERSION:
            raise bad(f"model {name!r} has no version {version!r}: its one version is {VERSION!r}", 404, "not_found")

    def readiness(what: str) -> JSONResponse:
        if service.ready:
            return JSONResponse({"ready": True})
        return JSONResponse({"ready": False, "error": f"{what} is warming up"}, status_code=503, headers={"Retry-After": "1"})

    @router.get("", dependencies=protected)
    async def server_metadata(request: Request) -> dict[str, Any]:
        return {"name": "ssdlite", "version": request.app.version, "extensions": ["binary_tensor_data"]}

    @router.get("/health/live")
    async def live() -> dict[str, bool]:
        return {"live": True}

    @router.get("/health/ready")
    async def ready() -> JSONResponse:
        return readiness("the server")

    @router.get("/models/{name}", dependencies=protected)
    @router.get("/models/{name}/versions/{version}", dependencies=protected)
    async def metadata(name: str, version: str = VERSION) -> dict[str, Any]:
        check_model(name, version)
        return model_metadata(service, name)

    @router.get("/models/{name}/ready", dependencies=protected)
    @router.get("/models/{name}/versions/{version}/ready", dependencies=protected)
    async def model_ready(name: str, version: str = VERSION) -> JSONResponse:
        check_model(name, version)
        return readiness(f"model {name!r}")

    @router.post("/models/{name}/infer", dependencies=protected)
    @router.post("/models/{name}/versions/{version}/infer", dependencies=protected)
    async def infer(request: Request, name: str, version: str = VERSION) -> Response:
        check_model(name, version)
        if request.headers.get("content-encoding", "identity") != "identity":
            raise bad(f"Content-Encoding {request.headers['content-encoding']!r} is not supported: send the body uncompressed", 415, "unsupported_media_type")
        service.require_ready()
        with service.admission():
            body = await read_body(request, max_body)
            header, kind, value = parse_request(body, request.headers.get(HEADER_LENGTH), settings.max_batch_size, service.size)
            del body
            threshold, limit, binary = request_options(header, settings.score_threshold)
            if kind == IMAGE_BYTES:
                found = await service.detect_images(value)
            else:
                found = await service.detect_tensors(value * std + mean)  # the batcher's input: [0, 1] pixels at S x S
        answer = {"model_name": model, "model_version": VERSION} | ({"id": header["id"]} if isinstance(header.get("id"), str) else {})
        return encode_response(answer, output_tensors(found, threshold, limit), binary)

    return router
