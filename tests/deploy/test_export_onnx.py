"""ONNX export: the raw network and the in-graph postprocess reproduce PyTorch, and the check can fail."""

from __future__ import annotations

import dataclasses
import onnx
import pytest
import torch

from ssdlite.deploy.compare import compare_detections
from ssdlite.deploy.onnx_export import (
    ExportMismatchError,
    export_onnx,
    verify_onnx,
)
from ssdlite.deploy.onnx_postprocess import NMS_OUTPUTS, append_postprocess, detections_from_padded, postprocess_model
from ssdlite.models.postprocess import PostprocessSettings
from ssdlite.deploy.onnx_runtime import make_session, read_metadata
from ssdlite.deploy.samples import sample_images

from deploy_helpers import CLASSES


def _run(session, x):
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"images": x.numpy()})))


@pytest.mark.parametrize("n", [1, 3])
def test_raw_export_matches_pytorch_at_any_batch(onnx_raw, model, n):
    path, report = onnx_raw
    assert report.batches_checked == [1, 3] and report.max_raw_diff <= 1e-4 and report.detections.ok
    session = make_session(path)
    assert isinstance(session.get_inputs()[0].shape[0], str)  # symbolic batch
    x, _ = model.preprocess(sample_images(n, 150, 200, seed=7))  # not the inputs the export checked
    out = _run(session, x)
    with torch.no_grad():
        cls_logits, bbox_deltas = model.core(x)
    assert out["cls_logits"].shape == tuple(cls_logits.shape)
    assert torch.allclose(torch.from_numpy(out["cls_logits"]), cls_logits, atol=1e-4, rtol=0)
    assert torch.allclose(torch.from_numpy(out["bbox_deltas"]), bbox_deltas, atol=1e-4, rtol=0)
    meta = read_metadata(session, path)
    assert meta["classes"] == CLASSES and meta["outputs"] == "raw" and meta["config"] == model.config.to_dict()


@pytest.mark.parametrize("n", [1, 3])
def test_nms_export_gives_the_same_detections_as_pytorch(onnx_nms, model, n):
    session = make_session(onnx_nms)
    assert read_metadata(session, onnx_nms)["outputs"] == "nms"
    images = sample_images(n, 150, 200, seed=11)
    x, sizes = model.preprocess(images)
    out = _run(session, x)
    got = detections_from_padded(*(out[k] for k in NMS_OUTPUTS), sizes)
    with torch.no_grad():
        expected = model(images)
    assert all(len(d["scores"]) > 0 for d in expected)
    comparison = compare_detections(expected, got, min_iou=0.999, score_tol=1e-5)
    assert comparison.ok, comparison.problems
    assert comparison.detections == sum(len(d["scores"]) for d in expected)


def test_in_graph_postprocess_no_detections_and_more_candidates_than_the_cap(model):
    """The same nodes as the export, fed chosen network outputs: an empty image and an over-full one."""
    settings = PostprocessSettings.of(model.config)
    tail = postprocess_model(model.num_classes, model.default_boxes.boxes, 18, settings)
    a, k = model.default_boxes.boxes.shape[0], model.num_classes
    g = torch.Generator().manual_seed(3)
    cls_logits = torch.randn(3, a, k, generator=g) * 3  # (3, A, K)
    cls_logits[0, :, 0] += 30.0  # background everywhere: nothing above 0.01
    cls_logits[2, :, 0] += 5.0
    bbox_deltas = torch.randn(3, a, 4, generator=g) * 0.3
    session = make_session(tail)
    names = [o.name for o in session.get_outputs()]
    out = dict(zip(names, session.run(None, {"cls_logits_in": cls_logits.numpy(), "bbox_deltas_in": bbox_deltas.numpy()})))
    unit = [(1, 1)] * 3
    got = detections_from_padded(*(out[name] for name in NMS_OUTPUTS), unit)
    expected = model.postprocess(cls_logits, bbox_deltas, unit)
    cap = settings.detections_per_image
    assert out["num_detections"].tolist()[0] == 0 and len(expected[0]["scores"]) == 0
    assert out["num_detections"].tolist()[1] == cap  # capped ...
    uncapped = model.postprocess_detections
    uncapped_limit, uncapped.detections_per_image = uncapped.detections_per_image, 10_000
    try:
        assert len(model.postprocess(cls_logits, bbox_deltas, unit)[1]["scores"]) > cap  # ... from more candidates
    finally:
        uncapped.detections_per_image = uncapped_limit
    assert out["boxes"].shape == (3, cap, 4) and (out["scores"][0] == 0).all() and (out["labels"][0] == 0).all()
    comparison = compare_detections(expected, got)
    assert comparison.ok, comparison.problems


def test_verification_fails_on_a_wrong_network(onnx_raw, model):
    raw = onnx.load(onnx_raw[0])
    weight = next(t for t in raw.graph.initializer if len(t.dims) == 4)
    values = onnx.numpy_helper.to_array(weight).copy()
    values.flat[0] += 1.0
    weight.CopyFrom(onnx.numpy_helper.from_array(values, weight.name))
    with pytest.raises(ExportMismatchError, match="differs from PyTorch by up to"):
        verify_onnx(model, raw, raw, with_nms=False, batches=[1])


