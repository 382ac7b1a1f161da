"""`ssdlite serve`: an HTTP detection service with micro-batching and a web page (``docs/serve.md``)."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys

from ssdlite.cli import _runtime
from ssdlite.cli.options import add_device, add_score_threshold, add_threads, add_weights
from ssdlite.errors import UserError

API_KEY_ENV = "SSDLITE_API_KEY"
#: The official Label Studio ML backend's variables, read the same way (the key stays out of the process list).
LABEL_STUDIO_URL_ENV = "LABEL_STUDIO_URL"
LABEL_STUDIO_API_KEY_ENV = "LABEL_STUDIO_API_KEY"


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
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--max-batch-size", type=int, default=8, help="requests run as one model call at most (default 8; 1 turns batching off)")
    p.add_argument("--batch-timeout-ms", type=float, default=5.0, help="how long a request waits for others to share its model call (default 5)")
    p.add_argument("--max-queue", type=int, default=64, help="requests that may wait beyond the running batch; more get 503 (default 64)")
    p.add_argument("--max-body-mb", type=float, default=10.0, help="largest request body in MiB; larger gets 413 (default 10)")
    p.add_argument("--max-megapixels", type=float, default=50.0, help="largest image in megapixels, checked before decoding (default 50)")
    add_score_threshold(p)  # for the requests that give no score_threshold of their own
    p.add_argument("--api-key", default=None, help=f"require 'Authorization: Bearer KEY' on /v1/* and /metrics (or set {API_KEY_ENV}, which keeps it out of the process list)")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN", help="allow browser calls from this origin (repeatable; default none)")
    p.add_argument("--drain-timeout", type=float, default=30.0, help="seconds SIGTERM waits for requests in flight (default 30)")
    p.add_argument("--no-access-log", action="store_true", help="do not log every request")
    p.add_argument(
        "--label-studio-url", default=None, metavar="URL",
        help=f"Label Studio's address: task images on it (and its /data/... paths) are fetched from it, no other host (or set {LABEL_STUDIO_URL_ENV})",
    )
    p.add_argument("--label-studio-api-key", default=None, metavar="KEY", help=f"Label Studio API key (legacy token or personal access token) to fetch task images (or set {LABEL_STUDIO_API_KEY_ENV})")
    p.add_argument("--local-files-root", default=None, metavar="DIR", help="task images given as file paths (or Label Studio /data/local-files/?d=...) are read under DIR only")
    p.add_argument("--model-name", default="ssdlite", help="the model's name in the Open Inference Protocol routes /v2/models/NAME (default ssdlite)")
    p.set_defaults(func=run, runtime_of=_runtime.resolver("serve"))


def _check(args: argparse.Namespace) -> None:
    problems = [
        f"--{name.replace('_', '-')} must be {rule}, got {getattr(args, name)}"
        for name, ok, rule in (
            ("port", 0 <= args.port <= 65535, "0..65535"),
            ("max_batch_size", args.max_batch_size >= 1, ">= 1"),
            # The start-up warm-up runs one batch of this size and the metrics keep a histogram bucket per size.
            ("max_batch_size", args.max_batch_size <= 256, "<= 256"),
            ("batch_timeout_ms", 0 <= args.batch_timeout_ms <= 10_000, "0..10000"),
            ("max_queue", args.max_queue >= 0, ">= 0"),
            ("max_body_mb", args.max_body_mb > 0, "> 0"),
            ("max_megapixels", args.max_megapixels > 0, "> 0"),
            ("drain_timeout", args.drain_timeout >= 0, ">= 0"),
            ("label_studio_url", args.label_studio_url is None or _is_http_url(args.label_studio_url), "an http(s) URL"),
            ("local_files_root", args.local_files_root is None or os.path.isdir(args.local_files_root), "a folder"),
            ("model_name", args.model_name.replace("-", "").replace("_", "").replace(".", "").isalnum(), "letters, digits, '-', '_' or '.'"),
        )
        if not ok
    ]
    if problems:
        raise UserError("; ".join(problems))


def _is_http_url(url: str) -> bool:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def run(args: argparse.Namespace) -> int:
    from ssdlite.serve import require_serve_extra

    args.label_studio_url = args.label_studio_url or os.environ.get(LABEL_STUDIO_URL_ENV) or None
    _check(args)
    require_serve_extra()
    from ssdlite.deploy.predictor import Predictor
    from ssdlite.serve.app import ServeSettings, create_app
    from ssdlite.serve.server import serve_forever

    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    if not _is_loopback(args.host) and api_key is None:
        print(f"ssdlite serve: warning: listening on {args.host} without --api-key: anyone who can reach it can use it", file=sys.stderr)
    # Score threshold 0: every request filters the detections with its own threshold.
    backend = args.runtime_of(args).name
    predictor = Predictor(args.weights, backend=backend, device=args.device, score_threshold=0.0, batch_size=args.max_batch_size, threads=args.threads)
    settings = ServeSettings(
        max_batch_size=args.max_batch_size,
        batch_timeout_ms=args.batch_timeout_ms,
        max_queue=args.max_queue,
        max_body_mb=args.max_body_mb,
        max_pixels=int(args.max_megapixels * 1_000_000),
        score_threshold=args.score_threshold,
        api_key=api_key,
        cors_origins=tuple(args.cors_origin),
        label_studio_url=args.label_studio_url,
        label_studio_api_key=args.label_studio_api_key or os.environ.get(LABEL_STUDIO_API_KEY_ENV) or None,
        local_files_root=args.local_files_root,
        model_name=args.model_name,
    )
    app = create_app(predictor, settings)
    print(f"ssdlite serve: {args.weights} ({backend}, {len(predictor.classes)} classes) on http://{args.host}:{args.port}/", file=sys.stderr, flush=True)
    serve_forever(app, host=args.host, port=args.port, access_log=not args.no_access_log, drain_timeout_s=args.drain_timeout)
    return 0
