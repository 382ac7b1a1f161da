"""The recipe chosen by measurement on the user's own data (``ssdlite train --search``).

The rules of :mod:`ssdlite.engine.recipe` encode what worked on the datasets they were written on; on data
they never saw (look-alike classes, tiny marks) a copied hand recipe beat them. Here the rules only *order*
the candidates; the data decides:

1. The training split is split again, as :func:`ssdlite.data.build.held_out_split` does (SHA-1 of the file
   names): the trials train on 80% of it and are scored on the other 20%. The validation split is never
   used to choose, so it stays an unbiased judge of the final model.
2. Candidates: the augmentation preset (``ssdlite``, ``ssd``, ``fine``, ``mosaic``), the input size (the
   rules' and the others of 320, 384, 448, nearest first: each size's training speed and inference latency are measured on this machine and printed first)
   and the learning rate (0.5x, 1x, 2x the derived one). The rules' choice is tried first, then one setting
   changed at a time (a one-factor design around the prior, enqueued into the study), then Optuna's TPE
   sampler proposes more while the search's time lasts.
3. Every trial trains from the pretrained backbone for the same short schedule; its first validation (a third
   of the way) feeds Optuna's :class:`~optuna.pruners.SuccessiveHalvingPruner` (asynchronous successive
   halving, Li et al. 2020), which stops a trial that is not in the best third at that point. A trial that is
   not started when the search's time is up is not run.
4. The best trial's settings are trained on the whole training split with the schedule that the rest of the
   time allows. The final run starts again from the pretrained backbone rather than from the trial's weights:
   a trial has seen only 80% of the images under a short, fully-annealed schedule.

The time: the ``--time-budget`` when given, else :data:`DEFAULT_MINUTES` (printed before anything runs);
:data:`SEARCH_SHARE` of it goes to the search.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ssdlite.data.build import held_out_split, read_catalog
from ssdlite.data.dataset import DetectionDataset
from ssdlite.engine.budget import validation_seconds
from ssdlite.engine.checkpoint import load_checkpoint
from ssdlite.engine.config import TrainConfig
from ssdlite.engine.datasets import training_dataset
from ssdlite.engine.recipe import Choice, budget_epochs
from ssdlite.engine.trainer import measure_speed, train
from ssdlite.errors import UserError
from ssdlite.models.factory import build_model

#: The whole run's minutes when no ``--time-budget`` is given: what a user leaves a laptop CPU for.
DEFAULT_MINUTES = 30.0
#: Share of the time the trials take; the rest trains the chosen settings.
SEARCH_SHARE = 0.4
AUGMENTS = ("ssdlite", "ssd", "fine", "mosaic")
LR_SCALES = (1.0, 0.5, 2.0)
#: Input sizes tried besides the rules' (320, or 448 for tiny boxes), nearest first: fine detail and small boxes gain
#: from more pixels, at a measured cost.
SIZES = (320, 384, 448)
#: Trials planned for the search's time; each trial's schedule is sized from it.
PLANNED_TRIALS = 7
#: At most this many trials, however fast they run (the study's loop has a bound of its own).
MAX_TRIALS = 2 * PLANNED_TRIALS
#: Validations per trial: the first is the pruning point.
RUNGS = 3
MIN_TRIAL_EPOCHS = RUNGS


@dataclass(frozen=True)
class SizeCost:
    """What an input size costs on this machine (measured)."""

    size: int
    train_images_per_s: float
    inference_ms: float


@dataclass
class Trial:
    number: int
    params: dict[str, Any]
    first: float | None = None
    value: float | None = None
    pruned: bool = False
    seconds: float = 0.0

    def line(self, metric: str) -> str:
        p = self.params
        what = f"augment {p['augment']:<7} size {p['size']} lr {p['lr']:g}"
        if self.value is None and not self.pruned:
            return f"  trial {self.number}: {what}: failed"
        result = f"pruned at {self.first:.3f}" if self.pruned else f"{metric} {self.value:.3f} (first validation {self.first:.3f})"
        return f"  trial {self.number}: {what}: {result}, {self.seconds:.0f} s"


def inference_ms(config: TrainConfig, num_classes: int, repeats: int = 15) -> float:
    """Median milliseconds of one image's forward pass (network and postprocess) at ``config``'s size, here."""
    model = build_model(config.model.resolved().replace(num_classes=num_classes, backbone_weights=None), load_backbone=False).eval()
    size = config.model.resolved().size
    image = torch.rand(3, size, size)
    times = []
    with torch.inference_mode():
        for i in range(repeats + 2):
            started = time.perf_counter()
            model([image])
            if i >= 2:  # the first calls allocate and pick kernels
                times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def candidate_space(config: TrainConfig, given: set[str], small_share: float) -> dict[str, list]:
    """The values searched per setting, the rules' value first; a setting the user gave is fixed."""
    size = config.model.resolved().size
    lr = config.optim.lr
    augments = [config.data.augment] + [a for a in AUGMENTS if a != config.data.augment]
    sizes = [size, *sorted((s for s in SIZES if s != size), key=lambda s: (abs(s - size), s))]
    if small_share < 0.05:  # no small boxes: the farthest size is not worth a trial's time
        sizes = sizes[:2]
    return {
        "augment": [config.data.augment] if "augment" in given else augments,
        "size": [size] if "size" in given else sizes,
        "lr": [lr] if "lr" in given else [round(lr * s, 6) for s in LR_SCALES],
    }


