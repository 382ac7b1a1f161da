"""Faults planted in a healthy model, shared by the registration tests and the doctor's tests.

A plain module, not ``conftest``: several test folders have a ``conftest.py``.
"""

from __future__ import annotations

from torch import nn


class ListHeldExtras(nn.Module):
    """The bug this project was born from: extra layers kept in a plain Python list (never registered)."""

    def __init__(self, extras: nn.Module) -> None:
        super().__init__()
        self.blocks = list(extras.blocks)  # plain list: never registered
        self.out_channels = extras.out_channels

    def forward(self, x):
        maps = []
        for block in self.blocks:
            x = block(x)
            maps.append(x)
        return maps


class Detached(nn.Module):
    """Wraps a layer and detaches its output: the layer runs but never gets a gradient."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x).detach()


class Zeroed(nn.Module):
    """Wraps a layer and multiplies its output by zero: the layer is in the graph but its gradient is always zero."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x) * 0.0
