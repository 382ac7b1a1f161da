"""How ``ssdlite serve`` runs: one frozen dataclass, one field per flag.

The flags of ``ssdlite serve`` are generated from :class:`ServeSettings` (:func:`ssdlite.models.options.add_arguments`:
the field's help, default and range), so a setting has one name, one default and one check for the command line
and for library callers (``create_app(predictor, ServeSettings(...))``). Two fields keep a flag of their own:
``score_threshold`` is the shared ``--score-threshold`` of every command that runs a model
(:func:`ssdlite.cli.options.add_score_threshold`), and ``cors_origins`` is ``--cors-origin ORIGIN``, repeated.
This module imports none of the web stack, so the parser is built without the ``serve`` extra.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from ssdlite.deploy.predictor import SCORE_THRESHOLD
from ssdlite.errors import ConfigError
from ssdlite.models.options import Settings, option

#: The official Label Studio ML backend's variables, read the same way (the key stays out of the process list).
API_KEY_ENV = "SSDLITE_API_KEY"
LABEL_STUDIO_URL_ENV = "LABEL_STUDIO_URL"
LABEL_STUDIO_API_KEY_ENV = "LABEL_STUDIO_API_KEY"
#: The flags not generated from a field (see the module docstring).
OWN_FLAGS = ("score_threshold", "cors_origins")
#: The start-up warm-up runs one batch of the largest size and the metrics keep a histogram bucket per size.
MAX_SERVE_BATCH = 256


@dataclass(frozen=True)
class ServeSettings(Settings):
    """How the service runs; each field is a flag of ``ssdlite serve`` (``max_batch_size`` -> ``--max-batch-size``)."""

    host: str = option("127.0.0.1", "address to listen on (127.0.0.1: this machine only; another address warns "
                       "without --api-key)")
    port: int = option(8000, "port", ge=0, le=65535)
    max_batch_size: int = option(8, "requests run as one model call at most (1 turns batching off)", ge=1, le=MAX_SERVE_BATCH)
    batch_timeout_ms: float = option(5.0, "how long a request waits for others to share its model call", ge=0, le=10_000)
    max_queue: int = option(64, "requests that may wait beyond the running batch; more get 503", ge=0, le=1_000_000)
    max_body_mb: float = option(10.0, "largest request body in MiB; larger gets 413", gt=0, le=4096)
    max_megapixels: float = option(50.0, "largest image in megapixels, checked before decoding", gt=0, le=10_000)
    score_threshold: float = option(SCORE_THRESHOLD, "the detections a request that gives no score_threshold gets", ge=0, le=1)
    api_key: str | None = option(None, f"require 'Authorization: Bearer KEY' on /v1/* and /metrics (or set {API_KEY_ENV}, "
                                 "which keeps it out of the process list)")
    cors_origins: tuple[str, ...] = option((), "origins allowed to call from a browser")
    decode_threads: int = option(2, "threads that decode uploaded images", ge=1, le=256)
    drain_timeout: float = option(30.0, "seconds SIGTERM waits for requests in flight", ge=0, le=86_400)
    access_log: bool = option(True, "log every request")
    # Label Studio (ssdlite.serve.label_studio): where task images may be read from; nothing else is fetched.
    label_studio_url: str | None = option(None, "Label Studio's address: task images on it (and its /data/... paths) are "
                                          f"fetched from it, no other host (or set {LABEL_STUDIO_URL_ENV})")
    label_studio_api_key: str | None = option(None, "Label Studio API key (legacy token or personal access token) to fetch "
                                              f"task images (or set {LABEL_STUDIO_API_KEY_ENV})")
    local_files_root: str | None = option(None, "task images given as file paths (or Label Studio /data/local-files/?d=...) "
                                          "are read under this folder only")
    # Open Inference Protocol (ssdlite.serve.inference_protocol): the model's name in /v2/models/{name}.
    model_name: str = option("ssdlite", "the model's name in the Open Inference Protocol routes /v2/models/NAME")

    def __post_init__(self) -> None:
        super().__post_init__()  # the ranges
        problems = [
            f"--{name.replace('_', '-')} must be {rule}, got {getattr(self, name)}"
            for name, ok, rule in (
                ("label_studio_url", self.label_studio_url is None or _is_http_url(self.label_studio_url), "an http(s) URL"),
                ("local_files_root", self.local_files_root is None or os.path.isdir(self.local_files_root), "a folder"),
                ("model_name", self.model_name.replace("-", "").replace("_", "").replace(".", "").isalnum(),
                 "letters, digits, '-', '_' or '.'"),
            )
            if not ok
        ]
        if problems:
            raise ConfigError("; ".join(problems))

    @property
    def max_pixels(self) -> int:
        """The largest image in pixels, as the decoder checks it."""
        return int(self.max_megapixels * 1_000_000)

    @property
    def loopback(self) -> bool:
        """Whether ``host`` is reachable from this machine only."""
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host == "localhost"


def _is_http_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)
