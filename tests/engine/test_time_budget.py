"""`--time-budget` holds when the machine slows down during the run: the trainer re-plans the steps from the
measured speed, the learning rate stays continuous and ends at its final value, and a resume goes on with the
re-planned schedule. Time is a stub clock that loading data advances (as if each image took a fixed time to
train on), so the test is exact and takes seconds of real time."""

from __future__ import annotations

import math
import shutil

import pytest
import torch
from torch.utils.data import Dataset

from ssdlite.engine import build_datasets, train
from ssdlite.engine.budget import TOLERANCE_BUDGET, BudgetPlanner, TimeBudget
from ssdlite.engine import trainer
from ssdlite.engine.checkpoint import load_checkpoint, save_checkpoint
from ssdlite.engine.config import OptimConfig, TrainConfig
from ssdlite.engine.optim import lr_factor, restretch, schedule_step
from ssdlite.engine.run_log import read_metrics

BUDGET = 40.0  # stub seconds
SETUP = 2.0  # spent before training (reading the data, measuring the speed)
STEP = 1.0  # stub seconds per step of 4 images until SLOW_AT, then 3x
SLOW_AT = 16.0


class StubClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Timed(Dataset):
    """``dataset`` whose every item advances ``clock`` by ``share`` of a step's share (3x from ``SLOW_AT`` on)."""

    def __init__(self, dataset, clock: StubClock, batch: int, share: float = 1.0) -> None:
        self.dataset, self.clock, self.batch, self.share = dataset, clock, batch, share

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index):
        self.clock.now += self.share * STEP / self.batch * (3 if self.clock.now >= SLOW_AT else 1)
        return self.dataset[index]

    def __getattr__(self, name):  # classes, get_annotation, report, ...
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


def _config(train_voc, tiny_config: TrainConfig) -> TrainConfig:
    # 16 images of batch 4: 4 steps an epoch. 8 epochs of 1 s steps and 2 validations (4 images evaluated, a third of
    # a step's time each, and 8 for the BatchNorm statistics) fill the 40 s after the 2 s of set-up.
    return tiny_config.replace(data=str(train_voc), epochs=8, val_every=3, precise_bn_images=8, min_lr_ratio=0.05,
                               warmup_epochs=1.0).resolved()


def _run(config, run_dir, clock, resume=None):
    train_set, val_set = build_datasets(config)
    budget = None if resume is not None else TimeBudget(BUDGET, started=0.0, images_per_s=config.batch_size / STEP)
    return train(config, Timed(train_set, clock, config.batch_size), Timed(val_set, clock, config.batch_size, 1 / 3),
                 run_dir, resume=resume, plain_progress=True, budget=budget, clock=clock)


