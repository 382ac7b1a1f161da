"""Frigate's ``cpu`` detector on the default ``.tflite``: its tensor handling replayed with LiteRT's ``Interpreter``.

Replayed from blakeblackshear/frigate at commit e3fa70189324e5eb3b1dba756c153f6696f457de:

- ``frigate/detectors/plugins/cpu_tfl.py`` (``CpuTfl``): ``Interpreter(model_path=..., num_threads=3)`` from
  ``tflite_runtime`` or ``ai_edge_litert``, then ``tflite_init`` / ``tflite_detect_raw``;
- ``frigate/detectors/detector_utils.py``: ``tflite_init`` (``allocate_tensors``, ``get_input_details``,
  ``get_output_details``) and ``tflite_detect_raw``: the frame into input 0; output 0 boxes, 1 class ids, 2 scores,
  3 count, each read as ``interpreter.tensor(index)()[0]``; up to 20 rows ``[class_id, score, ymin, xmin, ymax, xmax]``,
  stopping at the first score under 0.4;
- ``frigate/object_detection/base.py``: the input (``input_dtype: int`` and ``input_tensor: nhwc``, the defaults:
  the uint8 ``(1, height, width, 3)`` frame as it is) and ``BaseLocalDetector.detect`` (skip a class id outside
  the label map, stop under the threshold, the label's name from the map);
- ``frigate/util/builtin.py``: ``load_labels`` (a file of one name a line: line ``i`` is class id ``i``; ids up to 90
  prefilled "unknown").

The label map is the ``labels.txt`` packed in the file. Frigate's detections must be PyTorch's above 0.4 (at most
20): same class, IoU >= 0.99, score within 1e-3.
"""

from __future__ import annotations

import numpy as np
import torch
from deploy_helpers import CLASSES

from ssdlite.deploy.samples import shapes_images

THRESHOLD = 0.4  # Frigate's raw cut in tflite_detect_raw and detect's default threshold


def frigate_labels(text: str) -> dict[int, str]:
    """``load_labels`` on an unindexed file (no leading digits), prefill 91."""
    labels = {index: "unknown" for index in range(91)}
    labels.update({index: line.strip() for index, line in enumerate(text.splitlines(keepends=True))})
    return labels


def frigate_detect(interpreter, frame: np.ndarray, labels: dict[int, str], threshold: float = THRESHOLD) -> list:
    """``tflite_detect_raw`` then ``BaseLocalDetector.detect`` on one ``(1, H, W, 3)`` uint8 frame."""
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    interpreter.set_tensor(inputs[0]["index"], frame)
    interpreter.invoke()
    boxes = interpreter.tensor(outputs[0]["index"])()[0]
    class_ids = interpreter.tensor(outputs[1]["index"])()[0]
    scores = interpreter.tensor(outputs[2]["index"])()[0]
    count = int(interpreter.tensor(outputs[3]["index"])()[0])
    raw = np.zeros((20, 6), np.float32)
    for i in range(count):
        if scores[i] < 0.4 or i == 20:
            break
        raw[i] = [class_ids[i], float(scores[i]), boxes[i][0], boxes[i][1], boxes[i][2], boxes[i][3]]
    detections = []
    for d in raw:
        if int(d[0]) < 0 or int(d[0]) >= len(labels):
            continue
        if d[1] < threshold:
            break
        detections.append((labels[int(d[0])], float(d[1]), (d[2], d[3], d[4], d[5])))
    return detections


def test_frigate_cpu_detector_gives_pytorch_detections(export_once, model):
    from ai_edge_litert.interpreter import Interpreter

    from ssdlite.deploy.compare import compare_detections
    from ssdlite.deploy.runtimes.litert import as_input_image, associated_files

    path = export_once("tflite")
    labels = frigate_labels(associated_files(path.read_bytes())["labels.txt"].decode())
    interpreter = Interpreter(model_path=str(path), num_threads=3)
    interpreter.allocate_tensors()
    size = model.config.size
    frames = [as_input_image(image, model.config) for image in shapes_images(4, size, seed=7)]  # (3, S, S) uint8
    got, expected = [], []
    with torch.no_grad():
        outputs = model(frames)
    for frame, out in zip(frames, outputs):
        found = frigate_detect(interpreter, frame.permute(1, 2, 0)[None].numpy().copy(), labels)
        # Frigate's boxes are [ymin, xmin, ymax, xmax] normalized; as xyxy pixels of the frame
        boxes = torch.tensor([[b[1], b[0], b[3], b[2]] for _, _, b in found], dtype=torch.float32).view(-1, 4) * size
        got.append({"boxes": boxes, "scores": torch.tensor([s for _, s, _ in found]),
                    "labels": torch.tensor([CLASSES.index(name) + 1 for name, _, _ in found], dtype=torch.int64)})
        keep = (out["scores"] >= THRESHOLD).nonzero().flatten()[:20]
        expected.append({k: v[keep] for k, v in out.items()})
    comparison = compare_detections(expected, got, score_floor=THRESHOLD)
    assert comparison.ok, comparison.problems
    assert comparison.matched >= len(frames)