def one_factor_design(space: dict[str, list]) -> list[dict[str, Any]]:
    """The prior (every setting's first value), then one other value of one setting at a time with the rest at the
    prior, the settings taking turns (augment, size, lr, augment, ...): when time allows only a few trials, each
    setting has had one."""
    prior = {name: values[0] for name, values in space.items()}
    alternatives = [[{**prior, name: v} for v in values[1:]] for name, values in space.items()]
    turns = (alt[i] for i in range(max(map(len, alternatives), default=0)) for alt in alternatives if i < len(alt))
    return [prior, *turns]


def _full_trials(planned: int) -> float:
    """Trials' worth of full schedules that ``planned`` trials cost: the first runs through, and successive halving
    at a reduction of 3 stops about two of every three others at a third of the way."""
    return 1 + (planned - 1) * (1 / 3 + 1 / 3 * 2 / 3) if planned > 0 else 0.0


def search_recipe(
    config: TrainConfig,
    given: set[str],
    minutes: float | None,
    device: torch.device,
    small_share: float,
    val_images: int,
    print_fn: Callable[[str], None] = print,
    workdir: str | Path | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[TrainConfig, list[Choice], float]:
    """``config`` with the augmentation, input size and learning rate chosen by trials, and ``epochs`` fitted
    to the time left; the choices with the measured evidence; the chosen size's measured training speed (img/s,
    for the final run's :class:`~ssdlite.engine.budget.TimeBudget`).

    Args:
        config: the resolved configuration the rules derived (the search starts from its values).
        given: the settings the user gave (not searched).
        minutes: the whole run's time (``--time-budget``), or ``None`` for :data:`DEFAULT_MINUTES`.
        small_share: the share of training boxes under 32 px at the derived size (larger sizes are tried for them).
        val_images: images of the validation split (the final run's validations are budgeted).
        workdir: where the trials' run directories go (default: a temporary directory, removed at the end).
        clock: seconds, for the time the search keeps to (tests pass their own).
    """
    import optuna  # the field's search library; imported here so that ``ssdlite train`` without --search needs none

    if "epochs" in given:
        raise UserError("--search fits the number of epochs to the time: leave out --epochs (or the epochs: line of --config)")
    started = clock()
    total = DEFAULT_MINUTES if minutes is None else minutes
    print_fn(f"search: {total:g} minutes in all{'' if minutes else ' (the default; --time-budget MINUTES sets it)'}, "
             f"{SEARCH_SHARE:.0%} for trials on 80% of the training split scored on the other 20%, the rest to train the choice")
    d = config.data
    whole = read_catalog(d.data, d.format, d.train_split, hold_out=True)
    search_train = held_out_split(whole, "train", "the training split")
    search_val = DetectionDataset(held_out_split(whole, "val", "the training split"), keep_difficult=True)
    num_classes = len(whole.classes) + 1
    space = candidate_space(config, given, small_share)

    costs = {}
    for size in space["size"]:
        sized = config.replace(size=size, augment=space["augment"][0])
        costs[size] = SizeCost(size, measure_speed(sized, training_dataset(sized, search_train), device),
                               inference_ms(sized, num_classes))
    base = costs[space["size"][0]]
    for cost in costs.values():
        print_fn(f"  input {cost.size}: training {cost.train_images_per_s:.1f} img/s "
                 f"({base.train_images_per_s / cost.train_images_per_s:.2f}x the time of {base.size}), "
                 f"inference {cost.inference_ms:.1f} ms per image here ({cost.inference_ms / base.inference_ms:.2f}x)")

    # One schedule for every trial, sized so that PLANNED_TRIALS of them fit at the prior's speed, counting
    # the pruned ones' third and the validations (a forward pass is about a third of a training step). When even
    # MIN_TRIAL_EPOCHS do not fit that many, fewer trials run (the design's first ones), down to two.
    search_seconds = total * 60 * SEARCH_SHARE - (clock() - started)
    n = len(search_train.records)
    per_epoch = n / base.train_images_per_s
    per_validation = validation_seconds(len(search_val), min(config.precise_bn_images, n), base.train_images_per_s)
    planned = PLANNED_TRIALS
    trial_epochs = int((search_seconds / _full_trials(planned) - RUNGS * per_validation) // per_epoch)
    if trial_epochs < MIN_TRIAL_EPOCHS:
        trial_epochs = MIN_TRIAL_EPOCHS
        fits = search_seconds / (MIN_TRIAL_EPOCHS * per_epoch + RUNGS * per_validation)  # full trials that fit
        planned = int(1 + (fits - 1) * 9 / 5) if fits >= 1 else 0  # the most for which _full_trials(planned) <= fits
        if planned < 2:
            trial_cost = MIN_TRIAL_EPOCHS * per_epoch + RUNGS * per_validation
            raise UserError(
                f"--search: {total:g} minutes leave {search_seconds / 60:.1f} for trials; two trials of {MIN_TRIAL_EPOCHS} "
                f"epochs of {n} images at {base.train_images_per_s:.1f} img/s need {_full_trials(2) * trial_cost / 60:.1f} "
                f"(about {(_full_trials(2) * trial_cost + (clock() - started)) / 60 / SEARCH_SHARE:.0f} minutes in all); "
                "give a longer --time-budget"
            )
    planned = min(planned, MAX_TRIALS)
    rung = max(1, trial_epochs // RUNGS)
    print_fn(f"  {planned} trials of {trial_epochs} epochs on {n} images, first validation after {rung}: "
             f"up to {search_seconds / 60:.1f} minutes")

    metric = config.best_metric
    trials: list[Trial] = []
    deadline = started + total * 60 * SEARCH_SHARE
    scratch = tempfile.TemporaryDirectory(prefix="ssdlite-search-") if workdir is None else None
    root = Path(workdir) if workdir is not None else Path(scratch.name)  # the trials' checkpoints, removed at the end

    def objective(trial: optuna.Trial) -> float:
        params = {name: trial.suggest_categorical(name, values) for name, values in space.items()}
        record = Trial(trial.number, params)
        trials.append(record)
        t0 = clock()
        trial_config = config.replace(**params, epochs=trial_epochs, val_every=rung, stop_after=rung)
        train_set = training_dataset(trial_config, search_train)
        run_dir = root / f"trial{trial.number}"
        result = train(trial_config, train_set, search_val, run_dir, plain_progress=True)
        record.first = float(result.last_val[metric])
        trial.report(record.first, 1)
        if trial.should_prune():
            record.pruned, record.seconds = True, clock() - t0
            print_fn(record.line(metric))
            raise optuna.TrialPruned()
        result = train(trial_config.replace(stop_after=0), train_set, search_val, run_dir, resume=load_checkpoint(run_dir))
        record.value, record.seconds = float(result.last_val[metric]), clock() - t0
        print_fn(record.line(metric))
        return record.value

    def stop_when_out_of_time(study: optuna.Study, _trial) -> None:
        # A trial not started in time is not started: one takes about the time the first full one took.
        full = [t.seconds for t in trials if t.value is not None]
        if clock() + (full[0] if full else 0) > deadline:
            study.stop()

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=config.seed),
        pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3),
    )
    for params in one_factor_design(space):
        study.enqueue_trial(params, skip_if_exists=True)
    try:
        study.optimize(objective, n_trials=planned, callbacks=[stop_when_out_of_time], catch=())
    finally:
        if scratch is not None:
            scratch.cleanup()
    finished = [t for t in trials if t.value is not None]
    if not finished:
        raise UserError("--search: no trial finished in the search's time; give a longer --time-budget")
    best = max(finished, key=lambda t: t.value)
    prior = finished[0]  # the first enqueued trial is the rules' choice and is never pruned

    chosen = config.replace(**best.params)
    remaining = total - (clock() - started) / 60
    speed = costs[best.params["size"]].train_images_per_s
    full_train = len(whole.records)
    epochs = budget_epochs(remaining, speed, chosen, full_train, val_images)
    if epochs < 1:
        raise UserError(f"--search: the trials left {remaining:.1f} minutes, not one epoch of {full_train} images; "
                        "give a longer --time-budget")
    validations = 5
    chosen = chosen.replace(epochs=epochs, val_every=max(1, epochs // validations))
    evidence = f"{metric} {best.value:.3f} on the search's held-out images against {prior.value:.3f} for the rules' choice"
    choices = [Choice(name, best.params[name], evidence if best is not prior else f"the rules' choice measured best ({best.value:.3f})")
               for name in space if name not in given]
    choices.append(Choice("epochs", epochs, f"the {remaining:.1f} minutes the search left at the measured {speed:.1f} img/s"))
    choices.append(Choice("val_every", chosen.val_every, f"about {validations} validations in {epochs} epochs"))
    print_fn(f"search: {len(trials)} trials ({sum(t.pruned for t in trials)} pruned) in "
             f"{(clock() - started) / 60:.1f} minutes; best: trial {best.number}")
    return chosen.resolved(), choices, speed