def test_verification_fails_on_a_wrong_postprocess(onnx_raw, model):
    raw = onnx.load(onnx_raw[0])
    settings = dataclasses.replace(PostprocessSettings.of(model.config), nms_threshold=0.2)  # not the model's 0.45
    wrong = append_postprocess(raw, model.default_boxes.boxes, settings)
    with pytest.raises(ExportMismatchError, match="postprocess differs"):
        verify_onnx(model, wrong, raw, with_nms=True, batches=[1])


def test_tied_scores_are_noted_not_failed(model):
    """Equal scores (an untrained model gives them) make the detections not unique; the check says so."""
    from ssdlite.deploy.onnx_export import ExportReport, _check_detections

    tail = postprocess_model(model.num_classes, model.default_boxes.boxes, 18, PostprocessSettings.of(model.config))
    a = model.default_boxes.boxes.shape[0]
    cls_logits = torch.zeros(1, a, model.num_classes)  # every class of every box scores exactly 1/K
    bbox_deltas = torch.zeros(1, a, 4)
    session = make_session(tail)
    names = [o.name for o in session.get_outputs()]
    out = dict(zip(names, session.run(None, {"cls_logits_in": cls_logits.numpy(), "bbox_deltas_in": bbox_deltas.numpy()})))
    report = ExportReport(path="", format="onnx", with_nms=True, dynamic_batch=False, opset=18)
    tol = {"min_iou": 0.999, "score_tol": 1e-5}
    shifted = dict(out, boxes=out["boxes"] + 0.5)  # now certainly different: tolerated only because of the ties
    assert _check_detections(model, cls_logits, bbox_deltas, shifted, report, "tied", tol) is False
    varied = torch.randn(1, a, model.num_classes, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ExportMismatchError):
        _check_detections(model, varied, bbox_deltas, shifted, report, "varied", tol)


def test_failed_verification_writes_nothing(tmp_path, onnx_raw, model, monkeypatch):
    import ssdlite.deploy.onnx_export as export_module

    def refuse(*args, **kwargs):
        raise ExportMismatchError("differs")

    monkeypatch.setattr(export_module, "export_core_onnx", lambda *args: onnx.load(onnx_raw[0]))  # skip re-exporting
    monkeypatch.setattr(export_module, "verify_onnx", refuse)
    with pytest.raises(ExportMismatchError):
        export_onnx(model, tmp_path / "out.onnx", CLASSES, with_nms=True)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fmt, args", [("onnx", []), ("torchscript", [])])
def test_export_verifies_on_every_given_image(tmp_path, weights, capsys, fmt, args):
    """`--images` puts the check on the user's images (all of them), for ONNX and TorchScript as for the static formats."""
    from deploy_helpers import write_images

    from ssdlite.cli import main

    write_images(tmp_path / "imgs", 5, seed=3)
    out = tmp_path / f"model.{fmt}"
    assert main(["export", "--weights", str(weights), "--format", fmt, *args, "--images", str(tmp_path / "imgs"), "--out", str(out)]) == 0
    assert "detections matched on 5 images" in capsys.readouterr().out and out.is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["export", "--weights", str(weights), "--format", fmt, *args, "--images", str(empty), "--out", str(tmp_path / f"x.{fmt}")]) == 2
    assert "empty: folder has no image" in capsys.readouterr().err and not (tmp_path / f"x.{fmt}").exists()


@pytest.mark.parametrize("fmt, out", [("executorch", "m.executorch"), ("onnx", "m.tflite"), ("tflite", "m")])
def test_export_refuses_a_file_name_its_format_is_not_read_by(tmp_path, weights, capsys, fmt, out):
    """An ExecuTorch program named .executorch, or ONNX named .tflite, would be written and then read by nothing
    (`predict` and the runtimes' tools go by the suffix): refused before anything is done, naming the suffix."""
    from ssdlite.cli import main

    assert main(["export", "--weights", str(weights), "--format", fmt, "--out", str(tmp_path / out)]) == 2
    assert f"{fmt} files are written as .{'pte' if fmt == 'executorch' else fmt}" in capsys.readouterr().err
    assert not (tmp_path / out).exists()


def test_export_of_a_run_verifies_on_the_run_s_validation_images(tmp_path, weights, capsys, monkeypatch):
    """Without --images, a run directory's export is checked on the data it trained on (config.yaml's dataset,
    its validation split), not on synthetic shapes; --int8 calibrates on its training split the same way."""
    import shutil

    from ssdlite.cli import main

    monkeypatch.chdir(tmp_path)  # config.yaml's relative dataset path is relative to where training ran
    assert main(["data", "synth", "shapes", "--num-train", "4", "--num-val", "3", "--size", "96"]) == 0
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(weights, run / "model.safetensors")
    (run / "config.yaml").write_text("data:\n  data: shapes\n  val_split: val\n")
    capsys.readouterr()
    assert main(["export", "--weights", str(run), "--out", "a.onnx"]) == 0
    out = capsys.readouterr().out
    assert "verifying on 3 images of shapes (val split)" in out and "detections matched on 3 images" in out
    # A dataset no longer found from here: the export's own default (synthetic shapes) without a word of the run's data.
    (tmp_path / "shapes").rename(tmp_path / "moved")
    assert main(["export", "--weights", str(run), "--out", "b.onnx"]) == 0
    assert "verifying on" not in capsys.readouterr().out and (tmp_path / "b.onnx").is_file()
    # --int8 needs calibration images: without --calib and without the run's data it says where they would come from.
    assert main(["export", "--weights", str(run), "--format", "openvino", "--int8", "--out", "c.xml"]) == 2
    assert "config.yaml names a dataset found from here" in capsys.readouterr().err
