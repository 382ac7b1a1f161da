"""Training throughput: images/s of the whole training loop, ssdlite vs torchvision, interleaved in one run.

"Whole loop" means everything between two optimizer steps: loading and decoding, augmentation,
collation, matching, forward, loss, backward, gradient clipping, the optimizer and (ours) the EMA
update. Both sides read the same images from the same VOC folder with 2 loader workers at batch 32:

- **ssdlite**: ``ssdlite.engine.train`` itself (SSDLite-MobileNetV2, 320, width 1.0; ``ssdlite``
  augmentation preset), one epoch of ``--steps`` steps per round; the time is the epoch's loop,
  read from the run's ``metrics.jsonl`` (checkpoint writing after the loop is not counted).
- **torchvision**: ``ssdlite320_mobilenet_v3_large`` (random init) trained by the loop of
  torchvision's detection reference (``train_one_epoch``: sum of the loss dict, SGD momentum 0.9,
  weight decay 4e-5) with the reference's SSDLite augmentation (``RandomIoUCrop``, horizontal flip).

Rounds alternate A, B, A, B, ... after one warm-up round each (oneDNN builds its kernels on first
use); the report gives every round, the medians and the ratio ours / theirs. Set
``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_`` in the environment if you want; they apply
to both sides, since both run in this one process.

    python benchmarks/train_throughput.py --rounds 3 --steps 6
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import Subset
from torchvision.transforms import v2

from ssdlite.data import build_dataset, build_loader, train_transforms, write_synthetic
from ssdlite.engine import TrainConfig, train
from ssdlite.engine.run_log import read_metrics
from ssdlite.models.config import SIGNED_UNIT

BATCH = 32
WORKERS = 2


#: ``--arch`` -> our model settings. ``mobilenet_v3_large`` is torchvision's network itself (reduced tail,
#: six boxes on the first map), so that ratio is pure engineering.
ARCH_SETTINGS = {
    "mobilenet_v2": {"arch": "mobilenet_v2"},
    "mobilenet_v3_large": {"arch": "mobilenet_v3_large", "reduced_tail": True, "reduce_lowest": False},
}


def ours_round(data_dir: Path, steps: int, work: Path, round_index: int, arch: str = "mobilenet_v2", channels_last: bool = False) -> float:
    """Images/s of one epoch of ``ssdlite.engine.train`` with ``steps`` steps."""
    config = TrainConfig().replace(
        data=str(data_dir), size=320, width_mult=1.0, batch_size=BATCH, workers=WORKERS, epochs=1, val_every=0,
        augment="ssdlite", log_every=10**6, device="cpu", seed=round_index, channels_last=channels_last, **ARCH_SETTINGS[arch],
    )
    dataset = build_dataset(data_dir, "voc", "train", transforms=train_transforms("ssdlite", 320, SIGNED_UNIT[0]))
    dataset = Subset(dataset, range(steps * BATCH))
    run_dir = work / f"ours-{round_index}"
    train(config, dataset, None, run_dir, classes=["circle", "square", "triangle", "star", "ring"], plain_progress=True)
    epoch = [r for r in read_metrics(run_dir / "metrics.jsonl") if r["kind"] == "epoch"][0]
    return steps * BATCH / epoch["seconds"]


def theirs_round(data_dir: Path, steps: int, model, optimizer, round_index: int) -> float:
    """Images/s of torchvision's reference loop on the same images, loaded by our loader (so the two sides
    differ in model, augmentation and loop, not in loading)."""
    transforms = v2.Compose([v2.RandomIoUCrop(), v2.RandomHorizontalFlip(0.5), v2.SanitizeBoundingBoxes(), v2.ToDtype(torch.float32, scale=True)])
    dataset = Subset(build_dataset(data_dir, "voc", "train", transforms=transforms), range(steps * BATCH))
    model.train()
    start = time.perf_counter()
    loader = build_loader(dataset, BATCH, seed=round_index, shuffle=True, drop_last=True, num_workers=WORKERS)
    for images, targets in loader:  # images: a list, since RandomIoUCrop leaves each image its own size
        targets = [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]
        losses = model(list(images), targets)
        loss = sum(losses.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return steps * BATCH / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds per side, after one warm-up round each")
    parser.add_argument("--steps", type=int, default=6, help="optimizer steps per round")
    parser.add_argument("--arch", choices=tuple(ARCH_SETTINGS), default="mobilenet_v2", help="our side's backbone")
    parser.add_argument("--channels-last", action="store_true", help="our side trains with --channels-last (torchvision's loop stays as its reference has it)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    from torchvision.models.detection import ssdlite320_mobilenet_v3_large

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data_dir = write_synthetic(work / "shapes", num_train=args.steps * BATCH, num_val=0, size=320, seed=0)
        torch.manual_seed(0)
        theirs = ssdlite320_mobilenet_v3_large(num_classes=6, weights=None, weights_backbone=None)
        optimizer = torch.optim.SGD(theirs.parameters(), lr=0.01, momentum=0.9, weight_decay=4e-5)
        results = {"ssdlite": [], "torchvision": []}
        for round_index in range(args.rounds + 1):
            a = ours_round(data_dir, args.steps, work, round_index, args.arch, args.channels_last)
            b = theirs_round(data_dir, args.steps, theirs, optimizer, round_index)
            print(f"round {round_index}{' (warm-up)' if round_index == 0 else ''}: ssdlite {a:.2f} img/s, torchvision {b:.2f} img/s", flush=True)
            if round_index:
                results["ssdlite"].append(a)
                results["torchvision"].append(b)
    median_a, median_b = statistics.median(results["ssdlite"]), statistics.median(results["torchvision"])
    summary = {
        "arch": args.arch, "channels_last": args.channels_last, "batch": BATCH, "workers": WORKERS, "steps_per_round": args.steps, "threads": torch.get_num_threads(),
        "rounds": results, "median_images_per_s": {"ssdlite": median_a, "torchvision": median_b}, "ratio": median_a / median_b,
    }
    print(f"median: ssdlite ({args.arch}) {median_a:.2f} img/s, torchvision ssdlite320_mobilenet_v3_large {median_b:.2f} img/s, ratio {median_a / median_b:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
