"""Micro-batching: concurrent requests share model calls, and each gets its own image's detections."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
import torch
from serve_helpers import TRAINED, as_tensor, encode, running, shapes_image
from test_api import metric_values

from ssdlite.serve.app import ServeSettings, create_app
from ssdlite.serve.batcher import MicroBatcher, QueueFull


def images_that_differ() -> list[np.ndarray]:
    """Eight synthetic-shapes images of different content and sizes (the two trained ones among them)."""
    images = [shapes_image(i) for i in (*TRAINED, 1, 2, 3, 4)]
    images.append(np.repeat(shapes_image(6), 2, axis=1))  # 256 x 128
    images.append(np.ascontiguousarray(shapes_image(7)[:96, :112]))  # a crop
    return images


def top(detections: list[dict], n: int) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    rows = detections[:n]
    boxes = torch.tensor([[d["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")] for d in rows])
    return boxes, torch.tensor([d["score"] for d in rows]), [d["class_id"] for d in rows]


def test_concurrent_requests_share_model_calls_and_get_their_own_detections(predictor):
    images = images_that_differ()
    # A long window, so that all eight arrive within it even on a loaded machine.
    app = create_app(predictor, ServeSettings(max_batch_size=8, batch_timeout_ms=500))

    async def go():
        async with running(app) as client:
            before = metric_values((await client.get("/metrics")).text)[("ssdlite_batch_size_count", ())]  # the warm-up's calls are not counted
            params = {"score_threshold": 0.0, "max_detections": 10}
            answers = await asyncio.gather(
                *(client.post("/v1/detect", params=params, content=encode(image), headers={"Content-Type": "image/png"}) for image in images)
            )
            return answers, metric_values((await client.get("/metrics")).text), before

    answers, metrics, before = asyncio.run(go())
    assert before == 0
    calls = metrics[("ssdlite_batch_size_count", ())]
    assert metrics[("ssdlite_batch_size_sum", ())] == len(images)
    assert calls < len(images), f"{len(images)} concurrent requests took {calls} model calls"
    for image, answer in zip(images, answers):
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["image"]["height"], body["image"]["width"]) == image.shape[:2]
        alone = predictor([as_tensor(image)])[0]  # this image on its own, straight through the predictor
        boxes, scores, labels = top(body["detections"], 10)
        torch.testing.assert_close(scores, alone["scores"][:10], atol=1e-4, rtol=0)
        torch.testing.assert_close(boxes, alone["boxes"][:10], atol=0.05, rtol=0)
        assert labels == alone["labels"][:10].tolist()


def test_a_full_service_answers_503_with_retry_after_and_recovers(predictor):
    # Room for one running request and one waiting: of 12 at once, most must be turned away at once.
    app = create_app(predictor, ServeSettings(max_batch_size=1, max_queue=1, batch_timeout_ms=0))
    png = encode(shapes_image(TRAINED[0]))

    async def go():
        async with running(app) as client:
            send = lambda: client.post("/v1/detect", content=png, headers={"Content-Type": "image/png"})  # noqa: E731
            burst = await asyncio.gather(*(send() for _ in range(12)))
            return burst, await send()

    burst, after = asyncio.run(go())
    statuses = sorted(answer.status_code for answer in burst)
    assert statuses.count(200) >= 2 and statuses.count(503) >= 1 and set(statuses) == {200, 503}
    refused = next(answer for answer in burst if answer.status_code == 503)
    assert refused.headers["retry-after"] == "1" and refused.json()["error"]["kind"] == "queue_full"
    assert after.status_code == 200


class FakeModel:
    """Records the batches it is called with; answers each image with its own id; optionally fails one call."""

    def __init__(self, seconds: float = 0.02, fail_on_call: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.seconds, self.fail_on_call = seconds, fail_on_call

    def __call__(self, images):
        self.batches.append([int(image) for image in images])
        time.sleep(self.seconds)
        if len(self.batches) == self.fail_on_call:
            raise RuntimeError("model failure")
        return [{"id": image} for image in images]


async def submit_all(batcher: MicroBatcher, n: int, gap_s: float = 0.0) -> list:
    async def one(i: int):
        await asyncio.sleep(i * gap_s)
        with batcher.admission():
            return await batcher.submit(torch.tensor(i))

    batcher.start()
    try:
        return await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)
    finally:
        await batcher.stop()


def test_batches_respect_the_size_limit_and_keep_each_answer_with_its_request():
    model = FakeModel()
    results = asyncio.run(submit_all(MicroBatcher(model, max_batch_size=4, batch_timeout_s=0.05, max_queue=16), 10))
    assert [int(r.detections["id"]) for r in results] == list(range(10))
    assert sorted(i for batch in model.batches for i in batch) == list(range(10))
    assert max(len(b) for b in model.batches) == 4 and len(model.batches) == 3  # 4 + 4 + 2
    assert all(r.batch_size == len(next(b for b in model.batches if int(r.detections["id"]) in b)) for r in results)


def test_batch_size_one_runs_every_request_alone():
    model = FakeModel(seconds=0.0)
    asyncio.run(submit_all(MicroBatcher(model, max_batch_size=1, batch_timeout_s=0.05, max_queue=16), 5))
    assert model.batches == [[0], [1], [2], [3], [4]]


def test_a_failing_model_call_fails_its_batch_only():
    model = FakeModel(fail_on_call=1)
    results = asyncio.run(submit_all(MicroBatcher(model, max_batch_size=2, batch_timeout_s=0.05, max_queue=16), 4))
    failed = [i for i, r in enumerate(results) if isinstance(r, RuntimeError)]
    assert failed == model.batches[0] and len(failed) == 2
    assert all(not isinstance(r, Exception) for i, r in enumerate(results) if i not in failed)


def test_admission_refuses_beyond_the_capacity():
    batcher = MicroBatcher(FakeModel(), max_batch_size=2, max_queue=1)
    with batcher.admission(), batcher.admission(), batcher.admission():
        with pytest.raises(QueueFull):
            with batcher.admission():
                pass
    assert batcher.admitted == 0
    with batcher.admission():  # places come back
        assert batcher.admitted == 1
