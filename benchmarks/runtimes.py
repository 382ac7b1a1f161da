"""Every runtime on a trained model: detections against PyTorch's on every validation image, INT8 accuracy, latency.

Two parts, each run as its own command so the slow exports never overlap the timing:

``parity``: for each ``--model RUN=DATASET`` the real commands a user types, one fresh process each,

    ssdlite export --weights RUN --format onnx --with-nms --images DATASET --out DIR/NAME.onnx
    ssdlite export --weights RUN --format F --images DATASET --out DIR/NAME.F        (F: executorch, tflite, openvino)

(``--images DATASET`` verifies on every image of its val split: detections matched one to one, same label,
IoU >= 0.99, score within 1e-3; an unmatched detection fails the export), and with ``--int8``

    ssdlite quantize --onnx DIR/NAME.onnx --calib DATASET --val DATASET --out DIR/NAME_int8.onnx --json
    ssdlite export --weights RUN --format F --int8 --calib DATASET --images DATASET --val DATASET --out DIR/NAME_int8.F

(100 training images for calibration, the same for every runtime; VOC07 mAP@0.5 of PyTorch fp32 and of the
INT8 file on the val split). Writes ``DIR/parity.json`` and prints a Markdown table.

``latency``: batch 1, ``--threads`` threads, one 640x480 image preprocessed once to ``(1, 3, S, S)``; each
file opened by its ssdlite backend (the runtime's call including its NMS, then the detections in pixels),
plus eager PyTorch on the run. All are timed in one process, interleaved: ``--rounds`` rounds, each running
every backend ``--per-round`` times in turn (after two warm-up calls each), with a short pause between
backends so one runtime's spinning worker threads do not steal the next one's time. Medians, p90 and the ratio
to onnxruntime fp32.

``profile``: where an onnxruntime or OpenVINO file spends its time, per kind of convolution (the first 3-channel
one, depthwise, pointwise 1x1, other kxk) and everything else, from onnxruntime's own profiler or OpenVINO's
performance counters; the files are called interleaved as in ``latency``, on the same image, and each call's
node times are summed separately (medians per call). It answers "why is INT8 not faster": which layers gain and
which do not.

``ceiling``: onnxruntime's INT8 against fp32 on stacks of 1x1 convolutions alone (the paper model's pointwise
shapes and a large one), quantized as ``ssdlite quantize`` does: the most 8-bit arithmetic gives on this CPU.

Run:
    .venv/bin/python benchmarks/runtimes.py parity --out /tmp/rt --int8 --model runs/raccoon=../shared/datasets/raccoon
    .venv/bin/python benchmarks/runtimes.py latency --weights runs/raccoon --files /tmp/rt/raccoon*.{onnx,pte,tflite,xml}
    .venv/bin/python benchmarks/runtimes.py profile --weights runs/raccoon --files /tmp/rt/raccoon{,_int8}.{onnx,xml}
    .venv/bin/python benchmarks/runtimes.py ceiling
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

SSDLITE = [sys.executable, "-m", "ssdlite"]
STATIC = {"executorch": ".pte", "tflite": ".tflite", "openvino": ".xml"}
MATCHED = re.compile(r"(\d+)/(\d+) detections matched on (\d+) images")
UNMATCHED = re.compile(r"(\d+) unmatched expected, (\d+) unmatched returned")
VOC07 = re.compile(r"PyTorch fp32 ([\d.]+), \S+ INT8 ([\d.]+), drop")


def command(args: list[str]) -> tuple[str, float]:
    """Run ``ssdlite ARGS``; its stdout and wall seconds. A failed export stops the benchmark with its output."""
    start = time.perf_counter()
    done = subprocess.run(SSDLITE + args, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"ssdlite {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr[-3000:]}")
    return done.stdout, seconds


def parity_row(runtime: str, args: list[str]) -> dict:
    out, seconds = command(args)
    row = {"runtime": runtime, "command": "ssdlite " + " ".join(args), "seconds": round(seconds, 1), "output": out.strip()}
    if (m := MATCHED.search(out)) is not None:
        row.update(matched=int(m[1]), expected=int(m[2]), images=int(m[3]))
    if (m := UNMATCHED.search(out)) is not None:
        row.update(unmatched_expected=int(m[1]), unmatched_returned=int(m[2]))
    if (m := VOC07.search(out)) is not None:
        row.update(fp32_voc07=float(m[1]), int8_voc07=float(m[2]))
    print(f"{runtime}: {seconds:.0f} s; {out.strip().splitlines()[-1] if out.strip() else ''}", flush=True)
    return row


def parity(args: argparse.Namespace) -> int:
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for spec in args.model:
        run, _, data = spec.partition("=")
        name = Path(run).name
        rows = []
        onnx = str(out_dir / f"{name}.onnx")
        rows.append(parity_row("onnxruntime", ["export", "--weights", run, "--format", "onnx", "--with-nms", "--images", data, "--out", onnx]))
        for runtime, suffix in STATIC.items():
            rows.append(parity_row(runtime, ["export", "--weights", run, "--format", runtime, "--images", data,
                                             "--out", str(out_dir / f"{name}{suffix}")]))
        if args.int8:
            quantized, seconds = command(["quantize", "--onnx", onnx, "--calib", data, "--val", data,
                                          "--out", str(out_dir / f"{name}_int8.onnx"), "--json"])
            q = json.loads(quantized.strip().splitlines()[-1])
            print(f"onnxruntime INT8: {seconds:.0f} s; {q}", flush=True)
            rows.append({"runtime": "onnxruntime INT8", "seconds": round(seconds, 1), "output": q,
                         "command": f"ssdlite quantize --onnx {onnx} --calib {data} --val {data} --out {out_dir / f'{name}_int8.onnx'}"})
            for runtime, suffix in STATIC.items():
                rows.append(parity_row(f"{runtime} INT8", ["export", "--weights", run, "--format", runtime, "--int8",
                                                           "--calib", data, "--images", data, "--val", data,
                                                           "--out", str(out_dir / f"{name}_int8{suffix}")]))
        results.append({"model": run, "data": data, "rows": rows})
        (out_dir / "parity.json").write_text(json.dumps(results, indent=1))
    for result in results:
        print(f"\n{result['model']} on {result['data']} (val split)\n")
        print("| runtime | export s | detections matched | unmatched (PyTorch's / the runtime's) | VOC07 fp32 -> INT8 |")
        print("| --- | ---: | --- | --- | --- |")
        for r in result["rows"]:
            matched = f"{r['matched']}/{r['expected']} on {r['images']} images" if "matched" in r else ""
            unmatched = f"{r['unmatched_expected']} / {r['unmatched_returned']}" if "unmatched_expected" in r else ""
            voc = f"{r['fp32_voc07']:.4f} -> {r['int8_voc07']:.4f}" if "int8_voc07" in r else ""
            print(f"| {r['runtime']} | {r['seconds']:.0f} | {matched} | {unmatched} | {voc} |")
    return 0


def latency(args: argparse.Namespace) -> int:
    import torch

    from inference import interleaved_times  # benchmarks/inference.py: the one interleaved timing loop

    from ssdlite.deploy import runtimes
    from ssdlite.deploy.backends import open_backend
    from ssdlite.deploy.samples import sample_images
    from ssdlite.models.io import load_model

    torch.set_num_threads(args.threads)
    model, _ = load_model(args.weights)
    model.eval()
    with torch.no_grad():
        x, sizes = model.preprocess(sample_images(1, 480, 640))  # (1, 3, S, S)
    backends = {"eager PyTorch": open_backend("torch", args.weights, torch.device("cpu"), args.threads)}
    for path in args.files:
        runtime = runtimes.for_file(path).name
        backends[f"{runtime} {Path(path).name}"] = open_backend(runtime, path, torch.device("cpu"), args.threads)
    calls = {}
    for label, backend in backends.items():
        def call(backend=backend):
            with torch.inference_mode():
                return backend.run(x, sizes)
        calls[label] = call
    times = interleaved_times(calls, args.rounds, args.per_round, pause=0.05)
    reference = next((label for label in times if label.startswith(runtimes.get("onnx").name) and "int8" not in label), None)
    base = statistics.median(times[reference]) if reference else float("nan")
    print(f"\nbatch 1, {args.threads} threads, {args.rounds} rounds x {args.per_round} calls, ratio to {reference}\n")
    print("| backend (file) | p50 ms | p90 ms | ratio to onnxruntime fp32 |")
    print("| --- | ---: | ---: | ---: |")
    rows = []
    for label, t in times.items():
        p50, p90 = statistics.median(t), statistics.quantiles(t, n=10)[-1]
        rows.append({"backend": label, "p50_ms": p50, "p90_ms": p90, "ratio": p50 / base})
        print(f"| {label} | {p50:.1f} | {p90:.1f} | {p50 / base:.2f} |")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"threads": args.threads, "rounds": args.rounds, "rows": rows}, indent=1))
    return 0


def _conv_kinds(model) -> dict[str, str]:
    """``{node name: kind}`` for the Conv/QLinearConv nodes of an (optimized) onnx model: ``first`` (3 input
    channels), ``dw`` (grouped), ``pw`` (1x1) or ``kxk``."""
    weights = {w.name: list(w.dims) for w in model.graph.initializer}
    kinds = {}
    for node in model.graph.node:
        if node.op_type not in ("Conv", "QLinearConv"):
            continue
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        dims = weights.get(node.input[1] if node.op_type == "Conv" else node.input[3])  # (O, I/g, kh, kw)
        if dims and dims[1] == 3 and group == 1:
            kinds[node.name] = "first"
        elif group > 1:
            kinds[node.name] = "dw"
        else:
            kinds[node.name] = "pw" if dims and dims[2:] == [1, 1] else "kxk"
    return kinds


def _onnxruntime_profiled(path: str, threads: int, x, tmp: Path, i: int):
    """``(call, results)``: ``results()`` gives ``[(whole ms, Counter of ms per kind)]`` per call from onnxruntime's
    profiler, after the calls."""
    import onnx
    import onnxruntime as ort
    from inference import WARM_UP_CALLS

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.enable_profiling, options.profile_file_prefix = True, str(tmp / f"p{i}")
    options.optimized_model_filepath = str(tmp / f"opt{i}.onnx")  # the graph that runs (fused, NHWC)
    options.log_severity_level = 3
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x}

    def results():
        kinds = _conv_kinds(onnx.load(tmp / f"opt{i}.onnx"))
        events = json.loads(Path(session.end_profiling()).read_text())
        runs = [e for e in events if e.get("cat") == "Session" and e["name"] == "model_run"][WARM_UP_CALLS:]
        per_call = [Counter() for _ in runs]
        nodes = sorted((e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")), key=lambda e: e["ts"])
        j = 0
        for e in nodes:  # each node event lies inside one model_run span
            while j < len(runs) and e["ts"] > runs[j]["ts"] + runs[j]["dur"]:
                j += 1
            if j < len(runs) and e["ts"] >= runs[j]["ts"]:
                per_call[j][kinds.get(e["name"].removesuffix("_kernel_time"), "other")] += e["dur"] / 1e3
        return [(run["dur"] / 1e3, kinds) for run, kinds in zip(runs, per_call)]

    return functools.partial(session.run, None, feed), results


def _openvino_profiled(path: str, threads: int, x):
    """As :func:`_onnxruntime_profiled` from OpenVINO's performance counters. Its node names do not give kernel
    shapes: a ``GroupConvolution`` is depthwise, a ``Convolution`` whose kernel is a 1x1 one (``1x1`` in its
    exec type) pointwise, the first other ``Convolution`` executed the first layer."""
    import openvino as ov
    from inference import WARM_UP_CALLS

    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "PERF_COUNT": True}
    request = ov.Core().compile_model(path, "CPU", config).create_infer_request()
    calls = []

    def call():
        start = time.perf_counter()
        request.infer({0: x})
        whole, kinds, first = (time.perf_counter() - start) * 1e3, Counter(), True
        for node in request.get_profiling_info():
            if node.status != node.Status.EXECUTED:
                continue
            if node.node_type == "GroupConvolution":
                kind = "dw"
            elif node.node_type == "Convolution":
                kind = "pw" if "1x1" in node.exec_type else ("first" if first else "kxk")
                first = False
            else:
                kind = "other"
            kinds[kind] += node.real_time.total_seconds() * 1e3
        calls.append((whole, kinds))

    return call, lambda: calls[WARM_UP_CALLS:]


def profile(args: argparse.Namespace) -> int:
    import torch
    from inference import interleaved_times

    from ssdlite.deploy.samples import sample_images
    from ssdlite.models.io import load_model

    model, _ = load_model(args.weights)
    with torch.no_grad():
        x = model.preprocess(sample_images(1, 480, 640))[0].numpy()  # (1, 3, S, S)
    tmp = Path(tempfile.mkdtemp(prefix="profile_"))
    profiled = {
        path: _openvino_profiled(path, args.threads, x) if path.endswith(".xml") else _onnxruntime_profiled(path, args.threads, x, tmp, i)
        for i, path in enumerate(args.files)
    }
    interleaved_times({path: call for path, (call, _) in profiled.items()}, args.rounds, args.per_round, pause=0.05)
    parts = ("first", "pw", "dw", "kxk", "other")
    print(f"\nbatch 1, {args.threads} threads, {args.rounds} rounds x {args.per_round} calls, median ms per call\n")
    print("| file | whole call | " + " | ".join(parts) + " |")
    print("| --- | ---: |" + " ---: |" * len(parts))
    for path, (_, results) in profiled.items():
        calls = results()
        cells = " | ".join(f"{statistics.median(kinds[k] for _, kinds in calls):.2f}" for k in parts)
        print(f"| {Path(path).name} | {statistics.median(whole for whole, _ in calls):.2f} | {cells} |")
    return 0


# (input channels, output channels, feature map side): pointwise convolutions of the paper model at 320 (an
# expansion at stride 8, 16, 32 and the first extra layer's) and one large enough for the GEMM peak.
CEILING_SHAPES = ((32, 192, 40), (96, 576, 20), (160, 960, 10), (320, 1280, 10), (256, 1024, 40))


def _conv_stack(path: Path, c_in: int, c_out: int, side: int, layers: int = 4):
    """An onnx file of ``layers`` 1x1 convolutions + ReLU, ``c_in -> c_out -> c_in ...``; returns an input for it."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, weights, x, channels = [], [], "images", (c_in, c_out)
    for i in range(layers):
        cin, cout = channels[i % 2], channels[(i + 1) % 2]
        w = (rng.standard_normal((cout, cin, 1, 1)) / np.sqrt(cin)).astype(np.float32)  # (O, I, 1, 1)
        weights += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(np.zeros(cout, np.float32), f"b{i}")]
        nodes += [helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"]), helper.make_node("Relu", [f"c{i}"], [f"y{i}"])]
        x = f"y{i}"
    inputs = [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, c_in, side, side])]
    outputs = [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, channels[layers % 2], side, side])]
    graph = helper.make_graph(nodes, "pointwise", inputs, outputs, weights)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return np.abs(rng.standard_normal((1, c_in, side, side))).astype(np.float32)  # (1, C, S, S), after a ReLU


