"""Lazy imports of the optional runtimes, each from its extra.

The core library needs only torch. ONNX export, onnxruntime inference and INT8 quantization need
``onnx``, ``onnxruntime`` and ``onnxscript`` (``pip install 'ssdlite[export]'``); ExecuTorch needs
``ssdlite[executorch]``, OpenVINO ``ssdlite[openvino]``. They are imported when first used, and a
missing one is a :class:`~ssdlite.errors.UserError` that names the extra instead of an ``ImportError``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ssdlite.errors import UserError


def require(module: str, feature: str, extra: str = "export") -> ModuleType:
    """Import ``module`` or raise a ``UserError`` naming ``feature`` and the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise UserError(
            f"{feature} needs the Python package '{module.split('.')[0]}', which is not installed ({err}); "
            f"install it with: pip install 'ssdlite[{extra}]'"
        ) from err
