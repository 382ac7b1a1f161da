"""ssdlite: SSDLite object detectors (MobileNetV2 paper, section 6.2) to train, evaluate, run and export."""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: Public names and the module that defines each. They are imported on first use (PEP 562), so that
#: ``import ssdlite`` (and the ``ssdlite`` command before it dispatches) does not import PyTorch: the
#: command re-executes itself with a faster allocator first (``ssdlite.cli.cpu``), which must happen
#: before PyTorch is loaded.
_EXPORTS = {
    "ModelConfig": "ssdlite.models.config",
    "SSDLite": "ssdlite.models.ssdlite",
    "build_model": "ssdlite.models.factory",
    "create_model": "ssdlite.models.factory",
    "ssdlite_mobilenet_v2": "ssdlite.models.factory",
    "Predictor": "ssdlite.deploy.predictor",
}
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ssdlite' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
