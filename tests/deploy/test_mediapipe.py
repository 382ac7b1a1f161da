"""The default ``.tflite`` runs in MediaPipe Tasks' ``ObjectDetector`` and gives PyTorch's detections.

MediaPipe cannot live in the project's environment (it pulls ``opencv-contrib-python``): it runs in
``.venv-mediapipe`` (``make mediapipe``, which ``make test`` runs first), through the script of
:mod:`ssdlite.deploy.runtimes.litert_mediapipe`, in a subprocess. Without that environment these tests skip, saying
so. The images are written as PNG at the model's input size (MediaPipe resizes anything else with its own
interpolation); every detection above 0.3 of either side must match one of the other: same class, IoU >= 0.95 in
MediaPipe's whole pixels, score within 2e-3 (:func:`ssdlite.deploy.runtimes.litert.compare_mediapipe`).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from deploy_helpers import CLASSES, skip_without
from PIL import Image

from ssdlite.deploy.samples import shapes_images

ROOT = Path(__file__).resolve().parents[2]
MEDIAPIPE_PYTHON = ROOT / ".venv-mediapipe" / "bin" / "python"
SCRIPT = ROOT / "src" / "ssdlite" / "deploy" / "runtimes" / "litert_mediapipe.py"


def mediapipe_python() -> Path:
    if not MEDIAPIPE_PYTHON.exists():
        pytest.skip(f"MediaPipe's environment {MEDIAPIPE_PYTHON.parent.parent} is absent: make mediapipe")
    return MEDIAPIPE_PYTHON


def run_mediapipe(model: Path, images: list[Path]) -> list[list[dict]]:
    done = subprocess.run([str(mediapipe_python()), str(SCRIPT), str(model), *map(str, images), "--score", "0.3"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def write_pngs(folder: Path, model, n: int = 4, seed: int = 5) -> tuple[list[Path], list[torch.Tensor]]:
    """``n`` shapes images resized to the model's ``S x S`` uint8 (what the file takes), as PNG files and as tensors."""
    from ssdlite.deploy.runtimes.litert import as_input_image

    folder.mkdir(parents=True, exist_ok=True)
    paths, tensors = [], []
    for i, image in enumerate(shapes_images(n, model.config.size, seed=seed)):
        image = as_input_image(image, model.config)  # (3, S, S) uint8
        path = folder / f"val{i}.png"
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(path)
        paths.append(path)
        tensors.append(image)
    return paths, tensors


@pytest.fixture(scope="module")
def pngs(tmp_path_factory, model):
    return write_pngs(tmp_path_factory.mktemp("mediapipe-images"), model)


def assert_mediapipe_matches(model, path: Path, pngs, int8: bool = False):
    from ssdlite.deploy.runtimes.litert import compare_mediapipe

    paths, tensors = pngs
    found = run_mediapipe(path, paths)
    comparison = compare_mediapipe(model, tensors, found, CLASSES, int8=int8)
    assert comparison.ok, comparison.problems
    assert comparison.matched >= len(paths) and sum(map(len, found)) >= comparison.matched  # something to compare
    return found, comparison


def test_mediapipe_gives_pytorch_detections(export_once, model, pngs):
    """The default export (uint8 input), exported by ``ssdlite export --format tflite`` as a user would."""
    assert_mediapipe_matches(model, export_once("tflite"), pngs)


def test_mediapipe_gives_ssdlite_predict_detections(export_once, pngs):
    """MediaPipe against ``ssdlite predict``'s own LiteRT backend on the same file, both ways."""
    from ssdlite.deploy.compare import compare_detections
    from ssdlite.deploy.predictor import Predictor
    from ssdlite.deploy.runtimes.litert import MEDIAPIPE_MATCH, MEDIAPIPE_SCORE, mediapipe_boxes

    path = export_once("tflite")
    paths, _ = pngs
    found = run_mediapipe(path, paths)
    ours = [p.detections for p in Predictor(path, backend="tflite", score_threshold=MEDIAPIPE_SCORE).predict_paths(paths)]
    got = [{"boxes": torch.tensor([d["box"] for d in image], dtype=torch.float32).view(-1, 4),
            "scores": torch.tensor([d["score"] for d in image]),
            "labels": torch.tensor([CLASSES.index(d["name"]) + 1 for d in image], dtype=torch.int64)} for image in found]
    expected = [{**d, "boxes": mediapipe_boxes(d["boxes"], g["boxes"])} for d, g in zip(ours, got)]
    comparison = compare_detections(expected, got, score_floor=MEDIAPIPE_SCORE, **MEDIAPIPE_MATCH)
    assert comparison.ok and comparison.matched > 0, comparison.problems


