"""Sample inputs on which every export is checked against PyTorch.

Deterministic (a fixed seed) and varied: uniform noise, smooth blobs (low-frequency noise) and
colour ramps. None has flat regions: a flat region gives identical activations at many positions,
hence exactly tied scores, for which the detections are not unique. They are already preprocessed network inputs
``(N, 3, S, S)`` (what the exported network takes), normalized with the model's mean and std.
"""

from __future__ import annotations

import torch

from ssdlite.models.transform import Preprocess


def sample_images(n: int, height: int = 240, width: int = 320, seed: int = 0) -> list[torch.Tensor]:
    """``n`` uint8 ``(3, H, W)`` images: noise, blobs, ramps, noise, ..."""
    g = torch.Generator().manual_seed(seed)
    ys = torch.linspace(0, 1, height)[:, None].expand(height, width)
    xs = torch.linspace(0, 1, width)[None, :].expand(height, width)
    images = []
    for i in range(n):
        kind = i % 3
        if kind == 0:
            image = torch.rand(3, height, width, generator=g)
        elif kind == 1:
            coarse = torch.rand(1, 3, 6, 8, generator=g)
            image = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)[0]
            image = image.clamp(0, 1)
        else:
            phase = torch.rand(3, generator=g)
            image = torch.stack([(ys + xs * p) % 1.0 for p in phase])
        images.append((image * 255).round().to(torch.uint8))
    return images


def sample_batch(preprocess: Preprocess, n: int, seed: int = 0) -> torch.Tensor:
    """``(n, 3, S, S)`` preprocessed sample batch."""
    batch, _ = preprocess(sample_images(n, seed=seed))
    return batch


def shapes_images(n: int, size: int = 320, seed: int = 0) -> list[torch.Tensor]:
    """``n`` uint8 ``(3, H, W)`` images of the built-in synthetic shapes (objects on textured backgrounds).

    What an export is verified on when the user gives no images of their own: unlike noise, they give a
    trained model real, confident detections. Every other image is cropped to 3:4 so that the mapping back
    to a non-square image is checked too.
    """
    from ssdlite.data.synthetic import make_shapes_image

    images = []
    for i in range(n):
        pixels, _, _ = make_shapes_image(seed, 1, i, size)  # split 1: the validation stream
        image = torch.from_numpy(pixels).permute(2, 0, 1)  # (3, S, S)
        images.append(image[:, : size * 3 // 4].contiguous() if i % 2 else image)
    return images
