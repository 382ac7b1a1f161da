"""--init-from: fine-tune a trained detector on another class count, keeping all but the class head."""

import pytest
import torch

from ssdlite.errors import UserError
from ssdlite.models import create_model, ssdlite_mobilenet_v2
from ssdlite.models.init_from import CLASS_HEAD, init_from
from ssdlite.models.io import save_safetensors


def _trained(tmp_path, num_classes=5, width_mult=0.35):
    torch.manual_seed(1)
    source = ssdlite_mobilenet_v2(num_classes, size=128, width_mult=width_mult)
    with torch.no_grad():  # make every tensor distinguishable from a fresh initialization
        for p in source.parameters():
            p.add_(0.5)
    path = tmp_path / "source.safetensors"
    save_safetensors(source, path, classes=[f"c{i}" for i in range(1, num_classes)])
    return source, path


def test_other_class_count_keeps_everything_but_the_class_predictions(tmp_path):
    source, path = _trained(tmp_path)
    torch.manual_seed(2)
    model = ssdlite_mobilenet_v2(3, size=128, width_mult=0.35)
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    lines = init_from(model, str(path))

    theirs, ours = source.state_dict(), model.state_dict()
    reinitialized = [k for k in ours if CLASS_HEAD.match(k) and ours[k].shape != theirs[k].shape]
    # Six levels, a weight and a bias each: the 1x1 prediction convolutions of the class head.
    assert len(reinitialized) == 12
    for name in ours:
        if name in reinitialized:
            assert torch.equal(ours[name], fresh[name]), name
        else:
            assert torch.equal(ours[name], theirs[name]), name
    # The class head's depthwise blocks do not depend on the class count and are kept.
    assert torch.equal(ours["core.head.classification.predictors.0.0.0.weight"], theirs["core.head.classification.predictors.0.0.0.weight"])
    assert "re-initialized for the new class count (12 tensors)" in lines[1]
    assert "core.head.classification.predictors.0.1.weight" in lines[1]


def test_same_class_count_loads_everything(tmp_path):
    source, path = _trained(tmp_path)
    model = ssdlite_mobilenet_v2(5, size=128, width_mult=0.35)
    lines = init_from(model, str(path))
    assert len(lines) == 1 and "loaded" in lines[0]
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, source.state_dict()[name]), name


def test_another_architecture_is_refused_with_what_differs(tmp_path):
    _, path = _trained(tmp_path, width_mult=0.5)
    model = ssdlite_mobilenet_v2(3, size=128, width_mult=0.35)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(UserError, match=r"does not fit this architecture apart from the class head.*core\.backbone"):
        init_from(model, str(path))
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # nothing half-loaded


def test_missing_source_names_the_path(tmp_path):
    model = ssdlite_mobilenet_v2(3, size=128, width_mult=0.35)
    with pytest.raises(UserError, match="nope.safetensors"):
        init_from(model, str(tmp_path / "nope.safetensors"))


def test_from_a_torchvision_detector_file(tmp_path):
    from torchvision.models.detection import ssdlite320_mobilenet_v3_large

    torch.manual_seed(0)
    tv = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=91)
    path = tmp_path / "tv.pth"
    torch.save(tv.state_dict(), path)
    model = create_model(4, arch="mobilenet_v3_large", reduced_tail=True, reduce_lowest=False)
    lines = init_from(model, f"torchvision:{path}")
    assert "torchvision detector" in lines[0] and "mobilenet_v3_large" in lines[0]
    assert "re-initialized for the new class count (12 tensors)" in lines[1]
    backbone = "core.backbone.features.0.0.weight"
    assert torch.equal(model.state_dict()[backbone], tv.state_dict()["backbone.features.0.0.0.weight"])
