import math

import pytest
import torch

from ssdlite.models import ModelConfig, ssdlite_mobilenet_v2
from ssdlite.models.factory import default_boxes_for


def boxes(feature_sizes, **settings):
    """The default boxes of the default configuration with ``settings`` changed, on ``feature_sizes``."""
    return default_boxes_for(ModelConfig().replace(**settings).resolved(), feature_sizes)


def test_counts_match_the_reference_at_300_and_320():
    assert ssdlite_mobilenet_v2(91, size=300).default_boxes.boxes.shape == (1917, 4)
    assert ssdlite_mobilenet_v2(91, size=320).default_boxes.boxes.shape == (2034, 4)


def test_hand_computed_boxes_on_tiny_maps():
    db = boxes([(2, 2), (1, 1)], min_scale=0.2, max_scale=0.9, aspect_ratios=(2.0,), reduce_lowest=True)
    # Level 0 (reduced): (0.1, 1:1), (0.2, 2:1), (0.2, 1:2) at centres (0.25, 0.25), (0.75, 0.25), ...
    r2 = math.sqrt(2)
    level0_first_location = torch.tensor(
        [[0.25, 0.25, 0.1, 0.1], [0.25, 0.25, 0.2 * r2, 0.2 / r2], [0.25, 0.25, 0.2 / r2, 0.2 * r2]]
    )
    torch.testing.assert_close(db.boxes[:3], level0_first_location)
    # Row-major locations: the second location is x = 0.75, y = 0.25.
    torch.testing.assert_close(db.boxes[3, :2], torch.tensor([0.75, 0.25]))
    torch.testing.assert_close(db.boxes[6, :2], torch.tensor([0.25, 0.75]))
    # Level 1: scale 0.9, ratios 1, 2, 1/2, then sqrt(0.9 * 1.0) at 1:1; centre (0.5, 0.5).
    s, s_extra = 0.9, math.sqrt(0.9 * 1.0)
    level1 = torch.tensor(
        [[0.5, 0.5, s, s], [0.5, 0.5, s * r2, s / r2], [0.5, 0.5, s / r2, s * r2], [0.5, 0.5, s_extra, s_extra]]
    )
    torch.testing.assert_close(db.boxes[12:], level1)
    assert db.boxes.shape == (4 * 3 + 4, 4)


def test_six_boxes_on_the_lowest_level_as_an_option():
    db = boxes([(3, 3), (1, 1)], reduce_lowest=False)
    assert db.boxes_per_location == [6, 6]
    assert db.boxes.shape == (9 * 6 + 6, 4)
    # Scales are linear from 0.2 to 0.95 over the maps, extra box at sqrt(s_k s_k+1).
    torch.testing.assert_close(db.boxes[0, 2:], torch.tensor([0.2, 0.2]))
    torch.testing.assert_close(db.boxes[5, 2:], torch.tensor([math.sqrt(0.2 * 0.95)] * 2))


def test_boxes_are_a_non_persistent_buffer():
    model = ssdlite_mobilenet_v2(3, size=160, width_mult=0.35)
    assert "default_boxes.boxes" not in model.state_dict()
    assert any(b is model.default_boxes.boxes for b in model.buffers())


def test_clip_keeps_boxes_inside_the_image():
    db = boxes([(2, 2), (1, 1)], clip_boxes="image")
    xyxy = db.xyxy()
    assert xyxy.min() >= 0 and xyxy.max() <= 1 + 1e-6


@pytest.mark.parametrize("bad", [dict(min_scale=0.9, max_scale=0.2), dict(aspect_ratios=(0.5,))])
def test_bad_configuration_is_refused(bad):
    with pytest.raises(ValueError):
        boxes([(2, 2), (1, 1)], **bad)
