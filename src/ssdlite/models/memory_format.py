"""The memory format a model runs in: channels_last (NHWC) on the CPU by default.

oneDNN, PyTorch's CPU convolution library, computes convolutions in a blocked NHWC layout; with the
default NCHW tensors every convolution converts its input and output, forward and backward. Measured on
2 cores (benchmarks/RESULTS.md, issue 15): SSDLite-MobileNetV2 training about 1.6x faster with
channels_last, inference at batch 1 about 1.2x. On CUDA the choice stays off unless asked for: cuDNN's
depthwise kernels in NHWC were not measured here.
"""

from __future__ import annotations

import torch
from torch import nn


def uses_channels_last(setting: bool | None, device: torch.device | str) -> bool:
    """``setting`` when given, else ``True`` on the CPU and ``False`` elsewhere."""
    if setting is not None:
        return bool(setting)
    return torch.device(device).type == "cpu"


def place_model(model: nn.Module, device: torch.device | str, channels_last: bool | None = None) -> nn.Module:
    """``model`` moved to ``device`` in the format :func:`uses_channels_last` picks (in place; returned)."""
    memory_format = torch.channels_last if uses_channels_last(channels_last, device) else torch.preserve_format
    return model.to(device, memory_format=memory_format)
