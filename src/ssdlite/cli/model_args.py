"""The model-choice flags shared by the commands that build a model from scratch (summary, benchmark, doctor, anchors)."""

from __future__ import annotations

import argparse

from ssdlite.models.ssdlite import ARCHS, NECKS


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """``--arch``, ``--size``, ``--width-mult``, ``--head``, ``--neck``, ``--fpn-stride8``, ``--reduced-tail``."""
    p.add_argument("--arch", default="mobilenet_v2", choices=ARCHS, help="backbone (default mobilenet_v2)")
    p.add_argument("--size", type=int, default=None, help="square input size (default 320; 300 for vgg16)")
    p.add_argument("--width-mult", type=float, default=1.0, help="MobileNet width multiplier (default 1.0)")
    p.add_argument("--head", choices=("lite", "ssd"), default=None, help="prediction heads (default lite; ssd for vgg16)")
    p.add_argument("--neck", choices=NECKS, default="none", help="neck over the prediction maps (default none)")
    p.add_argument("--fpn-stride8", action="store_true", help="FPN neck: add a stride-8 level")
    p.add_argument("--reduced-tail", action="store_true", help="MobileNetV3: halve the last stage")


def model_from_args(args: argparse.Namespace, num_classes: int, backbone_weights: str | None = None):
    """The model the flags describe (random weights unless ``backbone_weights``)."""
    from ssdlite.models.ssdlite import create_model

    return create_model(
        num_classes,
        arch=args.arch,
        size=args.size,
        width_mult=args.width_mult,
        backbone_weights=backbone_weights,
        head=args.head,
        neck=args.neck,
        fpn_stride8=args.fpn_stride8,
        reduced_tail=args.reduced_tail,
    )
