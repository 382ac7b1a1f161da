"""Helpers for the training tests: a tiny configuration and running the CLI in a subprocess.

A plain module, not ``conftest``: several test folders have a ``conftest.py`` and only one can be
imported under that name.
"""

from __future__ import annotations

import os
import subprocess
import sys

from ssdlite.engine.config import TrainConfig

#: Small enough for a CPU step in well under a second: 128 px keeps the six feature maps (8, 4, 2, 1, 1, 1).
TINY = dict(size=128, width_mult=0.35, batch_size=4, workers=0, augment="none", log_every=1, warmup_epochs=0.5, lr=0.01)


def cli_args(config: TrainConfig) -> list[str]:
    """The flags that reproduce ``config`` on the command line (every field, so defaults cannot drift)."""
    args = []
    flat = {k: v for section in ("model", "data", "optim") for k, v in config.to_dict()[section].items()}
    flat.update({k: v for k, v in config.to_dict().items() if not isinstance(v, dict)})
    for name, value in flat.items():
        flag = "--" + name.replace("_", "-")
        if value is None:
            if name == "backbone_weights":  # not given would let the recipe choose ImageNet weights (a download)
                args += [flag, "none"]
            continue
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + name.replace("_", "-"))
        elif isinstance(value, list):
            args += [flag, *map(str, value)]
        else:
            args += [flag, str(value)]
    return args


def ssdlite_command(*args: str) -> list[str]:
    """``ssdlite ARGS`` run with this interpreter (the console script may not be on PATH)."""
    return [sys.executable, "-c", "import sys; from ssdlite.cli import main; sys.exit(main())", *args]


def run_ssdlite(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="2")
    return subprocess.run(ssdlite_command(*args), capture_output=True, text=True, timeout=timeout, env=env)
