"""Finding modules and parameters a model holds but never registered.

The failure this project was born from: layers kept in a plain Python list run in ``forward``
but are invisible to ``parameters()``, ``state_dict()`` and ``.to(device)``: never trained, never
saved. PyTorch only registers ``nn.Module`` / ``nn.Parameter`` values assigned as attributes or
held in ``nn.ModuleList`` / ``nn.ModuleDict`` / ``nn.Sequential`` / ``nn.ParameterList``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from torch import nn


#: Attributes every ``nn.Module`` has (``_modules``, ``_parameters``, hooks...): PyTorch's own bookkeeping.
_TORCH_INTERNALS = frozenset(vars(nn.Module()))


def _hidden(value: Any, path: str, depth: int = 0) -> Iterator[tuple[str, Any]]:
    """Modules and parameters inside plain containers (lists, tuples, sets, dicts), recursively."""
    if depth > 4:
        return
    if isinstance(value, Mapping):
        items = ((f"{path}[{k!r}]", v) for k, v in value.items())
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(value))
    else:
        return
    for sub_path, item in items:
        if isinstance(item, (nn.Module, nn.Parameter)):
            yield sub_path, item
        else:
            yield from _hidden(item, sub_path, depth + 1)


def iter_unregistered(model: nn.Module) -> Iterator[tuple[str, nn.Module | nn.Parameter]]:
    """``(path, module_or_parameter)`` for everything held in plain containers and hidden from PyTorch.

    A module or parameter that is *also* registered elsewhere in the model (a plain list of
    references to registered layers) is not reported: it is trained and saved through its
    registered path.
    """
    registered_params = {id(p) for p in model.parameters()}
    registered_modules = {id(m) for m in model.modules()}
    for prefix, module in model.named_modules():
        for name, value in vars(module).items():
            if name in _TORCH_INTERNALS:
                continue
            path = f"{prefix}.{name}" if prefix else name
            for hidden_path, item in _hidden(value, path):
                registered = registered_params if isinstance(item, nn.Parameter) else registered_modules
                if id(item) not in registered:
                    yield hidden_path, item


def find_unregistered(model: nn.Module) -> list[str]:
    """Names like ``"core.heads[2] (Conv2d, 1,234 parameters)"`` of everything hidden from PyTorch."""
    found = []
    for path, item in iter_unregistered(model):
        if isinstance(item, nn.Parameter):
            found.append(f"{path} (Parameter {tuple(item.shape)})")
        else:
            n = sum(p.numel() for p in item.parameters())
            found.append(f"{path} ({type(item).__name__}, {n:,} parameters)")
    return found
