"""SSD300-VGG16 (``arch="vgg16"``) against torchvision's ``ssd300_vgg16``: size, default boxes, features, outputs.

One torchvision model is built per module (about 4 s: its VGG16 carries the 120M-parameter
ImageNet classifier); every test runs at most two VGG forward passes at 300x300.
"""

import pytest
import torch
from torchvision.models import mobilenet_v2, vgg16
from torchvision.models.detection import SSD300_VGG16_Weights, ssd300_vgg16

from ssdlite.errors import UserError
from ssdlite.models.factory import create_model
from ssdlite.models.backbones import CAFFE
from ssdlite.models.convert import convert_ssd300_backbone
from ssdlite.models.vgg import VGG16Backbone

NUM_CLASSES = 4
HEAD_SCALE = 0.2


@pytest.fixture(scope="module")
def tv_ssd300():
    torch.manual_seed(0)
    model = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=NUM_CLASSES).eval()
    # Xavier heads on these maps give logits up to ~30: softmax saturates at exactly 1.0 for many
    # boxes, and the order of tied scores (so NMS) is arbitrary. Scaled down, the scores are distinct.
    with torch.no_grad():
        for p in model.head.parameters():
            p.mul_(HEAD_SCALE)
        # Its L2Norm scale starts at 20 like ours: made distinct, so the comparisons prove it is converted.
        model.backbone.scale_weight.uniform_(10.0, 30.0)
    return model


def tv_to_our_order(values: torch.Tensor, feature_sizes, boxes_per_location) -> torch.Tensor:
    """``(..., A, V)`` in torchvision's per-location order -> our order.

    torchvision: (s_k, 1), (s', 1), (s_k, a), (s_k, 1/a), ...; ours: (s_k, 1), (s_k, a), (s_k, 1/a), ..., (s', 1).
    """
    levels, start = [], 0
    for (h, w), b in zip(feature_sizes, boxes_per_location):
        level = values[..., start : start + h * w * b, :]  # (..., H*W*B, V)
        level = level.reshape(*level.shape[:-2], h * w, b, level.shape[-1])  # (..., H*W, B, V)
        order = [0, *range(2, b), 1]
        levels.append(level[..., order, :].flatten(-3, -2))  # (..., H*W*B, V)
        start += h * w * b
    assert start == values.shape[-2]
    return torch.cat(levels, dim=-2)


def normalized_input(n: int = 1) -> torch.Tensor:
    """A random image normalized as SSD300 expects: ``(n, 3, 300, 300)``, 0-255 minus the mean."""
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in CAFFE)
    return (torch.rand(n, 3, 300, 300) - mean) / std


def test_size_and_default_boxes_equal_torchvision_ssd300(tv_ssd300):
    model = create_model(91, arch="vgg16")
    assert sum(p.numel() for p in model.parameters()) == 35_641_826
    assert SSD300_VGG16_Weights.COCO_V1.meta["num_params"] == 35_641_826  # torchvision's figure, no download
    assert model.core.backbone.out_channels == (512, 1024)
    assert model.core.extras.out_channels == (512, 256, 256, 256)
    assert model.feature_sizes == [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)]
    assert model.default_boxes.boxes_per_location == [4, 6, 6, 6, 4, 4]
    ours = model.default_boxes.boxes  # (8732, 4) cx, cy, w, h normalized
    assert ours.shape == (8732, 4)
    theirs = tv_ssd300.anchor_generator._grid_default_boxes(model.feature_sizes, [300, 300])  # (8732, 4) same format
    theirs = tv_to_our_order(theirs, model.feature_sizes, model.default_boxes.boxes_per_location)
    assert (ours - theirs).abs().max() <= 1e-6


def test_features_equal_torchvision_backbone(tv_ssd300):
    model = create_model(NUM_CLASSES, arch="vgg16").eval()
    backbone_state = {k: v for k, v in tv_ssd300.state_dict().items() if k.startswith("backbone.")}
    result = model.load_state_dict(convert_ssd300_backbone(backbone_state), strict=False)
    assert result.unexpected_keys == []
    assert [k for k in result.missing_keys if not k.startswith("core.head.")] == []  # all of backbone and extras loaded

    x = normalized_input()  # (1, 3, 300, 300)
    with torch.no_grad():
        ours = model.core.features(x)
        theirs = list(tv_ssd300.backbone(x).values())
    assert [tuple(m.shape) for m in ours] == [tuple(m.shape) for m in theirs] == [
        (1, 512, 38, 38), (1, 1024, 19, 19), (1, 512, 10, 10), (1, 256, 5, 5), (1, 256, 3, 3), (1, 256, 1, 1)
    ]  # fmt: skip
    for level, (a, b) in enumerate(zip(ours, theirs)):
        # 1e-4 of the map's largest value: the maps' scales differ (fc7 peaks near 35 here, conv11_2
        # near 1) and grow with trained weights on 0-255 inputs, so one absolute bound would be loose
        # on one map and below float32 rounding on another. Same ops on the CPU: 0.0 measured.
        scale = b.abs().max()
        assert scale > 0, f"map {level} is all zero: the comparison would prove nothing"
        assert (a - b).abs().max() <= 1e-4 * scale, f"map {level}: {(a - b).abs().max()} vs scale {scale}"


