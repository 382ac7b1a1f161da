"""What every protocol of ``ssdlite serve`` shares: an image in, its detections out, through the one batcher.

``/v1/detect``, the Label Studio routes (:mod:`ssdlite.serve.label_studio`) and the Open Inference
Protocol routes (:mod:`ssdlite.serve.inference_protocol`) all go through :class:`Service`: the same
admission (a bounded number of requests in the service), the same decoding (in the decode threads),
the same micro-batcher, so requests of every protocol share model calls and limits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from ssdlite.serve.batcher import BatchResult, MicroBatcher, QueueFull
from ssdlite.serve.uploads import RequestError, check_upload, decode_upload, to_upload_pixels


@dataclass
class Detected:
    """One image's detections: ``boxes`` ``(D, 4)`` xyxy in the image's own pixels, ``scores`` ``(D,)``,
    ``labels`` ``(D,)`` (1..K), the image's ``(H, W)``, and where the time went."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    image_size: tuple[int, int]
    result: BatchResult
    preprocess_s: float = 0.0


def select(
    detections: dict[str, torch.Tensor], score_threshold: float, wanted: set[int] | None, max_detections: int
) -> dict[str, torch.Tensor]:
    """The detections scored at least ``score_threshold``, of the ``wanted`` labels, best ``max_detections`` first."""
    keep = detections["scores"] >= score_threshold
    if wanted is not None:
        keep &= torch.isin(detections["labels"], torch.tensor(sorted(wanted), dtype=detections["labels"].dtype))
    scores = detections["scores"][keep]
    order = scores.argsort(descending=True)[:max_detections]
    return {name: value[keep][order] for name, value in detections.items()}


@dataclass
class Service:
    """The loaded model behind the batcher, with the service's limits (``settings``: a ``ServeSettings``)."""

    predictor: Any
    settings: Any
    batcher: MicroBatcher
    state: dict[str, bool] = field(default_factory=lambda: {"ready": False})
    decode_pool: Any = None  # the lifespan's ThreadPoolExecutor

    @property
    def size(self) -> int:
        return self.predictor.config.size

    @property
    def classes(self) -> list[str]:
        return list(self.predictor.classes)

    @property
    def ready(self) -> bool:
        return self.state["ready"]

    def require_ready(self) -> None:
        if not self.ready:
            raise RequestError(503, "not_ready", "the model is still warming up; retry shortly", {"Retry-After": "1"})

    @contextmanager
    def admission(self) -> Iterator[None]:
        """One place in the service for a request's whole life; a 503 ``queue_full`` when none is free."""
        try:
            with self.batcher.admission():
                yield
        except QueueFull as err:
            raise RequestError(503, "queue_full", f"the service is busy: {err}; retry shortly", {"Retry-After": "1"}) from None

    async def detect_image(self, data: bytes, declared: str = "") -> Detected:
        """Encoded image bytes -> every detection of the model (no threshold) in the image's own pixels.
        Call inside :meth:`admission`."""
        check_upload(data, declared)
        start = time.perf_counter()
        loop = asyncio.get_running_loop()
        image, image_size = await loop.run_in_executor(self.decode_pool, decode_upload, data, self.size, self.settings.max_pixels)
        preprocess = time.perf_counter() - start
        del data  # the bytes are not needed while the image waits for the model
        result = await self.batcher.submit(image)
        det = result.detections
        boxes = to_upload_pixels(det["boxes"], self.size, image_size)
        return Detected(boxes, det["scores"], det["labels"], image_size, result, preprocess)

    async def detect_images(self, images: Sequence[bytes]) -> list[Detected]:
        """Several encoded images at once: they are decoded in parallel and share model calls."""
        return list(await asyncio.gather(*(self.detect_image(data) for data in images)))

    async def detect_tensors(self, images: torch.Tensor) -> list[Detected]:
        """``(N, 3, S, S)`` float images in [0, 1] at the model's size -> detections in those ``S x S`` pixels."""
        results = await asyncio.gather(*(self.batcher.submit(image) for image in images))
        size = (self.size, self.size)
        return [Detected(r.detections["boxes"], r.detections["scores"], r.detections["labels"], size, r) for r in results]
