"""Frigate's detectors on ssdlite's files, Frigate's detection code replayed: the ``cpu`` detector on the default
``.tflite`` (LiteRT's ``Interpreter``) and the ``openvino`` detector with ``model_type: ssd`` on ``ssdlite export
--format openvino --layout frigate`` (OpenVINO's ``Core``).

Replayed from blakeblackshear/frigate at commit e3fa70189324e5eb3b1dba756c153f6696f457de:

- ``frigate/detectors/plugins/cpu_tfl.py`` (``CpuTfl``): ``Interpreter(model_path=..., num_threads=3)`` from
  ``tflite_runtime`` or ``ai_edge_litert``, then ``tflite_init`` / ``tflite_detect_raw``;
- ``frigate/detectors/detector_utils.py``: ``tflite_init`` (``allocate_tensors``, ``get_input_details``,
  ``get_output_details``) and ``tflite_detect_raw``: the frame into input 0; output 0 boxes, 1 class ids, 2 scores,
  3 count, each read as ``interpreter.tensor(index)()[0]``; up to 20 rows ``[class_id, score, ymin, xmin, ymax, xmax]``,
  stopping at the first score under 0.4;
- ``frigate/detectors/detection_runners.py`` (``OpenVINOModelRunner``): ``ov.Core()``, ``set_property(device,
  {"PERF_COUNT": "NO"})``, ``compile_model(model=path, device_name=device)`` with no other setting, one infer request,
  an ``ov.Tensor`` of the compiled input's element type and shape that each frame is ``np.copyto``'d into,
  ``infer(tensor)``, the outputs read as ``get_output_tensor(i).data``;
- ``frigate/detectors/plugins/openvino.py`` (``OvDetector``, ``model_type: ssd``): the model is invalid (it detects
  nothing) unless it has one input and one output of shape ``[1, 1, N, 7]``; ``detect_raw`` takes
  ``outputs[0][0][0]``, rows ``(_, class_id, score, xmin, ymin, xmax, ymax)``, and copies the first 20 into ``[class_id,
  score, ymin, xmin, ymax, xmax]`` (zeros after): no threshold, no look at the image id;
- ``frigate/object_detection/base.py``: the input (``input_dtype: int`` and ``input_tensor: nhwc``, the defaults: the
  uint8 ``(1, height, width, 3)`` frame as it is); ``BaseLocalDetector.detect`` (the ``cpu`` path here: skip a class
  id outside the label map, stop under the threshold) and ``RemoteObjectDetector.detect`` (what a camera gets from the
  detector process's ``(20, 6)`` rows: stop at the first score under the threshold, 0.4 by default, the label's name
  from the map);
- ``frigate/util/builtin.py``: ``load_labels`` (prefill ids 0..90 with "unknown"; a file whose first line starts with
  digits and a space is indexed, ``id name`` a line, else line ``i`` is class id ``i``).

The ``cpu`` label map is the ``labels.txt`` packed in the ``.tflite``; the ``openvino`` one the ``.labelmap.txt`` the
export writes beside the ``.xml``. Frigate's detections must be PyTorch's above 0.4 (at most 20): same class,
IoU >= 0.99, score within 1e-3.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from deploy_helpers import CLASSES, skip_without, varied_model, weights_file, write_images

from ssdlite.cli import main
from ssdlite.deploy.compare import compare_detections
from ssdlite.deploy.samples import shapes_images

THRESHOLD = 0.4  # Frigate's raw cut in tflite_detect_raw and detect's default threshold
ROWS = 20  # the (20, 6) raw detections every Frigate detector returns


def load_labels(text: str, prefill: int = 91) -> dict[int, str]:
    """``load_labels`` on a file's text: indexed or one name a line."""
    labels = {index: "unknown" for index in range(prefill)}
    lines = text.splitlines(keepends=True)
    if not lines:
        return {}
    if lines[0].split(" ", maxsplit=1)[0].isdigit():
        pairs = [line.split(" ", maxsplit=1) for line in lines]
        labels.update({int(index): label.strip() for index, label in pairs})
    else:
        labels.update({index: line.strip() for index, line in enumerate(lines)})
    return labels