def test_unknown_torchvision_keys_are_refused():
    with pytest.raises(ValueError, match=r"unknown keys: backbone\.extra\.5\.0\.weight"):
        convert_ssd300_backbone({"backbone.extra.5.0.weight": torch.zeros(1)})  # SSD512's fifth extra block
    with pytest.raises(ValueError, match=r"unknown keys: head\.classification_head"):
        convert_ssd300_backbone(
            {"backbone.scale_weight": torch.zeros(512), "head.classification_head.module_list.0.bias": torch.zeros(1)}
        )


def test_full_model_equals_torchvision_ssd300(tv_ssd300):
    convert = pytest.importorskip("ssdlite.models.convert")
    model, _ = convert.from_torchvision(tv_ssd300.state_dict())
    model.eval()
    assert model.config.arch == "vgg16" and model.num_classes == NUM_CLASSES
    post = model.postprocess_detections
    assert (post.score_threshold, post.nms_threshold, post.topk_candidates, post.detections_per_image) == (
        tv_ssd300.score_thresh, tv_ssd300.nms_thresh, tv_ssd300.topk_candidates, tv_ssd300.detections_per_img
    )  # fmt: skip

    captured = {}
    hooks = [
        tv_ssd300.head.register_forward_hook(lambda m, i, out: captured.update(tv=out)),
        model.core.register_forward_hook(lambda m, i, out: captured.update(ours=out)),
    ]
    image = torch.rand(3, 300, 300)
    with torch.no_grad():
        theirs = tv_ssd300([image])[0]
        ours = model([image])[0]
    for hook in hooks:
        hook.remove()

    # Raw outputs, torchvision's put in our anchor order.
    cls_logits, bbox_deltas = captured["ours"]  # (1, 8732, 4), (1, 8732, 4)
    sizes, per_location = model.feature_sizes, model.default_boxes.boxes_per_location
    tv_cls = tv_to_our_order(captured["tv"]["cls_logits"], sizes, per_location)  # (1, 8732, 4)
    tv_box = tv_to_our_order(captured["tv"]["bbox_regression"], sizes, per_location)  # (1, 8732, 4)
    for a, b in ((cls_logits, tv_cls), (bbox_deltas, tv_box)):
        assert a.shape == b.shape == (1, 8732, NUM_CLASSES)
        assert (a - b).abs().max() <= 1e-5 * b.abs().max()

    # Detections: the same set. Scores that differ by float32 rounding may swap places, so each
    # detection is matched by label, score and box rather than by position.
    assert 0 < len(theirs["boxes"]) == len(ours["boxes"])
    assert theirs["scores"].unique().numel() == len(theirs["scores"])  # no ties: NMS is well defined
    same = (
        (ours["labels"][:, None] == theirs["labels"][None, :])
        & ((ours["scores"][:, None] - theirs["scores"][None, :]).abs() <= 1e-5)
        & ((ours["boxes"][:, None, :] - theirs["boxes"][None, :, :]).abs().amax(-1) <= 1e-3)  # pixels of 300x300
    )  # (D, D)
    assert same.any(1).all() and same.any(0).all(), f"{int((~same.any(1)).sum())} of our detections have no counterpart"
    torch.testing.assert_close(ours["scores"], theirs["scores"], atol=1e-5, rtol=0)  # both sorted by score


def test_torchvision_vgg16_state_dict_loads():
    reference = vgg16(weights=None).state_dict()  # features.* and classifier.*
    backbone = VGG16Backbone()
    fc6 = backbone.fc[1].weight.clone()
    backbone.load_torchvision_state_dict(reference, "vgg16.pth")
    torch.testing.assert_close(backbone.features[28].weight, reference["features.28.weight"])  # conv5_3
    torch.testing.assert_close(backbone.features[0].weight, reference["features.0.weight"])  # conv1_1
    torch.testing.assert_close(backbone.fc[1].weight, fc6)  # fc6 keeps its initialization, as torchvision's SSD300


def test_other_state_dicts_are_refused_with_the_source_named(tmp_path):
    state = mobilenet_v2().state_dict()
    refused = r"mnv2\.pth is not a torchvision vgg16 state dict.*missing keys \(26\): features\.0\.bias"
    with pytest.raises(ValueError, match=refused):
        VGG16Backbone().load_torchvision_state_dict(state, "mnv2.pth")
    path = tmp_path / "mnv2.pth"
    torch.save(state, path)
    with pytest.raises(UserError, match=r"backbone weights .*mnv2\.pth is not a torchvision vgg16 state dict.*unexpected keys"):
        create_model(3, arch="vgg16", backbone_weights=str(path))
