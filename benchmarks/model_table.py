"""Fill the README's model table from `ssdlite benchmark`: params, MAdds, eager and onnxruntime batch-1 latency.

    .venv/bin/python benchmarks/model_table.py [--iters 20] [--threads 2] [--readme README.md]

Runs ``ssdlite benchmark --json`` for every variant on the torch and onnxruntime backends (random
weights, 91 COCO classes, batch 1, network alone and the full pipeline on a 640x480 uint8 image)
and rewrites the table between the ``<!-- model-table -->`` markers of the README. The variants run
one after the other, the two backends of a variant back to back, so their ratio is a same-run number;
the milliseconds depend on the machine's load, which the table's footnote records (load average).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- model-table -->", "<!-- /model-table -->"

#: (name shown, flags of `ssdlite benchmark`)
VARIANTS = [
    ("SSDLite MobileNetV2 (paper)", []),
    ("SSDLite MobileNetV2 x0.5", ["--width-mult", "0.5"]),
    ("SSDLite MobileNetV2 + FPN (stride 8)", ["--neck", "fpn", "--fpn-stride8"]),
    ("SSDLite MobileNetV3-Large", ["--arch", "mobilenet_v3_large"]),
    ("SSDLite MobileNetV3-Large, reduced tail", ["--arch", "mobilenet_v3_large", "--reduced-tail"]),
    ("SSDLite MobileNetV3-Small", ["--arch", "mobilenet_v3_small"]),
    ("SSDLite MobileNetV1", ["--arch", "mobilenet_v1"]),
    ("SSD300 VGG16", ["--arch", "vgg16"]),
]


def bench(flags: list[str], backend: str, iters: int, threads: int) -> dict:
    cmd = [sys.executable, "-m", "ssdlite", "benchmark", "--json", "--backend", backend, "--iters", str(iters), "--threads", str(threads), *flags]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--readme", default=str(ROOT / "README.md"))
    args = parser.parse_args()

    rows = [
        "| model | input | params | MAdds | eager network p50 | eager pipeline p50 | onnxruntime network p50 | onnxruntime pipeline p50 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    loads = []
    for name, flags in VARIANTS:
        torch_result = bench(flags, "torch", args.iters, args.threads)
        ort_result = bench(flags, "onnxruntime", args.iters, args.threads)
        loads.append(os.getloadavg()[0])
        t, o = torch_result, ort_result
        rows.append(
            f"| {name} | {t['input_size']} | {t['params'] / 1e6:.2f}M | {t['madds'] / 1e9:.2f}B "
            f"| {t['network_latency_ms']['p50']:.1f} ms | {t['latency_ms']['p50']:.1f} ms "
            f"| {o['network_latency_ms']['p50']:.1f} ms | {o['latency_ms']['p50']:.1f} ms |"
        )
        print(rows[-1], flush=True)
    note = (
        f"\nFilled by `benchmarks/model_table.py` (`ssdlite benchmark --json`, 91 classes, random weights, batch 1, "
        f"{args.threads} threads, median of {args.iters}; pipeline = 640x480 uint8 image to detections). "
        f"1-minute load average during the runs: {min(loads):.1f} to {max(loads):.1f}.\n"
    )
    readme = Path(args.readme)
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{readme}: no {BEGIN} ... {END} markers to fill")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = head + BEGIN + "\n" + "\n".join(rows) + "\n" + note + END + tail
    tmp = readme.with_suffix(".md.tmp")
    tmp.write_text(new)
    tmp.replace(readme)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
