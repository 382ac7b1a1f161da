"""Lazy imports of the export dependencies (``pip install 'ssdlite[export]'``).

The core library needs only torch; ONNX export, onnxruntime inference and INT8 quantization need
``onnx``, ``onnxruntime`` and ``onnxscript``. They are imported when first used, and a missing one
is a :class:`~ssdlite.errors.UserError` that says how to install it instead of an ``ImportError``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ssdlite.errors import UserError


def require(module: str, feature: str) -> ModuleType:
    """Import ``module`` or raise a ``UserError`` naming ``feature`` and the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise UserError(
            f"{feature} needs the Python package '{module.split('.')[0]}', which is not installed ({err}); "
            "install it with: pip install 'ssdlite[export]'"
        ) from err
