"""`ssdlite eval`: VOC and COCO metrics of a trained model, or of detections saved in COCO results format.

    ssdlite eval --weights runs/raccoon --data ../shared/datasets/raccoon --json metrics.json --plots plots/
    ssdlite eval --predictions detections.json --data path/to/coco --split val2017

Prints a per-class table (VOC AP50 by both rules, COCO AP), the COCO summary and the error table (TIDE's
error types per class with the AP50 each costs, and the classes each class is taken for); ``--json -``
prints the metrics as JSON on stdout and the tables on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ssdlite.cli import _runtime
from ssdlite.cli.options import SCORE, WORKERS, add_batch_size, add_data_arguments, add_device, add_threads, add_weights, data_from_run
from ssdlite.deploy import runtimes


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="VOC and COCO mAP of a model or of saved detections",
        description="Score a model (--weights) or detections in COCO results format (--predictions) on one split "
        "of a dataset: VOC mAP@0.5 (VOC2007 11-point and VOC2010+ all-point), COCO AP/AP50/AP75/APs/APm/APl "
        "and AR@1/10/100 through pycocotools, per-class APs. Difficult (VOC) and crowd (COCO) boxes are "
        "ignore regions in both metrics.",
    )
    source = p.add_mutually_exclusive_group(required=True)
    add_weights(source, required=False)  # the group requires it or --predictions
    _runtime.add_backend(p)
    source.add_argument(
        "--predictions",
        metavar="PRED.json",
        help="detections in COCO results format (from --save-predictions or any detector); integer image_id "
        "= the dataset's image id, string image_id = an image file name or stem",
    )
    add_data_arguments(p, split="val", from_run=True)
    p.add_argument("--json", metavar="OUT", help="write every metric as one JSON object to OUT ('-': stdout)")
    p.add_argument("--plots", metavar="DIR", help="write precision-recall curves and the confusion matrix (PNG) to DIR")
    p.add_argument("--save-predictions", metavar="FILE", help="with --weights: write the detections in COCO results format")
    add_batch_size(p)
    p.add_argument("--workers", type=WORKERS, default=2, help="image decoding processes (default 2; 0 decodes in the main process)")
    add_device(p)
    add_threads(p)
    p.add_argument("--score-threshold", type=SCORE, help="ignore detections scored below this (default: keep all)")
    p.add_argument(
        "--plot-score-threshold", type=SCORE, default=0.25, help="detections counted in the confusion matrix and the error table (default 0.25)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--strict", action="store_true", help="an image that cannot be decoded is an error (default: a warning naming "
                   "it, and the metrics cover the others; no decodable image at all is always an error)")
    p.set_defaults(func=run, runtime_of=_runtime.resolver("eval"))


def _check_args(args: argparse.Namespace) -> None:
    from ssdlite.errors import UserError

    if args.backend and not args.weights:
        raise UserError("--backend applies to --weights (the model to run)")
    if args.save_predictions and not args.weights:
        raise UserError("--save-predictions needs --weights (with --predictions the detections are already saved)")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.workers < 0:
        raise UserError(f"--workers must be 0 or more, got {args.workers}")
    _check_outputs(args)


def _check_outputs(args: argparse.Namespace) -> None:
    """Every output path is writable before any model or data is read; an existing file is replaced, with a note."""
    from ssdlite.files import check_output_path

    files = [("--json", args.json if args.json != "-" else None), ("--save-predictions", args.save_predictions)]
    for flag, path in files:
        if path and check_output_path(path, flag):
            print(f"note: {flag} {path} exists; it is replaced", file=sys.stderr)
    if args.plots:
        check_output_path(args.plots, "--plots", folder=True)


def _dataset(args: argparse.Namespace, classes: list[str] | None = None):
    """The split, untransformed and with difficult/crowd boxes; what the data checks changed goes to stderr."""
    from ssdlite.data import build_dataset, data_summary

    dataset = build_dataset(args.data, args.format, args.split, transforms=None, keep_difficult=True, classes=classes, hold_out=True)
    if any(p.severity in ("warning", "error") for p in dataset.report.problems):
        # Skipped samples and fixed boxes make the numbers differ from a tool that reads the raw files.
        print(f"warning: evaluating after these data fixes (all of them: ssdlite data check {args.data})", file=sys.stderr)
        print(data_summary(dataset)[0], file=sys.stderr)
    return dataset


def _evaluate_model(args: argparse.Namespace) -> dict[str, Any]:
    from ssdlite.deploy.sources import Unusable
    from ssdlite.engine.distributed import resolve_device
    from ssdlite.engine.evaluate import evaluate
    from ssdlite.errors import DataError, UserError

    device = resolve_device(args.device)
    model, info = _load(args.weights, device, args.backend, args.threads)
    # The model's class list fixes the label order; the dataset is read against it (unknown names are an error).
    classes = list(info.get("classes") or []) or None
    try:
        dataset = _dataset(args, classes)
    except DataError as err:
        if classes is None:
            raise
        raise DataError(f"{err}\n(the classes are those of the model in {info['path']}: {', '.join(classes)})") from err
    if model.num_classes - 1 != len(dataset.classes):
        raise UserError(
            f"{info['path']}: the model predicts {model.num_classes - 1} classes but {args.data} has "
            f"{len(dataset.classes)} ({', '.join(dataset.classes)})"
        )
    result = evaluate(
        model,
        dataset,
        batch_size=args.batch_size,
        num_workers=args.workers,
        device=device,
        score_threshold=args.score_threshold,
        progress=not args.no_progress,
        save_predictions=args.save_predictions,
        plots_dir=args.plots,
        plot_score_threshold=args.plot_score_threshold,
    )
    # The images not scored, with why (the dataset's record of every decoding failure, in any worker).
    args.unusable = [Unusable(p.file, p.kind.replace("_", " ")) for p in dataset.load_failures()]
    return result


def _load(weights: str, device, backend: str | None = None, threads: int | None = None):
    """``(model, info)``: a weights file as the PyTorch model, an exported file behind its runtime's ``Predictor``."""
    from ssdlite.deploy.backends import open_backend
    from ssdlite.deploy.predictor import Predictor, PredictorModule

    backend = runtimes.chosen(backend, weights).name
    if backend == runtimes.DEFAULT.name:  # the model itself, opened (and its threads set) as the torch runtime opens it
        runner = open_backend(backend, weights, device, threads)
        return runner.model, runner.info
    predictor = Predictor(weights, backend=backend, device=device, score_threshold=0.0, threads=threads)
    module = PredictorModule(predictor)
    module.num_classes = predictor.config.num_classes
    return module, {"classes": predictor.classes, "path": weights}


