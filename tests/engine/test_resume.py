"""Exact resume: 4 epochs straight == 2 epochs, process killed, 2 more resumed (bit for bit on the CPU)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import torch

from train_helpers import cli_args, run_ssdlite, ssdlite_command


def _records(run_dir):
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def _kill_after_epoch(command: list[str], run_dir, epoch: int, timeout: float = 240) -> int:
    """Start ``command``; SIGKILL it as soon as it has logged a step of the epoch after ``epoch``
    (so ``last.pt`` of ``epoch`` is on disk and the next epoch is under way). Returns its exit code."""
    env = dict(os.environ, OMP_NUM_THREADS="2")
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if any(r.get("kind") == "step" and r["epoch"] > epoch for r in _records(run_dir)):
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
        return proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_resume_after_kill_gives_identical_weights(train_voc, tiny_config, tmp_path):
    # Real augmentation in two worker processes, so the loader's and the workers' seeding is exercised.
    config = tiny_config.replace(epochs=4, augment="ssd", workers=2, val_every=2)
    args = ["train", "--data", str(train_voc), *cli_args(config)]

    straight = tmp_path / "straight"
    done = run_ssdlite(*args, "--out", str(straight))
    assert done.returncode == 0, done.stderr

    interrupted = tmp_path / "interrupted"
    code = _kill_after_epoch(ssdlite_command(*args, "--out", str(interrupted)), interrupted, epoch=2)
    assert code == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = torch.load(interrupted / "last.pt", map_location="cpu", weights_only=True)["epoch"]
    assert 2 <= killed_at < 4
    assert not (interrupted / "model.safetensors").exists()

    resumed = run_ssdlite("train", "--resume", str(interrupted))
    assert resumed.returncode == 0, resumed.stderr

    a = torch.load(straight / "last.pt", map_location="cpu", weights_only=True)
    b = torch.load(interrupted / "last.pt", map_location="cpu", weights_only=True)
    assert a["epoch"] == b["epoch"] == 4 and a["step"] == b["step"]
    for part in ("model", "ema"):
        for key, value in a[part].items():
            assert torch.equal(value, b[part][key]), f"{part} {key} differs after resume"
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"]
    assert a["best_metric"] == b["best_metric"]

    # The resumed run's log reads like the straight one's: same steps, no duplicates from the killed epoch.
    steps_a = [(r["step"], r["loss"]) for r in _records(straight) if r["kind"] == "step"]
    steps_b = [(r["step"], r["loss"]) for r in _records(interrupted) if r["kind"] == "step"]
    assert steps_a == steps_b
    # Its elapsed time counts on from the killed run's last checkpoint instead of restarting at zero.
    elapsed = [r["elapsed_s"] for r in _records(interrupted) if r["kind"] == "epoch"]
    assert len(elapsed) == 4 and all(a < b for a, b in zip(elapsed, elapsed[1:])), elapsed


def test_resume_refuses_a_changed_configuration(train_voc, tiny_config, tmp_path):
    run_dir = tmp_path / "run"
    first = run_ssdlite("train", "--data", str(train_voc), *cli_args(tiny_config.replace(epochs=2, stop_after=1)), "--out", str(run_dir))
    assert first.returncode == 0, first.stderr
    assert torch.load(run_dir / "last.pt", weights_only=True)["epoch"] == 1
    changed = run_ssdlite("train", "--resume", str(run_dir), "--lr", "0.5")
    assert changed.returncode == 2
    assert "cannot change lr" in changed.stderr and "last.pt" in changed.stderr


def test_resume_of_a_checkpoint_written_before_elapsed_time_was_kept(train_voc, tiny_config, tmp_path):
    # Checkpoints of earlier versions have no "elapsed_s": their resume counts the time from zero, not a KeyError.
    run_dir = tmp_path / "run"
    first = run_ssdlite("train", "--data", str(train_voc), *cli_args(tiny_config.replace(epochs=2, stop_after=1)), "--out", str(run_dir))
    assert first.returncode == 0, first.stderr
    ckpt = torch.load(run_dir / "last.pt", weights_only=True)
    assert ckpt.pop("elapsed_s") > 0
    torch.save(ckpt, run_dir / "last.pt")

    resumed = run_ssdlite("train", "--resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr
    epochs = [r for r in _records(run_dir) if r["kind"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2]
    assert 0 < epochs[1]["elapsed_s"]
    assert torch.load(run_dir / "last.pt", weights_only=True)["elapsed_s"] == epochs[1]["elapsed_s"]
