"""``ssdlite serve``: an HTTP detection service (FastAPI on uvicorn) with micro-batching and a web page.

- :mod:`ssdlite.serve.batcher`: the micro-batcher (requests that arrive close together share one model call);
- :mod:`ssdlite.serve.uploads`: an upload's bytes -> a checked, decoded, resized image, or a JSON error;
- :mod:`ssdlite.serve.metrics`: the Prometheus metrics;
- :mod:`ssdlite.serve.app`: the API, the page and its files (``static/``);
- :mod:`ssdlite.serve.server`: uvicorn, with a SIGTERM that drains and exits 0.

The web stack is the optional extra ``pip install 'ssdlite[serve]'``; this module imports none of it,
so :func:`require_serve_extra` can say in one line what is missing.
"""

from __future__ import annotations

import importlib.util

from ssdlite.errors import UserError

#: import name -> the distribution that provides it (what ``ssdlite[serve]`` installs).
SERVE_PACKAGES = {"fastapi": "fastapi", "uvicorn": "uvicorn", "multipart": "python-multipart", "prometheus_client": "prometheus-client"}


def require_serve_extra() -> None:
    """Raise a one-line ``UserError`` naming every missing package of the ``serve`` extra."""
    missing = [dist for module, dist in SERVE_PACKAGES.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise UserError(f"ssdlite serve needs the 'serve' extra (missing: {', '.join(missing)}); install it with: pip install 'ssdlite[serve]'")