def test_float32_input_takes_mediapipe_normalization(weights, model, pngs, tmp_path, capsys):
    """``ssdlite export --input-type float32``: a 1 x S x S x 3 float32 input, fed (pixel - 0) / 255 by MediaPipe as the
    file's NormalizationOptions say."""
    skip_without("tflite")
    from ai_edge_litert.interpreter import Interpreter

    from ssdlite.cli import main

    mediapipe_python()
    path = tmp_path / "float.tflite"
    folder = pngs[0][0].parent
    assert main(["export", "--weights", str(weights), "--format", "tflite", "--input-type", "float32", "--images", str(folder), "--out", str(path)]) == 0
    assert "float32 [0, 1] input" in capsys.readouterr().out
    (detail,) = Interpreter(model_path=str(path)).get_input_details()
    assert detail["dtype"] == np.float32 and detail["shape"].tolist() == [1, model.config.size, model.config.size, 3]
    assert_mediapipe_matches(model, path, pngs)


def test_input_type_is_refused_for_other_formats(weights, tmp_path, capsys):
    from ssdlite.cli import main

    assert main(["export", "--weights", str(weights), "--format", "openvino", "--input-type", "float32", "--out", str(tmp_path / "m.xml")]) == 2
    assert "--input-type applies to --format tflite/web, not openvino" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_int8_file_runs_in_mediapipe(model, pngs, tmp_path):
    """INT8 keeps the uint8 input (the normalization in front keeps the first quantize in the graph), and MediaPipe
    finds the same objects in it as PyTorch fp32 (same class, IoU >= 0.5; INT8 scores differ)."""
    skip_without("tflite")
    from ai_edge_litert.interpreter import Interpreter

    from ssdlite.deploy.runtimes.litert import build

    mediapipe_python()
    calibration = shapes_images(8, model.config.size, seed=3)
    data, report = build(model, CLASSES, int8=True, calibration=calibration, images=pngs[1])
    interpreter = Interpreter(model_content=data)
    assert interpreter.get_input_details()[0]["dtype"] == np.uint8
    path = tmp_path / "int8.tflite"
    path.write_bytes(data)
    found, comparison = assert_mediapipe_matches(model, path, pngs, int8=True)
    assert comparison.matched > 0


READ_METADATA = """
import sys
from mediapipe.tasks.metadata import metadata_schema_py_generated as m
buf = bytearray(open(sys.argv[1], "rb").read())
assert m.ModelMetadata.ModelMetadataBufferHasIdentifier(buf, 0)
meta = m.ModelMetadataT.InitFromPackedBuf(buf, 0)
graph = meta.subgraphMetadata[0]
image = graph.inputTensorMetadata[0]
units = image.processUnits or []
out = {
    "min_parser_version": meta.minParserVersion.decode(),
    "input": [image.content.contentPropertiesType, image.content.contentProperties.colorSpace,
              image.content.contentProperties.defaultSize.width, image.content.contentProperties.defaultSize.height],
    "normalization": [[float(v) for v in u.options.mean] + [float(v) for v in u.options.std] for u in units if u.optionsType == 1],
    "outputs": [t.name.decode() for t in graph.outputTensorMetadata],
    "box": [int(v) for v in graph.outputTensorMetadata[0].content.contentProperties.index]
           + [graph.outputTensorMetadata[0].content.contentProperties.type, graph.outputTensorMetadata[0].content.contentProperties.coordinateType],
    "labels": [(f.name.decode(), f.type) for f in graph.outputTensorMetadata[1].associatedFiles],
}
print(repr(out))
"""


