"""Property tests of the augmentation presets: boxes inside the image with positive area, and labels,
``difficult`` and ``iscrowd`` staying with their boxes through every random crop, zoom and flip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torchvision import tv_tensors
from torchvision.ops import box_iou

from ssdlite.data import eval_transforms, train_transforms
from ssdlite.data.augment import IMAGE_PRESETS, CropAroundBoxes, MinIoURandomCrop, Mosaic
from ssdlite.models.backbones import SIGNED_UNIT

SIZE = 64
# Label k is drawn in COLOURS[k]: far apart, so the colour under a box tells which label it must have.
COLOURS = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 0, 255], [0, 255, 255]], dtype=np.uint8)


@st.composite
def samples(draw):
    """An image of random size with up to 6 non-overlapping coloured boxes; label ``k`` has colour ``k``,
    ``difficult = k is even`` and ``iscrowd = k % 3 == 0`` so each flag can be checked from its label."""
    height, width = draw(st.integers(24, 240)), draw(st.integers(24, 240))
    count = draw(st.integers(0, 6))
    columns = 3
    cell_h, cell_w = height // 2, width // columns
    cells = draw(st.lists(st.integers(0, 2 * columns - 1), min_size=count, max_size=count, unique=True))
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    boxes, labels = [], []
    for label, cell in enumerate(cells, start=1):
        top, left = (cell // columns) * cell_h, (cell % columns) * cell_w
        h = draw(st.integers(2, cell_h))
        w = draw(st.integers(2, cell_w))
        y1, x1 = top + draw(st.integers(0, cell_h - h)), left + draw(st.integers(0, cell_w - w))
        pixels[y1 : y1 + h, x1 : x1 + w] = COLOURS[label]
        boxes.append([x1, y1, x1 + w, y1 + h])
        labels.append(label)
    labels_t = torch.tensor(labels, dtype=torch.int64)
    image = tv_tensors.Image(torch.from_numpy(pixels).permute(2, 0, 1))
    target = {
        "boxes": tv_tensors.BoundingBoxes(
            torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), format="XYXY", canvas_size=(height, width)
        ),
        "labels": labels_t,
        "difficult": labels_t % 2 == 0,
        "iscrowd": labels_t % 3 == 0,
        "image_id": 7,
        "orig_size": torch.tensor([height, width]),
    }
    return image, target, draw(st.integers(0, 2**31 - 1))


def _check_invariants(image, target, input_labels) -> None:
    assert image.dtype == torch.float32 and tuple(image.shape) == (3, SIZE, SIZE)
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    boxes, labels = target["boxes"], target["labels"]
    assert tuple(boxes.canvas_size) == (SIZE, SIZE)
    assert len(boxes) == len(labels) == len(target["difficult"]) == len(target["iscrowd"])
    if len(boxes):
        assert float(boxes.min()) >= 0.0 and float(boxes[:, [0, 2]].max()) <= SIZE and float(boxes[:, [1, 3]].max()) <= SIZE
        assert bool(((boxes[:, 2] - boxes[:, 0]) > 0).all() and ((boxes[:, 3] - boxes[:, 1]) > 0).all())
    assert set(labels.tolist()) <= set(input_labels)
    assert target["difficult"].tolist() == (labels % 2 == 0).tolist()
    assert target["iscrowd"].tolist() == (labels % 3 == 0).tolist()
    assert target["image_id"] == 7 and target["orig_size"].dtype == torch.int64


def _check_colours_under_boxes(image, target) -> None:
    """A geometric preset moves each box with its pixels: the centre of each box still shows its label's colour."""
    pixels = (image.permute(1, 2, 0).numpy() * 255).astype(np.float64)
    for box, label in zip(target["boxes"].tolist(), target["labels"].tolist()):
        x1, y1, x2, y2 = box
        if x2 - x1 < 6 or y2 - y1 < 6:  # the resize filter blurs tiny boxes into their surroundings
            continue
        centre = pixels[int((y1 + y2) / 2), int((x1 + x2) / 2)]
        nearest = int(np.argmin(((COLOURS.astype(np.float64) - centre) ** 2).sum(axis=1)))
        assert nearest == label, (box, label, centre)


