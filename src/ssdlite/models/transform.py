"""Preprocessing: resize each image to the model's square input and normalize.

SSD resizes the whole image to the input size without keeping the aspect ratio (SSD paper,
section 3); boxes predicted in normalized coordinates are mapped back to each original size by
the postprocess. The mean and std come from the model configuration
(:class:`ssdlite.models.config.ModelConfig`: [-1, 1] inputs for the TensorFlow MobileNet weights,
the ImageNet mean and std for torchvision's, Caffe's for VGG).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torchvision.transforms.v2.functional as TF


class Preprocess(torch.nn.Module):
    """List of ``(3, H_i, W_i)`` images (uint8, or float in [0, 1]), or one ``(N, 3, H, W)`` batch, ->
    ``(N, 3, S, S)`` normalized batch and each image's ``(H, W)``."""

    def __init__(self, size: int, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.size = size
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        if isinstance(images, torch.Tensor) and images.dim() == 3:
            raise ValueError("images must be a list of (3, H, W) tensors or an (N, 3, H, W) batch, got one (3, H, W) tensor")
        if isinstance(images, torch.Tensor) and images.dim() == 4:
            return self._batch(images)
        sizes, resized = [], []
        for i, image in enumerate(images):
            if image.dim() != 3 or image.shape[0] != 3:
                raise ValueError(f"image {i} must have shape (3, H, W), got {tuple(image.shape)}")
            sizes.append((int(image.shape[-2]), int(image.shape[-1])))
            image = image.to(self.mean.device, non_blocking=True)
            image = image.float() / 255 if image.dtype == torch.uint8 else image.float()
            if image.shape[-2:] != (self.size, self.size):
                image = TF.resize(image, [self.size, self.size], antialias=True)  # (3, S, S)
            resized.append(image)
        batch = torch.stack(resized)  # (N, 3, S, S) in [0, 1]
        return (batch - self.mean) / self.std, sizes

    def _batch(self, images: torch.Tensor) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """A stacked batch (what the training loader gives): converted and normalized in one go, no per-image copies."""
        n, c, h, w = images.shape
        if c != 3:
            raise ValueError(f"images must have shape (N, 3, H, W), got {tuple(images.shape)}")
        batch = images.to(self.mean.device, non_blocking=True)
        batch = batch.float() / 255 if batch.dtype == torch.uint8 else batch.float()  # (N, 3, H, W) in [0, 1]
        if (h, w) != (self.size, self.size):
            batch = TF.resize(batch, [self.size, self.size], antialias=True)  # (N, 3, S, S)
        return (batch - self.mean) / self.std, [(h, w)] * n
