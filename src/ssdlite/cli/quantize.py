"""`ssdlite quantize`: INT8 (onnxruntime static QDQ) from an exported ONNX model, with its accuracy measured."""

from __future__ import annotations

import argparse
import json
import sys

from ssdlite.cli.options import CALIB_IMAGES

from ssdlite.cli import _runtime
from ssdlite.deploy import runtimes

(RUNTIME,) = runtimes.rows(int8=runtimes.QUANTIZE)  # the runtime whose INT8 path this command is


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "quantize",
        help="INT8-quantize an exported ONNX model with calibration images; measure the accuracy drop",
        description="Static INT8 quantization (onnxruntime QDQ, per-channel weights, min/max calibration) of a "
        "model written by 'ssdlite export'. Calibration images come from --calib (an image folder, a dataset root, "
        "or a glob). With --val the fp32 and INT8 models are both evaluated on that dataset and the mAP drop printed.",
    )
    p.add_argument("--onnx", required=True, help="fp32 .onnx written by 'ssdlite export' (raw or --with-nms)")
    p.add_argument("--calib", required=True, nargs="+", help="calibration images: a dataset root (its --calib-split), or image files, folders, globs")
    p.add_argument("--calib-split", default="train", help="split of a --calib dataset (default train)")
    p.add_argument("--out", required=True, help="INT8 .onnx to write")
    p.add_argument("--calib-images", type=CALIB_IMAGES, default=100, help="at most this many calibration images (default 100)")
    p.add_argument("--val", help="dataset (VOC, COCO or YOLO) on which to measure fp32 and INT8 accuracy")
    p.add_argument("--val-split", default="val", help="split of --val (default val)")
    p.add_argument("--strict", action="store_true", help="an unreadable calibration image is an error (default: a warning naming it; "
                   "no readable image at all is always an error)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=run, runtime_of=_runtime.resolver("quantize"))


def run(args: argparse.Namespace) -> int:
    from ssdlite.deploy.model_files import check_model_file
    from ssdlite.deploy.onnx_runtime import make_session, read_metadata
    from ssdlite.deploy.optional import require
    from ssdlite.deploy.quantize import calibration_batches, calibration_images, quantize_onnx
    from ssdlite.errors import UserError
    from ssdlite.files import check_output_path, refuse_overwriting_input
    from ssdlite.models.transform import Preprocess

    onnx = require("onnx", "INT8 quantization")
    refuse_overwriting_input(args.out, "--out", {"--onnx": args.onnx})
    if check_output_path(args.out, "--out"):
        print(f"note: {args.out} exists; it is replaced", file=sys.stderr)
    check_model_file(args.onnx)
    config = read_metadata(make_session(args.onnx), args.onnx)["config"]
    preprocess = Preprocess(config["size"], config["image_mean"], config["image_std"])
    try:
        model = onnx.load(args.onnx)
    except Exception as err:  # protobuf decode errors
        raise UserError(f"{args.onnx}: not a readable ONNX file ({err})") from err
    try:
        images = calibration_images(args.calib, args.calib_split, args.calib_images)
    except ValueError as err:
        raise UserError(f"{' '.join(args.calib)}: {err}") from err
    note = images.check("calibration images", args.strict)
    used = quantize_onnx(model, args.out, calibration_batches(images, preprocess))
    result = {"onnx": args.onnx, "out": args.out, "calibration_images": used,
              "unreadable_calibration_images": [str(u) for u in images.unusable]}
    if args.val:
        result.update(_accuracy(args.onnx, args.out, args.val, args.val_split))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"INT8 model -> {args.out} (calibrated on {used} images{note})")
        if args.val:
            print(
                f"VOC07 mAP@0.5 on {args.val} ({args.val_split}): fp32 {result['fp32_voc07_map50']:.4f}, "
                f"int8 {result['int8_voc07_map50']:.4f}, drop {100 * result['map50_drop']:.2f} points"
            )
    return 0


def _accuracy(fp32: str, int8: str, dataset_path: str, split: str) -> dict:
    from ssdlite.data import build_dataset
    from ssdlite.deploy.predictor import Predictor, PredictorModule
    from ssdlite.engine.evaluate import evaluate

    dataset = build_dataset(dataset_path, split=split, keep_difficult=True, hold_out=True)
    scores = {}
    for name, path in (("fp32", fp32), ("int8", int8)):
        predictor = Predictor(path, backend=RUNTIME.name, score_threshold=0.0)
        scores[name] = evaluate(PredictorModule(predictor), dataset, progress=False)["voc07_map50"]
    return {
        "val": dataset_path,
        "val_split": split,
        "fp32_voc07_map50": scores["fp32"],
        "int8_voc07_map50": scores["int8"],
        "map50_drop": scores["fp32"] - scores["int8"],
    }
