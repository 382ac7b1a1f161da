"""`ssdlite export`: ONNX (raw or with in-graph NMS) or TorchScript, verified against PyTorch before it is written."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a trained model to ONNX (optionally with NMS in the graph) or TorchScript, verified",
        description="Export the network (raw cls_logits and bbox_deltas) or, with --with-nms, the whole "
        "postprocess in the ONNX graph (outputs num_detections, boxes normalized xyxy, scores, labels). Every "
        "export runs onnxruntime (or the TorchScript file) and PyTorch on real images (synthetic shapes) and fails, "
        "writing nothing, when a detection does not match one to one (same label, IoU >= 0.99, score within 1e-3) "
        "or a network output differs by more than 1e-4 + 1e-3 x its largest magnitude.",
    )
    p.add_argument("--weights", required=True, help="run directory, checkpoint .pt or .safetensors")
    p.add_argument("--format", choices=("onnx", "torchscript"), default="onnx", help="default onnx")
    p.add_argument("--out", required=True, help="file to write (.onnx or .pt)")
    p.add_argument("--with-nms", action="store_true", help="ONNX: decode, scores, NonMaxSuppression and top-k in the graph")
    p.add_argument("--dynamic-batch", action="store_true", help="ONNX: symbolic batch size (else fixed at 1)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 18; >= 13 with --with-nms)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ssdlite.errors import UserError
    from ssdlite.models.io import load_model

    model, info = load_model(args.weights)
    if args.format == "torchscript":
        if args.with_nms or args.opset is not None:
            raise UserError("--with-nms and --opset apply to --format onnx only")
        from ssdlite.deploy.torchscript import export_torchscript

        report = export_torchscript(model, args.out, info["classes"])
    else:
        from ssdlite.deploy.onnx_export import DEFAULT_OPSET, export_onnx
        from ssdlite.deploy.onnx_postprocess import MIN_OPSET

        opset = args.opset or DEFAULT_OPSET
        if args.with_nms and opset < MIN_OPSET:
            raise UserError(f"--with-nms needs --opset >= {MIN_OPSET}, got {opset}")
        report = export_onnx(
            model, args.out, info["classes"], with_nms=args.with_nms, dynamic_batch=args.dynamic_batch, opset=opset
        )
    kind = f"onnx opset {report.opset}" + (" with NMS" if report.with_nms else "") if report.format == "onnx" else "torchscript"
    print(f"exported {info['path']} -> {args.out} ({kind}, {report.seconds:.1f} s)")
    print(report.summary())
    return 0