def _evaluate_file(args: argparse.Namespace) -> dict[str, Any]:
    from ssdlite.engine.evaluate import evaluate_predictions

    return evaluate_predictions(
        args.predictions,
        _dataset(args),
        score_threshold=args.score_threshold,
        plots_dir=args.plots,
        plot_score_threshold=args.plot_score_threshold,
    )


def run(args: argparse.Namespace) -> int:
    from ssdlite.errors import UserError

    _check_args(args)
    data_from_run(args)
    try:
        return _run(args)
    except OSError as err:  # an output that cannot be written (a folder where a file should go, no space, ...)
        raise UserError(f"{err.filename or 'output'}: {err.strerror or err}") from err


def _run(args: argparse.Namespace) -> int:
    from ssdlite.deploy.sources import Unusable, check_unusable
    from ssdlite.files import write_bytes_atomic
    from ssdlite.metrics.report import format_report

    result = _evaluate_model(args) if args.weights else _evaluate_file(args)
    result = {"weights" if args.weights else "predictions": args.weights or args.predictions, "data": args.data, "split": args.split, **result}

    to_stdout = args.json == "-"
    table_stream = sys.stderr if to_stdout else sys.stdout  # keep stdout pure JSON with --json -
    skipped = result.get("skipped_images", [])
    unusable = getattr(args, "unusable", None) or [Unusable(name, "image could not be decoded") for name in skipped]
    note = check_unusable("images", result.get("num_images", 0), unusable, strict=args.strict) if unusable else ""
    print(format_report(result), file=table_stream)
    if note:
        print(f"scored {result.get('num_images', 0)} images{note}", file=table_stream)
    text = json.dumps(result, indent=2, allow_nan=False)
    if to_stdout:
        print(text)
    elif args.json:
        write_bytes_atomic(args.json, (text + "\n").encode("utf-8"))
        print(f"metrics written to {args.json}", file=table_stream)
    if args.plots:
        print(f"plots written to {args.plots}", file=table_stream)
    if args.save_predictions:
        print(f"detections written to {args.save_predictions}", file=table_stream)
    return 0
