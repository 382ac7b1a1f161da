"""`ssdlite export`: every runtime of :mod:`ssdlite.deploy.runtimes` that exports (ONNX raw or with in-graph NMS,
TorchScript, ExecuTorch, LiteRT (TFLite), OpenVINO), verified against PyTorch before it is written."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ssdlite.cli import _runtime
from ssdlite.cli.options import BATCH, CALIB_IMAGES, run_dataset
from ssdlite.deploy import runtimes
from ssdlite.models.options import number

#: The newest ONNX opset of the onnx package this is tested with (1.19: 28); the oldest its version converter
#: reaches from the exporter's 18 is 7.
MAX_OPSET = 28
#: NMS candidates per image: far beyond any real detector's top-k (the default is 2 x detections per image).
MAX_CANDIDATES = 100_000

EXPORTS = runtimes.rows(exports=True)
STATIC = runtimes.rows(exports=True, shapes="static", output="file")

MAX_CHECK_IMAGES = 5000  # --images: every image, up to this many (each is run by PyTorch and by the runtime)
RUN_CHECK_IMAGES = 100  # without --images: this many of the training run's validation images


def takers(flag: str) -> str:
    """``executorch/tflite/...``: the formats whose rows take ``flag``, for its help."""
    return "/".join(r.name for r in EXPORTS if flag in r.options)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a trained model to a runtime's file (--format), verified against PyTorch",
        description="Export the network (raw cls_logits and bbox_deltas) or, with --with-nms, the whole "
        "postprocess in the ONNX graph (outputs boxes normalized xyxy, scores, labels, num_detections). "
        f"{', '.join(f'{r.title} ({r.suffixes[0]})' for r in STATIC)} files always hold the postprocess, with static shapes "
        "(outputs boxes, scores, labels, count for a fixed maximum per image), optionally INT8 (--int8 --calib). "
        "--format web writes a folder whose page detects in the browser with the LiteRT file (MediaPipe). "
        "Every export runs the exported file and PyTorch on real images (--images, else the first 100 validation "
        "images of the dataset the run trained on, else the first --calib images, else synthetic shapes) and fails, "
        "writing nothing, when a detection does not match one to one (same label, IoU >= 0.99, score within 1e-3) or a network output differs by more than 1e-4 + 1e-3 x its "
        "largest magnitude. See docs/deploy.md.",
    )
    p.add_argument("--weights", required=True, help="run directory, checkpoint .pt or .safetensors")
    p.add_argument("--format", choices=runtimes.choices(exports=True), default=_runtime.EXPORT_DEFAULT,
                   help=f"the runtime (default {_runtime.EXPORT_DEFAULT}); see docs/deploy.md")
    p.add_argument("--out", required=True, help="file to write (" + ", ".join(
        f"{r.name}: " + (" or ".join(r.suffixes) if r.output == "file" else "a folder") for r in EXPORTS) + ")")
    p.add_argument("--with-nms", action="store_true", help="ONNX: decode, scores, NonMaxSuppression and top-k in the graph")
    p.add_argument("--dynamic-batch", action="store_true", help="ONNX: symbolic batch size (else fixed at 1)")
    p.add_argument("--opset", type=number(int, ge=7, le=MAX_OPSET), default=None, help="ONNX opset (default 18; >= 13 with --with-nms)")
    p.add_argument("--int8", action="store_true", help=f"{takers('--int8')}: post-training INT8, calibrated on --calib")
    p.add_argument("--calib", nargs="+", metavar="DATA", help="calibration images: a dataset folder, or image files/folders/globs "
                   "(default with --int8: the training images of the dataset the run trained on)")
    p.add_argument("--calib-split", default="train", help="split of a --calib dataset (default train)")
    p.add_argument("--calib-images", type=CALIB_IMAGES, default=100, help="at most this many calibration images (default 100)")
    p.add_argument("--images", nargs="+", metavar="DATA", help="verification images, all of them (a dataset folder: its --val-split); default: "
                   "the first 100 validation images of the dataset the run trained on, else the first 8 --calib images, else synthetic shapes; every format")
    p.add_argument("--val", help="with --int8: dataset on which to report VOC07 mAP@0.5 of PyTorch fp32 and of the INT8 file")
    p.add_argument("--val-split", default="val", help="split of --val (default val)")
    p.add_argument("--batch", type=BATCH, default=None, help=f"{takers('--batch')}: the file's fixed batch size (default 1)")
    p.add_argument("--strict", action="store_true", help="an unreadable --images or --calib image is an error (default: a warning "
                   "naming it; no readable image at all is always an error)")
    p.add_argument("--mediapipe", metavar="DIR", help="web: a copy of the npm package @mediapipe/tasks-vision (default: "
                   "./node_modules, ssdlite's cache, else fetched once with npm)")
    p.add_argument("--candidates", type=number(int, ge=1, le=MAX_CANDIDATES), default=None, help=f"{takers('--candidates')}: NMS candidates per image (default 2 x detections, "
                   "raised to what the verification images need, up to 1000)")
    p.add_argument("--input-type", choices=("uint8", "float32"), default=None, help="tflite, web: the input tensor, 1 x S x S x 3 RGB: "
                   "uint8 0..255 (default; MediaPipe's and Frigate's) or float32 in [0, 1] (pixel / 255); the model's normalization is in the file")
    p.add_argument("--layout", choices=("ssdlite", "frigate"), default=None, help=f"{takers('--layout')}: the file's tensors: ssdlite "
                   "(default; 1 x 3 x S x S float32 normalized in, boxes/scores/labels/count out) or frigate (Frigate's openvino detector, "
                   "model_type ssd: 1 x S x S x 3 uint8 RGB in, detection_out 1 x 1 x N x 7 out, a .labelmap.txt beside the model)")
    p.set_defaults(func=run, runtime_of=_runtime.resolver("export"))


def _dest(flag: str) -> str:
    return flag.removeprefix("--").replace("-", "_")


def _check_options(args: argparse.Namespace, runtime: runtimes.Runtime) -> None:
    """Refuse the runtime-specific flags given for a runtime that does not take them (the rows' ``options``)."""
    from ssdlite.errors import UserError

    flags = dict.fromkeys(f for r in EXPORTS for f in r.options)
    wrong = [f for f in flags if f not in runtime.options and getattr(args, _dest(f)) not in (None, False, [])]
    for flag in wrong:
        hint = f"; {runtime.title} INT8: {runtime.int8}" if flag == "--int8" and runtime.int8 else ""
        raise UserError(f"{flag} applies to --format {takers(flag)}, not {runtime.name}{hint}")


def run(args: argparse.Namespace) -> int:
    from ssdlite.errors import UserError
    from ssdlite.models.io import load_model

    runtime = args.runtime_of(args)
    _check_options(args, runtime)
    if args.val and not args.int8:
        raise UserError("--val applies to --int8 (an fp32 export must match PyTorch exactly)")
    if runtime.output == "file" and Path(args.out).suffix.lower() not in runtime.suffixes:
        raise UserError(f"--out {args.out}: {runtime.name} files are written as {' or '.join(runtime.suffixes)}, the suffix "
                        f"by which ssdlite's commands and the runtime's tools recognise it")
    _check_out(args, runtime)
    model, info = load_model(args.weights)
    trained_on = run_dataset(info["path"])
    if args.int8 and not args.calib:
        if trained_on is None:
            raise UserError("--int8 needs --calib DATA (calibration images); the weights are not in a run directory whose "
                            "config.yaml names a dataset found from here")
        args.calib, args.calib_split = [trained_on[0]], trained_on[1]
        print(f"calibrating on {trained_on[0]} ({trained_on[1]} split), the data the run trained on")
    images, args.images_note = _check_images(args.images, args.val_split, args.strict)
    if images is None and trained_on is not None and trained_on[2]:
        images, args.images_note = _check_images([trained_on[0]], trained_on[2], args.strict, RUN_CHECK_IMAGES)
        print(f"verifying on {len(images)} images of {trained_on[0]} ({trained_on[2]} split), the run's validation data")
    if runtime.shapes == "static":
        return _run_static(args, model, info, images, runtime)
    options = {_dest(f): getattr(args, _dest(f)) for f in runtime.options}
    report = runtimes.implementation(runtime.name).export(model, args.out, info["classes"], images=images, **options)
    kind = runtime.name + (f" opset {report.opset}" if report.opset else "") + (" with NMS" if report.with_nms else "")
    print(f"exported {info['path']} -> {args.out} ({kind}, {report.seconds:.1f} s)")
    print(report.summary() + args.images_note)
    return 0


def _check_out(args: argparse.Namespace, runtime: runtimes.Runtime) -> None:
    """--out can be written (an OpenVINO model's .bin and label map too) and is not the --weights; an existing file is replaced only
    once the new export has passed its check (a failed check writes nothing)."""
    from ssdlite.files import check_output_path, check_replaceable_folder, refuse_overwriting_input

    outs = [Path(args.out)]
    if runtime.name == "openvino":
        from ssdlite.deploy.runtimes.openvino import written_beside

        outs += written_beside(args.out, args.layout)
    folder = runtime.output == "folder"
    for out in outs:
        refuse_overwriting_input(out, "--out", {"--weights": args.weights}, folder=folder)
        if check_replaceable_folder(out, "--out") if folder else check_output_path(out, "--out"):
            whole = ", whole," if folder else ""
            print(f"note: {out} exists; it is replaced{whole} if the new export passes its check", file=sys.stderr)


def _check_images(sources: list[str] | None, split: str, strict: bool, limit: int = MAX_CHECK_IMAGES, what: str = "--images images"):
    """``(images, note for the summary)``: the images to verify on (a dataset folder: its ``split``; up to ``limit``),
    or ``(None, "")`` without ``sources`` (the export's default). Unreadable ones follow the one rule
    (:func:`ssdlite.deploy.sources.check_unusable`)."""
    from ssdlite.deploy.quantize import calibration_images
    from ssdlite.errors import UserError

    if not sources:
        return None, ""
    try:
        found = calibration_images(sources, split, limit)
    except ValueError as err:
        raise UserError(str(err)) from err
    return found.images, found.check(what, strict)


def _run_static(args: argparse.Namespace, model, info, images, runtime: runtimes.Runtime) -> int:
    from ssdlite.errors import UserError

    args.batch = 1 if args.batch is None else args.batch
    if args.batch < 1:
        raise UserError(f"--batch must be >= 1, got {args.batch}")
    calibration, calibration_note = _check_images(args.calib, args.calib_split, args.strict, args.calib_images, "calibration images")
    calibration = calibration or []
    images = images or calibration[:8] or None
    options = {"int8": args.int8, "calibration": calibration, "images": images, "batch": args.batch, "candidates": args.candidates}
    # the options only this runtime takes (its row's, beyond the static ones), where given
    own = [_dest(f) for f in runtime.options if f not in runtimes.STATIC_OPTIONS]  # tflite: input_type; openvino: layout
    options |= {name: getattr(args, name) for name in own if getattr(args, name) is not None}
    report = runtimes.implementation(runtime.name).export(model, args.out, info["classes"], **options)
    notes = args.images_note + (f"; calibration images{calibration_note}" if calibration_note else "")
    print(f"exported {info['path']} -> {args.out} ({report.summary()}{notes}, {report.seconds:.1f} s)")
    if args.val:
        from ssdlite.deploy.accuracy import voc07_map50

        fp32 = voc07_map50(args.weights, runtimes.DEFAULT.name, args.val, args.val_split)
        int8 = voc07_map50(args.out, runtime.name, args.val, args.val_split)
        print(f"VOC07 mAP@0.5 on {args.val} ({args.val_split}): {runtimes.DEFAULT.title} fp32 {fp32:.4f}, {runtime.title} INT8 {int8:.4f}, "
              f"drop {100 * (fp32 - int8):.2f} points")
    return 0
