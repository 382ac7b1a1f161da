"""Load test of ``ssdlite serve`` on loopback: requests/s and latency with micro-batching on and off.

Starts two servers on free 127.0.0.1 ports from the same weights, one batching (``--max-batch-size 8
--batch-timeout-ms 5``) and one running every request alone (``--max-batch-size 1``), warms both up, then
sends a fixed number of requests at concurrency 1, 8 and 32 to each in turn (modes interleaved, every
round), each run bounded by a request count and a time limit. It reports requests/s, p50/p99 latency,
errors, the mean batch size (from the server's /metrics) and each server's RSS after warm-up and at the
end. The client runs on the same machine (2 cores here): it takes CPU from the server, the same for both modes.

Without ``--weights`` the model is SSDLite-MobileNetV2 at 320 px with 21 classes (VOC's size), untrained:
its speed is a trained one's (same network; ``--score-threshold 0`` on the server side and a fixed
per-image detection limit keep the postprocess work the same). The image is a 640 x 480 JPEG.

    .venv/bin/python benchmarks/serve_load.py                 # the load table
    .venv/bin/python benchmarks/serve_load.py --bad-input     # the bad-input table
    .venv/bin/python benchmarks/serve_load.py --network       # the network alone, batch 1 to 8

Only loopback addresses are used; every loop stops after its request count or time limit.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from ssdlite.data.synthetic import SHAPES

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "serve"))  # the test suite's server process and bad requests
from serve_helpers import API_KEY, MAX_BODY_MB, ServerProcess, bad_requests  # noqa: E402
def modes(max_batch_sizes: list[int]) -> dict[str, list[str]]:
    """Server flags per mode: ``--max-batch-size 1`` is "batch 1"; a larger one batches with a 5 ms window."""
    return {
        ("batch 1" if n == 1 else "batching" if n == 8 else f"batching {n}"): ["--max-batch-size", str(n)] + (["--batch-timeout-ms", "5"] if n > 1 else [])
        for n in max_batch_sizes
    }


def make_weights(folder: Path, classes: list[str]) -> Path:
    """An untrained SSDLite-MobileNetV2 at 320 px for ``classes``."""
    import torch

    from ssdlite.models import ssdlite_mobilenet_v2
    from ssdlite.models.io import save_safetensors

    torch.manual_seed(0)
    model = ssdlite_mobilenet_v2(len(classes) + 1, size=320).eval()
    path = folder / "ssdlite320_untrained.safetensors"
    save_safetensors(model, path, classes=classes)
    return path


def test_image() -> bytes:
    """A 640 x 480 JPEG of smooth colour and noise (a photo's decode cost, not a flat image's)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:480, 0:640]
    base = np.stack([x / 640 * 255, y / 480 * 255, (x + y) / 1120 * 255], axis=-1)
    pixels = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def rss_mib(server: ServerProcess) -> float:
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


def batches(server: ServerProcess) -> tuple[float, float]:
    """(model calls, requests run) so far, from the server's /metrics."""
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    count = float(re.search(r"^ssdlite_batch_size_count (\S+)$", text, re.M).group(1))
    total = float(re.search(r"^ssdlite_batch_size_sum (\S+)$", text, re.M).group(1))
    return count, total


