"""Frigate's OpenVINO ``ssd`` detector on a trained model: the file of ``--layout frigate`` run through Frigate's
detection code (replayed by ``tests/deploy/test_frigate.py``, which cites the Frigate files and commit), against
PyTorch, at f32 and at the precision Frigate gets by default (OpenVINO's default for the device: bf16 on CPUs with
AVX512-BF16 or AMX, f32 on others; Frigate sets none).

    ssdlite export --weights RUN --format openvino --layout frigate --out DIR/model.xml      (verified on the run's val images)
    ssdlite export ... --int8 --out DIR/int8.xml                                              (with --int8: calibrated on the run's data)

then the first ``--images`` validation images of ``--data`` resized to ``S x S`` uint8 (what Frigate feeds), each
through Frigate's code, compared with PyTorch's detections Frigate keeps (above 0.4, at most 20): same class, IoU >=
0.99, score within 1e-3 (the export's criterion), and the same objects (same class, IoU >= 0.5, any score). Prints one
line per file and precision and writes ``DIR/frigate_openvino.json``. Example::

    PYTHONPATH=src python benchmarks/frigate_openvino.py --weights runs/raccoon --data ../shared/datasets/raccoon --out /tmp/frigate --int8
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "deploy"))  # the test suite's replay of Frigate's code


def ssdlite(*args: str) -> None:
    print("$ ssdlite " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "ssdlite.cli", *args], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True, help="a run directory (or weights file) to export")
    parser.add_argument("--data", required=True, help="the dataset folder whose val split is compared")
    parser.add_argument("--out", required=True, help="folder for the files and frigate_openvino.json")
    parser.add_argument("--images", type=int, default=100, help="at most this many val images (default 100)")
    parser.add_argument("--int8", action="store_true", help="also the INT8 file (calibrated on the run's training data)")
    args = parser.parse_args()

    import torch

    from ssdlite.deploy.compare import compare_detections
    from ssdlite.deploy.quantize import calibration_images
    from ssdlite.deploy.runtimes.openvino import labelmap_path
    from ssdlite.deploy.runtimes.static import INT8_MATCH, as_input_image
    from ssdlite.models.io import load_model
    from test_frigate import THRESHOLD, FrigateOpenVINO, as_detections, as_frame, frigates_share, load_labels, remote_detect

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"fp32": out / "model.xml"}
    ssdlite("export", "--weights", args.weights, "--format", "openvino", "--layout", "frigate", "--out", str(files["fp32"]))
    if args.int8:
        files["int8"] = out / "int8.xml"
        ssdlite("export", "--weights", args.weights, "--format", "openvino", "--layout", "frigate", "--int8", "--out", str(files["int8"]))
    model, info = load_model(args.weights)
    model.eval()
    frames = [as_input_image(image, model.config) for image in calibration_images([args.data], "val", args.images).images]
    with torch.no_grad():
        expected = frigates_share(model(frames))
    results = []
    for kind, path in files.items():
        labels = load_labels(labelmap_path(path).read_text())
        for precision in ("f32", None):
            detector = FrigateOpenVINO(path, precision=precision)
            found = [remote_detect(detector.detect_raw(as_frame(frame)), labels) for frame in frames]
            got = [as_detections(f, model.config.size, info["classes"]) for f in found]
            row = {"file": kind, "precision": str(detector.compiled.get_property("INFERENCE_PRECISION_HINT")),
                   "images": len(frames), "valid": detector.valid}
            for name, match in (("exact", {}), ("same_objects", INT8_MATCH)):
                comparison = compare_detections(expected, got, score_floor=THRESHOLD, **match)
                row[name] = {"summary": comparison.summary(), "matched": comparison.matched, "expected": comparison.detections,
                             "returned": sum(len(g["scores"]) for g in got), "min_iou": comparison.min_iou,
                             "max_score_diff": comparison.max_score_diff, "ok": comparison.ok}
            results.append(row)
            print(f"{kind} at {row['precision']}: exact: {row['exact']['summary']}; same objects: {row['same_objects']['summary']}", flush=True)
    (out / "frigate_openvino.json").write_text(json.dumps({"weights": args.weights, "data": args.data, "results": results}, indent=1))


if __name__ == "__main__":
    main()
