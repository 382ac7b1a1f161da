"""`ssdlite doctor`: find silent training failures before they cost weeks."""

from __future__ import annotations

import argparse
import time

from ssdlite.cli.options import add_data_arguments, add_model_arguments, data_from_run, model_from_args
from ssdlite.models import options
from ssdlite.models.config import ModelConfig
from ssdlite.models.options import number


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "doctor",
        help="check a model and a dataset for silent training failures (PASS / WARN / FAIL)",
        description="Runs the registration audit, gradient flow, labels and inputs, default-box coverage and a "
        "one-batch overfit on the training split; prints a report, writes it with plots to --out, and exits 1 "
        "when any check fails.",
    )
    add_data_arguments(p, from_run=True)
    source = p.add_mutually_exclusive_group()
    source.add_argument("--config", help="a training configuration YAML: check the model and optimizer it builds")
    source.add_argument("--weights", help="check a trained model (run directory, checkpoint or .safetensors)")
    add_model_arguments(p)
    p.add_argument("--overfit-steps", type=number(int, ge=1, le=100_000), default=200, help="steps of the one-batch overfit (default 200)")
    p.add_argument("--out", default="runs/doctor", help="folder for report.txt, report.json and plots")
    p.set_defaults(func=run)


def build_subject(args: argparse.Namespace, classes: list[str]):
    """``(model, optimizer or None, backbone_weights)`` from --weights, --config or the flags."""
    from ssdlite.errors import UserError

    num_classes = len(classes) + 1
    if args.weights:
        from ssdlite.models.io import load_model

        model, info = load_model(args.weights)
        if len(info["classes"]) and len(info["classes"]) != len(classes):
            raise UserError(f"{info['path']} was trained on {len(info['classes'])} classes, the dataset has {len(classes)}")
        return model.train(), None, None
    if args.config:
        from ssdlite.engine.config import load_yaml
        from ssdlite.engine.optim import build_optimizer
        from ssdlite.engine.trainer import build_training_model

        config = load_yaml(args.config)
        config = config.replace(**options.given(args, ModelConfig))  # model flags on top of the file
        model = build_training_model(config, num_classes)
        return model, build_optimizer(model, config.optim), config.model.backbone_weights
    model = model_from_args(args, num_classes)
    return model, None, args.backbone_weights


def run(args: argparse.Namespace) -> int:
    from ssdlite.data import build_dataset, eval_transforms
    from ssdlite.doctor import format_report, run_checks, write_report

    start = time.perf_counter()
    data_from_run(args)
    catalog_classes = build_dataset(args.data, args.format, split=args.split).classes
    model, optimizer, backbone_weights = build_subject(args, list(catalog_classes))
    dataset = build_dataset(args.data, args.format, split=args.split, transforms=eval_transforms(model.size))
    print(f"doctor: {len(dataset)} images of {args.data} ({args.split}), model {model.config.arch} at {model.size}")
    checks = run_checks(model, dataset, optimizer, backbone_weights, overfit_steps=args.overfit_steps)
    written = write_report(checks, args.out)
    print()
    print(format_report(checks))
    print(f"report: {', '.join(str(p) for p in written)}  ({time.perf_counter() - start:.0f} s)")
    return 1 if any(c.failed for c in checks) else 0
