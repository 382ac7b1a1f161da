"""Inference and deployment commands on bad inputs: every unreadable input named and counted under one rule
(a warning; an error with --strict or when none is usable), and output paths checked before any work."""

from __future__ import annotations

import json
import os

import pytest
from deploy_helpers import write_images

from ssdlite.cli import main


@pytest.fixture()
def mixed(tmp_path):
    """A folder of 3 images, one corrupt, and two files that are not inputs."""
    folder = tmp_path / "mixed"
    good = write_images(folder, 2)
    (folder / "c.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a JPEG")
    (folder / "README.md").write_text("photos from the shop")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    return folder, good


def test_predict_names_and_counts_the_unreadable_image(mixed, weights, tmp_path, capsys):
    folder, good = mixed
    out = tmp_path / "out"
    assert main(["predict", str(folder), "--weights", str(weights), "--out", str(out), "--no-draw"]) == 0
    captured = capsys.readouterr()
    assert f"warning: {(folder / 'c.jpg').resolve()}: image_truncated: cannot open image" in captured.err
    assert "ignored 2 files that are not images or videos (by suffix) or are hidden: .DS_Store, README.md" in captured.err
    assert "of 2 files" in captured.out and f"(1 unreadable: {(folder / 'c.jpg').resolve()}: image_truncated" in captured.out
    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == 3 and sum("error" in line for line in lines) == 1


def test_predict_strict_stops_at_the_unreadable_image_and_keeps_what_was_done(mixed, weights, tmp_path, capsys):
    folder, good = mixed
    out = tmp_path / "out"
    code = main(["predict", str(folder), "--weights", str(weights), "--out", str(out), "--no-draw", "--strict", "--batch-size", "1"])
    assert code == 2
    assert f"--strict: every input must be usable; {(folder / 'c.jpg').resolve()}" in capsys.readouterr().err
    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == 1 and "error" in lines[0]  # c.jpg sorts first; what came before is written


