"""The non-finite guard: a step whose loss or gradient is NaN or infinite is skipped, not applied.

One bad batch (a degenerate box, an fp16 overflow) should cost one step, not the run; a run that
keeps producing them has diverged and is stopped, pointing at the last checkpoint written before,
which the checkpoint writer never overwrites with non-finite weights.
"""

from __future__ import annotations

from ssdlite.errors import UserError


class TrainingDiverged(UserError):
    """Too many consecutive non-finite steps; the message names the last good checkpoint."""


class NonFiniteGuard:
    """Counts consecutive skipped steps and stops the run after ``max_bad_steps`` of them."""

    def __init__(self, max_bad_steps: int) -> None:
        self.max_bad_steps = max(1, max_bad_steps)
        self.consecutive = 0
        self.total = 0

    def good(self) -> None:
        self.consecutive = 0

    def bad(self, step: int, reason: str, last_good_checkpoint: str | None) -> None:
        """Record a skipped step; raise :class:`TrainingDiverged` when the limit is reached."""
        self.consecutive += 1
        self.total += 1
        if self.consecutive >= self.max_bad_steps:
            where = (
                f"the last good checkpoint is {last_good_checkpoint}"
                if last_good_checkpoint
                else "no checkpoint was written before it diverged"
            )
            raise TrainingDiverged(
                f"training stopped at step {step}: {self.consecutive} steps in a row had a non-finite {reason}; "
                f"{where} (lower --lr, raise --warmup-epochs or check the data)"
            )
