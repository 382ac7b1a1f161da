"""Images, a client for the in-process app, and the real server as a subprocess, for the serve tests.

A plain module, not ``conftest`` (see tests/shared_paths.py for why).
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import torch
from PIL import Image

from ssdlite.data.synthetic import SyntheticShapes

#: The two synthetic-shapes images (128 px, val split, seed 0) the test model is overfitted on, with 4 shapes each.
TRAINED = (0, 5)


def shapes_image(index: int, size: int = 128) -> np.ndarray:
    """``(size, size, 3)`` uint8: synthetic-shapes image ``index`` of the val split, seed 0."""
    return SyntheticShapes(num_images=index + 1, size=size, seed=0, split="val").sample(index)[0]


def encode(array: np.ndarray, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def as_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(array)).permute(2, 0, 1).contiguous()  # (3, H, W) uint8, a writable copy


@asynccontextmanager
async def running(app):
    """An httpx client talking to ``app`` in-process, with the app's start-up and shutdown run and its warm-up done."""
    async with app.router.lifespan_context(app):
        # As under uvicorn, an exception the app answered with a 500 is logged, not raised at the client.
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for _ in range(600):
                if (await client.get("/health/ready")).status_code == 200:
                    break
                await asyncio.sleep(0.05)
            else:
                raise TimeoutError("the app did not become ready in 30 s")
            yield client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``ssdlite serve`` in a subprocess on a free loopback port; its log goes to ``log_path``.

    ``threads``: torch's threads in the server (one in the tests, which run beside other work; ``None``: torch's default).
    """

    def __init__(self, weights: Path, log_path: Path, *flags: str, threads: int | None = 1) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")
        env = dict(os.environ) | ({"OMP_NUM_THREADS": str(threads)} if threads else {})
        command = [sys.executable, "-m", "ssdlite", "serve", "--weights", str(weights), "--port", str(self.port), *flags]
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"the server was not ready in {timeout} s:\n{self.log()}")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM, then the exit code (killed after 30 s)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()
        finally:
            self._log.close()


# ---- Bad input: every case the service must refuse with a JSON error, then go on serving. ----
#: The API key and body limit of the app the cases are sent to (the benchmark's table uses the same).
API_KEY = "test-key-0123456789"
MAX_BODY_MB = 1.0


@dataclass
class BadRequest:
    """One bad request: what it is, how to send it (``httpx`` arguments) and the answer it must get."""

    name: str
    status: int
    kind: str
    params: dict = field(default_factory=dict)
    headers: dict = field(default_factory=dict)
    content: bytes | None = None
    files: dict | None = None
    path: str = "/v1/detect"
    authorized: bool = True

    def send_arguments(self) -> dict:
        headers = ({"Authorization": f"Bearer {API_KEY}"} if self.authorized else {}) | self.headers
        arguments = {"params": self.params, "headers": headers}
        if self.files is not None:
            arguments["files"] = self.files
        else:
            arguments["content"] = self.content if self.content is not None else b""
        return arguments


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width x height`` gray pixels and holds none: a decompression bomb's header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


FORM_WITHOUT_FILE = b'--b\r\nContent-Disposition: form-data; name="note"\r\n\r\nno image here\r\n--b--\r\n'


def bad_requests() -> list[BadRequest]:
    png = encode(shapes_image(TRAINED[0]))
    jpeg = encode(shapes_image(TRAINED[0]), "JPEG", quality=90)
    gif = encode(shapes_image(TRAINED[0]), "GIF")
    image_png = {"Content-Type": "image/png"}
    return [
        BadRequest("empty body", 400, "empty_body", headers=image_png, content=b""),
        BadRequest("not an image (text sent as application/octet-stream)", 400, "not_an_image", headers={"Content-Type": "application/octet-stream"}, content=b"hello, I am not a picture" * 4),
        BadRequest("truncated JPEG (first half of the file)", 400, "truncated_image", headers={"Content-Type": "image/jpeg"}, content=jpeg[: len(jpeg) // 2]),
        BadRequest("corrupt PNG (valid header, garbage data)", 400, "corrupt_image", headers=image_png, content=png[:33] + bytes(range(256)) * 8),
        BadRequest("decompression bomb (PNG header declaring 100000 x 100000 pixels)", 413, "image_too_large", headers=image_png, content=png_header(100_000, 100_000)),
        BadRequest("image over --max-megapixels (PNG header declaring 8000 x 8000 pixels)", 413, "image_too_large", headers=image_png, content=png_header(8000, 8000)),
        BadRequest(f"body over --max-body-mb {MAX_BODY_MB:g} (Content-Length)", 413, "body_too_large", headers=image_png, content=png + b"\x00" * int(MAX_BODY_MB * 2**20)),
        BadRequest("unsupported media type (PNG sent as text/plain)", 415, "unsupported_media_type", headers={"Content-Type": "text/plain"}, content=png),
        BadRequest("unsupported format (GIF)", 415, "unsupported_media_type", headers={"Content-Type": "application/octet-stream"}, content=gif),
        BadRequest("multipart body without a file", 400, "empty_body", headers={"Content-Type": "multipart/form-data; boundary=b"}, content=FORM_WITHOUT_FILE),
        BadRequest("negative score_threshold", 422, "invalid_parameter", params={"score_threshold": "-0.1"}, headers=image_png, content=png),
        BadRequest("NaN score_threshold", 422, "invalid_parameter", params={"score_threshold": "nan"}, headers=image_png, content=png),
        BadRequest("score_threshold not a number", 422, "invalid_parameter", params={"score_threshold": "high"}, headers=image_png, content=png),
        BadRequest("unknown class", 422, "invalid_parameter", params={"classes": "circle,unicorn"}, headers=image_png, content=png),
        BadRequest("huge max_detections", 422, "invalid_parameter", params={"max_detections": "100000000"}, headers=image_png, content=png),
        BadRequest("missing API key", 401, "unauthorized", headers=image_png, content=png, authorized=False),
        BadRequest("wrong API key", 401, "unauthorized", headers=image_png | {"Authorization": f"Bearer {API_KEY}x"}, content=png, authorized=False),
        BadRequest("a path outside the API (/etc/passwd)", 404, "not_found", path="/etc/passwd", headers=image_png, content=png),
    ]
