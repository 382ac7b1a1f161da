"""torchvision's ssdlite320_mobilenet_v3_large converted by ``from_torchvision`` gives torchvision's outputs and detections.

torchvision's random initialization (Normal(0, 0.03) everywhere, BatchNorm statistics 0 and 1)
makes every feature map about 1e-14 and every score 1/K: any conversion would "match". The
reference detector is therefore given random weights *and* BatchNorm statistics of unit scale
first (``randomize_``), so each tensor, its position and its channel order change the outputs.
"""

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.detection.image_list import ImageList

from ssdlite.errors import UserError
from ssdlite.models.convert import convert_state_dict, from_torchvision, load_torchvision_file, torchvision_anchor_index
from ssdlite.models.factory import create_model

NUM_CLASSES = 5  # few classes: the comparison of detections stays small and fast
SIZE = 320


def randomize_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Weights N(0, 1/fan_in), biases N(0, 0.1), BatchNorm scale and variance U(0.5, 1.5), shift and mean N(0, 0.1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / m.weight[0].numel() ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                for tensor in (m.weight, m.running_var):
                    tensor.copy_(torch.rand(tensor.shape, generator=g) + 0.5)
                for tensor in (m.bias, m.running_mean):
                    tensor.copy_(torch.randn(tensor.shape, generator=g) * 0.1)
    return module


@pytest.fixture(scope="module")
def pair():
    """(torchvision's detector, ours converted from it, the conversion notes), both in eval mode."""
    torch.manual_seed(0)
    tv = torchvision.models.detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=NUM_CLASSES)
    randomize_(tv).eval()
    ours, notes = from_torchvision(tv.state_dict())
    return tv, ours.eval(), notes


def torchvision_raw(tv, x):
    """torchvision's feature maps and head outputs ``{"cls_logits", "bbox_regression"}`` on a normalized batch."""
    features = list(tv.backbone(x).values())
    return features, tv.head(features)


def test_settings_and_notes(pair):
    tv, ours, notes = pair
    assert ours.config.arch == "mobilenet_v3_large" and ours.config.reduced_tail is True
    assert ours.num_classes == NUM_CLASSES and ours.size == SIZE
    post = ours.postprocess_detections
    assert (post.score_threshold, post.nms_threshold, post.topk_candidates, post.detections_per_image) == (
        tv.score_thresh, tv.nms_thresh, tv.topk_candidates, tv.detections_per_img
    )  # fmt: skip
    torch.testing.assert_close(ours.preprocess.mean.flatten(), torch.tensor(tv.transform.image_mean))
    torch.testing.assert_close(ours.preprocess.std.flatten(), torch.tensor(tv.transform.image_std))
    assert notes[0] == "torchvision ssdlite320_mobilenet_v3_large, 5 classes, reduced tail"
    assert any("12 prediction convolutions permuted" in note for note in notes)


def test_default_boxes_equal_torchvision_after_the_permutation(pair):
    tv, ours, _ = pair
    x = torch.zeros(1, 3, SIZE, SIZE)
    with torch.no_grad():
        features, _ = torchvision_raw(tv, x)
    theirs = tv.anchor_generator(ImageList(x, [(SIZE, SIZE)]), features)[0] / SIZE  # (A, 4) xyxy, normalized
    index = torchvision_anchor_index(ours.default_boxes)  # (A,)
    assert sorted(index.tolist()) == list(range(theirs.shape[0]))  # a permutation of all 3234 boxes
    assert (ours.default_boxes.xyxy() - theirs[index]).abs().max() <= 1e-6


def test_raw_outputs_equal_torchvision_after_the_permutation(pair):
    tv, ours, _ = pair
    x = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1)) * 2 - 1  # already normalized
    with torch.no_grad():
        _, theirs = torchvision_raw(tv, x)
        cls_logits, bbox_deltas = ours.core(x)  # (2, 3234, 5), (2, 3234, 4)
    index = torchvision_anchor_index(ours.default_boxes)
    assert cls_logits.shape == theirs["cls_logits"].shape and bbox_deltas.shape == theirs["bbox_regression"].shape
    assert cls_logits.std() > 0.1 and bbox_deltas.std() > 0.1  # a real signal, not the 1e-14 of the default init
    assert (cls_logits - theirs["cls_logits"][:, index]).abs().max() <= 1e-5
    assert (bbox_deltas - theirs["bbox_regression"][:, index]).abs().max() <= 1e-5
    # Without the permutation they differ: the channel reordering is what makes them equal.
    assert (cls_logits - theirs["cls_logits"]).abs().max() > 1e-2


