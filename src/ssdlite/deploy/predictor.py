"""`Predictor`: a trained detector as a function from images to detections, on any backend.

One preprocessing for every backend (:class:`ssdlite.models.Preprocess` built from the model config:
resize to ``S x S``, scale to [0, 1], normalize), one output format: the model's eval-mode contract,
one ``{"boxes" (D, 4) xyxy in the image's pixels, "scores" (D,), "labels" (D,) in 1..K}`` per image,
keeping scores >= ``score_threshold``. The backends are one class per runtime (the table
:mod:`ssdlite.deploy.runtimes`), opened by :func:`ssdlite.deploy.backends.open_backend`.

Files: :meth:`Predictor.predict_paths` (images) and :meth:`Predictor.predict_video` (frames of a video).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ssdlite.data.decode import ImageError, decode_image
from ssdlite.deploy import runtimes
from ssdlite.deploy.backends import open_backend
from ssdlite.engine.distributed import resolve_device
from ssdlite.errors import UserError
from ssdlite.models.transform import Preprocess

__all__ = ["Prediction", "Predictor", "PredictorModule"]

#: The defaults of running a model (the library's and the commands' flags, ``ssdlite.cli.options``): detections
#: kept when scored at least this, and images per network call.
SCORE_THRESHOLD = 0.3
BATCH_SIZE = 8


@dataclass
class Prediction:
    """One source file's outcome: ``detections`` and the decoded ``image``, or an ``error``."""

    path: Path
    image: torch.Tensor | None = None
    detections: dict[str, torch.Tensor] | None = None
    error: str | None = None


class Predictor:
    """Run a trained detector on images.

    Args:
        weights: run directory, checkpoint ``.pt``, ``.safetensors``, or the backend's exported file.
        backend: a runtime of :mod:`ssdlite.deploy.runtimes` (its name or an older alias).
        device: torch device (``cpu``, ``cuda``, ``cuda:1``, or ``auto``: CUDA when available); onnxruntime uses
            CUDA when it has it; the other runtimes run on the CPU.
        score_threshold: keep detections scored at least this.
        batch_size: images per network call in :meth:`predict_paths`.
        threads: the runtime's intra-op threads (default: the runtime's choice).
    """

    def __init__(
        self,
        weights: str | os.PathLike,
        backend: str = runtimes.DEFAULT.name,
        device: str | torch.device = "cpu",
        score_threshold: float = SCORE_THRESHOLD,
        batch_size: int = BATCH_SIZE,
        threads: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise UserError(f"batch size must be >= 1, got {batch_size}")
        self.backend = runtimes.get(backend).name  # an unknown name: a UserError listing the runtimes
        self.device = resolve_device(str(device))  # `auto` and an unknown name the same as for training
        self.score_threshold = float(score_threshold)
        self.batch_size = batch_size
        self.weights = str(weights)
        self.runner = open_backend(backend, weights, self.device, threads)
        self.config, self.classes = self.runner.config, list(self.runner.classes)
        self.preprocess = Preprocess(self.config.size, self.config.image_mean, self.config.image_std).to(self.device)
        if not self.classes:
            self.classes = [f"class{i}" for i in range(1, self.config.num_classes)]

    @torch.inference_mode()
    def __call__(self, images: Sequence[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Detections for a list of ``(3, H, W)`` images (uint8, or float in [0, 1]); on the CPU."""
        if len(images) == 0:
            return []
        x, sizes = self.preprocess(images)  # (N, 3, S, S)
        out = []
        for det in self.runner.run(x, sizes):
            keep = det["scores"] >= self.score_threshold
            out.append({k: v[keep].cpu() for k, v in det.items()})
        return out

    def predict_paths(self, paths: Iterable[str | os.PathLike]) -> Iterator[Prediction]:
        """Decode and detect, ``batch_size`` images at a time; a file that cannot be read yields an ``error``."""
        batch: list[Prediction] = []
        for path in paths:
            path = Path(path)
            try:
                batch.append(Prediction(path, image=decode_image(path).as_subclass(torch.Tensor)))
            except ImageError as err:
                yield Prediction(path, error=f"{err.kind}: {err.detail}")
                continue
            if len(batch) == self.batch_size:
                yield from self._detect(batch)
                batch = []
        if batch:
            yield from self._detect(batch)

    def predict_video(self, path: str | os.PathLike) -> Iterator[tuple[int, float, torch.Tensor, dict[str, torch.Tensor]]]:
        """``(frame index, time in seconds, frame uint8 (3, H, W), detections)`` for every frame, ``batch_size`` frames
        per network call. Raises :class:`ssdlite.deploy.video.VideoError` when the file cannot be decoded."""
        from ssdlite.deploy.video import read_frames

        batch: list[tuple[int, float, torch.Tensor]] = []
        for item in read_frames(Path(path)):
            batch.append(item)
            if len(batch) == self.batch_size:
                for (index, time, frame), det in zip(batch, self([f for _, _, f in batch])):
                    yield index, time, frame, det
                batch = []
        if batch:
            for (index, time, frame), det in zip(batch, self([f for _, _, f in batch])):
                yield index, time, frame, det

    def _detect(self, batch: list[Prediction]) -> list[Prediction]:
        for item, det in zip(batch, self([item.image for item in batch])):
            item.detections = det
        return batch


class PredictorModule(torch.nn.Module):
    """A :class:`Predictor` behind the model's eval-mode interface, so ``ssdlite.engine.evaluate`` can score any backend."""

    def __init__(self, predictor: Predictor) -> None:
        super().__init__()
        self.predictor = predictor

    def forward(self, images: Sequence[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        return self.predictor(images)