@pytest.fixture
def one_thread():
    """One thread: the stub clock decides the plan, not the machine; a second thread only slows a shared machine's
    tiny steps down (spinning), and the test must stay quick."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_a_slowdown_replans_the_steps_within_the_budget_and_resume_keeps_the_plan(train_voc, tiny_config, tmp_path, capsys,
                                                                                   monkeypatch, one_thread):
    config = _config(train_voc, tiny_config)
    spe, straight = 4, tmp_path / "straight"

    def save_every_epoch(path, state):  # keep each epoch's checkpoint, to resume from one of them below
        save_checkpoint(path, state)
        if path.name == "last.pt":
            save_checkpoint(path.with_name(f"epoch-{state['epoch']}.pt"), state)

    monkeypatch.setattr(trainer, "save_checkpoint", save_every_epoch)
    result = _run(config, straight, StubClock(SETUP))
    records = read_metrics(straight / "metrics.jsonl")
    replans = [r for r in records if r["kind"] == "replan"]
    epochs = [r for r in records if r["kind"] == "epoch"]
    steps = [r for r in records if r["kind"] == "step"]

    # The slowdown shrank the plan to the slow speed, and the run said so.
    slow = config.batch_size / (3 * STEP)
    assert replans and replans[-1]["images_per_s"] == pytest.approx(slow)
    total = replans[-1]["total_steps"]
    assert total < 8 * spe and result.step == total and steps[-1]["step"] == total and len(epochs) == math.ceil(total / spe)
    err = capsys.readouterr().err
    assert "re-planned: 8 -> " in err and "against 4.0 measured at the start" in err and f"ran at {slow:.1f} img/s" in err

    # Training ended within the budget by the stub clock: the command began at 0, training at SETUP, and the last
    # epoch's steps ended `seconds` after the previous epoch's record; only the final validation comes after.
    training_ended = SETUP + epochs[-2]["elapsed_s"] + epochs[-1]["seconds"]
    assert BUDGET * 0.85 < training_ended <= BUDGET * (1 + TOLERANCE_BUDGET)
    assert "val" in epochs[-1] and result.best_epoch is not None and (straight / "best.pt").exists()

    # The learning rate: no jump at a re-plan (the change into the step after it is no larger than the changes of
    # the steps around it), and at its final value after the last step.
    lrs = [r["lr"] for r in steps]  # lrs[i]: the rate step i + 1 used

    def around(s: int) -> float:
        return max(abs(lrs[s - 1] - lrs[s - 2]), abs(lrs[s + 1] - lrs[s]) if s + 1 < len(lrs) else 0.0)

    for r in replans:
        assert abs(lrs[r["step"]] - lrs[r["step"] - 1]) <= 1.1 * around(r["step"]), r
    assert epochs[-1]["lr"] == pytest.approx(config.optim.lr * config.optim.min_lr_ratio)
    # A schedule built again for the new total, instead, would have jumped at the re-plan that shrank most.
    most = min(replans, key=lambda r: r["total_steps"] / r["old_total_steps"])
    rebuilt = lr_factor(config.optim, spe, math.ceil(most["total_steps"] / spe))
    assert abs(config.optim.lr * rebuilt(most["step"]) - lrs[most["step"] - 1]) > 1.1 * around(most["step"])

    # Resumed from the checkpoint of the epoch after the last re-plan (the machine still slow), the run goes on
    # with the same re-planned schedule: the same steps, learning rates and weights as the straight run.
    stop = math.ceil(replans[-1]["step"] / spe)
    assert stop < len(epochs)
    resumed = tmp_path / "resumed"
    shutil.copytree(straight, resumed)
    ckpt = load_checkpoint(resumed / f"epoch-{stop}.pt")
    assert ckpt["schedule"]["warp"] and ckpt["budget"]["seconds"] == BUDGET and ckpt["config"]["epochs"] == len(epochs)
    again = _run(TrainConfig.from_dict(ckpt["config"]), resumed, StubClock(1000.0), ckpt)
    assert again.step == total
    steps_again = [r for r in read_metrics(resumed / "metrics.jsonl") if r["kind"] == "step"]
    assert [(r["step"], r["lr"]) for r in steps_again] == [(r["step"], r["lr"]) for r in steps]
    a = torch.load(straight / "last.pt", weights_only=True)
    b = torch.load(resumed / "last.pt", weights_only=True)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key


def test_the_warp_keeps_the_schedule_continuous_and_ends_it_at_the_new_total():
    cfg = OptimConfig(warmup_epochs=1, min_lr_ratio=0.1)
    planned = lr_factor(cfg, 10, 10)  # 100 steps
    warp = restretch([], 40, 70, 100)  # re-planned at step 40 to 70 steps in all
    f = lr_factor(cfg, 10, 10, warp)
    assert [f(s) for s in range(41)] == [planned(s) for s in range(41)]
    assert f(70) == pytest.approx(cfg.min_lr_ratio) and f(55) == pytest.approx(planned(70))  # halfway: 40 + 60 / 2
    warp = restretch(warp, 50, 90, 100)  # and again, longer: continuous at 50, ends at 90
    g = lr_factor(cfg, 10, 10, warp)
    assert g(50) == pytest.approx(f(50)) and g(90) == pytest.approx(cfg.min_lr_ratio)
    assert schedule_step(45, warp) == pytest.approx(schedule_step(45, restretch([], 40, 70, 100)))
    with pytest.raises(ValueError):
        restretch(warp, 50, 50, 100)


def test_the_planner_fits_steps_validations_and_checkpoints_to_the_time_left():
    clock = StubClock()
    sizes = dict(batch=4, steps_per_epoch=10, val_every=1, val_images=40, bn_images=0)
    planner = BudgetPlanner.start(TimeBudget(100.0, images_per_s=4.0), None, clock, **sizes)
    planner.steps_begin()
    for _ in range(10):  # 1 s steps; the first is not timed (it also starts the loader)
        clock.now += 1.0
        planner.step_done()
    # Before a validation is timed, one costs 40 images forward at a third of the training time per image.
    assert planner.cost(10, 30, 1.0) == pytest.approx(20 + 2 * 40 / 3 / 4)
    planner.validated(10.0)
    # 90 s left; 50 steps in all: 40 more steps, and the epoch ends at steps 10 to 40 with their validations.
    assert planner.cost(10, 50, 1.0) == pytest.approx(40 + 4 * 10)
    replan = planner.replan(10, 30)  # the 30 planned would leave half the time unused
    assert (replan.old_total, replan.new_total) == (30, 50) and "3 -> 5 epochs (30 -> 50 steps)" in replan.line()
    assert planner.replan(10, 50) is None
    # The validation due now fits a plan of 50 steps; with 60 it would overrun (100 s > 90 s + the tolerance).
    assert planner.validation_fits(10, 50) and not planner.validation_fits(10, 60)
    # A resumed run (a new process, another clock) has what was left at the checkpoint, and the measured costs.
    state = planner.state()
    resumed = BudgetPlanner.start(TimeBudget(state["seconds"]), state, StubClock(500.0), **sizes)
    assert resumed.left() == pytest.approx(90.0) and resumed.validations == [10.0] and resumed.replans == 1
    clock.now = 200.0  # past the deadline: the plan shrinks to one more step (the schedule's end), never grows again
    assert planner.replan(10, 50).new_total == 11 and planner.replan(10, 11) is None and planner.replan(11, 11) is None
