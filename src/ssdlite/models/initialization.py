"""Weight initialization of the layers the detector adds to a backbone: one helper for all of them.

torchvision initializes SSDLite's extra layers and heads with Normal(0, 0.03) weights
(``_normal_init`` in ``models/detection/ssdlite.py``) and SSD300's added layers and heads with
Xavier-uniform (``_xavier_init`` in ``models/detection/ssd.py``); biases start at zero in both.
"""

from __future__ import annotations

from torch import nn

#: Standard deviation of SSDLite's Normal initialization (torchvision, the TensorFlow reference's 0.03).
NORMAL_STD = 0.03


def init_convs(module: nn.Module, kind: str) -> None:
    """Re-initialize every ``Conv2d`` in ``module``: ``"normal"`` (SSDLite) or ``"xavier"`` (SSD); zero biases."""
    if kind not in ("normal", "xavier"):
        raise ValueError(f"unknown initialization {kind!r}; choose 'normal' or 'xavier'")
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            if kind == "normal":
                nn.init.normal_(m.weight, mean=0.0, std=NORMAL_STD)
            else:
                nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