def as_frame(image: torch.Tensor) -> np.ndarray:
    """A ``(3, S, S)`` uint8 image as Frigate's detector gets it: ``(1, S, S, 3)`` uint8."""
    return image.permute(1, 2, 0)[None].numpy().copy()


def as_detections(found, size: int, classes=CLASSES) -> dict[str, torch.Tensor]:
    """Frigate's detections of a frame (``(name, score, (ymin, xmin, ymax, xmax) normalized)``) as an eval-mode output
    in the frame's pixels, labels ``1..K-1`` by the name's place in ``classes``."""
    boxes = torch.tensor([[b[1], b[0], b[3], b[2]] for _, _, b in found], dtype=torch.float32).view(-1, 4) * size
    return {"boxes": boxes, "scores": torch.tensor([s for _, s, _ in found]),
            "labels": torch.tensor([classes.index(name) + 1 for name, _, _ in found], dtype=torch.int64)}


def frigates_share(outputs) -> list[dict[str, torch.Tensor]]:
    """The detections Frigate would keep of eval-mode ``outputs``: those above :data:`THRESHOLD`, at most 20."""
    return [{k: v[(out["scores"] >= THRESHOLD).nonzero().flatten()[:ROWS]] for k, v in out.items()} for out in outputs]


def compare_with_pytorch(model, frames, found, **match):
    """Frigate's detections of each frame against PyTorch's above :data:`THRESHOLD` (at most 20) on the same pixels."""
    with torch.no_grad():
        expected = frigates_share(model(frames))
    got = [as_detections(f, model.config.size) for f in found]
    return compare_detections(expected, got, score_floor=THRESHOLD, **match)


def frigate_detect(interpreter, frame: np.ndarray, labels: dict[int, str], threshold: float = THRESHOLD) -> list:
    """``tflite_detect_raw`` then ``BaseLocalDetector.detect`` on one ``(1, H, W, 3)`` uint8 frame."""
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    interpreter.set_tensor(inputs[0]["index"], frame)
    interpreter.invoke()
    boxes = interpreter.tensor(outputs[0]["index"])()[0]
    class_ids = interpreter.tensor(outputs[1]["index"])()[0]
    scores = interpreter.tensor(outputs[2]["index"])()[0]
    count = int(interpreter.tensor(outputs[3]["index"])()[0])
    raw = np.zeros((ROWS, 6), np.float32)
    for i in range(count):
        if scores[i] < 0.4 or i == ROWS:
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

    from ssdlite.deploy.runtimes.litert import as_input_image, associated_files

    path = export_once("tflite")
    labels = load_labels(associated_files(path.read_bytes())["labels.txt"].decode())
    interpreter = Interpreter(model_path=str(path), num_threads=3)
    interpreter.allocate_tensors()
    frames = [as_input_image(image, model.config) for image in shapes_images(4, model.config.size, seed=7)]  # (3, S, S) uint8
    found = [frigate_detect(interpreter, as_frame(frame), labels) for frame in frames]
    comparison = compare_with_pytorch(model, frames, found)
    assert comparison.ok, comparison.problems
    assert comparison.matched >= len(frames)


# --- the openvino detector, model_type ssd ------------------------------------------------------------------------

