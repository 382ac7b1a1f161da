"""Per-epoch progress: a tqdm bar on a terminal, plain lines otherwise (CI logs, files, pipes)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from tqdm import tqdm


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class EpochProgress:
    """Shows loss parts, learning rate, images/s and the epoch's ETA.

    Args:
        epoch, epochs: 1-based epoch and the total, for the label.
        steps: optimizer steps in this epoch.
        enabled: ``False`` on ranks other than 0.
        plain: force plain lines (default: plain unless stderr is a terminal).
        plain_every: a plain line every this many steps (and at the last one).
        clock: seconds (the trainer's clock).
    """

    def __init__(self, epoch: int, epochs: int, steps: int, enabled: bool = True, plain: bool | None = None, plain_every: int = 20,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.epoch = epoch
        self.label = f"epoch {epoch}/{epochs}"
        self.clock = clock
        self.steps = steps
        self.enabled = enabled
        self.plain = (not sys.stderr.isatty()) if plain is None else plain
        self.plain_every = max(1, plain_every)
        self.start = clock()
        self.images = 0
        self.done = 0
        self.bar = None
        if enabled and not self.plain:
            self.bar = tqdm(total=steps, desc=self.label, unit="step", dynamic_ncols=True, leave=True)

    def images_per_second(self) -> float:
        return self.images / max(self.clock() - self.start, 1e-9)

    def update(self, losses: dict[str, float], lr: float, images: int) -> None:
        self.done += 1
        self.images += images
        if not self.enabled:
            return
        parts = {k: f"{v:.3f}" for k, v in losses.items()}
        if self.bar is not None:
            self.bar.set_postfix(parts | {"lr": f"{lr:.2e}", "img/s": f"{self.images_per_second():.1f}"}, refresh=False)
            self.bar.update(1)
        elif self.done % self.plain_every == 0 or self.done == self.steps:
            elapsed = self.clock() - self.start
            eta = elapsed / self.done * (self.steps - self.done)
            losses_text = " ".join(f"{k} {v}" for k, v in parts.items())
            print(
                f"{self.label} step {self.done}/{self.steps} {losses_text} lr {lr:.2e} "
                f"{self.images_per_second():.1f} img/s eta {_clock(eta)}",
                file=sys.stderr,
                flush=True,
            )

    def replan(self, epochs: int, steps: int) -> None:
        """The run was re-planned: ``epochs`` in all, ``steps`` in this epoch."""
        self.label = f"epoch {self.epoch}/{epochs}"
        self.steps = steps
        if self.bar is not None:
            self.bar.set_description(self.label, refresh=False)
            self.bar.total = steps
            self.bar.refresh()

    def note(self, text: str) -> None:
        """A line of its own on stderr, above the bar when there is one."""
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