async def load(url: str, image: bytes, concurrency: int, requests: int, time_limit: float) -> dict:
    """Send ``requests`` POSTs, ``concurrency`` at a time, stopping early at ``time_limit`` seconds."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    issued = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        start = time.perf_counter()

        async def worker() -> None:
            nonlocal issued
            while issued < requests and time.perf_counter() - start < time_limit:
                issued += 1
                t0 = time.perf_counter()
                try:
                    answer = await client.post("/v1/detect", content=image, headers={"Content-Type": "image/jpeg"})
                    if answer.status_code != 200:
                        errors[str(answer.status_code)] = errors.get(str(answer.status_code), 0) + 1
                        continue
                except httpx.HTTPError as err:
                    errors[type(err).__name__] = errors.get(type(err).__name__, 0) + 1
                    continue
                latencies.append(time.perf_counter() - t0)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    latencies.sort()
    return {
        "ok": len(latencies),
        "errors": errors,
        "wall": wall,
        "rps": len(latencies) / wall,
        "p50": 1000 * latencies[len(latencies) // 2],
        "p99": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
    }


def run_load(args: argparse.Namespace, weights: Path, folder: Path) -> None:
    image = test_image()
    flags_by_mode = modes(args.max_batch_sizes)
    servers = {
        mode: ServerProcess(weights, folder / f"server-{mode.replace(' ', '')}.log", "--no-access-log", *flags, threads=None)
        for mode, flags in flags_by_mode.items()
    }
    try:
        for server in servers.values():
            server.wait_ready()
        for mode, server in servers.items():  # warm-up: connections, allocator, both batch shapes
            asyncio.run(load(server.url, image, 8, 64, 60))
        rss_warm = {mode: rss_mib(server) for mode, server in servers.items()}
        print(f"load before: {os.getloadavg()}", flush=True)
        results: dict[tuple[str, int], list[dict]] = {}
        for round_ in range(args.rounds):
            for concurrency in args.concurrency:
                for mode, server in (servers.items() if round_ % 2 == 0 else reversed(servers.items())):
                    before = batches(server)
                    result = asyncio.run(load(server.url, image, concurrency, args.requests * max(1, concurrency // 8), args.time_limit))
                    after = batches(server)
                    result["batch"] = (after[1] - before[1]) / max(1.0, after[0] - before[0])
                    results.setdefault((mode, concurrency), []).append(result)
                    print(
                        f"round {round_ + 1} c={concurrency:>2} {mode:>8}: {result['ok']} ok in {result['wall']:.1f} s, "
                        f"{result['rps']:.1f} req/s, p50 {result['p50']:.0f} ms, p99 {result['p99']:.0f} ms, "
                        f"mean batch {result['batch']:.2f}, errors {result['errors'] or 0}",
                        flush=True,
                    )
        print(f"load after: {os.getloadavg()}", flush=True)
        rss_end = {mode: rss_mib(server) for mode, server in servers.items()}
    finally:
        codes = {mode: server.stop() for mode, server in servers.items()}

    print("\n| concurrency | mode | requests/s (median of rounds) | p50 ms | p99 ms | mean batch | errors |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for concurrency in args.concurrency:
        for mode in flags_by_mode:
            runs = results[(mode, concurrency)]
            rps = [r["rps"] for r in runs]
            print(
                f"| {concurrency} | {mode} | {statistics.median(rps):.1f} ({', '.join(f'{v:.1f}' for v in rps)}) | "
                f"{statistics.median(r['p50'] for r in runs):.0f} | {statistics.median(r['p99'] for r in runs):.0f} | "
                f"{statistics.median(r['batch'] for r in runs):.2f} | {sum(sum(r['errors'].values()) for r in runs)} |"
            )
    for concurrency in args.concurrency:
        off = statistics.median(r["rps"] for r in results[("batch 1", concurrency)])
        for mode in flags_by_mode:
            if mode != "batch 1":
                on = statistics.median(r["rps"] for r in results[(mode, concurrency)])
                print(f"{mode} / batch 1 at concurrency {concurrency}: {on / off:.2f}x")
    for mode in flags_by_mode:
        print(f"{mode}: RSS after warm-up {rss_warm[mode]:.0f} MiB, after the runs {rss_end[mode]:.0f} MiB ({100 * (rss_end[mode] / rss_warm[mode] - 1):+.1f}%); SIGTERM exit code {codes[mode]}")


def run_bad_input(weights: Path, folder: Path) -> None:
    """Every bad request of the test suite against a real server (API key and 1 MiB body limit), each followed by a good one."""
    server = ServerProcess(weights, folder / "server-bad-input.log", "--no-access-log", "--api-key", API_KEY, "--max-body-mb", str(MAX_BODY_MB), threads=None)
    good = {"content": test_image(), "headers": {"Content-Type": "image/jpeg", "Authorization": f"Bearer {API_KEY}"}}
    try:
        server.wait_ready()
        print("| input | status | kind: message | next good request |")
        print("| --- | ---: | --- | --- |")
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for case in bad_requests():
                answer = client.request("POST", case.path, **case.send_arguments())
                error = answer.json()["error"]
                after = client.post("/v1/detect", **good)
                ok = "OK" if after.status_code == 200 else f"FAILED ({after.status_code})"
                message = error["message"].replace("|", "\\|")
                print(f"| {case.name} | {answer.status_code} | `{error['kind']}`: {message} | {ok} |", flush=True)
        alive = server.process.poll() is None
    finally:
        code = server.stop()
    print(f"\nserver still running after all of them: {alive}; SIGTERM exit code {code}")


def run_network(rounds: int = 5) -> None:
    """The network alone (``model.core``, no pre/postprocess), ms per image at batch 1, 2, 4 and 8, interleaved: what batching can gain."""
    import torch

    from ssdlite.models import ssdlite_mobilenet_v2

    torch.manual_seed(0)
    model = ssdlite_mobilenet_v2(21, size=320).eval()
    batch = torch.randn(8, 3, 320, 320)
    per_image: dict[int, list[float]] = {1: [], 2: [], 4: [], 8: []}
    with torch.inference_mode():
        for n in per_image:
            model.core(batch[:n])
        for _ in range(rounds):
            for n in per_image:
                start = time.perf_counter()
                for i in range(0, 8, n):
                    model.core(batch[i : i + n])
                per_image[n].append((time.perf_counter() - start) / 8 * 1000)
    for n, values in per_image.items():
        print(f"network, batch {n}: {statistics.median(values):.1f} ms per image (runs {', '.join(f'{v:.0f}' for v in values)}), {torch.get_num_threads()} threads")
    print(f"load: {os.getloadavg()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, help="model to serve (default: an untrained SSDLite-MobileNetV2 320: 20 classes, or the shapes' 5 for --bad-input)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--max-batch-sizes", type=int, nargs="+", default=[8, 1], help="one server per size; 1 is the baseline and must be there (default 8 1)")
    parser.add_argument("--requests", type=int, default=120, help="requests per run at concurrency <= 8; x concurrency/8 above (default 120)")
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per run at most (default 60)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of every (concurrency, mode), interleaved (default 2)")
    parser.add_argument("--bad-input", action="store_true", help="print the bad-input table instead")
    parser.add_argument("--network", action="store_true", help="time the network alone at batch 1, 2, 4 and 8 instead")
    args = parser.parse_args()
    if 1 not in args.max_batch_sizes:
        parser.error("--max-batch-sizes must include 1, the baseline")
    if args.network:
        run_network()
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        # The bad-input cases name the synthetic shapes' classes; the load test uses VOC's class count.
        classes = list(SHAPES) if args.bad_input else [f"class{i}" for i in range(1, 21)]
        weights = args.weights or make_weights(folder, classes)
        if args.bad_input:
            run_bad_input(weights, folder)
        else:
            run_load(args, weights, folder)


if __name__ == "__main__":
    main()
