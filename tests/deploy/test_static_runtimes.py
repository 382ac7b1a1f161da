"""ExecuTorch, LiteRT and OpenVINO: exported through the command line, verified, caught when they differ, run by Predictor."""

from __future__ import annotations

import copy
import numpy as np
import pytest
import torch
from deploy_helpers import CLASSES, RUNTIMES, skip_without, write_images

from ssdlite.cli import main
from ssdlite.deploy.compare import compare_detections
from ssdlite.deploy.predictor import Predictor
from ssdlite.deploy.verify import ExportMismatchError

@pytest.fixture(scope="session", params=sorted(RUNTIMES))
def exported(request, export_once):
    """``(runtime, path)``: each runtime's fp32 file."""
    return request.param, export_once(request.param)


@pytest.fixture(scope="session")
def tflite_file(export_once):
    """The LiteRT fp32 file alone, for the tests of LiteRT's own file format (the same file as ``exported``'s)."""
    return export_once("tflite")


def file_pixels(runtime: str, images, model):
    """The images as the runtime's file sees them: a LiteRT file takes uint8 pixels (ssdlite's backend rounds its
    resized image to them), the others the resized float image itself."""
    from ssdlite.deploy.runtimes.litert import as_input_image

    return [as_input_image(image, model.config) for image in images] if runtime == "tflite" else list(images)


def test_export_verifies_and_predicts_like_torch(exported, weights, model, tmp_path):
    """Images of other sizes than the input, batch 2 on a batch-1 file. PyTorch is given the pixels the file is given
    (LiteRT: the resized image rounded to uint8; this seeded model's detections move with a 1/510 change of the
    pixels, so PyTorch on the unrounded image is not the reference), its boxes mapped back to each image's size."""
    from ssdlite.data.decode import decode_image

    runtime, path = exported
    paths = write_images(tmp_path / "images", 3, seed=4)
    backend = Predictor(path, backend=runtime, score_threshold=0.05, batch_size=2)  # batch 2 on a batch-1 file
    assert backend.classes == CLASSES and backend.backend == runtime
    images = [decode_image(p).as_subclass(torch.Tensor) for p in paths]
    with torch.no_grad():
        outputs = model(file_pixels(runtime, images, model))
    expected = []
    for image, pixels, out in zip(images, file_pixels(runtime, images, model), outputs):
        scale = torch.tensor([image.shape[2] / pixels.shape[2], image.shape[1] / pixels.shape[1]] * 2)
        keep = out["scores"] > 0.05
        expected.append({"boxes": out["boxes"][keep] * scale, "scores": out["scores"][keep], "labels": out["labels"][keep]})
    got = [p.detections for p in backend.predict_paths(paths)]
    comparison = compare_detections(expected, got, score_floor=0.05)
    assert comparison.ok and comparison.matched > 0, comparison.problems


def test_a_different_model_fails_the_check(exported, model):
    """The check compares against PyTorch: a perturbed class predictor on the PyTorch side is a mismatch."""
    from ssdlite.deploy.backends import open_backend
    from ssdlite.deploy.samples import shapes_images
    from ssdlite.deploy.runtimes.static import verify_static

    runtime, path = exported
    runner = open_backend(runtime, path, torch.device("cpu"))
    images = file_pixels(runtime, shapes_images(2, model.config.size), model)
    verify_static(model, runner.outputs, 1, images, runtime, int8=False)  # the file as written passes
    perturbed = copy.deepcopy(model)
    with torch.no_grad():
        weight = perturbed.core.head.classification.predictors[0][-1].weight
        weight.add_(0.5 * torch.randn(weight.shape, generator=torch.Generator().manual_seed(0)))
    with pytest.raises(ExportMismatchError, match="unmatched"):
        verify_static(perturbed, runner.outputs, 1, images, runtime, int8=False)


