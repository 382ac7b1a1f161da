"""An upload's bytes -> a checked, decoded image ready for the model, or a :class:`RequestError`.

Every refusal is a :class:`RequestError` with the HTTP status, a short machine-readable ``kind`` and a
message for people; the app turns it into ``{"error": {"status", "kind", "message"}}``. Decoding goes
through :func:`ssdlite.data.decode.decode_image_bytes` (the library's one decoder: the same colour modes,
EXIF rule and decompression-bomb guard as training), and runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torchvision.transforms.v2.functional as TF

from ssdlite.data.decode import ImageError, decode_image_bytes

if TYPE_CHECKING:
    from starlette.requests import Request

#: The formats the service accepts: media type -> Pillow format name.
MEDIA_TYPES = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP", "image/bmp": "BMP"}
#: Declared types that say nothing about the format: the bytes decide.
GENERIC_TYPES = {"", "application/octet-stream"}
#: Formats recognized by their first bytes only to be refused by name (415), not called "not an image".
_OTHER_SIGNATURES = {b"GIF87a": "GIF", b"GIF89a": "GIF", b"II*\x00": "TIFF", b"MM\x00*": "TIFF", b"%PDF": "PDF", b"\x00\x00\x01\x00": "ICO"}


class RequestError(Exception):
    """A request the service refuses: ``status`` (HTTP), ``kind`` (stable, for programs) and ``message``."""

    def __init__(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.message, self.headers = status, kind, message, headers or {}


def media_type(content_type: str | None) -> str:
    """``'image/PNG; charset=x'`` -> ``'image/png'``."""
    return (content_type or "").split(";")[0].strip().lower()


def sniff_format(data: bytes) -> str | None:
    """The Pillow format name of an accepted format from the file's signature, else ``None``."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data.startswith(b"BM"):
        return "BMP"
    return None


def check_upload(data: bytes, declared: str) -> None:
    """Refuse an empty body, an unsupported declared type or format (415) and bytes that are no image (400)."""
    if not data:
        raise RequestError(400, "empty_body", "the request has no image: send the image as the body or as a multipart file field")
    if declared not in MEDIA_TYPES and declared not in GENERIC_TYPES:
        raise RequestError(415, "unsupported_media_type", f"media type {declared!r} is not supported; send {', '.join(MEDIA_TYPES)}")
    if sniff_format(data) is None:
        other = next((name for signature, name in _OTHER_SIGNATURES.items() if data.startswith(signature)), None)
        if other is not None:
            raise RequestError(415, "unsupported_media_type", f"{other} images are not supported; send JPEG, PNG, WebP or BMP")
        raise RequestError(400, "not_an_image", "the body is not a JPEG, PNG, WebP or BMP image")


def decode_upload(data: bytes, size: int, max_pixels: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Checked bytes -> (float ``(3, size, size)`` image in [0, 1], the upload's ``(H, W)``).

    The resize is the model's own (:class:`ssdlite.models.transform.Preprocess`: float in [0, 1], then an
    antialiased resize to ``size x size``), done here in the decoding thread so that the inference thread
    only normalizes and runs the network, and a waiting request holds ``size x size`` pixels, not the upload's.
    """
    try:
        image = decode_image_bytes(data, max_pixels=max_pixels).as_subclass(torch.Tensor)  # (3, H, W) uint8
    except ImageError as err:
        if err.kind == "image_too_large":
            raise RequestError(413, "image_too_large", err.detail) from None
        raise RequestError(400, "truncated_image" if err.kind == "image_truncated" else "corrupt_image", err.detail) from None
    height, width = image.shape[-2:]
    resized = TF.resize(image.float() / 255, [size, size], antialias=True)  # (3, S, S) in [0, 1]
    return resized, (int(height), int(width))


def to_upload_pixels(boxes: torch.Tensor, size: int, image_size: tuple[int, int]) -> torch.Tensor:
    """``(D, 4)`` xyxy boxes in the ``size x size`` model input -> the upload's pixels."""
    height, width = image_size
    scale = boxes.new_tensor([width / size, height / size, width / size, height / size])
    return boxes * scale


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing (413) one over ``limit`` bytes before reading it when it says its length, else as it streams in."""
    too_large = RequestError(413, "body_too_large", f"the body is over the limit of {limit} bytes (--max-body-mb)")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise too_large
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(data: bytes, what: str = "the body") -> object:
    """JSON bytes -> the value, or a 400 ``bad_json`` naming where it broke."""
    import json

    try:
        return json.loads(data)
    except UnicodeDecodeError:
        raise RequestError(400, "bad_json", f"{what} is not UTF-8 JSON") from None
    except json.JSONDecodeError as err:
        raise RequestError(400, "bad_json", f"{what} is not JSON: {err.msg} at line {err.lineno} column {err.colno}") from None