class FrigateOpenVINO:
    """``OpenVINOModelRunner`` + ``OvDetector`` (``model_type: ssd``) on one IR, as Frigate builds them.

    ``precision``: None is Frigate's (the device's default: f32 on most CPUs, bf16 on CPUs with AVX512-BF16 or AMX);
    ``"f32"`` adds ``INFERENCE_PRECISION_HINT`` to the core, the one setting Frigate does not make."""

    def __init__(self, path, device: str = "CPU", precision: str | None = None) -> None:
        import openvino as ov

        core = ov.Core()
        core.set_property(device, {"PERF_COUNT": "NO"})
        if precision is not None:
            core.set_property(device, {"INFERENCE_PRECISION_HINT": precision})
        self.compiled = core.compile_model(model=str(path), device_name=device)
        self.request = self.compiled.create_infer_request()
        port = self.compiled.inputs[0]
        self.input_tensor = ov.Tensor(port.get_element_type(), port.get_shape())
        shape = self.compiled.outputs[0].get_shape()
        self.valid = (len(self.compiled.inputs) == 1 and len(self.compiled.outputs) == 1
                      and shape[0] == 1 and shape[1] == 1 and shape[3] == 7)

    def run(self, frame: np.ndarray) -> list[np.ndarray]:
        """``OpenVINOModelRunner.run`` with the one input."""
        np.copyto(self.input_tensor.data, frame)
        self.request.infer(self.input_tensor)
        return [self.request.get_output_tensor(i).data for i in range(len(self.compiled.outputs))]

    def detect_raw(self, frame: np.ndarray) -> np.ndarray:
        """``OvDetector.detect_raw``, model type ssd: the first 20 rows, reordered."""
        detections = np.zeros((ROWS, 6), np.float32)
        if not self.valid:
            return detections
        results = self.run(frame)[0][0][0]
        for i, (_, class_id, score, xmin, ymin, xmax, ymax) in enumerate(results):
            if i == ROWS:
                break
            detections[i] = [class_id, float(score), ymin, xmin, ymax, xmax]
        return detections


def remote_detect(raw: np.ndarray, labels: dict[int, str], threshold: float = THRESHOLD) -> list:
    """``RemoteObjectDetector.detect`` on the detector process's ``(20, 6)`` rows."""
    detections = []
    for d in raw:
        if d[1] < threshold:
            break
        detections.append((labels[int(d[0])], float(d[1]), (d[2], d[3], d[4], d[5])))
    return detections


#: a model whose file has more rows (30) than Frigate reads (20) and fewer detections than rows on every image
#: (12 to 23 of them, all above its 0.5 threshold): Frigate's 20-row cut and the padding both come into play.
FRIGATE_MODEL = {"background_bias": 5.0, "detections_per_image": 30, "score_threshold": 0.5}


@pytest.fixture(scope="module")
def frigate_model():
    return varied_model(**FRIGATE_MODEL)


@pytest.fixture(scope="module")
def frigate_weights(tmp_path_factory, frigate_model):
    return weights_file(frigate_model, tmp_path_factory.mktemp("frigate"))


