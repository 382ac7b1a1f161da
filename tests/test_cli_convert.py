"""`ssdlite convert`: torchvision detector weights -> a model file the rest of ssdlite reads."""

import torch
from torchvision.models.detection import ssdlite320_mobilenet_v3_large

from ssdlite.cli import main
from ssdlite.models.convert import from_torchvision
from ssdlite.models.io import load_model


def test_converted_file_loads_and_matches_the_conversion(tmp_path, capsys):
    torch.manual_seed(0)
    tv = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=4)
    with torch.no_grad():  # distinguishable weights (the random init scales every map to ~0)
        for p in tv.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    weights = tmp_path / "tv.pth"
    torch.save(tv.state_dict(), weights)
    names = tmp_path / "names.txt"
    names.write_text("cat\ndog\nbird\n")
    out = tmp_path / "model.safetensors"
    assert main(["convert", str(weights), "--out", str(out), "--classes", str(names)]) == 0
    assert "mobilenet_v3_large, 3 foreground classes, input 320" in capsys.readouterr().out

    model, info = load_model(out)
    assert info["classes"] == ["cat", "dog", "bird"]
    reference, _ = from_torchvision(tv.state_dict())
    x = torch.rand(1, 3, 320, 320)
    with torch.no_grad():
        for ours, expected in zip(model.core(x), reference.eval().core(x)):
            assert torch.equal(ours, expected)


def test_a_wrong_file_is_named_in_a_clear_error(tmp_path, capsys):
    weights = tmp_path / "classifier.pth"
    torch.save({"features.0.weight": torch.zeros(3)}, weights)
    assert main(["convert", str(weights), "--out", str(tmp_path / "m.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "classifier.pth" in err and "error" in err
    assert not (tmp_path / "m.safetensors").exists()
