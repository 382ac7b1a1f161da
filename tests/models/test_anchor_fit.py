"""The coverage search's best IoU measures only the cells next to each box: it must equal the maximum over every
default box, for every layout of default boxes the models use."""

import pytest
import torch
from torchvision.ops import box_iou

from ssdlite.models.anchor_fit import best_ious
from ssdlite.models.anchors import DefaultBoxes

LAYOUTS = {
    # SSDLite at 448 with the stride-8 map (FPN): the largest set the recipe measures.
    "ssdlite_448_stride8": dict(feature_sizes=[(56, 56), (28, 28), (14, 14), (7, 7), (4, 4), (2, 2), (1, 1)],
                                min_scale=0.05, max_scale=0.95, aspect_ratios=(2.0, 3.0), reduce_lowest=True,
                                lowest_scale=0.1, clip="none"),
    # torchvision's clipping (width and height capped at 1), six boxes on the first map.
    "capped": dict(feature_sizes=[(20, 20), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)], min_scale=0.2, max_scale=0.95,
                   aspect_ratios=(2.0,), reduce_lowest=False, lowest_scale=0.1, clip="size"),
    # SSD300's explicit scales and steps (38 cells of step 8 overrun the 300 px image) and per-map ratios.
    "ssd300": dict(feature_sizes=[(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)], min_scale=0.2, max_scale=0.9,
                   aspect_ratios=[[2], [2, 3], [2, 3], [2, 3], [2], [2]], reduce_lowest=False, lowest_scale=0.1,
                   clip="size", scales=[0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05], steps=[8, 16, 32, 64, 100, 300],
                   image_size=300),
    # A non-square input: maps with more rows than columns.
    "tall": dict(feature_sizes=[(20, 15), (10, 8), (5, 4), (3, 2), (2, 1), (1, 1)], min_scale=0.1, max_scale=0.9,
                 aspect_ratios=(2.0, 4.0), reduce_lowest=True, lowest_scale=0.1, clip="none"),
    # Clipped to the image: shapes change at the border, every default box is measured.
    "clipped": dict(feature_sizes=[(20, 20), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)], min_scale=0.2, max_scale=0.95,
                    aspect_ratios=(2.0,), reduce_lowest=False, lowest_scale=0.1, clip="image"),
}


def _boxes(n: int) -> torch.Tensor:
    """Boxes from a few pixels to the whole image, anywhere, some cut by the border: ``(n, 4)`` normalized xyxy."""
    g = torch.Generator().manual_seed(0)
    centre = torch.rand(n, 2, generator=g)
    size = torch.rand(n, 2, generator=g) ** 2 * 0.95 + 0.003
    return torch.cat([(centre - size / 2).clamp(0, 1), (centre + size / 2).clamp(0, 1)], dim=1)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_best_ious_equals_the_maximum_over_every_default_box(layout):
    default_boxes = DefaultBoxes(**LAYOUTS[layout])
    boxes = _boxes(3000)
    every = box_iou(boxes, default_boxes.xyxy()).max(dim=1).values
    near = best_ious(boxes, default_boxes)
    assert near.shape == (3000,)
    # Several cells can tie (a box inside a larger default box); their float rounding differs by a few 1e-8.
    torch.testing.assert_close(near, every, rtol=0, atol=1e-6)
    assert (near <= every + 1e-6).all() and (every > 0.5).any() and (every < 0.5).any()


def test_best_ious_of_no_boxes_is_empty():
    assert best_ious(torch.zeros(0, 4), DefaultBoxes(**LAYOUTS["capped"])).shape == (0,)
