"""CPU training speed: the `ssdlite train` command as a user runs it, before vs after the CPU defaults.

Each variant is the real command in a fresh process (``ssdlite train --config configs/raccoon.yaml
--epochs E --val-every 0 --precise-bn-images 0``), so the allocator re-execution and the memory format
are exactly what a user gets. Variants alternate A, B, A, B, ... in one run of this script. For each run:

- images/s of every epoch (the trainer's ``epoch`` records in ``metrics.jsonl``); the steady state is the
  median from epoch 2 on (epoch 1 builds oneDNN's kernels and warms the allocator);
- the training process's own CPU time split into user and kernel (``/proc/PID/stat`` fields 14 and 15,
  loader workers not included) and its minor page faults per second, both over the second half of the
  run (sampled every 0.5 s), again to leave the start-up out.

Variants:

- ``before``: the code before issue 15 (commit ``c3f5ff3^``, checked out by this script into a temporary
  folder with ``git archive`` and run with ``python -m ssdlite`` on it): glibc malloc, no huge pages,
  contiguous tensors, loader workers forked anew every epoch;
- ``after``: today's code and defaults, no flag and no variable (tcmalloc preloaded by the program's
  re-execution, huge pages, channels_last, workers kept for the run);
- ``old_settings``: today's code with the old allocator and memory format (``SSDLITE_CPU_TUNING=0``,
  ``--no-channels-last``), i.e. only the loader's kept workers;
- ``thp_cl``: ``SSDLITE_CPU_TUNING=0 THP_MEM_ALLOC_ENABLE=1`` and channels_last (no tcmalloc);
- ``tcmalloc``: today's allocator set-up with ``--no-channels-last``.

    python benchmarks/cpu_speed.py --rounds 2 --epochs 4 [--variants before after] [--json out.json]

Needs ``../shared`` (raccoon and the ImageNet MobileNetV2 weights) beside the project, as the recipe does.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLOCK = os.sysconf("SC_CLK_TCK")

#: The last commit before issue 15's CPU defaults (the ``before`` variant runs its code).
BEFORE_REF = "c3f5ff3^"

VARIANTS = {  # name: (environment, extra flags); "before" runs BEFORE_REF's code with no flag
    "before": ({}, []),
    "after": ({}, []),
    "old_settings": ({"SSDLITE_CPU_TUNING": "0"}, ["--no-channels-last"]),
    "thp_cl": ({"SSDLITE_CPU_TUNING": "0", "THP_MEM_ALLOC_ENABLE": "1"}, ["--channels-last"]),
    "tcmalloc": ({}, ["--no-channels-last"]),
}


def proc_sample(pid: int) -> tuple[float, float, float, int] | None:
    """``(time, user seconds, kernel seconds, minor faults)`` of one process, or None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "; field 3 of stat is fields[0]
    return time.monotonic(), int(fields[11]) / CLOCK, int(fields[12]) / CLOCK, int(fields[7])


def old_code(work: Path, ref: str = BEFORE_REF) -> Path:
    """``src/`` of commit ``ref``, extracted under ``work`` (once)."""
    tree = work / "before"
    if not tree.is_dir():
        tree.mkdir()
        archive = subprocess.run(["git", "archive", ref, "src"], cwd=ROOT, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree / "src"


def run_variant(name: str, epochs: int, config: str, work: Path) -> dict:
    env_extra, flags = VARIANTS[name]
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "THP_MEM_ALLOC_ENABLE", "SSDLITE_RELAUNCHED")}
    env.update(env_extra)
    out = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=work))
    program = [str(Path(sys.executable).with_name("ssdlite"))]
    if name == "before":  # the old package first on the path, ahead of the editable install of today's
        env["PYTHONPATH"] = str(old_code(work))
        program = [sys.executable, "-m", "ssdlite"]
    command = [
        *program, "train", "--config", config, "--out", str(out),
        "--epochs", str(epochs), "--val-every", "0", "--precise-bn-images", "0", *flags,
    ]
    started = time.monotonic()
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples = []
    while proc.poll() is None:
        sample = proc_sample(proc.pid)  # the same pid after the allocator re-execution (execve keeps it)
        if sample:
            samples.append(sample)
        time.sleep(0.5)
    stderr = proc.stderr.read()
    if proc.returncode:
        raise SystemExit(f"{name}: exit {proc.returncode}\n{stderr[-2000:]}")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    speeds = [r["images_per_s"] for r in records if r.get("kind") == "epoch"]
    half = samples[len(samples) // 2 :]
    (t0, u0, s0, f0), (t1, u1, s1, f1) = half[0], half[-1]
    cpu = (u1 - u0) + (s1 - s0)
    return {
        "variant": name,
        "epoch_images_per_s": [round(s, 2) for s in speeds],
        "steady_images_per_s": round(statistics.median(speeds[1:] or speeds), 2),
        "kernel_share": round((s1 - s0) / cpu, 3) if cpu > 0 else None,
        "cpu_per_wall": round(cpu / (t1 - t0), 2),
        "minor_faults_per_s": round((f1 - f0) / (t1 - t0)),
        "wall_s": round(time.monotonic() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--config", default="configs/raccoon.yaml")
    parser.add_argument("--variants", nargs="+", default=["before", "after"], choices=sorted(VARIANTS))
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="cpu_speed-") as tmp:
        for round_index in range(args.rounds):
            for name in args.variants:
                result = {"round": round_index + 1, "load_before": os.getloadavg()[0], **run_variant(name, args.epochs, args.config, Path(tmp))}
                print(json.dumps(result), flush=True)
                results.append(result)
    summary = {}
    for name in args.variants:
        runs = [r for r in results if r["variant"] == name]
        summary[name] = {
            "steady_images_per_s": statistics.median(r["steady_images_per_s"] for r in runs),
            "kernel_share": statistics.median(r["kernel_share"] for r in runs),
            "minor_faults_per_s": statistics.median(r["minor_faults_per_s"] for r in runs),
        }
    base = summary[args.variants[0]]["steady_images_per_s"]
    for name, row in summary.items():
        row["ratio"] = round(row["steady_images_per_s"] / base, 2)
        print(f"{name:10s} {row['steady_images_per_s']:6.2f} img/s  x{row['ratio']:.2f}  kernel {row['kernel_share']:.0%}  "
              f"{row['minor_faults_per_s']:,} minor faults/s")
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": results, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
