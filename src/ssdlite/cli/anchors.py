"""`ssdlite anchors fit`: search default-box scales and aspect ratios that cover the training boxes."""

from __future__ import annotations

import argparse
from pathlib import Path

from ssdlite.cli.options import add_data_arguments, add_model_arguments, model_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("anchors", help="default-box tools: `anchors fit` searches settings that cover your boxes")
    sub = p.add_subparsers(dest="anchors_command", metavar="ACTION")
    sub.required = True
    fit = sub.add_parser(
        "fit",
        help="grid-search min/max scale, aspect ratios and the reduced lowest level for the best coverage",
        description="Measures, at the model's input size, the share of training boxes with a default box of "
        "IoU >= 0.5 for each setting of a grid, prints coverage before and after, and writes the best setting as a "
        "`model:` section for `ssdlite train --config`.",
    )
    add_data_arguments(fit)
    add_model_arguments(fit)
    fit.add_argument("--out", default="anchors.yaml", help="YAML file for the best setting (default anchors.yaml)")
    fit.set_defaults(func=run_fit)


def run_fit(args: argparse.Namespace) -> int:
    import yaml

    from ssdlite.data import build_dataset
    from ssdlite.models.anchor_fit import best_ious, fit_anchors, normalized_boxes
    from ssdlite.files import atomic_write

    dataset = build_dataset(args.data, args.format, split=args.split)
    annotations = [dataset.get_annotation(i) for i in range(len(dataset))]
    model = model_from_args(args, len(dataset.classes) + 1)
    boxes = normalized_boxes(annotations)
    before = best_ious(boxes, model.default_boxes)
    results = fit_anchors(annotations, model.feature_sizes, model.config)
    best = results[0]
    print(f"{len(boxes)} boxes of {len(annotations)} images, input {model.size}")
    print(f"{'setting':<58} {'covered':>8} {'mean IoU':>9} {'anchors':>8}")
    c = model.config
    ratios = " / ".join(" ".join(map(str, r)) for r in c.aspect_ratios) if isinstance(c.aspect_ratios[0], tuple) else " ".join(map(str, c.aspect_ratios))
    current = f"current ({c.min_scale}-{c.max_scale}, ratios {ratios}, reduced {c.reduce_lowest})"
    print(f"{current:<58} {float((before >= 0.5).float().mean()):>8.1%} "
          f"{float(before.mean()):>9.3f} {model.default_boxes.boxes.shape[0]:>8}")
    for r in results[:5]:
        name = f"{r['min_scale']}-{r['max_scale']}, ratios {' '.join(map(str, r['aspect_ratios']))}, reduced {r['reduce_lowest']}"
        print(f"{name:<58} {r['covered']:>8.1%} {r['mean_best_iou']:>9.3f} {r['num_anchors']:>8}")
    section = {k: best[k] for k in ("min_scale", "max_scale", "aspect_ratios", "reduce_lowest")}
    text = "# written by `ssdlite anchors fit`: coverage {:.1%} -> {:.1%} at input {}\n".format(
        float((before >= 0.5).float().mean()), best["covered"], model.size
    ) + yaml.safe_dump({"model": {"size": model.size, **section}}, sort_keys=False)
    atomic_write(args.out, lambda tmp: Path(tmp).write_text(text))
    print(f"best setting written to {args.out}")
    return 0