@pytest.mark.parametrize("preset", IMAGE_PRESETS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(sample=samples())
def test_presets_keep_boxes_valid_and_flags_with_their_boxes(preset, sample):
    image, target, seed = sample
    torch.manual_seed(seed)
    input_labels = target["labels"].tolist()
    out_image, out_target = train_transforms(preset, SIZE, SIGNED_UNIT[0])(image, target)
    _check_invariants(out_image, out_target, input_labels)
    if preset != "ssd":  # ssd's photometric distortion changes the colours
        _check_colours_under_boxes(out_image, out_target)


@settings(max_examples=30, deadline=None)
@given(sample=samples())
def test_ssd_geometry_without_photometric_distortion_moves_pixels_with_boxes(sample):
    image, target, seed = sample
    torch.manual_seed(seed)
    geometric = train_transforms("ssd", SIZE, mean_fill=(0.0, 0.0, 0.0))
    geometric.transforms = [t for t in geometric.transforms if "Photometric" not in type(t).__name__]
    out_image, out_target = geometric(image, target)
    _check_invariants(out_image, out_target, target["labels"].tolist())
    _check_colours_under_boxes(out_image, out_target)


@settings(max_examples=30, deadline=None)
@given(sample=samples())
def test_eval_transform_scales_every_box_and_drops_none(sample):
    image, target, _ = sample
    height, width = target["boxes"].canvas_size
    out_image, out_target = eval_transforms(SIZE)(image, target)
    assert tuple(out_image.shape) == (3, SIZE, SIZE) and out_image.dtype == torch.float32
    scale = torch.tensor([SIZE / width, SIZE / height, SIZE / width, SIZE / height])
    torch.testing.assert_close(out_target["boxes"].as_subclass(torch.Tensor), target["boxes"].as_subclass(torch.Tensor) * scale)
    assert out_target["labels"].tolist() == target["labels"].tolist()


def test_ssd_preset_zooms_out_and_crops():
    """The random geometry really happens: over many draws the ssd preset produces both zoomed-out
    images (mean-filled borders) and crops that lose boxes, and flips."""
    torch.manual_seed(0)
    pixels = torch.zeros(3, 100, 100, dtype=torch.uint8)
    pixels[:, 10:40, 10:40] = 255
    pixels[:, 60:90, 55:95] = 255
    boxes = tv_tensors.BoundingBoxes(torch.tensor([[10.0, 10, 40, 40], [55, 60, 95, 90]]), format="XYXY", canvas_size=(100, 100))
    transform = train_transforms("ssd", SIZE, mean_fill=(0.5, 0.5, 0.5))
    transform.transforms = [t for t in transform.transforms if "Photometric" not in type(t).__name__]
    counts, first_x = set(), set()
    for _ in range(60):
        flags = {"difficult": torch.tensor([False, True]), "iscrowd": torch.tensor([False, False])}
        target = {"boxes": boxes, "labels": torch.tensor([1, 2]), **flags}
        _, out = transform(tv_tensors.Image(pixels), target)
        counts.add(len(out["boxes"]))
        if len(out["boxes"]) == 2:
            first_x.add(bool(out["boxes"][0, 0] < out["boxes"][1, 0]))
    assert counts == {1, 2} and first_x == {True, False}


def test_unknown_preset_is_refused():
    with pytest.raises(ValueError, match="unknown augmentation preset"):
        train_transforms("cutmix", 320, SIGNED_UNIT[0])
    with pytest.raises(ValueError, match="wrap the untransformed split in Mosaic"):
        train_transforms("mosaic", 320, SIGNED_UNIT[0])


@settings(max_examples=60, deadline=None)
@given(sample=samples())
def test_crop_around_boxes_keeps_every_box_whole(sample):
    """The fine preset's crop only zooms in around all the boxes: no box is cut, none is lost, and the crop
    is inside the image."""
    image, target, seed = sample
    torch.manual_seed(seed)
    height, width = target["boxes"].canvas_size
    params = CropAroundBoxes().make_params([image, target["boxes"]])
    boxes = target["boxes"].as_subclass(torch.Tensor)
    if not params:
        assert len(boxes) == 0
        return
    top, left, h, w = params["top"], params["left"], params["height"], params["width"]
    assert 0 <= top and 0 <= left and top + h <= height and left + w <= width
    assert bool((boxes[:, 0] >= left).all() and (boxes[:, 1] >= top).all())
    assert bool((boxes[:, 2] <= left + w).all() and (boxes[:, 3] <= top + h).all())
    # A zoom-in only enlarges boxes: every box that a plain resize keeps (sides >= 1 px) is kept.
    sides = (boxes[:, 2:] - boxes[:, :2]) * torch.tensor([SIZE / width, SIZE / height])
    resized_keeps = target["labels"][(sides >= 1.0).all(dim=1)].tolist()
    _, out = train_transforms("fine", SIZE, SIGNED_UNIT[0])(image, target)
    assert set(resized_keeps) <= set(out["labels"].tolist())


class _Tiles(torch.utils.data.Dataset):
    """Four untransformed samples of different sizes, each one box of its label's colour on black."""

    shapes = [(60, 80), (90, 50), (64, 64), (40, 120)]

    def __len__(self):
        return len(self.shapes)

    def __getitem__(self, index):
        h, w = self.shapes[index]
        label = index + 1
        pixels = torch.zeros(3, h, w, dtype=torch.uint8)
        box = [w // 4, h // 4, 3 * w // 4, 3 * h // 4]
        pixels[:, box[1] : box[3], box[0] : box[2]] = torch.from_numpy(COLOURS[label]).view(3, 1, 1)
        target = {
            "boxes": tv_tensors.BoundingBoxes(torch.tensor([box], dtype=torch.float32), format="XYXY", canvas_size=(h, w)),
            "labels": torch.tensor([label]),
            "difficult": torch.tensor([label % 2 == 0]),
            "iscrowd": torch.tensor([label % 3 == 0]),
            "image_id": 7,
            "orig_size": torch.tensor([h, w]),
        }
        return tv_tensors.Image(pixels), target


@pytest.mark.parametrize("seed", range(12))
def test_mosaic_boxes_follow_their_tiles(seed):
    """A mosaic's every box lies on pixels of its own label's colour (the tiles and their boxes moved
    together), boxes keep their flags, slivers are dropped, and the sample is a function of the seed."""
    torch.manual_seed(seed)
    mosaic = Mosaic(_Tiles(), SIZE, mean_fill=(0.0, 0.0, 0.0), p=1.0)
    image, target = mosaic.compose([mosaic.dataset[i] for i in range(4)])
    assert tuple(image.shape) == (3, SIZE, SIZE) and image.dtype == torch.uint8
    assert target["labels"].tolist() and set(target["labels"].tolist()) <= {1, 2, 3, 4}
    assert target["difficult"].tolist() == (target["labels"] % 2 == 0).tolist()
    for box, label in zip(target["boxes"].tolist(), target["labels"].tolist()):
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        inside = image[:, y1 + 1 : y2 - 1, x1 + 1 : x2 - 1].permute(1, 2, 0).reshape(-1, 3).float()
        if len(inside):  # the resize filter blurs a box's border pixels
            assert bool((inside == torch.from_numpy(COLOURS[label]).float()).all(dim=1).float().mean() > 0.9), (box, label)
    torch.manual_seed(seed)
    again = Mosaic(_Tiles(), SIZE, mean_fill=(0.0, 0.0, 0.0), p=1.0).compose([mosaic.dataset[i] for i in range(4)])
    assert torch.equal(again[0], image) and torch.equal(again[1]["boxes"], target["boxes"])
    out_image, out_target = mosaic[0]
    _check_invariants(out_image, out_target, [1, 2, 3, 4])
    assert len(mosaic) == 4 and mosaic.shapes == _Tiles.shapes  # the wrapped split's attributes are the mosaic's


@settings(max_examples=60, deadline=None)
@given(sample=samples(), min_iou=st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.7, 0.9]))
def test_min_iou_crop_honours_its_constraints(sample, min_iou):
    """Every crop MinIoURandomCrop returns has a legal size and aspect, contains a box centre, and
    overlaps one such box with at least the drawn IoU (torchvision's RandomIoUCrop contract)."""
    image, target, seed = sample
    torch.manual_seed(seed)
    crop = MinIoURandomCrop(sampler_options=[min_iou, 1.0])
    height, width = target["boxes"].canvas_size
    boxes = target["boxes"].as_subclass(torch.Tensor)
    for _ in range(5):
        params = crop.make_params([image, target["boxes"]])
        if not params:
            continue
        top, left, h, w = params["top"], params["left"], params["height"], params["width"]
        assert 0.3 * height - 1 <= h <= height and 0.3 * width - 1 <= w <= width
        assert 0.5 <= w / h <= 2.0 and 0 <= top <= height - h and 0 <= left <= width - w
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        inside = (centres[:, 0] > left) & (centres[:, 0] < left + w) & (centres[:, 1] > top) & (centres[:, 1] < top + h)
        assert params["is_within_crop_area"].tolist() == inside.tolist()
        iou = box_iou(boxes[inside], torch.tensor([[left, top, left + w, top + h]], dtype=torch.float32))
        assert float(iou.max()) >= min_iou - 1e-6
