"""`ssdlite benchmark`: parameters, MAdds and latency (p50/p90/p99) of a model on torch or onnxruntime, or of an
exported file on its runtime."""

from __future__ import annotations

import argparse
import json

from ssdlite.cli import _runtime
from ssdlite.cli.options import BATCH, add_model_arguments, add_threads, add_weights, model_from_args
from ssdlite.deploy import runtimes
from ssdlite.models.options import number

#: Timed (or untimed) calls: a million is hours even for a small model; more is a typo.
MAX_CALLS = 1_000_000
IN_MEMORY = runtimes.names(from_weights=True)  # the runtimes a model is timed on without a file


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "benchmark",
        help="parameters, MAdds, latency percentiles and images/s of a model, or of an exported file on its runtime",
        description="Time the full pipeline (uint8 640x480 images -> detections) and the network alone on the CPU. "
        "Builds the model from the model flags (random weights) or reads --weights. "
        f"A model is timed on {', '.join(IN_MEMORY + runtimes.int8_choices()[:1])}, an exported file on its runtime.",
    )
    add_weights(p, required=False)  # without it: a randomly initialized model from the model flags
    add_model_arguments(p)
    _runtime.add_backend(p, runtimes.int8_choices())
    p.add_argument("--batch", type=BATCH, default=1, help="images per call (default 1)")
    add_threads(p)
    p.add_argument("--iters", type=number(int, ge=1, le=MAX_CALLS), default=50, help="timed calls (default 50)")
    p.add_argument("--warmup", type=number(int, ge=0, le=MAX_CALLS), default=5, help="untimed calls first (default 5)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run, runtime_of=_runtime.resolver("benchmark"))


def run(args: argparse.Namespace) -> int:
    from ssdlite.deploy.latency import benchmark
    from ssdlite.errors import UserError

    if args.batch < 1 or args.iters < 1 or args.warmup < 0:
        raise UserError("--batch and --iters must be >= 1 and --warmup >= 0")
    exported = bool(args.weights) and runtimes.for_file(args.weights) is not runtimes.DEFAULT
    chosen, _ = runtimes.get_int8(args.backend) if args.backend else (None, False)
    if exported or (chosen is not None and not chosen.from_weights):
        if not exported:
            raise UserError(f"--backend {args.backend} times an exported file: --weights model{' / '.join(chosen.suffixes)} (ssdlite export)")
        from ssdlite.deploy.latency import benchmark_file

        result = benchmark_file(args.weights, args.runtime_of(args).name, args.batch, args.threads, args.warmup, args.iters)
        if not args.json:
            lat, net = result["latency_ms"], result["network_latency_ms"]
            print(
                f"{args.weights} ({result['file_bytes'] / 1e6:.2f} MB), input {result['input_size']}x{result['input_size']}\n"
                f"{result['backend']}, batch {result['batch']}, {result['threads']} threads\n"
                f"pipeline  p50 {lat['p50']:.2f} ms  p90 {lat['p90']:.2f} ms  p99 {lat['p99']:.2f} ms  ({result['images_per_s']:.1f} images/s)\n"
                f"runtime   p50 {net['p50']:.2f} ms  p90 {net['p90']:.2f} ms  p99 {net['p99']:.2f} ms"
            )
            return 0
    else:
        if args.weights:
            from ssdlite.models.io import load_model

            model, _ = load_model(args.weights)
        else:
            model = model_from_args(args)
        result = benchmark(model, args.backend or runtimes.DEFAULT.name, args.batch, args.threads, args.warmup, args.iters)
    if args.json:
        print(json.dumps(result))
        return 0
    lat, net = result["latency_ms"], result["network_latency_ms"]
    print(
        f"{model.config.arch} {result['input_size']}x{result['input_size']}: {result['params'] / 1e6:.2f}M params, "
        f"{result['madds'] / 1e9:.3f}B MAdds\n"
        f"{result['backend']}, batch {result['batch']}, {result['threads']} threads\n"
        f"pipeline  p50 {lat['p50']:.2f} ms  p90 {lat['p90']:.2f} ms  p99 {lat['p99']:.2f} ms  ({result['images_per_s']:.1f} images/s)\n"
        f"network   p50 {net['p50']:.2f} ms  p90 {net['p90']:.2f} ms  p99 {net['p99']:.2f} ms"
    )
    return 0
