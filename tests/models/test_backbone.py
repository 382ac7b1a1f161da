import pytest
import torch
from torchvision.models import mobilenet_v2

from shared_paths import SHARED_WEIGHTS, needs_shared
from ssdlite.errors import UserError
from ssdlite.models import MobileNetV2Backbone, ssdlite_mobilenet_v2


def test_taps_are_the_layer_15_expansion_and_the_last_layer():
    backbone = MobileNetV2Backbone().eval()
    reference = mobilenet_v2().eval()
    reference.features.load_state_dict(backbone.features.state_dict())
    x = torch.rand(1, 3, 320, 320)
    c4, c5 = backbone(x)
    with torch.no_grad():
        expansion = reference.features[14].conv[0](reference.features[:14](x))
        last = reference.features(x)
    assert backbone.out_channels == (576, 1280)
    assert c4.shape == (1, 576, 20, 20) and c5.shape == (1, 1280, 10, 10)
    torch.testing.assert_close(c4, expansion)
    torch.testing.assert_close(c5, last)


def test_a_torchvision_state_dict_loads_into_the_backbone(tmp_path):
    reference = mobilenet_v2(num_classes=1001)
    path = tmp_path / "mnv2.pth"
    torch.save(reference.state_dict(), path)
    model = ssdlite_mobilenet_v2(3, backbone_weights=str(path))
    torch.testing.assert_close(model.core.backbone.features[3].conv[0][0].weight, reference.features[3].conv[0][0].weight)


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    state = mobilenet_v2().state_dict()
    del state["features.18.0.weight"]
    state["features.99.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(UserError, match=r"broken\.pth.*missing keys \(1\): features\.18\.0\.weight.*unexpected keys \(1\): features\.99\.weight"):
        ssdlite_mobilenet_v2(3, backbone_weights=str(path))


def test_weights_of_another_width_are_refused(tmp_path):
    path = tmp_path / "w05.pth"
    torch.save(mobilenet_v2(width_mult=0.5).state_dict(), path)
    with pytest.raises(UserError, match="shape mismatches"):
        ssdlite_mobilenet_v2(3, backbone_weights=str(path))


def test_missing_file_is_named(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        ssdlite_mobilenet_v2(3, backbone_weights=str(tmp_path / "none.pth"))


@needs_shared(SHARED_WEIGHTS)
def test_shared_imagenet_weights_load():
    model = ssdlite_mobilenet_v2(2, backbone_weights=str(SHARED_WEIGHTS))
    state = torch.load(SHARED_WEIGHTS, map_location="cpu", weights_only=True)
    torch.testing.assert_close(model.core.backbone.features[18][0].weight, state["features.18.0.weight"])
    assert model.config.image_mean == (0.5, 0.5, 0.5)  # these weights expect [-1, 1]
