"""`ssdlite convert`: a torchvision SSD detector's weights -> an ssdlite ``model.safetensors``."""

from __future__ import annotations

import argparse
import json

#: torchvision's COCO category names are not in a state dict; converted models name classes by index.
CLASS_NAME = "class{}"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "convert",
        help="convert torchvision ssdlite320_mobilenet_v3_large / ssd300_vgg16 weights into an ssdlite model file",
        description="Reads a torchvision detector state dict (torch.save of model.state_dict(), or a references/detection "
        "checkpoint with 'model'), builds the equivalent ssdlite model (same default boxes, normalization and "
        "postprocess), loads the converted weights and writes a .safetensors that predict, eval, export and "
        "--init-from read.",
    )
    p.add_argument("weights", help="torchvision state dict file")
    p.add_argument("--out", required=True, help="output .safetensors file")
    p.add_argument("--classes", help="text file with one foreground class name per line (default: class1, class2, ...)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ssdlite.errors import UserError
    from ssdlite.models.convert import load_torchvision_file
    from ssdlite.models.io import save_safetensors

    model, notes = load_torchvision_file(args.weights)
    count = model.num_classes - 1
    if args.classes:
        path = Path(args.classes)
        if not path.is_file():
            raise UserError(f"--classes {path}: no such file")
        classes = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        if len(classes) != count:
            raise UserError(f"--classes {path}: {len(classes)} names, but the model has {count} foreground classes")
    else:
        classes = [CLASS_NAME.format(i) for i in range(1, count + 1)]
    save_safetensors(model, args.out, classes=classes, metadata={"converted_from": json.dumps(str(args.weights))})
    for line in notes:
        print(line)
    print(f"wrote {args.out}: {model.config.arch}, {count} foreground classes, input {model.size}")
    return 0
