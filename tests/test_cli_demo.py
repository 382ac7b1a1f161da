"""`ssdlite demo` end to end at a toy scale: every output is written and the summary tells the setting."""

import json

from ssdlite.cli import build_parser, main
from ssdlite.cli.demo import DEMO_MODEL
from ssdlite.cli.options import model_config_from_args


def test_demo_defaults_are_the_fpn_stride8_model():
    args = build_parser().parse_args(["demo"])
    config = model_config_from_args(args, DEMO_MODEL)
    assert (config.neck, config.fpn_stride8, config.size, config.width_mult, args.epochs) == ("fpn", True, 128, 0.5, 12)
    args = build_parser().parse_args(["demo", "--no-fpn-stride8", "--size", "160"])
    assert (model_config_from_args(args, DEMO_MODEL).fpn_stride8, model_config_from_args(args, DEMO_MODEL).size) == (False, 160)


def test_demo_writes_every_output(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--num-train", "32", "--num-val", "8", "--epochs", "1", "--draw", "2", "--workers", "0"]
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "VOC mAP@0.5 (all-point)" in table and "neck fpn + stride 8" in table

    summary = json.loads((out / "summary.json").read_text())
    assert summary["setting"]["model"]["neck"] == "fpn" and summary["setting"]["model"]["fpn_stride8"] is True
    assert 0.0 <= summary["metrics"]["voc_map50"] <= 1.0
    assert summary["passed"] == (summary["metrics"]["voc_map50"] >= summary["target_voc_map50"])
    for path in ("train/model.safetensors", "train/training_curves.png", "summary.md", *summary["drawn"]):
        assert (out / path).is_file(), path
    assert len(summary["drawn"]) == 2
    assert list((out / "eval").iterdir()), "no evaluation plots"


def test_demo_without_the_neck_drops_the_stride8_level(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--neck", "none", "--num-train", "16", "--num-val", "4", "--epochs", "1", "--draw", "1", "--workers", "0"]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["setting"]["model"]["neck"] == "none" and summary["setting"]["model"]["fpn_stride8"] is False
