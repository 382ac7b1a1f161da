"""`ssdlite serve`: an HTTP detection service with micro-batching and a web page (``docs/serve.md``).

Its flags are :class:`ssdlite.serve.settings.ServeSettings`' fields (one name, default, help and range each), plus
the flags every command that runs a model shares (``ssdlite.cli.options``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from ssdlite.cli import _runtime
from ssdlite.cli.options import add_device, add_score_threshold, add_threads, add_weights
from ssdlite.models import options
from ssdlite.serve.settings import (
    API_KEY_ENV,
    LABEL_STUDIO_API_KEY_ENV,
    LABEL_STUDIO_URL_ENV,
    OWN_FLAGS,
    ServeSettings,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve a trained model over HTTP: a JSON API with micro-batching, metrics and a web page",
        description="Serve a trained model: POST /v1/detect (an image in, its detections out), GET /v1/metadata, "
        "/health/live, /health/ready, /metrics (Prometheus), /openapi.json, and a page at / that draws the boxes. "
        "Needs the extra: pip install 'ssdlite[serve]'. SIGTERM lets the requests in flight finish, then exits 0.",
    )
    add_weights(p)
    _runtime.add_backend(p)
    add_device(p)
    add_threads(p)
    options.add_arguments(p, ServeSettings, skip=OWN_FLAGS)
    add_score_threshold(p)  # for the requests that give no score_threshold of their own
    p.add_argument("--cors-origin", dest="cors_origins", action="append", default=None, metavar="ORIGIN",
                   help="allow browser calls from this origin (repeatable; default none)")
    p.set_defaults(func=run, runtime_of=_runtime.resolver("serve"))


def settings_of(args: argparse.Namespace) -> ServeSettings:
    """The flags given, on top of the fields' defaults; the keys from their environment variables when not given."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(ServeSettings) if getattr(args, f.name, None) is not None}
    given["cors_origins"] = tuple(given.get("cors_origins", ()))
    for name, variable in (("api_key", API_KEY_ENV), ("label_studio_url", LABEL_STUDIO_URL_ENV),
                           ("label_studio_api_key", LABEL_STUDIO_API_KEY_ENV)):
        given[name] = given.get(name) or os.environ.get(variable) or None
    return ServeSettings(**given)


def run(args: argparse.Namespace) -> int:
    from ssdlite.serve import require_serve_extra

    settings = settings_of(args)
    require_serve_extra()
    from ssdlite.deploy.predictor import Predictor
    from ssdlite.serve.app import create_app
    from ssdlite.serve.server import serve_forever

    if not settings.loopback and settings.api_key is None:
        print(f"ssdlite serve: warning: listening on {settings.host} without --api-key: anyone who can reach it can use it", file=sys.stderr)
    # Score threshold 0: every request filters the detections with its own threshold.
    backend = args.runtime_of(args).name
    predictor = Predictor(args.weights, backend=backend, device=args.device, score_threshold=0.0,
                          batch_size=settings.max_batch_size, threads=args.threads)
    app = create_app(predictor, settings)
    print(f"ssdlite serve: {args.weights} ({backend}, {len(predictor.classes)} classes) on http://{settings.host}:{settings.port}/",
          file=sys.stderr, flush=True)
    serve_forever(app, host=settings.host, port=settings.port, access_log=settings.access_log, drain_timeout_s=settings.drain_timeout)
    return 0
