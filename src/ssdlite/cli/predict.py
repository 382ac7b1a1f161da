"""`ssdlite predict`: detect objects in images, videos, folders and globs; draw them and write JSON."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ssdlite.cli import _runtime
from ssdlite.cli.options import add_batch_size, add_device, add_score_threshold, add_threads, add_weights
from ssdlite.deploy.preannotations import FORMATS as PREANNOTATION_FORMATS


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict",
        help="run a trained model on images, videos, folders or globs; draw boxes, write JSON lines and COCO results",
        description="Detect objects in image and video files, folders (searched recursively) and glob patterns. "
        "Writes into --out a copy of each image (each video as .mp4) with boxes, class names and scores drawn, "
        "predictions.jsonl (one line per image or frame; unreadable files get an 'error') and coco_results.json. In folders and globs, "
        "files without an image or video suffix and hidden files are not inputs (counted in one note). An unreadable input is "
        "named in a warning and counted in the summary, and the others are predicted; it is an error (exit 2, what was "
        "predicted before it kept) with --strict, or when no input is readable. An existing --out folder is written into, "
        "replacing the files of the same names (with a note when it holds earlier predictions).",
    )
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="image or video file, folder or glob pattern (quote it)")
    add_weights(p)
    p.add_argument("--out", required=True, help="output folder")
    add_score_threshold(p)
    _runtime.add_backend(p)
    add_device(p)
    add_batch_size(p)
    add_threads(p)
    p.add_argument("--no-draw", action="store_true", help="write only the JSON files")
    p.add_argument(
        "--annotations", choices=tuple(PREANNOTATION_FORMATS),
        help="also write the images and their detections as a dataset in OUT/FORMAT/ to correct in a labelling tool: "
        "voc (labelImg: XML beside the images), yolo (labelImg's YOLO mode: .txt beside the images, classes.txt), "
        "coco (images/ + annotations/instances_default.json, as CVAT), label-studio (tasks.json with the detections "
        "as predictions, label_config.xml, images/); ssdlite data check and train --data read it back",
    )
    p.add_argument("--strict", action="store_true", help="stop with an error at the first unreadable input")
    p.set_defaults(func=run, runtime_of=_runtime.resolver("predict"))


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ssdlite.deploy.prediction_writer import PredictionWriter
    from ssdlite.deploy.predictor import Prediction, Predictor
    from ssdlite.deploy.sources import Unusable, check_unusable, expand_sources, note_ignored
    from ssdlite.deploy.video import VideoError, is_video, video_rate
    from ssdlite.files import check_output_path, check_replaceable_folder

    if check_output_path(args.out, "--out", folder=True) and (Path(args.out) / "predictions.jsonl").exists():
        print(f"note: {args.out} holds earlier predictions; they are replaced", file=sys.stderr)
    if args.annotations and check_replaceable_folder(Path(args.out) / args.annotations, "--annotations"):
        print(f"note: {Path(args.out) / args.annotations} holds earlier pre-annotations; it is replaced whole", file=sys.stderr)
    ignored: list[Path] = []
    paths = expand_sources(args.sources, ignored)
    note_ignored(ignored)
    args.backend = args.runtime_of(args).name
    predictor = Predictor(
        args.weights,
        backend=args.backend,
        device=args.device,
        score_threshold=args.score_threshold,
        batch_size=args.batch_size,
        threads=args.threads,
    )
    writer = PredictionWriter(args.out, predictor.classes, draw=not args.no_draw, annotations=args.annotations,
                              model_version=f"ssdlite {Path(args.weights).name}")

    def unusable() -> list[Unusable]:
        return [Unusable(str(failed.path), failed.error) for failed in writer.errors]

    named = [0]  # unreadable inputs already named

    def tally(bar) -> None:
        """After each input: name a new unreadable one at once (the rule's warning), stop on it with --strict."""
        bar.update(1)
        if len(writer.errors) > named[0]:
            named[0] = len(writer.errors)
            if args.strict:
                check_unusable("inputs", len(paths) - named[0], unusable()[-1:], strict=True)
            tqdm.write(f"warning: {unusable()[-1]}; not used", file=sys.stderr)

    try:
        with tqdm(total=len(paths), desc="predict", unit="file", disable=None) as bar:
            for prediction in predictor.predict_paths(p for p in paths if not is_video(p)):
                writer.add(prediction)
                tally(bar)
            for path in (p for p in paths if is_video(p)):
                try:
                    rate = video_rate(path)
                except VideoError as err:
                    writer.add(Prediction(path, error=f"video_corrupt: {err}"))
                else:
                    writer.add_video(path, predictor.predict_video(path), rate)
                tally(bar)
    finally:
        writer.close()  # what was predicted before an interruption or a --strict stop is kept
    note = check_unusable("inputs", len(paths) - len(writer.errors), unusable(), warn=False)
    print(
        f"{writer.images} images or frames of {len(paths) - len(writer.errors)} files, {writer.detections} detections "
        f"(score >= {args.score_threshold:g}, {args.backend}) -> {args.out}{note}"
    )
    if args.annotations:
        videos = sum(1 for p in paths if is_video(p))
        print(f"{len(writer.annotated)} images and their detections as a {args.annotations} dataset -> "
              f"{Path(args.out) / args.annotations}" + (f" ({videos} videos not included)" if videos else ""))
    return 0