def test_predict_with_no_readable_input_is_an_error(tmp_path, weights, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    assert main(["predict", str(bad), "--weights", str(weights), "--out", str(tmp_path / "out")]) == 2
    assert f"none of the 1 inputs can be used; {bad.resolve()}" in capsys.readouterr().err


def test_export_images_names_and_counts_the_unreadable_image(mixed, weights, tmp_path, capsys):
    folder, _ = mixed
    out = tmp_path / "model.pt"
    assert main(["export", "--weights", str(weights), "--format", "torchscript", "--out", str(out), "--images", str(folder)]) == 0
    captured = capsys.readouterr()
    assert f"warning: {(folder / 'c.jpg').resolve()}: cannot open image" in captured.err
    assert "on 2 images" in captured.out and f"(1 unreadable: {(folder / 'c.jpg').resolve()}" in captured.out
    assert main(["export", "--weights", str(weights), "--format", "torchscript", "--out", str(tmp_path / "strict.pt"),
                 "--images", str(folder), "--strict"]) == 2
    assert "--strict: every input must be usable" in capsys.readouterr().err
    assert not (tmp_path / "strict.pt").exists()


def test_calibration_from_a_dataset_names_corrupt_and_missing_images(tmp_path):
    from ssdlite.data import write_synthetic
    from ssdlite.deploy.quantize import calibration_images

    data = write_synthetic(tmp_path / "data", num_train=5, num_val=1, size=64)
    (data / "JPEGImages" / "train-000001.jpg").write_bytes(b"broken")
    (data / "JPEGImages" / "train-000003.jpg").unlink()
    found = calibration_images([str(data)], "train", limit=2)
    assert len(found) == 2  # the limit counts usable images
    names = sorted(os.path.basename(u.path) for u in found.unusable)
    assert names == ["train-000001.jpg", "train-000003.xml"], found.unusable  # the annotation whose image is missing
    assert "2 unreadable" in found.check("calibration images")


def test_quantize_names_the_unreadable_calibration_image(mixed, onnx_nms, tmp_path, capsys):
    folder, _ = mixed
    out = tmp_path / "int8.onnx"
    assert main(["quantize", "--onnx", str(onnx_nms), "--calib", str(folder), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "calibrated on 2 images (1 unreadable:" in captured.out and "c.jpg" in captured.err
    assert main(["quantize", "--onnx", str(onnx_nms), "--calib", str(folder), "--out", str(out), "--strict"]) == 2


@pytest.fixture()
def shapes_data_and_weights(tmp_path):
    import ssdlite
    from ssdlite.data import write_synthetic
    from ssdlite.data.synthetic import SHAPES
    from ssdlite.models.io import save_safetensors

    data = write_synthetic(tmp_path / "data", num_train=1, num_val=3, size=64)
    (data / "JPEGImages" / "val-000001.jpg").write_bytes(b"\xff\xd8\xff cut")
    model = ssdlite.create_model(len(SHAPES) + 1, "mobilenet_v2", size=96, width_mult=0.35).eval()
    weights = tmp_path / "shapes.safetensors"
    save_safetensors(model, weights, classes=list(SHAPES))
    return data, weights


def test_eval_names_counts_and_with_strict_refuses_an_undecodable_image(shapes_data_and_weights, tmp_path, capsys):
    data, weights = shapes_data_and_weights
    base = ["eval", "--weights", str(weights), "--data", str(data), "--workers", "0", "--no-progress"]
    assert main(base + ["--json", str(tmp_path / "m.json")]) == 0
    captured = capsys.readouterr()
    assert "val-000001.jpg: image corrupt; not used" in captured.err or "val-000001.jpg: image truncated; not used" in captured.err
    assert "scored 2 images (1 unreadable:" in captured.out
    assert main(base + ["--strict", "--json", str(tmp_path / "strict.json")]) == 2
    assert "--strict: every input must be usable" in capsys.readouterr().err
    assert not (tmp_path / "strict.json").exists()


# Output paths: checked before any model or data is read, a clear error naming the flag.

def test_predict_out_naming_a_file(tmp_path, weights, capsys):
    [image] = write_images(tmp_path / "images", 1)
    taken = tmp_path / "taken.txt"
    taken.write_text("earlier work")
    assert main(["predict", str(image), "--weights", str(weights), "--out", str(taken)]) == 2
    assert f"--out {taken}: is a file, not a folder to write into" in capsys.readouterr().err
    assert taken.read_text() == "earlier work"


def test_export_out_a_folder_a_file_parent_or_the_weights(tmp_path, weights, capsys):
    (tmp_path / "m.onnx").mkdir()
    assert main(["export", "--weights", str(weights), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "is a folder; give the name of the file to write" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["export", "--weights", str(weights), "--out", str(tmp_path / "file" / "m.onnx")]) == 2
    assert f"{tmp_path / 'file'} is a file, not a folder" in capsys.readouterr().err
    copy = tmp_path / "model.pt"
    copy.write_bytes(b"")
    assert main(["export", "--weights", str(copy), "--format", "torchscript", "--out", str(copy)]) == 2
    assert "is the --weights input; writing it would destroy it" in capsys.readouterr().err


def test_quantize_out_is_the_input(onnx_nms, tmp_path, capsys):
    assert main(["quantize", "--onnx", str(onnx_nms), "--calib", str(tmp_path), "--out", str(onnx_nms)]) == 2
    assert "is the --onnx input" in capsys.readouterr().err


def test_eval_outputs_checked_before_evaluating(tmp_path, weights, capsys):
    (tmp_path / "file").write_text("x")
    for flag in ("--json", "--save-predictions", "--plots"):
        code = main(["eval", "--weights", str(weights), "--data", str(tmp_path / "no-data"), flag, str(tmp_path / "file" / "out")])
        assert code == 2
        assert f"{flag} {tmp_path / 'file' / 'out'}: {tmp_path / 'file'} is a file" in capsys.readouterr().err


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_output_folder(tmp_path, weights, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert main(["export", "--weights", str(weights), "--out", str(locked / "m.onnx")]) == 2
        assert "no permission to write" in capsys.readouterr().err
    finally:
        locked.chmod(0o700)
