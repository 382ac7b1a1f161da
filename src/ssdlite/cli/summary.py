"""`ssdlite summary`: what the model is made of."""

from __future__ import annotations

import argparse
import json

from ssdlite.cli.options import add_model_arguments, model_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "summary",
        help="feature maps, default boxes, parameters, MAdds and the registration check of a model",
        description="Describe an SSDLite model: feature maps, default boxes, parameters per part, size, MAdds "
        "and whether every layer is registered. Builds the model from the flags, or reads --weights.",
    )
    add_model_arguments(p)
    p.add_argument("--weights", help="describe a trained model instead (run directory, checkpoint or .safetensors)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ssdlite.models.summary import format_summary, summarize

    if args.weights:
        from ssdlite.models.io import load_model

        model, _ = load_model(args.weights)
    else:
        model = model_from_args(args)
    info = summarize(model)
    print(json.dumps(info) if args.json else format_summary(info))
    return 0 if info["registration"]["ok"] else 1
