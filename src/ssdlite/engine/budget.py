"""``--time-budget``: a run that ends within its minutes however the machine's speed changes on the way.

The epochs are first fitted to the speed of a few steps measured before training
(:func:`ssdlite.engine.recipe.fit_to_budget`). A machine's speed is not a constant: with another job on the same
cores a run measured at 14.6 img/s went on at 2-6 img/s, and its 15-minute budget took 29.6 minutes (issue 31).
So after every step the trainer asks :class:`BudgetPlanner` whether what is left of the plan (the steps, the
periodic validations, the epoch-end checkpoints) still ends by the deadline at the speed of the recent steps.
When it misses by more than a tolerance, either way, the total number of steps is re-planned to what fits, and
the learning-rate schedule is re-stretched to reach its final value at the new last step
(:func:`ssdlite.engine.optim.restretch`). A periodic validation that would itself overrun is skipped.

The deadline is ``seconds`` after the command began: the time before the first step (reading and checking the
data, measuring the speed, building the model) counts. The final validation after the last step, and the
model export after it, come on top. A resumed run has what was left of its budget at its checkpoint.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: Evaluation and the BatchNorm recomputation are forward passes only: about a third of a training step's cost per
#: image (forward + backward = 3 forwards).
FORWARD_SHARE = 1 / 3
#: The speed the plan is checked against: the mean step time over the steps of the last 5% of the budget (at least
#: MIN_WINDOW steps), so one slow step does not re-plan and a lasting slowdown does within seconds to a minute.
#: After a re-plan the next waits until the window holds only later steps: a change of speed half-way into the
#: window re-plans once for the partly changed mean, and once more for the whole change, not at every step between.
WINDOW_SHARE, MIN_WINDOW = 0.05, 3
#: A re-plan happens when the plan misses the deadline by more than 10% of the time left or 2% of the budget,
#: whichever is more: the noise of a shared machine's step times does not re-plan every few steps, and near the
#: end the run overruns by at most 2% of its budget before the plan is corrected.
TOLERANCE_LEFT, TOLERANCE_BUDGET = 0.10, 0.02


def validation_seconds(val_images: int, bn_images: int, images_per_s: float) -> float:
    """What one validation costs before one has been timed: ``val_images`` evaluated and ``bn_images`` for the
    precise-BatchNorm statistics, forward only, at a training speed of ``images_per_s``."""
    return (val_images + bn_images) * FORWARD_SHARE / images_per_s


@dataclass
class TimeBudget:
    """The budget handed to :func:`ssdlite.engine.train`.

    Attributes:
        seconds: the whole run's time (``--time-budget`` minutes * 60).
        started: the trainer clock's reading when the command began (``None``: when training is called), so the
            time before the first step counts.
        images_per_s: the speed the plan was made for (the speed measured before training), for the message that
            says how far the machine is from it.
    """

    seconds: float
    started: float | None = None
    images_per_s: float | None = None


@dataclass
class Replan:
    """One re-plan: the total steps before and after, at step ``step``, and the speed that made it."""

    step: int
    old_total: int
    new_total: int
    steps_per_epoch: int
    images_per_s: float
    planned_images_per_s: float | None
    first: bool  # the first re-plan of the run: the plan it changes is the one made from the speed measured at the start
    window_s: float
    left_s: float

    def line(self) -> str:
        """The line the trainer prints."""
        epochs = lambda total: math.ceil(total / self.steps_per_epoch)  # noqa: E731
        against = ""
        if self.planned_images_per_s:
            since = "measured at the start" if self.first else "at the last re-plan"
            against = f" against {self.planned_images_per_s:.1f} {since}"
        return (f"re-planned: {epochs(self.old_total)} -> {epochs(self.new_total)} epochs ({self.old_total} -> "
                f"{self.new_total} steps) at step {self.step}, the machine ran at {self.images_per_s:.1f} img/s over the "
                f"last {self.window_s:.0f} s of steps{against}; {self.left_s:.0f} s of the budget left")

    def record(self) -> dict[str, Any]:
        """The ``metrics.jsonl`` record."""
        return {"kind": "replan", "step": self.step, "old_total_steps": self.old_total, "total_steps": self.new_total,
                "images_per_s": self.images_per_s, "planned_images_per_s": self.planned_images_per_s,
                "window_s": self.window_s, "left_s": self.left_s}


@dataclass
class BudgetPlanner:
    """Keeps the run's total steps inside the budget from the measured costs (see the module docstring).

    ``deadline`` is a reading of ``clock``; ``batch`` images make a step; ``val_images`` and ``bn_images`` make a
    validation; ``val_every`` is the run's validation period in epochs (0: none).
    """

    seconds: float
    deadline: float
    clock: Callable[[], float]
    batch: int
    steps_per_epoch: int
    val_every: int
    val_images: int
    bn_images: int
    images_per_s: float | None = None  # what the current plan assumed
    validations: list[float] = field(default_factory=list)  # measured seconds of each periodic validation
    epoch_ends: list[float] = field(default_factory=list)  # measured seconds of each epoch end (checkpoint, log)
    replans: int = 0
    _steps: deque = field(default_factory=deque)  # seconds of each recent step, oldest first
    _spanned: float = 0.0  # their sum
    _fresh: float = 0.0  # seconds of steps since the last re-plan
    _last: float | None = None  # when the last step ended, or the epoch's steps began
    _warm: bool = False  # a step has run in this process

    @classmethod
    def start(cls, budget: TimeBudget, state: dict[str, Any] | None, clock: Callable[[], float], **sizes: int) -> BudgetPlanner:
        """A planner for a fresh run (``state`` None) or one resumed from a checkpoint's :meth:`state`."""
        started = clock() if budget.started is None else budget.started
        used = float(state["used_s"]) if state else 0.0
        planner = cls(budget.seconds, started + budget.seconds - used, clock, images_per_s=budget.images_per_s, **sizes)
        if state:
            planner.validations = [float(v) for v in state.get("validation_s", [])]
            planner.epoch_ends = [float(v) for v in state.get("epoch_end_s", [])]
            planner.replans = int(state.get("replans", 0))
        return planner

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps, so a resumed run goes on with the same budget and the costs measured so far."""
        return {"seconds": self.seconds, "used_s": self.seconds - (self.deadline - self.clock()),
                "images_per_s": self.images_per_s, "validation_s": list(self.validations),
                "epoch_end_s": list(self.epoch_ends), "replans": self.replans}

    # -- measurements -----------------------------------------------------------------------------

    def steps_begin(self) -> None:
        """An epoch's steps begin: its first step is timed from here, loading its batch included; the run's (or a
        resumed run's) very first step is not timed at all (it also allocates, picks kernels and starts the loader's
        workers)."""
        self._last = self.clock() if self._warm else None

    def step_done(self) -> None:
        now = self.clock()
        if self._last is not None:
            self._steps.append(now - self._last)
            self._spanned += now - self._last
            self._fresh += now - self._last
        self._last, self._warm = now, True
        while len(self._steps) > MIN_WINDOW and self._spanned - self._steps[0] >= WINDOW_SHARE * self.seconds:
            self._spanned -= self._steps.popleft()

    def validated(self, seconds: float) -> None:
        self.validations.append(seconds)

    def epoch_ended(self, seconds: float) -> None:
        self.epoch_ends.append(seconds)

    # -- costs ------------------------------------------------------------------------------------

    def _step_seconds(self) -> float | None:
        """The mean step time over the window, once the window spans its share of the budget."""
        if len(self._steps) < MIN_WINDOW or self._spanned < min(WINDOW_SHARE * self.seconds, max(self.left(), 0.0)):
            return None
        return self._spanned / len(self._steps)

    def _validation_cost(self, step_s: float) -> float:
        if self.validations:
            return sum(self.validations) / len(self.validations)
        return validation_seconds(self.val_images, self.bn_images, self.batch / step_s)

    def cost(self, step: int, total: int, step_s: float, validation: bool = True) -> float:
        """Seconds from now (``step`` steps done) to the end of step ``total``: the steps, and each epoch end before
        the last one with its periodic validation (the one at ``step`` itself too, if ``validation``)."""
        spe = self.steps_per_epoch
        end_s = sum(self.epoch_ends) / len(self.epoch_ends) if self.epoch_ends else 0.0
        ends = range(-(-step // spe) * spe, total, spe)  # the epoch ends still to come, the last one excluded
        validating = [b for b in ends if self.val_every and (b // spe) % self.val_every == 0 and (validation or b != step)]
        return (total - step) * step_s + len(ends) * end_s + len(validating) * self._validation_cost(step_s)

    def left(self) -> float:
        return self.deadline - self.clock()

    def _tolerance(self, left: float) -> float:
        return max(TOLERANCE_LEFT * max(left, 0.0), TOLERANCE_BUDGET * self.seconds)

    # -- decisions --------------------------------------------------------------------------------

    def replan(self, step: int, total: int) -> Replan | None:
        """A new total when the plan (``total`` steps, ``step`` done, ``step < total``) misses the deadline by more than
        the tolerance at the recent speed, else ``None``. The new total is the most steps that fit; a shorter plan keeps
        at least one more step, so the schedule reaches its final value."""
        if step >= total:
            return None
        step_s = self._step_seconds()
        if step_s is None or (self.replans and self._fresh < min(self._spanned, max(self.left(), 0.0))):
            return None
        left = self.left()
        if abs(self.cost(step, total, step_s) - left) <= self._tolerance(left):
            return None
        low, high = step + 1, step + 1 + max(0, int(left / step_s))  # the cost grows with the total: bisect
        while low < high:
            middle = (low + high + 1) // 2
            if self.cost(step, middle, step_s) <= left:
                low = middle
            else:
                high = middle - 1
        if low == total or (low > total and self.cost(step, low, step_s) > left):  # out of time: never longer
            return None
        speed = self.batch / step_s
        replan = Replan(step, total, low, self.steps_per_epoch, speed, self.images_per_s, self.replans == 0, self._spanned, left)
        self.images_per_s = speed
        self.replans += 1
        self._fresh = 0.0
        return replan

    def validation_fits(self, step: int, total: int) -> bool:
        """Whether the periodic validation due now (``step`` steps done) leaves the rest of the plan inside the
        deadline (with the tolerance); when it does not, the trainer skips it."""
        step_s = self._step_seconds() or (self.batch / self.images_per_s if self.images_per_s else None)
        if step_s is None:
            return True
        left = self.left()
        return self.cost(step, total, step_s) <= left + self._tolerance(left)
