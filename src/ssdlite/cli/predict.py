"""`ssdlite predict`: detect objects in images, videos, folders and globs; draw them and write JSON."""

from __future__ import annotations

import argparse
import sys

from ssdlite.cli import _runtime
from ssdlite.deploy import runtimes


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict",
        help="run a trained model on images, videos, folders or globs; draw boxes, write JSON lines and COCO results",
        description="Detect objects in image and video files, folders (searched recursively) and glob patterns. "
        "Writes into --out a copy of each image (each video as .mp4) with boxes, class names and scores drawn, "
        "predictions.jsonl (one line per image or frame; unreadable files get an 'error') and coco_results.json. Unreadable files are reported and skipped; "
        "the exit code is 1 when any was.",
    )
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="image or video file, folder or glob pattern (quote it)")
    p.add_argument(
        "--weights", required=True,
        help=f"run directory, checkpoint .pt, .safetensors, or the backend's exported file ({', '.join(runtimes.exported_suffixes())})",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--score-threshold", type=float, default=0.3, help="keep detections scored at least this (default 0.3)")
    _runtime.add_backend(p)
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    p.add_argument("--batch-size", type=int, default=8, help="images per network call (default 8)")
    p.add_argument("--threads", type=int, default=None, help="runtime threads (default: the runtime's choice)")
    p.add_argument("--no-draw", action="store_true", help="write only the JSON files")
    p.set_defaults(func=run, runtime_of=_runtime.resolver("predict"))


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ssdlite.deploy.prediction_writer import PredictionWriter
    from ssdlite.deploy.predictor import Prediction, Predictor
    from ssdlite.deploy.sources import expand_sources
    from ssdlite.deploy.video import VideoError, is_video, video_rate

    paths = expand_sources(args.sources)
    args.backend = args.runtime_of(args).name
    predictor = Predictor(
        args.weights,
        backend=args.backend,
        device=args.device,
        score_threshold=args.score_threshold,
        batch_size=args.batch_size,
        threads=args.threads,
    )
    writer = PredictionWriter(args.out, predictor.classes, draw=not args.no_draw)
    try:
        with tqdm(total=len(paths), desc="predict", unit="file", disable=None) as bar:
            for prediction in predictor.predict_paths(p for p in paths if not is_video(p)):
                writer.add(prediction)
                bar.update(1)
            for path in (p for p in paths if is_video(p)):
                try:
                    rate = video_rate(path)
                except VideoError as err:
                    writer.add(Prediction(path, error=f"video_corrupt: {err}"))
                else:
                    writer.add_video(path, predictor.predict_video(path), rate)
                bar.update(1)
    finally:
        writer.close()  # what was predicted before an interruption is kept
    print(
        f"{writer.images} images or frames, {writer.detections} detections (score >= {args.score_threshold:g}, "
        f"{args.backend}) -> {args.out}"
    )
    for failed in writer.errors:
        print(f"ssdlite predict: skipped {failed.path}: {failed.error}", file=sys.stderr)
    return 1 if writer.errors else 0