def test_openvino_file_with_a_perturbed_weight_fails(tmp_path, model, export_once):
    """A planted difference in the exported program itself: the IR's weights (.bin) changed after export (an
    OpenVINO IR's .bin is raw weights; a .pte's are packed inside the XNNPACK delegate)."""
    path = export_once("openvino")
    from ssdlite.deploy.runtimes.openvino import Backend as OpenVINOBackend
    from ssdlite.deploy.samples import shapes_images
    from ssdlite.deploy.runtimes.static import verify_static

    weights = np.fromfile(path.with_suffix(".bin"), dtype=np.uint8).copy()
    values = weights[: len(weights) // 4 * 4].view(np.float32)
    values[::97] += 0.5  # every 97th float32 of the file
    (tmp_path / path.name).write_bytes(path.read_bytes())
    weights.tofile(tmp_path / path.with_suffix(".bin").name)
    runner = OpenVINOBackend(tmp_path / path.name)
    with pytest.raises(ExportMismatchError, match="OpenVINO does not give PyTorch's detections"):
        verify_static(model, runner.outputs, 1, shapes_images(4, model.config.size), "OpenVINO", int8=False)


def test_int8_export_calibrates_and_runs(tmp_path, weights, capsys):
    skip_without("openvino")
    images = write_images(tmp_path / "calib", 6, seed=8)
    out = tmp_path / "int8.xml"
    code = main(["export", "--weights", str(weights), "--format", "openvino", "--int8", "--calib", str(tmp_path / "calib"), "--out", str(out)])
    assert code == 0 and out.is_file()
    printed = capsys.readouterr().out
    assert "INT8" in printed and "calibrated on 6 images" in printed and "the same objects as PyTorch fp32" in printed
    (prediction,) = Predictor(out, backend="openvino", score_threshold=0.0).predict_paths(images[:1])
    assert prediction.error is None and prediction.detections["boxes"].shape[1] == 4


def test_missing_extra_names_it():
    from ssdlite.deploy.optional import require
    from ssdlite.errors import UserError

    with pytest.raises(UserError, match=r"pip install 'ssdlite\[openvino\]'"):
        require("ssdlite_no_such_runtime", "the OpenVINO backend", "openvino")


def test_int8_and_static_options_are_refused_for_onnx(weights, tmp_path, capsys):
    assert main(["export", "--weights", str(weights), "--format", "openvino", "--int8", "--out", str(tmp_path / "m.xml")]) == 2
    assert "--int8 needs --calib" in capsys.readouterr().err
    assert main(["export", "--weights", str(weights), "--format", "onnx", "--int8", "--calib", "x", "--out", str(tmp_path / "m.onnx")]) == 2
    assert "--int8 applies to --format executorch/tflite/openvino/web, not onnx; ONNX Runtime INT8: ssdlite quantize" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_eval_reads_an_exported_file_with_the_same_code(exported, weights):
    """``ssdlite eval --weights FILE``: the file behind its runtime scores as the PyTorch model does."""
    from ssdlite.cli.evaluate import _load
    from ssdlite.data.synthetic import SyntheticShapes
    from ssdlite.engine.evaluate import evaluate

    runtime, path = exported
    dataset = SyntheticShapes(num_images=4, size=128, split="val")
    module, info = _load(str(path), torch.device("cpu"))
    assert info["classes"] == CLASSES and module.num_classes == len(CLASSES) + 1
    model, _ = _load(str(weights), torch.device("cpu"))
    got, want = (evaluate(m, dataset, progress=False) for m in (module, model))
    assert got["num_detections"] == want["num_detections"] > 0
    assert got["voc07_map50"] == pytest.approx(want["voc07_map50"], abs=1e-6)
    assert got["per_class"]["square"]["num_detections"] == want["per_class"]["square"]["num_detections"]


def test_openvino_through_the_program_as_users_run_it(export_once, tmp_path):
    """``ssdlite predict`` as a program: the command must not be re-executed under tcmalloc (OpenVINO's CPU
    plugin aborted there with "double free or corruption") and must not crash in telemetry."""
    import subprocess
    import sys

    path = export_once("openvino")
    images = write_images(tmp_path / "images", 1, seed=2)
    done = subprocess.run(
        [sys.executable, "-m", "ssdlite.cli", "predict", "--weights", str(path), str(images[0]), "--out", str(tmp_path / "out"), "--no-draw"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "out" / "predictions.jsonl").is_file()


def test_executorch_int8_holds_int8_weights(export_once, model):
    """The PT2E INT8 file is about a third of the fp32 one (per-channel int8 convolution weights in the XNNPACK
    delegate); a quantizer that left the weights in float32 gave a file of the fp32 size."""
    path = export_once("executorch")
    from ssdlite.deploy.runtimes.executorch import build as build_executorch
    from ssdlite.deploy.samples import shapes_images

    calibration = shapes_images(4, model.config.size, seed=3)
    data, report = build_executorch(model, CLASSES, int8=True, calibration=calibration, images=calibration[:2])
    assert len(data) < 0.4 * path.stat().st_size
    assert report.int8 and report.calibration_images == 4 and report.detections.matched > 0  # the same objects as fp32


def test_tflite_file_with_a_perturbed_weight_fails(tmp_path, model, tflite_file):
    """A planted difference in the exported file itself: the convolutions' float32 weights changed in the flatbuffer."""
    path = tflite_file
    from ai_edge_litert import schema_py_generated as schema

    from ssdlite.deploy.runtimes.litert import Backend as LiteRTBackend, read_tflite_metadata
    from ssdlite.deploy.samples import shapes_images
    from ssdlite.deploy.runtimes.static import verify_static

    import flatbuffers

    data = path.read_bytes()
    flat = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    graph = flat.subgraphs[0]
    weights = {graph.tensors[op.inputs[1]].buffer for op in graph.operators
               if flat.operatorCodes[op.opcodeIndex].builtinCode == schema.BuiltinOperator.CONV_2D}
    assert weights
    for index in weights:  # every convolution's float32 weights, every 97th value
        values = np.asarray(flat.buffers[index].data, dtype=np.uint8).copy().view(np.float32)
        values[::97] += 0.5
        flat.buffers[index].data = values.view(np.uint8)
    builder = flatbuffers.Builder(len(data) + 1024)
    builder.Finish(flat.Pack(builder), file_identifier=b"TFL3")
    edited = bytes(builder.Output())
    assert read_tflite_metadata(edited) == read_tflite_metadata(data)  # still a valid ssdlite file
    images = file_pixels("tflite", shapes_images(4, model.config.size), model)
    verify_static(model, LiteRTBackend(data).outputs, 1, images, "LiteRT", int8=False)  # the file as written passes
    with pytest.raises(ExportMismatchError, match="LiteRT does not give PyTorch's detections"):
        verify_static(model, LiteRTBackend(edited).outputs, 1, images, "LiteRT", int8=False)


def test_tflite_without_metadata_is_refused(tmp_path, tflite_file):
    path = tflite_file
    from ssdlite.deploy.runtimes.litert import Backend as LiteRTBackend
    from ssdlite.errors import UserError

    (tmp_path / "x.tflite").write_bytes(b"not a flatbuffer")
    with pytest.raises(UserError, match="x.tflite"):
        LiteRTBackend(tmp_path / "x.tflite")


def test_tflite_int8_holds_int8_weights_and_runs(tflite_file, model, tmp_path):
    """LiteRT's PT2E INT8: int8 convolution weights (about a quarter of the fp32 file's size), the same objects as fp32."""
    path = tflite_file
    from ssdlite.deploy.runtimes.litert import Backend as LiteRTBackend, build as build_litert
    from ssdlite.deploy.samples import shapes_images

    calibration = shapes_images(4, model.config.size, seed=3)
    data, report = build_litert(model, CLASSES, int8=True, calibration=calibration, images=calibration[:2])
    assert len(data) < 0.4 * path.stat().st_size
    assert report.int8 and report.calibration_images == 4 and report.detections.matched > 0
    boxes, scores, labels, count = LiteRTBackend(data).outputs(model.preprocess(calibration[:1])[0])
    assert boxes.shape[-1] == 4 and labels.dtype == torch.int64 and int(count[0]) >= 0


def test_mobilenet_v3_exports_verified(tmp_path, capsys):
    """MobileNetV3's layers (hard-swish, squeeze-and-excitation) go through the static export (network + NMS) with the
    same detections. One runtime, the quickest, and one V3 only: an ExecuTorch or LiteRT export takes about a minute
    here and the suite must stay under 15 minutes (all three runtimes with V3-Large and V3-Small passed the same
    check: benchmarks/RESULTS.md)."""
    arch, runtime = "mobilenet_v3_large", "openvino"
    from deploy_helpers import varied_model

    from ssdlite.models.io import save_safetensors

    skip_without(runtime)
    weights = tmp_path / "model.safetensors"
    save_safetensors(varied_model(arch=arch), weights, classes=CLASSES)
    write_images(tmp_path / "images", 3, seed=5)
    path = tmp_path / f"model{RUNTIMES[runtime][1]}"
    assert main(["export", "--weights", str(weights), "--format", runtime, "--images", str(tmp_path / "images"), "--out", str(path)]) == 0
    out = capsys.readouterr().out
    matched = int(out.split(" detections matched")[0].rsplit(" ", 1)[-1].split("/")[0])
    assert path.is_file() and matched > 0, out
