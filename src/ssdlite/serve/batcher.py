"""Micro-batching: requests that arrive close together share one model call.

On a CPU a batch of 8 costs far less than 8 calls of batch 1 (the convolutions reuse their weights
across images, and the per-call overhead of Python, NMS setup and thread wake-ups is paid once), so a
busy service answers more requests per second if it waits a few milliseconds for company. The
batcher owns:

- **admission**: at most ``max_queue`` requests wait beyond the batch being run; one more is refused
  at once (:class:`QueueFull`, answered 503 with ``Retry-After``) instead of growing memory and latency
  without limit. Admission is taken before the upload is decoded, so decoded images are bounded too.
- **batching**: the worker takes the first waiting request, then whatever arrives within
  ``batch_timeout_s`` of it, up to ``max_batch_size`` requests, and runs them as one call.
- **one inference thread**: the model runs in a single worker thread, off the event loop (which keeps
  accepting and decoding uploads meanwhile); torch's own intra-op threads parallelize the call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import torch

RunBatch = Callable[[Sequence[torch.Tensor]], list[dict[str, torch.Tensor]]]


class QueueFull(Exception):
    """The service already holds as many requests as it may; the client should retry later."""


@dataclass
class BatchResult:
    """One request's detections and where its time went."""

    detections: dict[str, torch.Tensor]
    queue_s: float  # from submission to the start of its batch's model call
    inference_s: float  # the batch's model call (shared by every request of the batch)
    batch_size: int


@dataclass
class _Job:
    image: torch.Tensor
    future: asyncio.Future
    submitted: float


class MicroBatcher:
    """Run ``run_batch(images) -> detections`` on batches of concurrent requests.

    Args:
        run_batch: list of images -> one detections dict per image, in order (e.g. a ``Predictor``).
        max_batch_size: at most this many requests per call (1 turns batching off).
        batch_timeout_s: how long the first request of a batch waits for others.
        max_queue: requests that may wait beyond the batch being run.
        on_batch: called with ``(batch size, seconds)`` after every model call (metrics).
    """

    def __init__(
        self,
        run_batch: RunBatch,
        max_batch_size: int = 8,
        batch_timeout_s: float = 0.005,
        max_queue: int = 64,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if batch_timeout_s < 0 or max_queue < 0:
            raise ValueError(f"batch_timeout_s and max_queue must be >= 0, got {batch_timeout_s} and {max_queue}")
        self.run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.batch_timeout_s = batch_timeout_s
        self.max_queue = max_queue
        self.on_batch = on_batch
        self.admitted = 0  # requests between admission and their answer (decoding, waiting or running)
        self._queue: asyncio.Queue[_Job] | None = None
        self._worker: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    @property
    def capacity(self) -> int:
        """Requests the service holds at most: one full batch running and ``max_queue`` waiting."""
        return self.max_batch_size + self.max_queue

    def start(self) -> None:
        """Start the worker on the running event loop."""
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ssdlite-inference")
        self._worker = asyncio.get_running_loop().create_task(self._run(), name="ssdlite-batcher")

    async def stop(self) -> None:
        """Stop the worker. The server calls this after its last request was answered (uvicorn drains first)."""
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
            self._worker = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def run_alone(self, images: Sequence[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Run ``images`` on the inference thread outside any batch (the warm-up before the service is ready)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.run_batch, images)

    @contextmanager
    def admission(self) -> Iterator[None]:
        """Hold one place in the service for a request's whole life; raise :class:`QueueFull` if none is free."""
        if self.admitted >= self.capacity:
            raise QueueFull(f"the service holds {self.admitted} requests, its limit (--max-batch-size + --max-queue)")
        self.admitted += 1
        try:
            yield
        finally:
            self.admitted -= 1

    async def submit(self, image: torch.Tensor) -> BatchResult:
        """Queue one preprocessed image and wait for its detections (call inside :meth:`admission`)."""
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not called")
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(image, future, time.perf_counter()))
        return await future

    @property
    def waiting(self) -> int:
        """Requests queued for the model, not yet in a running batch."""
        return 0 if self._queue is None else self._queue.qsize()

    async def _collect(self) -> list[_Job]:
        """The next batch: the first waiting job, then up to ``max_batch_size - 1`` more within the timeout."""
        loop = asyncio.get_running_loop()
        batch = [await self._queue.get()]
        deadline = loop.time() + self.batch_timeout_s
        while len(batch) < self.max_batch_size:
            if not self._queue.empty():  # already waiting (they queued during the last call): no need to wait
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                # A cancelled Queue.get leaves its item in the queue, so a timeout loses no request.
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            batch = [job for job in batch if not job.future.cancelled()]  # the client went away
            if not batch:
                continue
            start = time.perf_counter()
            try:
                detections = await loop.run_in_executor(self._executor, self.run_batch, [job.image for job in batch])
            except Exception as err:  # a model failure fails this batch's requests, never the worker
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(err)
                continue
            seconds = time.perf_counter() - start
            if self.on_batch is not None:
                self.on_batch(len(batch), seconds)
            for job, det in zip(batch, detections):
                if not job.future.done():
                    job.future.set_result(BatchResult(det, start - job.submitted, seconds, len(batch)))
