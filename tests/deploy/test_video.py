"""`ssdlite predict` on video files: every frame detected, a drawn .mp4 written, a broken video reported."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest
import torch

from ssdlite.cli import main

av = pytest.importorskip("av", reason="video needs PyAV (pip install 'ssdlite[export]')")


def test_predict_video(tmp_path, weights, capsys):
    from ssdlite.deploy.video import VideoWriter, read_frames

    clip = tmp_path / "in" / "clip.mp4"
    clip.parent.mkdir()
    g = torch.Generator().manual_seed(0)
    writer = VideoWriter(clip, Fraction(10))
    for _ in range(5):
        writer.write((torch.rand(3, 71, 97, generator=g) * 255).to(torch.uint8))  # odd sizes: padded to even
    writer.close()
    (tmp_path / "in" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 truncated")
    out = tmp_path / "out"
    code = main(["predict", str(tmp_path / "in"), "--weights", str(weights), "--out", str(out), "--score-threshold", "0.5"])
    assert code == 0 and "warning: " in (err := capsys.readouterr().err) and "broken.mp4" in err  # a warning; --strict: an error
    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    frames = [line for line in lines if line.get("frame") is not None]
    assert [f["frame"] for f in frames] == [0, 1, 2, 3, 4]
    assert [line["file"].endswith("broken.mp4") for line in lines if "error" in line] == [True]
    assert sum(len(f["detections"]) for f in frames) > 0
    drawn = list(read_frames(out / "clip.mp4"))
    assert len(drawn) == 5 and tuple(drawn[0][2].shape) == (3, 72, 98)
    coco = json.loads((out / "coco_results.json").read_text())
    assert {c["image_id"] for c in coco} <= {f"clip.mp4#{i}" for i in range(5)}