def ceiling(args: argparse.Namespace) -> int:
    """INT8 against fp32 for onnxruntime's 1x1 convolutions alone: what 8-bit arithmetic gives on this CPU at best."""
    import onnx
    import onnxruntime as ort
    import torch
    from inference import interleaved_times

    from ssdlite.deploy.quantize import quantize_model

    tmp = Path(tempfile.mkdtemp(prefix="int8_ceiling_"))
    print(f"\nonnxruntime {ort.__version__}, batch 1, {args.threads} threads, 4 convolutions + ReLU per file, median ms per call\n")
    print("| 1x1 convolution | fp32 ms | fp32 GMAC/s | INT8 ms | INT8 GMAC/s | INT8 / fp32 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for c_in, c_out, side in CEILING_SHAPES:
        x = _conv_stack(tmp / "fp32.onnx", c_in, c_out, side)
        quantized, _ = quantize_model(onnx.load(tmp / "fp32.onnx"), [torch.from_numpy(x)])  # as `ssdlite quantize`
        onnx.save(quantized, tmp / "int8.onnx")
        calls = {}
        for name in ("fp32", "int8"):
            options = ort.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads, options.log_severity_level = args.threads, 1, 3
            session = ort.InferenceSession(str(tmp / f"{name}.onnx"), options, providers=["CPUExecutionProvider"])
            calls[name] = functools.partial(session.run, None, {"images": x})
        ms = {name: statistics.median(t) for name, t in interleaved_times(calls, args.rounds, args.per_round, pause=0.05).items()}
        macs = 4 * c_in * c_out * side * side / 1e6  # per call, millions
        print(f"| {c_in} -> {c_out} -> {c_in} ..., {side}x{side} | {ms['fp32']:.3f} | {macs / ms['fp32']:.1f} | "
              f"{ms['int8']:.3f} | {macs / ms['int8']:.1f} | {ms['int8'] / ms['fp32']:.2f} |")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(required=True)
    p = sub.add_parser("parity", help="export to every runtime, verify on every val image, INT8 accuracy")
    p.add_argument("--model", nargs="+", required=True, metavar="RUN=DATASET")
    p.add_argument("--out", required=True, help="folder for the exported files and parity.json")
    p.add_argument("--int8", action="store_true", help="also the INT8 exports and their VOC07 mAP@0.5")
    p.set_defaults(func=parity)
    for name, func, help, rounds in (
        ("latency", latency, "interleaved batch-1 latency of eager PyTorch and exported files", 10),
        ("profile", profile, "onnxruntime and OpenVINO files: time per kind of convolution, interleaved", 20),
    ):
        p = sub.add_parser(name, help=help)
        p.add_argument("--weights", required=True, help="the run the files were exported from (eager reference, preprocessing)")
        p.add_argument("--files", nargs="+", required=True)
        p.add_argument("--threads", type=int, default=2)
        p.add_argument("--rounds", type=int, default=rounds)
        p.add_argument("--per-round", type=int, default=10)
        p.set_defaults(func=func)
        if name == "latency":
            p.add_argument("--json-out")
    p = sub.add_parser("ceiling", help="onnxruntime's INT8 against fp32 on 1x1 convolutions alone (this CPU's best case)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--per-round", type=int, default=10)
    p.set_defaults(func=ceiling)
    args = parser.parse_args()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
