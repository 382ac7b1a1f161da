"""MediaPipe's ObjectDetector against PyTorch and ssdlite's own LiteRT backend, on a model trained on real data.

For each ``--model NAME=DATASET[:TRAIN FLAGS]`` (a dataset folder, e.g. ``../shared/datasets/raccoon``), one fresh
process per step, the commands a user types:

    ssdlite train --data DATASET --out DIR/NAME --epochs EPOCHS [TRAIN FLAGS]    (skipped if DIR/NAME has weights)
    ssdlite export --weights DIR/NAME --format tflite --out DIR/NAME.tflite            (verified on the run's val images)

then the first ``--images`` validation images (the split training held out) resized to the model's ``S x S`` and
rounded to uint8 exactly as ssdlite's backend does (:func:`ssdlite.deploy.runtimes.litert.as_input_image`), written
as PNG, run by MediaPipe's ``ObjectDetector`` in ``.venv-mediapipe`` (``make mediapipe``; score threshold 0.3, every
result) and compared, detection by detection, with PyTorch on the run and with ssdlite's LiteRT backend on the file
(same class, IoU >= 0.95 in MediaPipe's whole pixels, score within 2e-3, both ways). Writes ``DIR/mediapipe.json``
and prints one line per model. Example (the issue's two models: raccoon, and BCCD with the residual FPN neck)::

    PYTHONPATH=src python benchmarks/mediapipe_check.py --out runs/mediapipe --epochs 12 \\
        --model raccoon=../shared/datasets/raccoon:--backbone-weights=../shared/weights/mobilenet_v2_imagenet.pth \\
        --model bccd=../shared/datasets/bccd:--backbone-weights=../shared/weights/mobilenet_v2_imagenet.pth,--neck=residual_fpn,--fpn-stride8
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MEDIAPIPE_PYTHON = ROOT / ".venv-mediapipe" / "bin" / "python"
SCRIPT = ROOT / "src" / "ssdlite" / "deploy" / "runtimes" / "litert_mediapipe.py"


def ssdlite(*args: str) -> None:
    command = [sys.executable, "-m", "ssdlite.cli", *args]
    print("$ ssdlite " + " ".join(args), flush=True)
    subprocess.run(command, check=True)


def check(name: str, data: str, flags: list[str], out: Path, epochs: int, count: int) -> dict:
    import torch
    from PIL import Image

    from ssdlite.deploy.compare import compare_detections
    from ssdlite.deploy.predictor import Predictor
    from ssdlite.deploy.quantize import calibration_images
    from ssdlite.deploy.runtimes.litert import MEDIAPIPE_MATCH, MEDIAPIPE_SCORE, as_input_image, compare_mediapipe, mediapipe_boxes
    from ssdlite.models.io import load_model

    run = out / name
    started = time.perf_counter()
    if not any((run / f).is_file() for f in ("best.pt", "last.pt", "model.safetensors")):
        ssdlite("train", "--data", data, "--out", str(run), "--epochs", str(epochs), *flags)
    trained = time.perf_counter() - started
    tflite = out / f"{name}.tflite"
    ssdlite("export", "--weights", str(run), "--format", "tflite", "--out", str(tflite))
    model, info = load_model(run)
    model.eval()
    images = calibration_images([data], "val", count).images
    pixels = [as_input_image(image, model.config) for image in images]
    folder = out / f"{name}-images"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(pixels):
        paths.append(folder / f"{i:04d}.png")
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(paths[-1])
    done = subprocess.run([str(MEDIAPIPE_PYTHON), str(SCRIPT), str(tflite), *map(str, paths), "--score", str(MEDIAPIPE_SCORE)],
                          capture_output=True, text=True, check=True)
    found = json.loads(done.stdout.strip().splitlines()[-1])
    against_torch = compare_mediapipe(model, pixels, found, info["classes"])
    ours = [p.detections for p in Predictor(tflite, backend="tflite", score_threshold=MEDIAPIPE_SCORE).predict_paths(paths)]
    got = [{"boxes": torch.tensor([d["box"] for d in image], dtype=torch.float32).view(-1, 4),
            "scores": torch.tensor([d["score"] for d in image]),
            "labels": torch.tensor([info["classes"].index(d["name"]) + 1 for d in image], dtype=torch.int64)} for image in found]
    against_backend = compare_detections([{**d, "boxes": mediapipe_boxes(d["boxes"], g["boxes"])} for d, g in zip(ours, got)], got,
                                         score_floor=MEDIAPIPE_SCORE, **MEDIAPIPE_MATCH)
    return {
        "model": name, "data": data, "train_flags": flags, "train_seconds": round(trained, 1), "epochs": epochs,
        "arch": model.config.arch, "neck": model.config.neck, "size": model.config.size, "images": len(paths),
        "mediapipe_detections": sum(map(len, found)),
        "vs_pytorch": against_torch.summary(), "vs_pytorch_ok": against_torch.ok, "vs_pytorch_problems": against_torch.problems[:5],
        "vs_ssdlite_backend": against_backend.summary(), "vs_ssdlite_backend_ok": against_backend.ok,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", required=True, help="NAME=DATASET[:FLAG,FLAG...] (train flags, comma-separated)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--epochs", type=int, default=12, help="ssdlite train --epochs (default 12: a short run, a few minutes on 2 cores)")
    p.add_argument("--images", type=int, default=50, help="validation images compared (default 50)")
    args = p.parse_args()
    if not MEDIAPIPE_PYTHON.exists():
        sys.exit(f"{MEDIAPIPE_PYTHON} is absent: make mediapipe")
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for spec in args.model:
        name, rest = spec.split("=", 1)
        data, _, flags = rest.partition(":")
        result = check(name, data, [f for f in flags.split(",") if f], args.out, args.epochs, args.images)
        print(json.dumps(result), flush=True)
        results.append(result)
    (args.out / "mediapipe.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
