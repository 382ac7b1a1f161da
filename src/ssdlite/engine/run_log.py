"""The run's logs: ``metrics.jsonl`` (one JSON record per line) and TensorBoard events.

Records have a ``kind``: ``step`` (every ``log_every`` steps: losses, learning rate, images/s),
``epoch`` (means over the epoch, validation metrics when validated), ``skipped`` (a step dropped
by the non-finite guard) and ``warning`` (a validated model whose outputs no longer depend on the
image). The file is appended to and flushed record by record; on resume it is rewritten
(atomically) without the records written after the checkpoint being resumed, and TensorBoard is
told to purge those steps, so a resumed run's logs read like a straight run's.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ssdlite.files import atomic_write

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl``; a torn last line (a crash mid-write) is ignored."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN; keep it readable
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value


class RunLog:
    """Writes records on rank 0; a no-op elsewhere.

    Args:
        run_dir: the run directory.
        enabled: ``True`` on rank 0.
        resume_step: when resuming, the checkpoint's step: later records are dropped.
    """

    def __init__(self, run_dir: str | Path, enabled: bool = True, resume_step: int | None = None) -> None:
        self.enabled = enabled
        self.path = Path(run_dir) / METRICS_FILE
        self.writer = None
        if not enabled:
            return
        if resume_step is not None and self.path.exists():
            kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= resume_step]
            text = "".join(json.dumps(r) + "\n" for r in kept)
            atomic_write(self.path, lambda tmp: Path(tmp).write_text(text))
        elif self.path.exists():
            self.path.unlink()  # a fresh run in an existing directory starts a fresh log
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(Path(run_dir) / TENSORBOARD_DIR), purge_step=resume_step)
        self.file = self.path.open("a")

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.file.write(json.dumps(_json_safe(record)) + "\n")
        self.file.flush()
        step = record.get("step", 0)
        prefix = {"step": "train", "epoch": "epoch", "skipped": None}.get(record.get("kind"))
        if prefix is None:
            return
        for key, value in record.items():
            if key in ("kind", "step", "epoch"):
                continue
            if isinstance(value, dict):
                for sub, v in value.items():
                    if isinstance(v, (int, float)) and not isinstance(v, bool):
                        self.writer.add_scalar(f"{key}/{sub}", v, step)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"{prefix}/{key}", value, step)

    def close(self) -> None:
        if self.enabled:
            self.file.close()
            self.writer.close()
