"""torchrun on the CPU (gloo, 2 processes) trains to the same weights as one process on the same global batch.

BatchNorm in training mode normalizes with the statistics of each process's half batch, which is a
different computation from one process's full batch (SyncBatchNorm, which would fix that, runs on
GPUs only). The comparison therefore freezes every BatchNorm (``--freeze-bn all``): each image's
forward pass is then independent of the rest of its batch, the loss is normalized by the global
number of positives (see ``ssdlite.engine.trainer``), and the two runs compute the same gradient
up to the order of floating-point sums.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from train_helpers import cli_args, run_ssdlite
from ssdlite.engine.seeding import seed_everything
from ssdlite.engine.trainer import build_training_model

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(), reason="no gloo")


def test_torchrun_two_processes_match_one_process(train_voc, tiny_config, tmp_path):
    config = tiny_config.replace(epochs=1, freeze_bn="all", val_every=0, augment="none", lr=0.02, warmup_epochs=0.25)
    args = ["train", "--data", str(train_voc), *cli_args(config)]

    single = run_ssdlite(*args, "--out", str(tmp_path / "one"))
    assert single.returncode == 0, single.stderr

    ssdlite_bin = shutil.which("ssdlite", path=str(Path(sys.executable).parent))
    assert ssdlite_bin, "the ssdlite console script is not installed next to this interpreter"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "--no-python", ssdlite_bin]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    ddp = subprocess.run([*command, *args, "--out", str(tmp_path / "two")], capture_output=True, text=True, timeout=300, env=env)
    assert ddp.returncode == 0, ddp.stderr[-3000:]

    one = torch.load(tmp_path / "one" / "last.pt", map_location="cpu", weights_only=True)
    two = torch.load(tmp_path / "two" / "last.pt", map_location="cpu", weights_only=True)
    assert one["step"] == two["step"] == 4
    seed_everything(tiny_config.seed)  # the initialization both runs started from
    initial = build_training_model(config, len(one["classes"]) + 1).state_dict()
    assert max((one["model"][k] - v).abs().max().item() for k, v in initial.items() if v.is_floating_point()) > 1e-3
    for key, value in one["model"].items():
        torch.testing.assert_close(two["model"][key], value, rtol=0, atol=1e-5, msg=f"{key} differs")
    for key, value in one["ema"].items():
        torch.testing.assert_close(two["ema"][key], value, rtol=0, atol=1e-5, msg=f"ema {key} differs")
    # Only rank 0 writes: one metrics file, one set of checkpoints.
    assert sorted(p.name for p in (tmp_path / "two").glob("*.pt")) == ["last.pt"]
