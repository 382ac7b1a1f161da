"""`Predictor` and `ssdlite predict`: backends agree, outputs are written, a corrupt file is reported and skipped."""

from __future__ import annotations

import json

import pytest
import torch
from deploy_helpers import CLASSES, write_images

from ssdlite.cli import main
from ssdlite.deploy.compare import compare_detections
from ssdlite.deploy.predictor import Predictor
from ssdlite.deploy.sources import expand_sources
from ssdlite.errors import UserError


def test_predict_folder_with_a_corrupt_file(tmp_path, weights, capsys):
    folder = tmp_path / "images"
    good = write_images(folder, 3)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a JPEG")
    out = tmp_path / "out"
    code = main(["predict", str(folder), "--weights", str(weights), "--out", str(out), "--batch-size", "2", "--score-threshold", "0.5"])
    assert code == 0  # the rule for an unreadable input: a warning naming it (an error with --strict)
    assert "broken.jpg" in capsys.readouterr().err
    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == 4
    errors = [line for line in lines if "error" in line]
    assert len(errors) == 1 and errors[0]["file"].endswith("broken.jpg")
    done = [line for line in lines if "error" not in line]
    assert sorted(line["image"] for line in done) == sorted(p.name for p in good)
    assert sum(len(line["detections"]) for line in done) > 0
    for line in done:
        assert (out / line["image"]).is_file()
        for det in line["detections"]:
            x1, y1, x2, y2 = det["box"]
            assert 0 <= x1 <= x2 <= line["width"] and 0 <= y1 <= y2 <= line["height"]
            assert det["score"] >= 0.5 and det["class"] == CLASSES[det["label"] - 1]
    coco = json.loads((out / "coco_results.json").read_text())
    assert len(coco) == sum(len(line["detections"]) for line in done)
    assert {c["image_id"] for c in coco} <= {p.name for p in good}


def test_drawn_image_differs_where_boxes_are(tmp_path, weights):
    from PIL import Image

    [path] = write_images(tmp_path / "one", 1)
    out = tmp_path / "out"
    assert main(["predict", str(path), "--weights", str(weights), "--out", str(out), "--score-threshold", "0.5"]) == 0
    record = json.loads((out / "predictions.jsonl").read_text())
    assert record["detections"]
    original = torch.from_numpy(__import__("numpy").array(Image.open(path)))
    drawn = torch.from_numpy(__import__("numpy").array(Image.open(out / record["image"])))
    assert drawn.shape == original.shape and not torch.equal(drawn, original)


@pytest.mark.parametrize("onnx_file", ["onnx_nms", "onnx_raw"])
def test_onnxruntime_backend_matches_torch(tmp_path, weights, onnx_file, request):
    path = request.getfixturevalue(onnx_file)
    path = path[0] if isinstance(path, tuple) else path
    paths = write_images(tmp_path / "images", 4, seed=5)
    torch_pred = Predictor(weights, score_threshold=0.05, batch_size=3)
    ort_pred = Predictor(path, backend="onnxruntime", score_threshold=0.05, batch_size=3)
    assert ort_pred.classes == torch_pred.classes == CLASSES
    expected = [p.detections for p in torch_pred.predict_paths(paths)]
    got = [p.detections for p in ort_pred.predict_paths(paths)]
    assert sum(len(d["scores"]) for d in expected) > 0
    comparison = compare_detections(expected, got, score_tol=1e-5)
    assert comparison.ok, comparison.problems


def test_onnxruntime_backend_from_weights_exports_in_memory(tmp_path, weights, onnx_raw, monkeypatch):
    """A weights file with --backend onnxruntime: exported with NMS and verified before use."""
    import onnx

    import ssdlite.deploy.onnx_export as export_module

    monkeypatch.setattr(export_module, "export_core_onnx", lambda *args: onnx.load(onnx_raw[0]))  # the same model, exported once
    paths = write_images(tmp_path / "images", 2, seed=9)
    got = [p.detections for p in Predictor(weights, backend="onnxruntime", score_threshold=0.05).predict_paths(paths)]
    expected = [p.detections for p in Predictor(weights, score_threshold=0.05).predict_paths(paths)]
    comparison = compare_detections(expected, got, score_tol=1e-5)
    assert comparison.ok and comparison.detections > 0, comparison.problems


def test_sources_folders_globs_and_missing(tmp_path):
    paths = write_images(tmp_path / "a" / "nested", 2) + write_images(tmp_path / "b", 2, seed=1)
    (tmp_path / "b" / "notes.txt").write_text("not an image")
    assert expand_sources([str(tmp_path / "a")]) == [p.resolve() for p in paths[:2]]
    assert expand_sources([str(tmp_path / "b" / "*.png")]) == [paths[3].resolve()]
    assert len(expand_sources([str(tmp_path / "a"), str(paths[0])])) == 2  # duplicates dropped
    with pytest.raises(UserError, match="no such file or folder"):
        expand_sources([str(tmp_path / "missing.jpg")])
    with pytest.raises(UserError, match="matches no image or video"):
        expand_sources([str(tmp_path / "*.gif")])


def test_unknown_weights_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        Predictor(tmp_path / "nothing.onnx", backend="onnxruntime")