def tie_order(det: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The detections sorted by score (to 1e-6, descending), then label, then box corner."""
    import numpy as np

    boxes = det["boxes"].numpy()
    keys = (boxes[:, 1], boxes[:, 0], det["labels"].numpy(), -np.round(det["scores"].numpy(), 6))
    order = torch.from_numpy(np.lexsort(keys))
    return {k: v[order] for k, v in det.items()}


def test_detections_equal_torchvision(pair):
    tv, ours, _ = pair
    g = torch.Generator().manual_seed(2)
    # 320x320 inputs: neither model resizes (ours resizes with antialias, torchvision without).
    images = [torch.rand(3, SIZE, SIZE, generator=g) for _ in range(2)]
    with torch.no_grad():
        theirs = tv(images)
        mine = ours(images)
    for a, b in zip(mine, theirs):
        assert len(b["scores"]) > 50
        # Two boxes of one class can have exactly the same score; their order after the top-k is then arbitrary
        # (it changed with the installed packages), so both lists are put in one order: score, then position.
        a, b = tie_order(a), tie_order(b)
        torch.testing.assert_close(a["labels"], b["labels"])
        torch.testing.assert_close(a["scores"], b["scores"], atol=1e-5, rtol=0)
        torch.testing.assert_close(a["boxes"], b["boxes"], atol=1e-3, rtol=0)  # pixels


def test_parameter_count_equals_torchvision_coco_model():
    torch.manual_seed(0)
    tv = torchvision.models.detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None)
    ours, _ = from_torchvision(tv.state_dict())
    # torchvision's COCO_V1 weights' meta: 3,440,060 (91 classes, reduced tail).
    assert sum(p.numel() for p in tv.parameters()) == 3_440_060
    assert sum(p.numel() for p in ours.parameters()) == 3_440_060
    assert ours.num_classes == 91 and ours.default_boxes.boxes.shape[0] == 3234


def test_full_tail_state_dict_converts():
    """torchvision builds the full tail when it starts from ImageNet weights; built here without downloading them."""
    from torchvision.models import mobilenet_v3_large
    from torchvision.models.detection import _utils as det_utils
    from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
    from torchvision.models.detection.ssdlite import SSDLiteHead, _mobilenet_extractor

    from ssdlite.models.backbone import TF_BATCH_NORM

    backbone = _mobilenet_extractor(mobilenet_v3_large(norm_layer=TF_BATCH_NORM), 6, TF_BATCH_NORM)
    anchors = DefaultBoxGenerator([[2, 3] for _ in range(6)], min_ratio=0.2, max_ratio=0.95)
    channels = det_utils.retrieve_out_channels(backbone, (SIZE, SIZE))
    head = SSDLiteHead(channels, anchors.num_anchors_per_location(), 3, TF_BATCH_NORM)
    state = {**{f"backbone.{k}": v for k, v in backbone.state_dict().items()}, **{f"head.{k}": v for k, v in head.state_dict().items()}}
    ours, notes = from_torchvision(state, num_classes=3)
    assert ours.config.reduced_tail is False and ours.core.backbone.out_channels == (672, 960)
    assert notes[0].endswith("full tail")
    torch.testing.assert_close(ours.core.backbone.features[16][0].weight, backbone.features[1][3][0].weight)


def test_converted_model_round_trips_through_its_config(pair):
    tv, ours, _ = pair
    from ssdlite.models.factory import build_model

    rebuilt = build_model(ours.config)
    rebuilt.load_state_dict(ours.state_dict())
    torch.testing.assert_close(rebuilt.default_boxes.boxes, ours.default_boxes.boxes)
    assert rebuilt.postprocess_detections.nms_threshold == 0.55


def test_foreign_and_broken_state_dicts_are_refused_by_key(pair):
    tv, ours, _ = pair
    state = tv.state_dict()
    with pytest.raises(ValueError, match=r"not a torchvision SSD/SSDLite detector state dict.*features\.0\.0\.weight"):
        from_torchvision(torchvision.models.mobilenet_v3_small().state_dict())
    with pytest.raises(ValueError, match="has 5 classes"):
        from_torchvision(state, num_classes=91)
    missing = {k: v for k, v in state.items() if k != "backbone.extra.3.2.1.running_var"}
    with pytest.raises(ValueError, match=r"missing keys \(1\): core\.extras\.blocks\.3\.2\.1\.running_var"):
        from_torchvision(missing)
    with pytest.raises(ValueError, match=r"unconverted keys \(1\), neither backbone nor head: anchor_generator\.x"):
        from_torchvision({**state, "anchor_generator.x": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"unconverted torchvision backbone keys \(1\): backbone\.features\.0\.14\.weight"):
        from_torchvision({**state, "backbone.features.0.14.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"not a state dict.*'head\.bad'"):
        from_torchvision({**state, "head.bad": "text"})
    # A model built with other default boxes cannot take torchvision's head.
    with pytest.raises(ValueError, match="map 0"):
        convert_state_dict(state, create_model(NUM_CLASSES, arch="mobilenet_v3_large", reduced_tail=True))


def test_files_are_loaded_safely_and_named_in_errors(pair, tmp_path):
    tv, ours, _ = pair
    good = tmp_path / "tv.pth"
    torch.save({"model": tv.state_dict(), "epoch": 3}, good)  # torchvision references' checkpoint layout
    model, _ = load_torchvision_file(good)
    torch.testing.assert_close(model.state_dict(), ours.state_dict())
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a pickle")
    with pytest.raises(UserError, match=r"corrupt\.pth: cannot be read"):
        load_torchvision_file(corrupt)
    foreign = tmp_path / "mnv3.pth"
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), foreign)
    with pytest.raises(UserError, match=r"mnv3\.pth: not a torchvision SSD/SSDLite detector"):
        load_torchvision_file(foreign)
    with pytest.raises(UserError, match=r"none\.pth: no such file"):
        load_torchvision_file(tmp_path / "none.pth")
