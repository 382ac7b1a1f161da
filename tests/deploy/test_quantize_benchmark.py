"""INT8 quantization end to end, and `ssdlite benchmark --json`."""

from __future__ import annotations

import json

import onnx
import torch
from deploy_helpers import write_images

from ssdlite.cli import main
from ssdlite.deploy.predictor import Predictor
from ssdlite.models.summary import count_parameters


def test_quantize_runs_end_to_end_and_measures_the_drop(tmp_path, onnx_nms, capsys):
    from ssdlite.data import write_synthetic

    data = write_synthetic(tmp_path / "data", num_train=4, num_val=3, size=128)
    out = tmp_path / "int8.onnx"
    capsys.readouterr()
    code = main(["quantize", "--onnx", str(onnx_nms), "--calib", str(data), "--out", str(out), "--val", str(data), "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["calibration_images"] == 4  # the train split only
    assert result["map50_drop"] == result["fp32_voc07_map50"] - result["int8_voc07_map50"]
    ops = {n.op_type for n in onnx.load(out).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "NonMaxSuppression"} <= ops
    images = write_images(tmp_path / "images", 2)
    preds = list(Predictor(out, backend="onnxruntime", score_threshold=0.0).predict_paths(images))
    assert all(p.error is None and len(p.detections["scores"]) > 0 for p in preds)


def test_calibration_images_from_files_skip_unreadable_ones(tmp_path):
    from ssdlite.deploy.quantize import calibration_images

    write_images(tmp_path, 3)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    images = list(calibration_images([str(tmp_path)], limit=10))
    assert len(images) == 3 and all(i.dtype == torch.uint8 and i.shape[0] == 3 for i in images)


def test_benchmark_json(capsys, model):
    args = ["benchmark", "--num-classes", "4", "--size", "96", "--width-mult", "0.35", "--iters", "3", "--warmup", "0", "--json"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["backend"] == "torch" and result["params"] == count_parameters(model)
    assert result["madds"] > 0 and result["images_per_s"] > 0
    lat = result["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"]