@pytest.fixture(scope="module")
def frigate_xml(tmp_path_factory, frigate_weights):
    """``ssdlite export --format openvino --layout frigate``, through the command line."""
    skip_without("openvino")
    path = tmp_path_factory.mktemp("frigate") / "model.xml"
    assert main(["export", "--weights", str(frigate_weights), "--format", "openvino", "--layout", "frigate", "--out", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def frigate_frames(frigate_model):
    from ssdlite.deploy.runtimes.static import as_input_image

    return [as_input_image(image, frigate_model.config) for image in shapes_images(8, frigate_model.config.size, seed=7)]


def test_frigate_openvino_detector_gives_pytorch_detections(frigate_xml, frigate_model, frigate_frames):
    """Frigate's code on the file (CPU plugin in f32) gives PyTorch's detections; the rows are Frigate's layout."""
    from ssdlite.deploy.runtimes.openvino import labelmap_path

    labels = load_labels(labelmap_path(frigate_xml).read_text())
    assert [labels[i] for i in range(len(CLASSES))] == CLASSES and labels[len(CLASSES)] == "unknown"
    detector = FrigateOpenVINO(frigate_xml, precision="f32")
    assert detector.valid and detector.compiled.outputs[0].get_shape()[2] == FRIGATE_MODEL["detections_per_image"]
    import openvino as ov

    size = frigate_model.config.size
    assert detector.input_tensor.get_element_type() == ov.Type.u8 and list(detector.input_tensor.get_shape()) == [1, size, size, 3]
    found = [remote_detect(detector.detect_raw(as_frame(frame)), labels) for frame in frigate_frames]
    comparison = compare_with_pytorch(frigate_model, frigate_frames, found)
    assert comparison.ok, comparison.problems
    # both ends of Frigate's loop were reached: its 20-row cut, and the padding after the last detection
    assert max(len(f) for f in found) == ROWS and min(len(f) for f in found) < ROWS
    for frame in frigate_frames:
        rows = detector.run(as_frame(frame))[0][0, 0]  # (30, 7)
        n = int((rows[:, 0] >= 0).sum())
        assert (rows[:n, 0] == 0).all() and (np.diff(rows[:n, 2]) <= 0).all() and (rows[:n, 2] > 0).all()
        assert n < len(rows) and (rows[n:] == [-1, 0, 0, 0, 0, 0, 0]).all()  # padding: conf 0 stops Frigate's loop


def test_ssdlite_reads_the_frigate_file(frigate_xml, frigate_model, frigate_frames):
    """``--backend openvino`` (predict, eval, serve) runs a Frigate-layout file: its metadata says which layout it has."""
    from ssdlite.deploy.predictor import Predictor

    predictor = Predictor(frigate_xml, backend="openvino", score_threshold=0.0)
    assert predictor.classes == CLASSES
    with torch.no_grad():
        expected = frigate_model(frigate_frames)
    comparison = compare_detections(expected, predictor(frigate_frames), score_floor=FRIGATE_MODEL["score_threshold"])
    assert comparison.ok and comparison.matched == sum(len(e["scores"]) for e in expected), comparison.problems


def test_frigate_openvino_int8(tmp_path, frigate_weights, frigate_frames, capsys):
    """``--int8 --layout frigate``: NNCF quantizes the network, the layout wraps the quantized model. Frigate's code
    gives the detections ssdlite's backend gives on the file (which the export compared with PyTorch fp32: reported,
    as every INT8 file's)."""
    from ssdlite.deploy.predictor import Predictor
    from ssdlite.deploy.runtimes.openvino import labelmap_path

    skip_without("openvino")
    write_images(tmp_path / "calib", 6, seed=8)
    out = tmp_path / "int8.xml"
    code = main(["export", "--weights", str(frigate_weights), "--format", "openvino", "--layout", "frigate", "--int8",
                 "--calib", str(tmp_path / "calib"), "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and "INT8" in printed and "the same objects as PyTorch fp32" in printed and "Frigate's layout" in printed
    detector = FrigateOpenVINO(out, precision="f32")
    labels = load_labels(labelmap_path(out).read_text())
    found = [remote_detect(detector.detect_raw(as_frame(frame)), labels) for frame in frigate_frames]
    expected = frigates_share(Predictor(out, backend="openvino", score_threshold=0.0)(frigate_frames))
    size = frigate_frames[0].shape[-1]
    comparison = compare_detections(expected, [as_detections(f, size) for f in found], score_floor=THRESHOLD)
    assert comparison.ok and comparison.matched > 0, comparison.problems


def test_frigate_layout_options(weights, tmp_path, capsys):
    """The parser offers the module's layouts; the label map reads back in Frigate whatever the names; a batched Frigate
    file and --layout for another runtime are refused."""
    import argparse

    from ssdlite.cli import build_parser
    from ssdlite.deploy.runtimes.openvino import LAYOUTS, labelmap

    assert load_labels(labelmap(["3 wheeler", "car"], 3))[0] == "3 wheeler"  # a name Frigate misreads unindexed
    assert labelmap([], 3) == "0 class1\n1 class2\n"  # a weights file without class names: named as predict names them

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    layout = next(a for a in sub.choices["export"]._actions if "--layout" in a.option_strings)
    assert tuple(layout.choices) == LAYOUTS
    skip_without("openvino")
    out = tmp_path / "m.xml"
    assert main(["export", "--weights", str(weights), "--format", "openvino", "--layout", "frigate", "--batch", "2", "--out", str(out)]) == 2
    assert "--layout frigate: the file takes batch 1" in capsys.readouterr().err
    assert main(["export", "--weights", str(weights), "--format", "tflite", "--layout", "frigate", "--out", str(tmp_path / "m.tflite")]) == 2
    assert "--layout applies to --format openvino, not tflite" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