def test_metadata_reads_back_with_the_schema_mediapipe_ships(export_once, tmp_path):
    """The TFLite Model Metadata this project writes by hand, read with the generated code of MediaPipe's own
    ``metadata_schema.fbs`` (field numbers, union types, the box order), and the labels packed after the model."""
    import ast

    from ssdlite.deploy.runtimes.litert import associated_files, read_metadata_bytes

    data = export_once("tflite").read_bytes()
    (tmp_path / "meta.bin").write_bytes(read_metadata_bytes(data, "TFLITE_METADATA"))
    done = subprocess.run([str(mediapipe_python()), "-c", READ_METADATA, str(tmp_path / "meta.bin")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    read = ast.literal_eval(done.stdout.strip())
    assert read == {
        "min_parser_version": "1.0.0",
        "input": [2, 1, 128, 128],  # ImageProperties, RGB, 128 x 128
        "normalization": [],  # uint8: MediaPipe feeds the pixels as they are
        "outputs": ["location", "category", "score", "number of detections"],
        "box": [1, 0, 3, 2, 1, 0],  # [ymin, xmin, ymax, xmax]: BOUNDARIES, RATIO
        "labels": [("labels.txt", 3)],  # TENSOR_VALUE_LABELS
    }
    assert associated_files(data) == {"labels.txt": "".join(f"{c}\n" for c in CLASSES).encode()}


def test_the_exports_mediapipe_check_refuses_a_mismatch(export_once, model, pngs, tmp_path, monkeypatch):
    """The export's own MediaPipe check (:func:`ssdlite.deploy.runtimes.litert.check_mediapipe`, run in the export
    where ``mediapipe`` is importable) with MediaPipe reached through ``.venv-mediapipe``: the file passes against its
    model, and fails against a model whose class predictor was perturbed."""
    import copy

    import ssdlite.deploy.runtimes.litert_mediapipe as litert_mediapipe
    from ssdlite.deploy.runtimes.litert import check_mediapipe
    from ssdlite.deploy.verify import ExportMismatchError

    def detect_in_its_environment(content, arrays, score_threshold):
        (tmp_path / "model.tflite").write_bytes(content)
        paths = []
        for i, array in enumerate(arrays):
            paths.append(tmp_path / f"{i}.png")
            Image.fromarray(array).save(paths[-1])
        return run_mediapipe(tmp_path / "model.tflite", paths)

    monkeypatch.setattr(litert_mediapipe, "detect", detect_in_its_environment)
    data = export_once("tflite").read_bytes()
    _, tensors = pngs
    assert check_mediapipe(model, data, tensors).matched > 0
    perturbed = copy.deepcopy(model)
    with torch.no_grad():
        weight = perturbed.core.head.classification.predictors[0][-1].weight
        weight.add_(0.5 * torch.randn(weight.shape, generator=torch.Generator().manual_seed(0)))
    with pytest.raises(ExportMismatchError, match="MediaPipe's ObjectDetector does not give PyTorch's detections"):
        check_mediapipe(perturbed, data, tensors)


def test_boxes_truncate_as_mediapipe_reports_them():
    """MediaPipe's whole pixels: corner and size truncated; a size within float rounding of a whole pixel may land on
    either side, and takes MediaPipe's box only when that box is one of its two truncations."""
    from ssdlite.deploy.runtimes.litert import mediapipe_boxes

    assert mediapipe_boxes(torch.tensor([[55.55, 14.57, 92.34, 32.19]])).tolist() == [[55, 14, 91, 31]]
    box = torch.tensor([[10.0, 10.0, 29.9996, 30.0]])  # width 19.9996: 19 truncated, 20 a rounding away
    assert mediapipe_boxes(box).tolist() == [[10, 10, 29, 30]]
    assert mediapipe_boxes(box, torch.tensor([[10.0, 10.0, 30.0, 30.0]])).tolist() == [[10, 10, 30, 30]]
    assert mediapipe_boxes(box, torch.tensor([[11.0, 10.0, 31.0, 30.0]])).tolist() == [[10, 10, 29, 30]]  # not a truncation of it
    assert mediapipe_boxes(torch.tensor([[10.0, 10.0, 29.5, 30.0]]), torch.tensor([[10.0, 10.0, 30.0, 30.0]])).tolist() == [[10, 10, 29, 30]]
