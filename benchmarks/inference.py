"""Inference speed: ours against torchvision's SSDLite, onnxruntime against the FLOP bound, INT8 against fp32.

Everything is measured in one run, A and B interleaved round by round (the machine is shared and
noisy), and reported as medians and same-run ratios:

- eager PyTorch, batch 1, full pipeline (preprocess, network, postprocess) of a 640x480 image:
  ``ssdlite_mobilenet_v2(91)`` vs torchvision ``ssdlite320_mobilenet_v3_large(weights=None,
  weights_backbone=None)``, both at random init (every box scores ~1/91 for every class: the worst
  case for NMS); also the network and the postprocess alone;
- onnxruntime fp32, batch 1, network: latency vs the FLOP bound = 2 * MAdds / (the best of six
  ``torch.mm`` FLOP/s medians measured in this run, before and after the sessions);
- onnxruntime INT8 (static QDQ) vs fp32 network latency; with ``--weights`` and ``--val``, the VOC07
  mAP@0.5 of both on that dataset (e.g. a model trained on raccoon and ``../shared/datasets/raccoon``).

Run: ``.venv/bin/python benchmarks/inference.py [--threads 2] [--rounds 15] [--weights W --val DATASET]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torchvision.models.detection import ssdlite320_mobilenet_v3_large

import ssdlite
from ssdlite.deploy.onnx_export import export_core_onnx
from ssdlite.deploy.onnx_runtime import make_session
from ssdlite.deploy.quantize import calibration_batches, calibration_images, quantize_model
from ssdlite.deploy.samples import sample_batch, sample_images
from ssdlite.models.summary import count_madds


WARM_UP_CALLS = 2  # first calls allocate and pick kernels; not timed


def interleaved_times(fns: dict, rounds: int, per_round: int, pause: float = 0.0) -> dict[str, list[float]]:
    """Milliseconds of every timed call of each function: after :data:`WARM_UP_CALLS` calls of each,
    ``rounds`` rounds, each calling every function ``per_round`` times in turn (after ``pause`` seconds, so
    one function's tail does not run into the next's), so a slow moment of a shared machine hits all alike."""
    times = {name: [] for name in fns}
    for fn in fns.values():
        for _ in range(WARM_UP_CALLS):
            fn()
    for _ in range(rounds):
        for name, fn in fns.items():
            time.sleep(pause)
            for _ in range(per_round):
                start = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - start) * 1e3)
    return times


def interleaved(fns: dict, rounds: int, per_round: int) -> dict[str, float]:
    """Median milliseconds per call of each function, measured alternately ``rounds`` times."""
    return {name: statistics.median(t) for name, t in interleaved_times(fns, rounds, per_round).items()}


MM_SIZE = 1024  # fp32 (1024 x 1024) @ (1024 x 1024): 2.1 GFLOP, large enough for the matmul peak


def mm_gflops(repeats: int = 10) -> float:
    """``torch.mm`` fp32 throughput (GFLOP/s) at the current thread count: median of ``repeats`` calls."""
    a, b = torch.randn(MM_SIZE, MM_SIZE), torch.randn(MM_SIZE, MM_SIZE)
    for _ in range(3):
        torch.mm(a, b)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    return 2 * MM_SIZE**3 / statistics.median(times) / 1e9


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--per-round", type=int, default=3)
    parser.add_argument("--weights", help="trained model for the INT8 accuracy check")
    parser.add_argument("--val", help="dataset for the INT8 accuracy check (VOC/COCO/YOLO root)")
    parser.add_argument("--val-split", default="val")
    parser.add_argument("--json-out", help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    ours = ssdlite.ssdlite_mobilenet_v2(91, size=320).eval()
    tv = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None).eval()
    image = sample_images(1, 480, 640)[0].float() / 255  # (3, 480, 640) in [0, 1], what torchvision takes
    with torch.inference_mode():
        x, sizes = ours.preprocess([image])
        cls_logits, bbox_deltas = ours.core(x)
        tv_images, _ = tv.transform([image])
        tv_features = list(tv.backbone(tv_images.tensors).values())
        tv_head = tv.head(tv_features)
        tv_anchors = tv.anchor_generator(tv_images, tv_features)

    def run(fn):
        def call():
            with torch.inference_mode():
                return fn()

        return call

    eager = interleaved(
        {
            "ours_pipeline": run(lambda: ours([image])),
            "tv_pipeline": run(lambda: tv([image])),
            "ours_network": run(lambda: ours.core(x)),
            "tv_network": run(lambda: tv.head(list(tv.backbone(tv_images.tensors).values()))),
            "ours_postprocess": run(lambda: ours.postprocess(cls_logits, bbox_deltas, sizes)),
            "tv_postprocess": run(lambda: tv.postprocess_detections(tv_head, tv_anchors, tv_images.image_sizes)),
        },
        args.rounds,
        args.per_round,
    )

    madds = count_madds(ours.core, 320)
    raw = export_core_onnx(ours, dynamic_batch=True)
    # Latency does not depend on the calibration data; accuracy does (int8_accuracy calibrates on train images).
    calib = [sample_batch(ours.preprocess, 1, seed=s) for s in range(16)]
    int8, _ = quantize_model(raw, calib)
    # No spin-waiting: a session's idle threads would otherwise spin on the cores the next measurement uses.
    fp32_session = make_session(raw, args.threads, spin=False)
    int8_session = make_session(int8, args.threads, spin=False)
    feed = {"images": x.numpy()}
    mm_runs = [mm_gflops() for _ in range(3)]
    onnx = interleaved(
        {"onnx_fp32": lambda: fp32_session.run(None, feed), "onnx_int8": lambda: int8_session.run(None, feed)},
        args.rounds,
        args.per_round,
    )
    mm_runs += [mm_gflops() for _ in range(3)]
    # The best matmul rate of the run (before and after the sessions): the strictest bound the run supports.
    gflops = max(mm_runs)
    flop_bound_ms = 2 * madds / (gflops * 1e9) * 1e3

    result = {
        "threads": args.threads,
        "rounds": args.rounds,
        "per_round": args.per_round,
        "eager_ms": eager,
        "onnx_ms": onnx,
        "madds": madds,
        "mm_gflops": gflops,
        "mm_gflops_runs": mm_runs,
        "flop_bound_ms": flop_bound_ms,
        "ratios": {
            "eager_pipeline_ours_over_tv": eager["ours_pipeline"] / eager["tv_pipeline"],
            "eager_network_ours_over_tv": eager["ours_network"] / eager["tv_network"],
            "postprocess_ours_over_tv": eager["ours_postprocess"] / eager["tv_postprocess"],
            "onnx_fp32_over_flop_bound": onnx["onnx_fp32"] / flop_bound_ms,
            "int8_over_fp32": onnx["onnx_int8"] / onnx["onnx_fp32"],
        },
    }
    if args.weights and args.val:
        result["int8_accuracy"] = int8_accuracy(args.weights, args.val, args.val_split, args.threads)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json_out:
        Path(args.json_out).write_text(text + "\n")
    return 0


def int8_accuracy(weights: str, val: str, split: str, threads: int) -> dict:
    """VOC07 mAP@0.5 of the trained model on onnxruntime fp32 and INT8 (in-graph NMS for both),
    calibrated on up to 100 images of the dataset's train split."""
    import tempfile

    import onnx

    from ssdlite.data import build_dataset
    from ssdlite.deploy.onnx_export import build_onnx
    from ssdlite.deploy.predictor import Predictor, PredictorModule
    from ssdlite.engine.evaluate import evaluate
    from ssdlite.models.io import load_model

    model, info = load_model(weights)
    fp32, _ = build_onnx(model, info["classes"], with_nms=True)
    calib = list(calibration_batches(calibration_images([val], "train", 100), model.preprocess))
    int8, _ = quantize_model(fp32, calib)
    dataset = build_dataset(val, split=split, keep_difficult=True)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, proto in (("fp32", fp32), ("int8", int8)):
            path = Path(tmp) / f"{name}.onnx"
            onnx.save(proto, path)
            predictor = Predictor(path, backend="onnxruntime", score_threshold=0.0, threads=threads)
            out[f"{name}_voc07_map50"] = evaluate(PredictorModule(predictor), dataset, progress=False)["voc07_map50"]
    out["drop_points"] = 100 * (out["fp32_voc07_map50"] - out["int8_voc07_map50"])
    return out


if __name__ == "__main__":
    sys.exit(main())
