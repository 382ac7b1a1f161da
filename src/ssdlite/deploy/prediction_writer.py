"""What ``ssdlite predict`` writes into ``--out``.

- one drawn copy of every image (same file name; ``_1``, ``_2``... added when two sources share a name),
  and of every video as an H.264 ``.mp4``;
- ``predictions.jsonl``: one JSON object per image or video frame, in order:
  ``{"file", "image", "height", "width", "detections": [{"box": [x1, y1, x2, y2], "score", "label", "class"}]}``
  (boxes in the image's pixels; video frames add ``frame`` and ``time`` in seconds), or
  ``{"file", "error"}`` for a file that could not be read;
- ``coco_results.json``: COCO results format (``image_id`` = the file name, ``<name>#<frame>`` for a
  video frame, ``category_id`` = the label 1..K, ``bbox`` = ``[x, y, w, h]``), which
  ``ssdlite.engine.evaluate_predictions`` reads;
- with ``annotations``: the images and their detections as a dataset in ``<out>/<format>/`` for a labelling
  tool (:mod:`ssdlite.deploy.preannotations`; videos are not part of it).

Every file is written atomically.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ssdlite.deploy.draw import class_name, draw_detections
from ssdlite.deploy.predictor import Prediction
from ssdlite.deploy.preannotations import Annotated, write_preannotations
from ssdlite.files import atomic_write, check_output_path

_PIL_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}


class PredictionWriter:
    """Collects :class:`Prediction` s, draws them as they come, writes the two JSON files on :meth:`close`."""

    def __init__(self, out_dir: str | Path, classes: list[str], draw: bool = True, annotations: str | None = None,
                 model_version: str = "ssdlite") -> None:
        self.out_dir = Path(out_dir)
        check_output_path(self.out_dir, "output folder", folder=True)  # a file there is a UserError, not a FileExistsError
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.classes = classes
        self.draw = draw
        self.lines: list[str] = []
        self.coco: list[dict[str, Any]] = []
        self.used_names: set[str] = set()
        self.errors: list[Prediction] = []
        self.images = 0
        self.detections = 0
        self.annotations = annotations
        self.model_version = model_version
        self.annotated: list[Annotated] = []

    def _output_name(self, path: Path, suffix: str | None = None) -> str:
        suffix = suffix or (path.suffix.lower() if path.suffix.lower() in _PIL_FORMATS else ".png")
        name, n = f"{path.stem}{suffix}", 0
        while name in self.used_names or name in ("predictions.jsonl", "coco_results.json"):
            n += 1
            name = f"{path.stem}_{n}{suffix}"
        self.used_names.add(name)
        return name

    def add(self, prediction: Prediction) -> None:
        if prediction.error is not None:
            self.errors.append(prediction)
            self.lines.append(json.dumps({"file": str(prediction.path), "error": prediction.error}))
            return
        det, image = prediction.detections, prediction.image
        record: dict[str, Any] = {"file": str(prediction.path)}
        if self.draw:
            name = self._output_name(prediction.path)
            drawn = draw_detections(image, det, self.classes).permute(1, 2, 0).numpy()  # (H, W, 3)
            fmt = _PIL_FORMATS[Path(name).suffix]
            atomic_write(self.out_dir / name, lambda tmp: Image.fromarray(drawn).save(tmp, format=fmt))
            record["image"] = name
        line, coco = self._record(record, image, det, prediction.path.name)
        if self.annotations:
            self.annotated.append(Annotated(Path(prediction.path), int(image.shape[-2]), int(image.shape[-1]),
                                            det["boxes"].tolist(), det["labels"].tolist(), det["scores"].tolist()))
        self.lines.append(line)
        self.coco += coco
        self.images += 1
        self.detections += len(det["scores"])

    def _record(self, record: dict[str, Any], image: torch.Tensor, det: dict[str, torch.Tensor], image_id: str):
        """(JSON line, COCO result entries) of one image or frame."""
        boxes, scores, labels = det["boxes"].tolist(), det["scores"].tolist(), det["labels"].tolist()
        record |= {"height": int(image.shape[-2]), "width": int(image.shape[-1])}
        record["detections"] = [
            {"box": box, "score": score, "label": label, "class": class_name(label, self.classes)}
            for box, score, label in zip(boxes, scores, labels)
        ]
        coco = [
            {"image_id": image_id, "category_id": label, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score}
            for (x1, y1, x2, y2), score, label in zip(boxes, scores, labels)
        ]
        return json.dumps(record), coco

    def add_video(self, path: Path, frames: Iterable[tuple[int, float, torch.Tensor, dict[str, torch.Tensor]]], rate) -> None:
        """Draw and encode ``frames`` (from :meth:`Predictor.predict_video`) to ``<stem>.mp4``; a decoding error
        records the file as failed and leaves no partial video."""
        from ssdlite.deploy.video import VideoError, VideoWriter

        lines, coco, count = [], [], [0, 0]
        name = self._output_name(path, ".mp4") if self.draw else None

        def consume(tmp: str | None) -> None:
            writer = VideoWriter(tmp, rate) if tmp is not None else None
            try:
                for index, time, frame, det in frames:
                    if writer is not None:
                        writer.write(draw_detections(frame, det, self.classes))
                    record = {"file": str(path), "frame": index, "time": time} | ({"image": name} if name else {})
                    line, entries = self._record(record, frame, det, f"{path.name}#{index}")
                    lines.append(line)
                    coco.extend(entries)
                    count[0] += 1
                    count[1] += len(det["scores"])
            finally:
                if writer is not None:
                    writer.close()

        try:
            if name is not None:
                atomic_write(self.out_dir / name, consume)
            else:
                consume(None)
        except VideoError as err:
            self.add(Prediction(path, error=f"video_corrupt: {err}"))
            return
        self.lines += lines
        self.coco += coco
        self.images += count[0]
        self.detections += count[1]

    def close(self) -> None:
        text = "".join(line + "\n" for line in self.lines).encode("utf-8")
        atomic_write(self.out_dir / "predictions.jsonl", lambda tmp: Path(tmp).write_bytes(text))
        coco = json.dumps(self.coco).encode("utf-8")
        atomic_write(self.out_dir / "coco_results.json", lambda tmp: Path(tmp).write_bytes(coco))
        if self.annotations:
            write_preannotations(self.out_dir / self.annotations, self.annotations, self.annotated, self.classes, self.model_version)

