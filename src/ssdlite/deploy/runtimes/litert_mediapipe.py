"""MediaPipe Tasks' ``ObjectDetector`` on a ``.tflite`` of ssdlite's MediaPipe layout (:mod:`ssdlite.deploy.runtimes.litert`).

Imports nothing of ssdlite and no PyTorch (the standard library, numpy and ``mediapipe``), so that it also runs as a
script in an environment of its own (MediaPipe pulls ``opencv-contrib-python``, which the project's environment does
not take: ``make mediapipe`` makes ``.venv-mediapipe``)::

    .venv-mediapipe/bin/python src/ssdlite/deploy/runtimes/litert_mediapipe.py MODEL.tflite IMAGE.png ... [--score 0.3]

prints one JSON list per image: ``{"box": [xmin, ymin, xmax, ymax] pixels, "score", "index" (0-based class), "name"}``
per detection, MediaPipe's boxes (whole pixels: its ``origin_x, origin_y, width, height`` are integers).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

import numpy as np


def detect(model: bytes, images: Sequence[np.ndarray], score_threshold: float = 0.3) -> list[list[dict]]:
    """MediaPipe's detections on each ``(H, W, 3)`` uint8 RGB image, every one above ``score_threshold``."""
    import mediapipe as mp
    from mediapipe.tasks.python.core.base_options import BaseOptions
    from mediapipe.tasks.python.vision import ObjectDetector, ObjectDetectorOptions

    options = ObjectDetectorOptions(base_options=BaseOptions(model_asset_buffer=model), score_threshold=score_threshold, max_results=-1)
    results = []
    with ObjectDetector.create_from_options(options) as detector:
        for array in images:
            found = detector.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(array, dtype=np.uint8)))
            image = []
            for d in found.detections:
                b, c = d.bounding_box, d.categories[0]
                image.append({"box": [b.origin_x, b.origin_y, b.origin_x + b.width, b.origin_y + b.height],
                              "score": float(c.score), "index": c.index, "name": c.category_name})
            results.append(image)
    return results


def main(argv: Sequence[str] | None = None) -> None:
    from PIL import Image

    p = argparse.ArgumentParser(description="MediaPipe ObjectDetector on images; JSON detections per image")
    p.add_argument("model")
    p.add_argument("images", nargs="+")
    p.add_argument("--score", type=float, default=0.3)
    args = p.parse_args(argv)
    with open(args.model, "rb") as f:
        model = f.read()
    arrays = [np.asarray(Image.open(path).convert("RGB")) for path in args.images]
    print(json.dumps(detect(model, arrays, args.score)))


if __name__ == "__main__":
    main()
