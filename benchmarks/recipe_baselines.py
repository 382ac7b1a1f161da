"""Issue 31's table: the zero-config command on every dataset, with and without a time budget, one job at a time.

    .venv/bin/python benchmarks/recipe_baselines.py [--datasets raccoon bccd ...] [--modes zero budget15]
        [--out runs/baselines] [--disturb] [-- EXTRA TRAIN FLAGS]

Each run is ``ssdlite train --data D --out OUT/<dataset>_<mode> --backbone-weights
../shared/weights/mobilenet_v2_imagenet.pth`` (``budget15``: ``--time-budget 15``), what a new user types. A dataset
is a name under ``../shared/datasets`` or a path. Per run it records the wall time of the whole command (recipe,
training, validations, final evaluation), the CPU time split user/kernel (the kernel share flags a bug above 40%),
the load average before and after, and from the run's ``metrics.jsonl``: epochs, the last validation's VOC07
mAP@0.5 and COCO mAP, the best VOC07 and its epoch, the budget's re-plans. One JSON line per run goes to
``OUT/results.jsonl`` and a Markdown row to the output.

``--disturb`` (issue 31's budget check): a second CPU-bound process (``python -c "while True: pass"``) starts 3 minutes
into each run and stops 5 minutes later.

Needs ../shared and a quiet machine: nothing else may run (a second process halves the speed on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
WEIGHTS = SHARED / "weights" / "mobilenet_v2_imagenet.pth"
DATASETS = ("raccoon", "bccd", "chess_pieces", "dice_d6", "asl_letters")
MODES = {"zero": [], "budget15": ["--time-budget", "15"]}
DISTURB_AT_S, DISTURB_FOR_S = 180, 300


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _disturb(stop: threading.Event, log: list[str]) -> None:
    """A second CPU-bound process from DISTURB_AT_S to DISTURB_AT_S + DISTURB_FOR_S into the run."""
    if stop.wait(DISTURB_AT_S):
        return
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    log.append(f"disturbance started at {DISTURB_AT_S} s")
    stop.wait(DISTURB_FOR_S)
    busy.kill()
    busy.wait()
    log.append(f"disturbance stopped at {DISTURB_AT_S + DISTURB_FOR_S} s (or when the run ended)")


def summary(run_dir: Path) -> dict:
    """What the run's metrics.jsonl says: epochs, last and best validation, re-plans."""
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    epochs = [line for line in lines if line.get("kind") == "epoch"]
    validated = [line for line in epochs if line.get("val")]
    last = validated[-1]["val"] if validated else {}
    best = max(validated, key=lambda line: line["val"]["voc07_map50"], default=None)
    return {
        "epochs": len(epochs),
        "voc07": last.get("voc07_map50"),
        "coco": last.get("coco_map"),
        "best_voc07": best["val"]["voc07_map50"] if best else None,
        "best_epoch": best["epoch"] if best else None,
        "replans": sum(line.get("kind") == "replan" for line in lines),
    }


def run_one(dataset: str, mode: str, out: Path, extra: list[str], disturb: bool) -> dict:
    data = Path(dataset) if "/" in dataset else SHARED / "datasets" / dataset
    name = f"{Path(dataset).name}_{mode}" + ("_disturbed" if disturb else "")
    run_dir = out / name
    command = [str(ROOT / ".venv" / "bin" / "ssdlite"), "train", "--data", str(data), "--out", str(run_dir),
               "--backbone-weights", str(WEIGHTS), *MODES[mode], *extra]
    record = {"dataset": Path(dataset).name, "mode": mode, "disturbed": disturb, "command": " ".join(command),
              "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip(),
              "load_before": _load(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    notes: list[str] = []
    stop = threading.Event()
    disturber = threading.Thread(target=_disturb, args=(stop, notes), daemon=True) if disturb else None
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    with open(out / f"{name}.log", "w") as log:
        if disturber:
            disturber.start()
        rc = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT).returncode
    wall = time.monotonic() - start
    stop.set()
    if disturber:
        disturber.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    user, kernel = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    record |= {"rc": rc, "wall_s": round(wall, 1), "user_s": round(user, 1), "kernel_s": round(kernel, 1),
               "kernel_share": round(kernel / max(user + kernel, 1e-9), 3), "load_after": _load(), "notes": notes}
    if rc == 0:
        record |= summary(run_dir)
    return record


def row(r: dict) -> str:
    def f(value, fmt=".4f"):
        return "-" if value is None else format(value, fmt)

    mode = r["mode"] + (" + disturbance" if r["disturbed"] else "")
    return (f"| {r['dataset']} | {mode} | {f(r.get('voc07'))} | {f(r.get('coco'))} | {f(r.get('best_voc07'))} "
            f"({r.get('best_epoch', '-')}) | {r.get('epochs', '-')} | {r['wall_s'] / 60:.1f} min | {100 * r['kernel_share']:.0f}% | "
            f"{r.get('replans', '-')} | {r['load_before']} -> {r['load_after']} | rc {r['rc']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), help="names under ../shared/datasets, or paths")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--out", default=str(ROOT / "runs" / "baselines"))
    parser.add_argument("--disturb", action="store_true", help="a CPU-bound process from 3 to 8 minutes into each run")
    parser.add_argument("extra", nargs="*", help="more train flags, after --")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print("| dataset | command | final VOC07 | COCO mAP | best VOC07 (epoch) | epochs | wall | kernel | re-plans | load | |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for dataset in args.datasets:
        for mode in args.modes:
            record = run_one(dataset, mode, out, args.extra, args.disturb)
            with open(out / "results.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            print(row(record), flush=True)


if __name__ == "__main__":
    main()
