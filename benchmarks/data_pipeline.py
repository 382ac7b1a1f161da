"""Images/s of decoding + augmentation through the real loader, against the model's training speed.

Issue 3 asks that loading never limit training on this machine: the loader must deliver at least
twice the images/s the model trains at with batch 32. This script measures, on the shared raccoon
training split (160 JPEG photos, mostly 250-650 pixels wide):

1. the loader (``build_dataset`` + ``train_transforms(preset, size)`` + ``build_loader``, batch 32,
   shuffled) with 0, 1 and 2 worker processes: images/s over ``--epochs`` epochs after one warm-up
   batch (the first epoch's worker start-up excluded; later epochs start theirs, as in training,
   where every epoch has its own loader), median of ``--repeats`` runs, runs interleaved;
2. decode only (no augmentation), single process, for reference;
3. with ``--model``: SSDLite-MobileNetV2 training steps (forward, MultiBox loss, backward, SGD step)
   at batch 32 on batches from the loader, images/s, median over ``--steps`` steps after one warm-up.

Every process uses one intra-op thread except the model, which uses ``--threads`` (2 = the machine).

    MALLOC_MMAP_THRESHOLD_=1000000000 MALLOC_TRIM_THRESHOLD_=1000000000 \\
        .venv/bin/python benchmarks/data_pipeline.py --model
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from ssdlite.data import build_dataset, build_loader, train_transforms
from ssdlite.models.config import SIGNED_UNIT

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "raccoon"


def loader_rate(dataset, workers: int, epochs: int, batch_size: int) -> tuple[float, float]:
    """``(images/s, CPU ms per image in this process)`` of the loader over ``epochs`` epochs, after one
    warm-up batch. With 0 workers the CPU time is the whole cost of loading; with workers it is only
    the main process's share (receiving the batches)."""
    iterator = iter(build_loader(dataset, batch_size, epoch=0, seed=0, shuffle=True, num_workers=workers))
    next(iterator)  # workers started, first batch made
    count, start, cpu = 0, time.perf_counter(), time.process_time()
    for images, _ in iterator:
        count += len(images)
    for epoch in range(1, epochs):
        for images, _ in build_loader(dataset, batch_size, epoch=epoch, seed=0, shuffle=True, num_workers=workers):
            count += len(images)
    return count / (time.perf_counter() - start), 1000 * (time.process_time() - cpu) / count


def decode_rate(dataset) -> float:
    start = time.perf_counter()
    for index in range(len(dataset)):
        dataset.load(index)
    return len(dataset) / (time.perf_counter() - start)


def model_rate(dataset, steps: int, batch_size: int, size: int, threads: int) -> tuple[float, float]:
    """``(images/s, CPU ms per image)`` of SSDLite-MobileNetV2 training (random init) at ``batch_size``,
    medians over ``steps``."""
    from ssdlite.models import ssdlite_mobilenet_v2

    torch.set_num_threads(threads)
    model = ssdlite_mobilenet_v2(num_classes=len(dataset.classes) + 1, size=size).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    batches = list(build_loader(dataset, batch_size, seed=1, shuffle=True, drop_last=True))
    times, cpus = [], []
    for step in range(steps + 1):
        images, targets = batches[step % len(batches)]
        start, cpu = time.perf_counter(), time.process_time()
        losses = model(images, targets)
        optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        optimizer.step()
        if step > 0:  # the first step pays one-off allocations
            times.append(time.perf_counter() - start)
            cpus.append(time.process_time() - cpu)
    return batch_size / statistics.median(times), 1000 * statistics.median(cpus) / batch_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="VOC/COCO/YOLO dataset (default: shared raccoon)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--preset", default="ssd", choices=("ssd", "ssdlite", "none"))
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3, help="epochs timed per loader measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", action="store_true", help="also measure the model's training images/s")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps with --model")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads of the model with --model")
    args = parser.parse_args()

    if not args.data.exists():
        raise SystemExit(f"{args.data} not found (the shared datasets live in ../shared/datasets)")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    dataset = build_dataset(args.data, split=args.split, transforms=train_transforms(args.preset, args.size, SIGNED_UNIT[0]))
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}")
    print(f"{dataset}: preset {args.preset!r} at {args.size}, batch {args.batch_size}")
    print(dataset.report.summary())

    print(f"load average before: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    rates: dict[int, list[float]] = {w: [] for w in args.workers}
    cpu_ms: dict[int, list[float]] = {w: [] for w in args.workers}
    decode: list[float] = []
    for _ in range(args.repeats):  # interleaved, so machine noise hits every setting alike
        decode.append(decode_rate(dataset))
        for workers in args.workers:
            rate, cpu = loader_rate(dataset, workers, args.epochs, args.batch_size)
            rates[workers].append(rate)
            cpu_ms[workers].append(cpu)
    print(f"decode only, 1 process: {statistics.median(decode):7.1f} images/s")
    for workers, values in rates.items():
        spread = ", ".join(f"{v:.1f}" for v in values)
        cpu = f", main process {statistics.median(cpu_ms[workers]):.1f} CPU-ms/image"
        print(f"loader, {workers} workers:    {statistics.median(values):7.1f} images/s  (runs: {spread}{cpu})")

    if args.model:
        train, train_cpu = model_rate(dataset, args.steps, args.batch_size, args.size, args.threads)
        best = max(statistics.median(v) for v in rates.values())
        print(f"model training, batch {args.batch_size}, {args.threads} threads: {train:7.1f} images/s, {train_cpu:.1f} CPU-ms/image")
        print(f"loader (best) / training = {best / train:.1f}x (target >= 2x)")
        if 0 in cpu_ms:
            load_cpu = statistics.median(cpu_ms[0])
            print(f"CPU per image: loading {load_cpu:.1f} ms = {100 * load_cpu / (load_cpu + train_cpu):.0f}% of load + train")
    print(f"load average after: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
