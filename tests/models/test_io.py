import json

import pytest
import torch

from ssdlite.errors import UserError
from ssdlite.models import ssdlite_mobilenet_v2
from ssdlite.models.io import load_model, save_safetensors


def detections_equal(a, b):
    for x, y in zip(a, b):
        for key in ("boxes", "scores", "labels"):
            torch.testing.assert_close(x[key], y[key])


def test_safetensors_round_trip_rebuilds_the_same_model(tmp_path):
    model = ssdlite_mobilenet_v2(3, size=128, width_mult=0.35, score_threshold=0.2).eval()
    path = tmp_path / "model.safetensors"
    save_safetensors(model, path, classes=["cat", "dog"])
    loaded, info = load_model(path)
    assert info["classes"] == ["cat", "dog"]
    assert loaded.config == model.config
    assert loaded.postprocess_detections.score_threshold == 0.2
    images = [torch.rand(3, 90, 120), torch.rand(3, 128, 128)]
    with torch.no_grad():
        detections_equal(model(images), loaded(images))


def test_checkpoint_and_run_directory(tmp_path):
    model = ssdlite_mobilenet_v2(3, size=128, width_mult=0.35).eval()
    ckpt = {"model": model.state_dict(), "model_config": model.config.to_dict(), "classes": ["a", "b"]}
    torch.save(ckpt, tmp_path / "last.pt")
    loaded, info = load_model(tmp_path)
    assert info["path"].endswith("last.pt") and info["classes"] == ["a", "b"]
    images = [torch.rand(3, 100, 100)]
    with torch.no_grad():
        detections_equal(model(images), loaded(images))


def test_weights_of_another_architecture_give_a_clear_error(tmp_path):
    small = ssdlite_mobilenet_v2(3, size=128, width_mult=0.35)
    other = ssdlite_mobilenet_v2(5, size=128, width_mult=0.35)
    torch.save({"model": other.state_dict(), "model_config": small.config.to_dict()}, tmp_path / "bad.pt")
    with pytest.raises(UserError, match=r"bad\.pt: weights do not fit this architecture: .*shape mismatches \(\d+\): core\.head\.classification"):
        load_model(tmp_path / "bad.pt")


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("x.pt", b"not a pickle", r"checkpoint .*x\.pt: cannot be read"),
        ("x.executorch", b"<\x00\x00\x00ET12", r"x\.executorch: cannot be read: not a file saved by torch\.save .*\.pte"),
        ("x.safetensors", b"\x00" * 20, "not a readable safetensors"),
    ],
)
def test_unreadable_files_are_named(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(UserError, match=message):
        load_model(tmp_path / name)


def test_missing_paths(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_model(tmp_path / "nothing.pt")
    with pytest.raises(UserError, match="run directory needs one of"):
        load_model(tmp_path)


def test_a_torchscript_program_is_named_as_such(tmp_path):
    """A TorchScript export handed to a command that reads weights: said what it is, not torch.load's advice to
    turn off weights_only."""
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), tmp_path / "ts.pt")
    with pytest.raises(UserError, match=r"ts\.pt: cannot be read: a TorchScript program .*torch\.jit\.load"):
        load_model(tmp_path / "ts.pt")
