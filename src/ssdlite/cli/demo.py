"""`ssdlite demo`: the README's first command, end to end on the built-in synthetic shapes.

Generates the shapes dataset (no download, no ``../shared``), trains a small SSDLite on the CPU,
evaluates it, draws its predictions on validation images and writes everything under ``--out``:
``data/`` (the dataset, VOC layout), ``train/`` (the run directory of ``ssdlite train``),
``eval/`` (precision-recall curves, confusion matrix, metrics), ``predictions/`` (drawn images),
``summary.json`` and ``summary.md``. Deterministic for a seed.

The defaults trade input size and width for time: 128x128 inputs and width 0.5 instead of
SSDLite's 320 and 1.0 (the synthetic images are drawn at 128 px, so no resize is needed either).
At 128 px the plain SSDLite's first map is 8x8 (stride 16) and only 39% of the generated shapes
have a default box with IoU >= 0.5 (``ssdlite anchors fit`` reports it); the FPN neck with its stride-8 level
covers 76%, which is what lets the demo pass 0.90 within its 10-minute budget (RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ssdlite.cli.options import IMAGE_COUNT, MINUTES, WORKERS, add_device, add_model_arguments, model_config_from_args
from ssdlite.data.augment import IMAGE_PRESETS
from ssdlite.engine.config import OptimConfig, TrainConfig
from ssdlite.models.config import MAX_SIZE, ModelConfig
from ssdlite.models.options import field_named, field_type, number

#: The demo's model when no model flag is given: small and fast (see the module docstring).
DEMO_MODEL = ModelConfig(size=128, width_mult=0.5, neck="fpn", fpn_stride8=True)

#: The epochs are fitted to TRAIN_MINUTES at the measured speed, between MIN_EPOCHS and MAX_EPOCHS. With AdamW
#: (below), 6 epochs gave VOC mAP@0.5 0.897 to 0.946 in four runs (three training seeds), 5 gave 0.862 and 4 0.830;
#: 7 gave 0.931, 0.952 and 0.956 (RESULTS.md), a margin above the target. On a slow machine the demo takes longer
#: rather than finish under its target; on a fast one it stops at 9 epochs.
MIN_EPOCHS, MAX_EPOCHS = 7, 9
TRAIN_MINUTES = 7.5
#: Validations during training (the last epoch's included); the budget keeps time for exactly these.
VALIDATIONS = 3

#: The optimizer is the one ``ssdlite train`` picks from scratch (``recipe.SCRATCH_OPTIMIZER``/``SCRATCH_LR``:
#: AdamW at 3e-3), here with a warm-up of WARMUP_EPOCHS: it reached VOC mAP@0.5 0.946 in 6 epochs where SGD
#: (momentum 0.9) at SGD_LR, the demo's earlier default, had 0.667 and needed 10-12 epochs for 0.90; SGD at 0.1
#: had 0.165 (RESULTS.md, "make demo in half the epochs").
WARMUP_EPOCHS, SGD_LR = 0.3, 0.05

#: The demo passes when the final model reaches this VOC mAP@0.5 (all-point, VOC2010+) on the validation split.
TARGET_VOC_MAP50 = 0.90


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="generate the synthetic shapes, train, evaluate and draw predictions (about 10 CPU minutes)",
        description="End-to-end demo on the built-in synthetic shapes dataset: generate it, train a small SSDLite "
        "on it, evaluate (VOC and COCO mAP), draw predictions on validation images and write a summary. "
        "The model starts from the demo's preset (MobileNetV2 at width 0.5, input 128, FPN neck with a stride-8 "
        "level); the model options below override it.",
    )
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--seed", type=field_type(TrainConfig, "seed"), default=0, help="seed of the data and the training (default 0)")
    p.add_argument("--num-train", type=IMAGE_COUNT, default=3600, help="training images to generate (default 3600)")
    p.add_argument("--num-val", type=IMAGE_COUNT, default=200, help="validation images to generate (default 200)")
    p.add_argument("--image-size", type=number(int, ge=1, le=MAX_SIZE), default=128, help="side of the generated images in pixels (default 128)")
    p.add_argument("--epochs", type=field_type(TrainConfig, "epochs"), default=None, help=f"training epochs (default: as many as the measured speed fits in "
                   f"--time-budget, {MIN_EPOCHS} to {MAX_EPOCHS})")
    p.add_argument("--time-budget", type=MINUTES, default=TRAIN_MINUTES, metavar="MINUTES",
                   help=f"minutes of training when --epochs is not given (default {TRAIN_MINUTES:g}: the demo's 10 minutes "
                   "less data, speed probe, evaluation and drawing, with room for a slow machine)")
    p.add_argument("--batch-size", type=field_type(TrainConfig, "batch_size"), default=16, help="training batch size (default 16)")
    p.add_argument("--optimizer", default=None, choices=field_named(OptimConfig, "optimizer").metadata["choices"], help="optimizer (default: what `ssdlite train` "
                   "picks from scratch, AdamW, which learns the shapes in half the epochs of SGD)")
    p.add_argument("--lr", type=field_type(OptimConfig, "lr"), default=None, help=f"peak learning rate (default: the recipe's from scratch for "
                   f"AdamW, {SGD_LR:g} for SGD)")
    p.add_argument("--augment", default="none", choices=IMAGE_PRESETS, help="augmentation preset (default none: the generator never repeats an image)")
    p.add_argument("--workers", type=WORKERS, default=1, help="data loader workers (default 1)")
    add_device(p)
    p.add_argument("--draw", type=IMAGE_COUNT, default=8, help="validation images to draw predictions on (default 8)")
    add_model_arguments(p)
    p.set_defaults(func=run)


def _dataset(out: Path, args: argparse.Namespace) -> tuple[Path, bool]:
    """``(folder, reused)``: the shapes dataset written now, or one written earlier with the same arguments."""
    from ssdlite.data import write_synthetic

    data_dir = out / "data"
    wanted = {"num_train": args.num_train, "num_val": args.num_val, "size": args.image_size, "seed": args.seed}
    marker = data_dir / "synthetic.json"
    if marker.is_file():
        written = json.loads(marker.read_text())
        if all(written.get(k) == v for k, v in wanted.items()):
            return data_dir, True
    return write_synthetic(data_dir, args.num_train, args.num_val, args.image_size, args.seed, overwrite=True), False


def _draw(model, dataset, classes: list[str], out_dir: Path, count: int, score_threshold: float = 0.5) -> list[str]:
    """Predictions (score >= ``score_threshold``) drawn on the first ``count`` images; returns the file names."""
    import torch
    from torchvision.io import encode_png

    from ssdlite.deploy.draw import draw_detections
    from ssdlite.files import atomic_write

    names = []
    model.eval()
    for index in range(min(count, len(dataset))):
        image, _ = dataset[index]
        image = image.as_subclass(torch.Tensor)  # (3, H, W) uint8
        with torch.inference_mode():
            det = model([image])[0]
        keep = det["scores"] >= score_threshold
        drawn = draw_detections(image, {k: v[keep] for k, v in det.items()}, classes)
        png = encode_png(drawn).numpy().tobytes()
        name = f"val-{index:06d}.png"
        atomic_write(out_dir / name, lambda tmp: Path(tmp).write_bytes(png))
        names.append(name)
    return names


def _fit_epochs(config, train_set, val_images: int, minutes: float):
    """``(config with epochs, reason)``: the epochs that fit ``minutes`` at this machine's measured training speed
    (:func:`ssdlite.engine.recipe.fit_to_budget`, as ``ssdlite train --time-budget``), at most MAX_EPOCHS."""
    from ssdlite.engine.distributed import resolve_device
    from ssdlite.engine.recipe import fit_to_budget
    from ssdlite.errors import UserError

    # The input size is the demo's (its images are drawn at that size): only the epochs are fitted.
    try:
        fitted, _, choices, _ = fit_to_budget(config, {"size"}, minutes, train_set, val_images, resolve_device(config.device),
                                           build_train_set=None, validations=VALIDATIONS)
    except UserError:  # not one epoch fits: a very slow machine still gets the demo, slowly
        return config.replace(epochs=MIN_EPOCHS), (f"at least {MIN_EPOCHS} for the target accuracy; not one epoch fits "
                                                   f"{minutes:g} minutes at the measured speed")
    if fitted.epochs >= MAX_EPOCHS:
        return config.replace(epochs=MAX_EPOCHS), f"at most {MAX_EPOCHS}; {minutes:g} minutes would fit {fitted.epochs}"
    if fitted.epochs < MIN_EPOCHS:
        return config.replace(epochs=MIN_EPOCHS), (f"at least {MIN_EPOCHS} for the target accuracy; {minutes:g} minutes at "
                                                   f"the measured speed would fit {fitted.epochs}")
    reason = next(c for c in choices if c.name == "epochs").reason
    return fitted.resolved(), reason


def _table(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"| {k:<{width}} | {v} |" for k, v in [("item", "value"), ("-" * width, "---")] + rows)


def run(args: argparse.Namespace) -> int:
    import torch

    from ssdlite.doctor.collapse import check_input_dependence
    from ssdlite.engine import TrainConfig, build_datasets, evaluate, train
    from ssdlite.engine.recipe import SCRATCH_LR, SCRATCH_OPTIMIZER
    from ssdlite.files import atomic_write
    from ssdlite.models.io import load_model

    out = Path(args.out)
    preset = DEMO_MODEL
    if args.neck == "none" and args.fpn_stride8 is None:
        preset = preset.replace(fpn_stride8=False)  # the stride-8 level belongs to the FPN neck
    model_config = model_config_from_args(args, preset)
    start = time.perf_counter()
    data_dir, reused = _dataset(out, args)
    print(f"[1/4] {'reusing the' if reused else 'generated'} {args.num_train}+{args.num_val} synthetic images of "
          f"{args.image_size} px in {data_dir}", file=sys.stderr)
    t_data = time.perf_counter() - start

    optimizer = args.optimizer or SCRATCH_OPTIMIZER
    config = TrainConfig(model=model_config).replace(
        data=str(data_dir), epochs=args.epochs or MAX_EPOCHS, batch_size=args.batch_size, optimizer=optimizer,
        lr=args.lr or (SCRATCH_LR if optimizer == "adamw" else SGD_LR), augment=args.augment, workers=args.workers,
        device=args.device, seed=args.seed, warmup_epochs=WARMUP_EPOCHS if optimizer == "adamw" else 1.0, log_every=5,
    ).resolved()
    train_set, val_set = build_datasets(config)
    if args.epochs is None:
        config, epochs_reason = _fit_epochs(config, train_set, len(val_set), args.time_budget)
    else:
        epochs_reason = "given"
    config = config.replace(val_every=max(1, config.epochs // VALIDATIONS))
    m = config.model
    described = f"{m.arch} (input {m.size}, width {m.width_mult}, neck {m.neck}{' + stride 8' if m.fpn_stride8 else ''})"
    print(f"[2/4] training {described} for {config.epochs} epochs ({epochs_reason}) on {torch.get_num_threads()} threads",
          file=sys.stderr)
    result = train(config, train_set, val_set, out / "train", validation_checks=[check_input_dependence])
    t_train = time.perf_counter() - start - t_data

    print("[3/4] evaluating the final (EMA) model on the validation split", file=sys.stderr)
    model, info = load_model(out / "train" / "model.safetensors")
    metrics = evaluate(model, val_set, batch_size=16, progress=False, plots_dir=out / "eval")
    t_eval = time.perf_counter() - start - t_data - t_train

    print(f"[4/4] drawing predictions on {args.draw} validation images", file=sys.stderr)
    drawn = _draw(model, val_set, info["classes"], out / "predictions", args.draw)
    total = time.perf_counter() - start

    passed = metrics["voc_map50"] >= TARGET_VOC_MAP50
    summary = {
        "setting": {
            "images": {"train": args.num_train, "val": args.num_val, "size": args.image_size},
            "model": {"input_size": m.size, "width_mult": m.width_mult, "neck": m.neck, "fpn_stride8": m.fpn_stride8, "parameters": sum(p.numel() for p in model.parameters())},
            "training": config.to_dict(),
            "threads": torch.get_num_threads(),
        },
        "metrics": {k: metrics[k] for k in ("voc_map50", "voc07_map50", "coco_map", "coco_map50", "coco_map75") if k in metrics},
        "per_class_voc_ap50": {name: v["voc_ap50"] for name, v in metrics.get("per_class", {}).items()},
        "seconds": {"data": t_data, "train": t_train, "evaluate": t_eval, "total": total},
        "train_images_per_s": [round(r.get("images_per_s", 0.0), 2) for r in result.history],
        "drawn": [f"predictions/{n}" for n in drawn],
        "target_voc_map50": TARGET_VOC_MAP50,
        "passed": passed,
    }
    rows = [
        ("data", f"synthetic shapes, {args.num_train} train / {args.num_val} val, {args.image_size} px, seed {args.seed}"),
        ("model", f"{described}, {summary['setting']['model']['parameters']:,} parameters"),
        ("training", f"{config.epochs} epochs ({epochs_reason}), batch {args.batch_size}, {config.optim.optimizer} lr {config.optim.lr:g}, "
                     f"augment {args.augment}, threads {torch.get_num_threads()}"),
        ("VOC mAP@0.5 (all-point)", f"{metrics['voc_map50']:.4f} (target >= {TARGET_VOC_MAP50})"),
        ("VOC07 mAP@0.5 (11-point)", f"{metrics['voc07_map50']:.4f}"),
        ("COCO mAP@[.5:.95]", f"{metrics['coco_map']:.4f}"),
        ("wall time", f"{total / 60:.1f} min (data {t_data:.0f} s, train {t_train:.0f} s, evaluate {t_eval:.0f} s)"),
        ("outputs", f"{out}/train (run), {out}/eval (PR curves), {out}/predictions ({len(drawn)} images), {out}/summary.md"),
    ]
    table = _table(rows)
    text = json.dumps(summary, indent=2) + "\n"
    atomic_write(out / "summary.json", lambda tmp: Path(tmp).write_text(text))
    atomic_write(out / "summary.md", lambda tmp: Path(tmp).write_text("# ssdlite demo\n\n" + table + "\n"))
    print(table)
    if not passed:
        # The run itself succeeded (trained, evaluated, wrote everything); the shortfall is stated, not hidden.
        print(f"demo: VOC mAP@0.5 {metrics['voc_map50']:.4f} is below the project's target {TARGET_VOC_MAP50}", file=sys.stderr)
    return 0
