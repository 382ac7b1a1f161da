"""`Predictor`: a trained detector as a function from images to detections, on PyTorch or onnxruntime.

Both backends share the preprocess (:class:`ssdlite.models.Preprocess` built from the model config:
resize to ``S x S``, scale to [0, 1], normalize) and return the model's eval-mode contract: one
``{"boxes" (D, 4) xyxy in the image's pixels, "scores" (D,), "labels" (D,) in 1..K}`` per image,
keeping scores >= ``score_threshold``.

- ``torch``: :func:`ssdlite.models.io.load_model` (run directory, checkpoint or ``.safetensors``).
Files: :meth:`Predictor.predict_paths` (images) and :meth:`Predictor.predict_video` (frames of a video).

- ``onnxruntime``: an ``.onnx`` file written by ``ssdlite export`` (with NMS: the graph returns final
  detections; raw: the PyTorch postprocess runs on its outputs), or any weights file, which is then
  exported with in-graph NMS in memory and verified first.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ssdlite.data.decode import ImageError, decode_image
from ssdlite.errors import UserError
from ssdlite.models.config import ModelConfig
from ssdlite.models.factory import build_model
from ssdlite.models.transform import Preprocess

BACKENDS = ("torch", "onnxruntime")


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
        weights: run directory, checkpoint ``.pt``, ``.safetensors``, or (onnxruntime) ``.onnx``.
        backend: ``torch`` or ``onnxruntime``.
        device: torch device (``cpu``, ``cuda``, ``cuda:1``); onnxruntime uses CUDA when it has it.
        score_threshold: keep detections scored at least this.
        batch_size: images per network call in :meth:`predict_paths`.
        threads: onnxruntime intra-op threads (default: all cores).
    """

    def __init__(
        self,
        weights: str | os.PathLike,
        backend: str = "torch",
        device: str | torch.device = "cpu",
        score_threshold: float = 0.3,
        batch_size: int = 8,
        threads: int | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise UserError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        if batch_size < 1:
            raise UserError(f"batch size must be >= 1, got {batch_size}")
        self.backend = backend
        self.device = torch.device(device)
        self.score_threshold = float(score_threshold)
        self.batch_size = batch_size
        self.weights = str(weights)
        self.model = None  # the torch model (torch backend, or raw ONNX outputs: its postprocess)
        self.session = None
        self.outputs = "detections"
        if backend == "torch":
            from ssdlite.models.io import load_model

            self.model, info = load_model(weights, map_location=self.device)
            self.config, self.classes = self.model.config, info["classes"]
            self.preprocess = self.model.preprocess
        else:
            self.config, self.classes = self._open_onnx(Path(weights), threads)
            self.preprocess = Preprocess(self.config.size, self.config.image_mean, self.config.image_std).to(self.device)
        if not self.classes:
            self.classes = [f"class{i}" for i in range(1, self.config.num_classes)]

    def _open_onnx(self, path: Path, threads: int | None) -> tuple[ModelConfig, list[str]]:
        from ssdlite.deploy.onnx_runtime import make_session, read_metadata

        if path.suffix == ".onnx":
            if not path.is_file():
                raise UserError(f"{path}: no such file")
            self.session = make_session(path, threads, str(self.device))
            meta = read_metadata(self.session, path)
            config = ModelConfig.from_dict(meta["config"], f"{path}: model configuration")
            if meta["outputs"] != "nms":
                self.model = build_model(config, load_backbone=False).to(self.device).eval()  # for its default boxes and postprocess
                self.outputs = "raw"
            return config, meta["classes"]
        from ssdlite.deploy.onnx_export import build_onnx
        from ssdlite.models.io import load_model

        model, info = load_model(path)
        exported, _ = build_onnx(model, info["classes"], with_nms=True)
        self.session = make_session(exported, threads, str(self.device))
        return model.config, info["classes"]

    @torch.inference_mode()
    def __call__(self, images: Sequence[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Detections for a list of ``(3, H, W)`` images (uint8, or float in [0, 1]); on the CPU."""
        if len(images) == 0:
            return []
        x, sizes = self.preprocess(images)  # (N, 3, S, S)
        if self.session is None:
            detections = self.model.postprocess(*self.model.core(x), sizes)
        else:
            detections = self._run_onnx(x, sizes)
        out = []
        for det in detections:
            keep = det["scores"] >= self.score_threshold
            out.append({k: v[keep].cpu() for k, v in det.items()})
        return out

    def _run_onnx(self, x: torch.Tensor, sizes: list[tuple[int, int]]) -> list[dict[str, torch.Tensor]]:
        from ssdlite.deploy.onnx_postprocess import detections_from_outputs

        static = self.session.get_inputs()[0].shape[0]
        if isinstance(static, int) and static != x.shape[0]:
            # An export with a fixed batch (no --dynamic-batch): run it chunk by chunk, padding the last chunk.
            results = []
            for start in range(0, x.shape[0], static):
                chunk = x[start : start + static]
                padded = torch.cat([chunk, chunk.new_zeros(static - chunk.shape[0], *chunk.shape[1:])])
                results += self._run_onnx(padded, sizes[start : start + static] + [(1, 1)] * (static - chunk.shape[0]))[: chunk.shape[0]]
            return results
        outputs = self.session.run(None, {"images": x.cpu().numpy()})
        if self.outputs == "raw":
            cls_logits, bbox_deltas = (torch.from_numpy(o).to(self.device) for o in outputs)
            return self.model.postprocess(cls_logits, bbox_deltas, sizes)
        named = dict(zip((o.name for o in self.session.get_outputs()), outputs))
        return detections_from_outputs(named["num_detections"], named["boxes"], named["scores"], named["labels"], sizes)

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
