"""It learns: overfitting two synthetic images recovers every box with the right label."""

import torch
from torchvision.ops import box_iou

from ssdlite.models import ssdlite_mobilenet_v2
from ssdlite.engine.precise_bn import recompute_bn_stats


def synthetic_pair(size=160):
    """Two noise images with a few flat-coloured shapes: (images, targets) with labels 1..3."""
    g = torch.Generator().manual_seed(0)
    images, targets = [], []
    layouts = [
        [(1, (12, 14, 70, 80)), (2, (90, 30, 150, 100)), (3, (40, 110, 120, 150))],
        [(3, (20, 20, 140, 90)), (1, (100, 100, 150, 150))],
    ]
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    for layout in layouts:
        image = torch.rand(3, size, size, generator=g) * 0.4
        for label, (x1, y1, x2, y2) in layout:
            colour = torch.rand(3, 1, generator=g) * 0.5 + 0.5
            inside = (xx >= x1) & (xx < x2) & (yy >= y1) & (yy < y2)
            if label == 2:  # an ellipse inscribed in the box
                cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
                inside = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
            if label == 3:  # a frame
                border = 6
                inner = (xx >= x1 + border) & (xx < x2 - border) & (yy >= y1 + border) & (yy < y2 - border)
                inside = inside & ~inner
            image[:, inside] = colour
        images.append(image)
        targets.append(
            {
                "boxes": torch.tensor([box for _, box in layout], dtype=torch.float32),
                "labels": torch.tensor([label for label, _ in layout]),
            }
        )
    return images, targets


def test_overfits_two_images():
    torch.manual_seed(0)
    images, targets = synthetic_pair()
    model = ssdlite_mobilenet_v2(4, size=160, width_mult=0.5)
    steps = 150
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    model.train()
    first = None
    for step in range(steps):
        losses = model(images, targets)
        loss = sum(losses.values())
        first = loss.item() if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    last = loss.item()
    assert last <= 0.1 * first, (first, last)

    # 150 fast steps leave the running BN statistics behind the weights: recompute them once.
    recompute_bn_stats(model, [(images, targets)], torch.device("cpu"), max_batches=1)
    model.eval()
    with torch.no_grad():
        detections = model(images)
    for det, target in zip(detections, targets):
        for box, label in zip(target["boxes"], target["labels"]):
            same_class = det["labels"] == label
            confident = det["scores"] > 0.5
            iou = box_iou(box[None], det["boxes"][same_class & confident])
            assert iou.numel() and iou.max() >= 0.7, (box.tolist(), int(label))
