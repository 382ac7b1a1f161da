"""Fine-tuning across class counts: start from a trained detector, keep all but the class head.

A detector trained on COCO (91 classes) or on another dataset carries everything a new dataset
needs except the last convolution of each class predictor, whose output count is
``boxes_per_location * num_classes``. :func:`init_from` copies every tensor whose name and shape
match, leaves those class convolutions as freshly initialized (Normal(0, 0.03) or Xavier, zero
bias) and says so. Anything else that does not fit (another backbone, width or head) is an error:
silently training half a network from scratch is the failure this project exists to prevent.

Sources: a run directory, a ``.pt`` checkpoint or a ``.safetensors`` file written by ssdlite, or
``torchvision:PATH`` for a torchvision ``ssdlite320_mobilenet_v3_large`` / ``ssd300_vgg16`` state
dict (converted by :mod:`ssdlite.models.convert`).
"""

from __future__ import annotations

import re

import torch
from torch import nn

from ssdlite.errors import UserError

#: The tensors that depend on the class count: the final (prediction) convolution of each class predictor.
CLASS_HEAD = re.compile(r"^core\.head\.classification\.predictors\.\d+\.(\d+\.)?(weight|bias)$")


def _source_state_dict(source: str) -> tuple[dict[str, torch.Tensor], str]:
    """The ssdlite-layout state dict of ``source`` and a description of it."""
    if source.startswith("torchvision:"):
        from ssdlite.models.convert import load_torchvision_file

        model, _ = load_torchvision_file(source.split(":", 1)[1])
        return model.state_dict(), f"torchvision detector {source.split(':', 1)[1]} ({model.config.arch})"
    from ssdlite.models.io import load_model

    model, info = load_model(source)
    return model.state_dict(), f"{info['path']} ({model.config.arch}, {model.num_classes} classes)"


def init_from(model: nn.Module, source: str) -> list[str]:
    """Load ``source``'s weights into ``model`` except the class head where the class count differs.

    Returns:
        Lines saying what was loaded and what was re-initialized.

    Raises:
        UserError: ``source`` cannot be read, or a tensor other than the class head is missing or
            has another shape (a different architecture).
    """
    state, description = _source_state_dict(source)
    own = model.state_dict()
    loaded, reinitialized, problems = {}, [], []
    for name, tensor in own.items():
        theirs = state.get(name)
        if theirs is not None and theirs.shape == tensor.shape:
            loaded[name] = theirs
        elif CLASS_HEAD.match(name) and theirs is not None:
            reinitialized.append(f"{name} {tuple(theirs.shape)} -> {tuple(tensor.shape)}")
        else:
            problems.append(f"{name}: " + ("missing" if theirs is None else f"{tuple(theirs.shape)} vs {tuple(tensor.shape)}"))
    unexpected = sorted(set(state) - set(own))
    if problems or unexpected:
        shown = problems[:5] + [f"{name}: not in this model" for name in unexpected[:5]]
        raise UserError(
            f"--init-from {source}: {description} does not fit this architecture apart from the class head "
            f"({len(problems)} missing or mis-shaped, {len(unexpected)} unexpected): " + "; ".join(shown)
        )
    model.load_state_dict(loaded, strict=False)
    lines = [f"initialized from {description}: {len(loaded)} of {len(own)} tensors loaded"]
    if reinitialized:
        lines.append(f"re-initialized for the new class count ({len(reinitialized)} tensors): " + ", ".join(reinitialized))
    return lines
