"""Registration audit: everything the model runs is trained and saved.

The fault this project was born from: layers in a plain Python list run in ``forward`` but are
not in ``parameters()``, so the optimizer never updates them and ``state_dict()`` never saves
them. A second form of it: an optimizer built *before* a layer was added, which then trains
everything but that layer.
"""

from __future__ import annotations

import torch
from torch import nn

from ssdlite.doctor.report import FAIL, PASS, Check
from ssdlite.models.registration import find_unregistered, iter_unregistered


def check_registration(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> Check:
    """Modules hidden in containers, parameters missing from the state dict or from the optimizer."""
    evidence = []
    hidden = find_unregistered(model)
    evidence += [f"not registered (runs, but never trained or saved): {item}" for item in hidden]

    state = model.state_dict(keep_vars=True)
    saved = {id(t) for t in state.values()}
    named = dict(model.named_parameters())
    not_saved = [name for name, p in named.items() if id(p) not in saved]
    evidence += [f"parameter not in the state dict: {name}" for name in not_saved]

    not_optimized = []
    if optimizer is not None:
        in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
        not_optimized = [name for name, p in named.items() if p.requires_grad and id(p) not in in_optimizer]
        evidence += [f"trainable parameter missing from the optimizer: {name}" for name in not_optimized]

    params = sum(p.numel() for p in named.values())
    state_params = sum(t.numel() for k, t in state.items() if isinstance(t, nn.Parameter))
    size_mb = sum(t.numel() * t.element_size() for t in state.values()) / 1e6
    hidden_params = sum(
        item.numel() if isinstance(item, nn.Parameter) else sum(p.numel() for p in item.parameters())
        for _, item in iter_unregistered(model)
    )
    data = {"params": params, "state_dict_params": state_params, "state_dict_mb": size_mb, "hidden_params": hidden_params}
    if evidence:
        return Check(
            "registration",
            FAIL,
            f"{len(hidden)} hidden modules/parameters ({hidden_params:,} parameters never trained), "
            f"{len(not_saved)} unsaved, {len(not_optimized)} not in the optimizer",
            evidence,
            "hold layers in nn.ModuleList / nn.Sequential / nn.ModuleDict (never a plain list, tuple or dict), and build "
            "the optimizer after the model is complete",
            data,
        )
    return Check(
        "registration",
        PASS,
        f"every module and parameter is registered and saved: {params:,} parameters, {size_mb:.1f} MB state dict"
        + ("" if optimizer is None else ", all trainable ones in the optimizer"),
        data=data,
    )

