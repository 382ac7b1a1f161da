"""What a model is made of: maps, default boxes, parameters per part, size, MAdds, registration.

MAdds are counted with ``torch.utils.flop_counter.FlopCounterMode`` on the core network at the
model's input size. Its convolution rule uses the weight shape ``(C_out, C_in / groups, k, k)``,
so a depthwise convolution counts ``k * k`` multiply-adds per output value, not ``C_in * k * k``
(the test checks this against a hand count). One multiply-add is two FLOPs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ssdlite.models.modes import evaluating
from ssdlite.models.registration import find_unregistered


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_madds(core: nn.Module, size: int) -> int:
    """Multiply-adds of one forward pass of ``core`` on a ``(1, 3, size, size)`` input."""
    device = next(core.parameters()).device
    with torch.no_grad(), evaluating(core), FlopCounterMode(display=False) as counter:
        core(torch.zeros(1, 3, size, size, device=device))
    return counter.get_total_flops() // 2


def summarize(model: nn.Module) -> dict[str, Any]:
    """A JSON-ready description of an :class:`~ssdlite.models.SSDLite` model."""
    core = model.core
    maps = model.feature_sizes
    channels = list(core.backbone.out_channels) + list(core.extras.out_channels)
    if core.neck is not None:
        channels = list(core.neck.out_channels)  # the head sees the neck's maps
    state = model.state_dict()
    size_bytes = sum(t.numel() * t.element_size() for t in state.values())
    parts = {
        "backbone": count_parameters(core.backbone),
        "extras": count_parameters(core.extras),
        **({"neck": count_parameters(core.neck)} if core.neck is not None else {}),
        "heads": count_parameters(core.head),
    }
    unregistered = find_unregistered(model)
    return {
        "arch": model.config.arch,
        "num_classes": model.num_classes,
        "size": model.size,
        "width_mult": model.config.width_mult,
        "neck": model.config.neck,
        "feature_maps": [[c, h, w] for c, (h, w) in zip(channels, maps)],
        "boxes_per_location": model.default_boxes.boxes_per_location,
        "anchors_per_level": model.default_boxes.boxes_per_level,
        "num_anchors": int(model.default_boxes.boxes.shape[0]),
        "params": count_parameters(model),
        "params_per_part": parts,
        "size_mb": size_bytes / 1e6,
        "madds": count_madds(core, model.size),
        "registration": {"ok": not unregistered, "unregistered": unregistered},
    }


def format_summary(info: dict[str, Any]) -> str:
    """Human-readable table of :func:`summarize`'s result."""
    lines = [
        f"{info['arch']}  input {info['size']}x{info['size']}  classes {info['num_classes']} (incl. background)"
        f"  width {info['width_mult']}",
        "",
        f"{'level':>5} {'channels':>8} {'map':>7} {'boxes/loc':>9} {'boxes':>6}",
    ]
    for level, ((c, h, w), b, n) in enumerate(
        zip(info["feature_maps"], info["boxes_per_location"], info["anchors_per_level"])
    ):
        lines.append(f"{level:>5} {c:>8} {f'{h}x{w}':>7} {b:>9} {n:>6}")
    lines.append(f"{'total':>5} {'':>8} {'':>7} {'':>9} {info['num_anchors']:>6}")
    lines.append("")
    parts = ", ".join(f"{k} {v / 1e6:.3f}M" for k, v in info["params_per_part"].items())
    lines.append(f"parameters  {info['params'] / 1e6:.3f}M ({parts})")
    lines.append(f"size        {info['size_mb']:.1f} MB (fp32 state dict)")
    lines.append(f"MAdds       {info['madds'] / 1e9:.3f}B at {info['size']}x{info['size']}")
    reg = info["registration"]
    if reg["ok"]:
        lines.append("registration OK: every module and parameter is registered")
    else:
        lines.append("registration FAILED: not registered (never trained, never saved):")
        lines += [f"  - {item}" for item in reg["unregistered"]]
    return "\n".join(lines)
