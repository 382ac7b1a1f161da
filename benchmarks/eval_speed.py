"""How much of `ssdlite.engine.evaluate` is metric computation? (issue 5: < 10% for 1000 images)

Runs the real SSDLite-MobileNetV2 (untrained) over N in-memory images through ``evaluate`` and
reports wall time, the time in the metric code (``metric_seconds``: array conversion, VOC matching,
pycocotools) and its share. An untrained model is the worst case for the metric side: its scores
are near uniform, so nearly every image gets the full ``detections_per_image`` (200) boxes.
Images are made once and reused, so decoding costs nothing and the share is an upper bound of
what a real evaluation (which also decodes JPEGs) shows.

    .venv/bin/python benchmarks/eval_speed.py --images 1000

The machine is shared, so the full run is followed by rounds that alternate a model timing and a
metric timing (see :func:`interleaved_share`); report both.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from ssdlite.engine import evaluate, evaluate_predictions
from ssdlite.metrics import read_coco_results
from ssdlite.models import ssdlite_mobilenet_v2


class RandomScenes(Dataset):
    """VOC-sized random images (8 distinct, reused) with 1-6 random boxes each; the dataset contract."""

    def __init__(self, num_images: int, num_classes: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.classes = [f"class{k}" for k in range(1, num_classes + 1)]
        self.category_ids = list(range(1, num_classes + 1))
        self.images = [torch.from_numpy(rng.integers(0, 256, (3, 375, 500), dtype=np.uint8)) for _ in range(8)]
        self.annotations = []
        for i in range(num_images):
            m = int(rng.integers(1, 7))
            xy = rng.uniform(0, 300, (m, 2))
            boxes = np.concatenate([xy, np.minimum(xy + rng.uniform(10, 200, (m, 2)), [500, 375])], axis=1)
            self.annotations.append(
                {
                    "boxes": boxes.astype(np.float32),
                    "labels": rng.integers(1, num_classes + 1, m),
                    "difficult": rng.random(m) < 0.1,
                    "iscrowd": np.zeros(m, bool),
                    "image_id": i,
                    "height": 375,
                    "width": 500,
                    "file_name": f"{i:06d}.jpg",
                }
            )

    def __len__(self) -> int:
        return len(self.annotations)

    def get_annotation(self, index: int) -> dict:
        return self.annotations[index]

    def __getitem__(self, index: int):
        target = {"image_id": index, "orig_size": torch.tensor([375, 500])}
        return tv_tensors.Image(self.images[index % 8]), target


def _cpu_seconds() -> float:
    """CPU time of this process (all its threads) and of its finished children (forked metric workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def interleaved_share(model, dataset, predictions, rounds: int, batch_size: int, probe_images: int = 64) -> list[tuple[float, float]]:
    """Per round: model time on ``probe_images`` images, then metric time on all saved predictions.

    The machine is shared and noisy; alternating the two measurements exposes both to the same
    load, so the median of the per-round shares is the robust number. Returns per round the
    metric share of wall time and of CPU time (the latter barely depends on the load).
    """
    shares = []
    images = [dataset[i][0].as_subclass(torch.Tensor) for i in range(probe_images)]
    scale = len(dataset) / probe_images
    for _ in range(rounds):
        start, cpu = time.perf_counter(), _cpu_seconds()
        with torch.inference_mode():
            for i in range(0, probe_images, batch_size):
                model(images[i : i + batch_size])
        model_wall, model_cpu = (time.perf_counter() - start) * scale, (_cpu_seconds() - cpu) * scale
        start, cpu = time.perf_counter(), _cpu_seconds()
        evaluate_predictions(predictions, dataset)
        metric_wall, metric_cpu = time.perf_counter() - start, _cpu_seconds() - cpu
        shares.append((metric_wall / (model_wall + metric_wall), metric_cpu / (model_cpu + metric_cpu)))
        print(
            f"  round: model {model_wall:.1f} s wall / {model_cpu:.1f} s CPU per {len(dataset)} images, "
            f"metrics {metric_wall:.2f} s wall / {metric_cpu:.2f} s CPU -> {100 * shares[-1][0]:.1f}% of wall, {100 * shares[-1][1]:.1f}% of CPU"
        )
    return shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--classes", type=int, default=20, help="foreground classes (20: Pascal VOC)")
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved model/metric rounds after the full run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dataset = RandomScenes(args.images, args.classes)
    print(f"# {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} threads, load {os.getloadavg()[0]:.1f}")

    model = ssdlite_mobilenet_v2(num_classes=args.classes + 1, size=args.size)
    with tempfile.TemporaryDirectory() as tmp:
        saved = Path(tmp) / "predictions.json"
        result = evaluate(model, dataset, batch_size=args.batch_size, progress=False, save_predictions=saved)
        predictions = read_coco_results(saved)
    print(
        f"full evaluate(): {result['num_images']} images, {result['num_detections'] / result['num_images']:.0f} detections/image, "
        f"total {result['seconds']:.1f} s, inference loop {result['inference_seconds']:.1f} s, "
        f"metrics {result['metric_seconds']:.2f} s = {100 * result['metric_seconds'] / result['seconds']:.1f}% of the total"
    )
    shares = interleaved_share(model.eval(), dataset, predictions, args.rounds, args.batch_size)
    for k, what in enumerate(("wall", "CPU")):
        values = [share[k] for share in shares]
        print(f"interleaved: metric share of {what} time, median {100 * statistics.median(values):.1f}% (min {100 * min(values):.1f}%, max {100 * max(values):.1f}%)")


if __name__ == "__main__":
    main()
