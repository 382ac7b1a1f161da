"""The training loop: ``train(config, train_dataset, val_dataset, run_dir)``.

One epoch: seed the epoch's randomness from ``(seed, epoch, rank)``, build its loader, and for each
batch compute the MultiBox loss (SSD paper, section 2.2: localization + confidence), check it is
finite, back-propagate, clip, check the gradient is finite, step the optimizer, the per-step
learning-rate schedule and the EMA. After the epoch: log, validate the EMA weights every
``val_every`` epochs, write ``last.pt`` (and ``best.pt`` on a new best) atomically.

With a time budget (``ssdlite train --time-budget``), a :class:`ssdlite.engine.budget.BudgetPlanner` checks after
every step that the rest of the plan ends by the deadline at the recent speed, and re-plans the total number of
steps when it does not (the last epoch may then be cut short); the learning-rate schedule is re-stretched to end
at the new last step, and the new plan is in every checkpoint, so ``--resume`` goes on with it. Time is read from
the trainer's ``clock`` (``time.perf_counter``; a test gives its own).

Under ``torchrun`` the model is wrapped in ``DistributedDataParallel``. DDP averages gradients over
ranks, but the MultiBox loss is normalized by the number of positive default boxes, which differs
between ranks; each rank's loss is therefore rescaled by ``local positives * world / global
positives``, which makes the averaged gradient exactly that of the whole global batch in one process.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.data import Dataset

from ssdlite.data import data_summary
from ssdlite.data.loader import build_loader, derive_seed, steps_per_epoch
from ssdlite.engine.budget import BudgetPlanner, Replan, TimeBudget
from ssdlite.engine.checkpoint import NonFiniteWeights, check_same_architecture, save_checkpoint
from ssdlite.engine.config import TrainConfig
from ssdlite.engine.curves import plot_training_curves
from ssdlite.engine.distributed import DistInfo, all_reduce_sum, barrier, cleanup, init_distributed
from ssdlite.engine.ema import ModelEMA
from ssdlite.engine.guard import NonFiniteGuard
from ssdlite.engine.optim import build_optimizer, build_scheduler, restretch, rewarp, warped_total
from ssdlite.engine.progress import EpochProgress
from ssdlite.engine.run_log import METRICS_FILE, RunLog, read_metrics
from ssdlite.engine.seeding import rng_state, seed_everything, set_rng_state
from ssdlite.errors import UserError
from ssdlite.models.batchnorm import freeze_batchnorm, recompute_bn_stats
from ssdlite.models.init_from import init_from
from ssdlite.models.factory import build_model
from ssdlite.models.io import load_state_dict_checked, save_safetensors
from ssdlite.models.memory_format import place_model

#: Validation metrics copied into ``metrics.jsonl`` (the full dict also has per-class results).
LOGGED_METRICS = ("voc07_map50", "voc_map50", "coco_map", "coco_map50", "coco_map75")


#: Finer measures of the same validation that break a tie in ``best_metric``, in order. VOC07's 11-point AP moves in
#: steps on a small validation set (40 raccoon images: exactly 10/11 whenever one box is never found), so equal
#: scores are common, and the first of them was kept even when a later model was better on every finer measure
#: (raccoon, 90 epochs: epoch 36 kept over epoch 90 at all-point AP 0.935 against 0.965, COCO mAP 0.446 against
#: 0.507; benchmarks/RESULTS.md).
TIE_BREAKERS = ("voc_map50", "coco_map")


def best_key(val: dict[str, Any], metric: str) -> tuple[float, ...]:
    """What ranks a validation for ``best.pt``: ``metric``, then :data:`TIE_BREAKERS` (a missing one counts lowest)."""
    def value(name: str) -> float:
        v = float(val.get(name, float("nan")))
        return v if math.isfinite(v) else -math.inf

    return (float(val.get(metric, float("nan"))), *(value(m) for m in TIE_BREAKERS if m != metric))


@dataclass
class TrainResult:
    """What a call to :func:`train` did."""

    run_dir: Path
    epochs_done: int
    step: int
    best_metric: float | None
    best_epoch: int | None
    last_val: dict[str, Any] | None = None
    skipped_steps: int = 0
    seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)


class CheckResult(Protocol):
    """What a validation check returns (``ssdlite.doctor``'s checks have this shape)."""

    name: str
    failed: bool
    summary: str
    suggestion: str


#: A check run on the evaluated model and a few validation images at every validation; a failed
#: result is printed as a warning and written to ``metrics.jsonl``, and training goes on.
ValidationCheck = Callable[[nn.Module, list[torch.Tensor]], CheckResult]


def build_training_model(config: TrainConfig, num_classes: int, load_backbone: bool = True) -> nn.Module:
    """The model ``config`` describes for a dataset of ``num_classes`` (with the background); backbone
    weights only for a fresh run (a resume loads all weights)."""
    given = config.model.num_classes
    if given is not None and given != num_classes:
        raise UserError(f"--num-classes {given} does not match the dataset: {num_classes - 1} classes + the background = {num_classes}")
    try:
        return build_model(config.model.replace(num_classes=num_classes), load_backbone=load_backbone)
    except ValueError as err:
        raise UserError(f"model: {err}") from err


def _autocast(config: TrainConfig, device: torch.device):
    if device.type != "cuda" or config.amp == "off":
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=torch.bfloat16 if config.amp == "bf16" else torch.float16)


def _to_device(images, targets, device: torch.device):
    non_blocking = device.type == "cuda"
    if isinstance(images, torch.Tensor):
        images = images.to(device, non_blocking=non_blocking)
    else:
        images = [im.to(device, non_blocking=non_blocking) for im in images]
    # The loss reads only boxes and labels; the loader's targets also carry image_id, orig_size, ...
    targets = [{k: t[k].to(device, non_blocking=non_blocking) for k in ("boxes", "labels")} for t in targets]
    return images, targets


def _image_sizes(images) -> list[tuple[int, int]]:
    return [(int(im.shape[-2]), int(im.shape[-1])) for im in images]


def train(
    config: TrainConfig,
    train_dataset: Dataset,
    val_dataset: Dataset | None,
    run_dir: str | Path,
    *,
    classes: list[str] | None = None,
    resume: dict[str, Any] | None = None,
    info: DistInfo | None = None,
    plain_progress: bool | None = None,
    validation_checks: Sequence[ValidationCheck] = (),
    config_note: str | None = None,
    budget: TimeBudget | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> TrainResult:
    """Train a model as ``config`` says and write the run directory.

    Args:
        config: the resolved configuration.
        train_dataset: items ``(image, target)`` already augmented to ``config.model.size`` (float [0, 1]).
        val_dataset: the validation split **without transforms** (``ssdlite.engine.evaluate`` reads
            ground truth in original pixels), or ``None``.
        run_dir: where ``config.yaml``, ``metrics.jsonl``, TensorBoard events, ``last.pt``, ``best.pt``,
            ``model.safetensors`` and ``training_curves.png`` go.
        classes: foreground class names (default ``train_dataset.classes``).
        resume: a checkpoint from :func:`ssdlite.engine.checkpoint.load_checkpoint` to continue from.
        info: the distributed context (default: from the environment, see :func:`init_distributed`).
        plain_progress: force plain progress lines (default: a bar when stderr is a terminal).
        validation_checks: run on the evaluated model at every validation (see :data:`ValidationCheck`).
        config_note: written as comments at the top of ``config.yaml`` (``ssdlite train``: the derived recipe).
        budget: end training (validations and checkpoints included) within this time, re-planning the steps as the
            speed changes (see the module docstring); a resumed run takes its budget from the checkpoint instead.
        clock: seconds, for the budget, the logged times and the progress (default ``time.perf_counter``).

    Raises:
        TrainingDiverged: after ``max_bad_steps`` consecutive non-finite steps.
        UserError: a dataset smaller than one global batch, or a checkpoint of another architecture.
        ValueError: a budget for a resumed run (it keeps its own) or for more than one process.
    """
    own_info = info is None
    info = info or init_distributed(config.device)
    try:
        return _Trainer(
            config.resolved(), train_dataset, val_dataset, Path(run_dir), classes, resume, info, plain_progress, validation_checks,
            config_note, budget=budget, clock=clock,
        ).run()
    finally:
        if own_info:
            cleanup(info)


def measure_speed(config: TrainConfig, train_dataset: Dataset, device: torch.device, steps: int = 4, seconds: float = 3.0,
                  warmup: float = 2.0) -> float:
    """Training images per second on this machine, on a throwaway model, in its steady state: untimed steps
    for ``warmup`` seconds (at least one: the first steps allocate, pick kernels and fill the loader; a demo
    run's log averaged 41 img/s over its first 5 steps and 68 over its first 40), then at least ``steps`` timed
    steps and at least ``seconds`` (small, fast steps are timed over more of them, so one slow step among a
    handful does not decide the schedule).

    The step is the training loop's own (:meth:`_Trainer._step` on a trainer built from ``config``): loading
    and augmentation, the memory format, mixed precision and BatchNorm mode of ``config``, forward, loss,
    backward, gradient clipping, the optimizer and the EMA update (a probe without the clipping and the EMA
    measured 70 img/s on the demo where its training then ran at 45-65). No backbone weights are read and
    nothing is written.
    """
    probe = _Trainer(config.resolved(), train_dataset, None, None, None, None, DistInfo(device=device), True, (),
                     probe=True)
    return probe.images_per_second(steps, seconds, warmup)


class _Trainer:
    def __init__(self, config, train_dataset, val_dataset, run_dir, classes, resume, info, plain_progress, validation_checks,
                 config_note=None, probe=False, budget=None, clock=time.perf_counter) -> None:
        self.config = config
        self.clock = clock
        self.config_note = config_note
        self.validation_checks = list(validation_checks)
        self.info = info
        self.device = info.device
        self.run_dir = run_dir
        self.train_dataset = train_dataset
        self.val_dataset = val_dataset
        self.classes = list(classes if classes is not None else train_dataset.classes)
        self.plain_progress = plain_progress
        if config.batch_size % info.world_size:
            raise UserError(f"--batch-size {config.batch_size} must be divisible by the {info.world_size} processes")
        self.local_batch = config.batch_size // info.world_size
        self.steps_per_epoch = steps_per_epoch(len(train_dataset), config.batch_size)
        if self.steps_per_epoch == 0:
            raise UserError(
                f"the training split has {len(train_dataset)} images, fewer than one batch of {config.batch_size}; lower --batch-size"
            )
        if config.sync_bn and info.distributed and self.device.type != "cuda":
            raise UserError("--sync-bn needs CUDA: PyTorch's SyncBatchNorm does not run on the CPU (use --freeze-bn all instead)")

        seed_everything(config.seed)  # the same initialization on every rank and for every run of a seed
        # A speed probe (measure_speed) times steps of a throwaway model: no weights to read.
        model = build_training_model(config, len(self.classes) + 1, load_backbone=resume is None and not probe)
        if resume is not None:
            check_same_architecture(resume, model.config)
            load_state_dict_checked(model, resume["model"], resume["path"])
        elif config.init_from and not probe:
            for line in init_from(model, config.init_from):
                if info.is_main:
                    print(line, file=sys.stderr, flush=True)
        if config.sync_bn and info.distributed:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = place_model(model, self.device, config.channels_last)
        freeze_batchnorm(self.model, config.freeze_bn)
        self.ema = ModelEMA(self.model, config.ema_decay) if config.ema else None
        self.optimizer = build_optimizer(self.model, config.optim)
        # The schedule as planned (its epochs) and the warp of its re-plans (engine/optim.py): a resumed run's own.
        self.schedule_epochs, self.warp, budget = self._planned_schedule(resume, budget)
        self.scheduler = build_scheduler(self.optimizer, config.optim, self.steps_per_epoch, self.schedule_epochs, self.warp)
        self.planner = None
        if budget is not None:
            if info.distributed:
                raise ValueError("a time budget measures one process's speed: give the epochs under torchrun")
            self.planner = BudgetPlanner.start(
                budget, resume.get("budget") if resume is not None else None, clock, batch=config.batch_size,
                steps_per_epoch=self.steps_per_epoch, val_every=config.val_every if val_dataset is not None else 0,
                val_images=len(val_dataset) if val_dataset is not None else 0,
                bn_images=min(config.precise_bn_images, len(train_dataset)) if config.freeze_bn != "all" else 0,
            )
        fp16 = self.device.type == "cuda" and config.amp == "fp16"
        self.scaler = torch.amp.GradScaler("cuda", enabled=fp16)
        self.guard = NonFiniteGuard(config.max_bad_steps)
        self._train_loader = None  # built at the first epoch, kept to the end (persistent workers)
        self._bn_fresh_at = -1  # the step at which the evaluated model's BN statistics were recomputed
        self.start_epoch, self.step = 0, 0
        self.best_metric, self.best_epoch = None, None
        self.best_key: tuple[float, ...] | None = None  # best_metric, then TIE_BREAKERS: what best.pt beat
        self.elapsed_before = 0.0  # wall seconds of the earlier runs of a resumed run
        if resume is not None:
            self._restore(resume)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick the fastest kernels
        self.ddp = None
        if info.distributed:
            device_ids = [self.device] if self.device.type == "cuda" else None
            self.ddp = nn.parallel.DistributedDataParallel(self.model, device_ids=device_ids)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.log = RunLog(run_dir or Path(), enabled=info.is_main and not probe,
                          resume_step=self.step if resume is not None else None)

    def _planned_schedule(self, resume, budget):
        """``(planned epochs, warp, budget)``: a fresh run's plan is its configuration; a resumed run goes on with the
        checkpoint's plan and budget, unless ``--epochs`` changed the length: then the schedule is planned for the new
        epochs from the resumed step on (as before budgets), and the budget is over."""
        if resume is None:
            return self.config.epochs, [], budget
        if budget is not None:
            raise ValueError("a resumed run keeps the time budget of its checkpoint")
        saved_epochs = int(resume["config"]["epochs"])
        schedule = resume.get("schedule") or {"epochs": saved_epochs, "warp": []}
        if self.config.epochs != saved_epochs:
            return self.config.epochs, [], None
        state = resume.get("budget")
        budget = TimeBudget(float(state["seconds"]), images_per_s=state.get("images_per_s")) if state else None
        return int(schedule["epochs"]), [list(map(float, p)) for p in schedule["warp"]], budget

    @property
    def total_steps(self) -> int:
        return warped_total(self.steps_per_epoch, self.schedule_epochs, self.warp)

    def _restore(self, ckpt: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        if self.ema is not None and ckpt.get("ema") is not None:
            self.ema.module.load_state_dict(ckpt["ema"])
            self.ema.updates = int(ckpt.get("ema_updates", 0))
        self.start_epoch, self.step = int(ckpt["epoch"]), int(ckpt["step"])
        self.best_metric, self.best_epoch = ckpt.get("best_metric"), ckpt.get("best_epoch")
        # Checkpoints before the tie-break hold the score alone: a later equal score then counts as better.
        key = ckpt.get("best_key", None if self.best_metric is None else [self.best_metric])
        self.best_key = None if key is None else tuple(float(k) for k in key)
        self.elapsed_before = float(ckpt.get("elapsed_s", 0.0))
        set_rng_state(ckpt["rng"])

    # -- one step ---------------------------------------------------------------------------------

    def _losses(self, images, targets) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss to back-propagate, [loss, bbox_regression, classification] summed over ranks / world)``."""
        with _autocast(self.config, self.device):
            losses = (self.ddp or self.model)(images, targets)
        bbox, cls = losses["bbox_regression"].float(), losses["classification"].float()
        scale = torch.ones((), device=self.device)
        if self.info.distributed:
            with torch.no_grad():  # global normalization by positives, see the module docstring
                cls_targets, _ = self.model.encode_targets(targets, _image_sizes(images))
                positives = (cls_targets > 0).sum().float()
                total = all_reduce_sum(positives.clone(), self.info)
                scale = positives.clamp(min=1) * self.info.world_size / total.clamp(min=1)
        loss = (bbox + cls) * scale
        stats = torch.stack([loss, bbox * scale, cls * scale]).detach()
        all_reduce_sum(stats, self.info)
        return loss, stats / self.info.world_size

    def _step(self, images, targets) -> dict[str, float] | None:
        """One optimizer step; ``None`` when the guard skipped it."""
        images, targets = _to_device(images, targets, self.device)
        self.optimizer.zero_grad(set_to_none=True)
        loss, stats = self._losses(images, targets)
        # stats are summed over ranks, so every rank takes the same branch (no collective is left waiting).
        if not torch.isfinite(stats).all():
            self._skip("loss")
            return None
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        max_norm = self.config.optim.clip_grad if self.config.optim.clip_grad > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, max_norm)  # of the all-reduced gradients
        if not torch.isfinite(grad_norm):
            self.scaler.update()  # fp16: lowers the loss scale; otherwise a no-op
            self.optimizer.zero_grad(set_to_none=True)
            self._skip("gradient")
            return None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(self.model)
        self.guard.good()
        loss_value, bbox_value, cls_value = stats.tolist()
        return {"loss": loss_value, "bbox_regression": bbox_value, "classification": cls_value, "grad_norm": float(grad_norm)}

    def _skip(self, reason: str) -> None:
        self.log.write({"kind": "skipped", "step": self.step, "reason": f"non-finite {reason}"})
        last = self.run_dir / "last.pt" if self.run_dir is not None else None
        self.guard.bad(self.step, reason, str(last) if last is not None and last.exists() else None)

    # -- epochs -----------------------------------------------------------------------------------

    def run(self) -> TrainResult:
        info = self.info
        started = self.clock()
        if info.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.config.save_yaml(self.run_dir / "config.yaml", self.config_note)
            self._report_data()
        last_val, epochs_run, epoch = None, 0, self.start_epoch
        while epoch < self.config.epochs:  # a re-plan changes the epochs (self.config is replaced)
            means = self._train_epoch(epoch)
            ended = self.clock()
            record = {"kind": "epoch", "epoch": epoch + 1, "step": self.step, **means}
            validation_s = 0.0
            if self._validation_due(epoch) and self._validation_fits(epoch):
                last_val = self._validate()
                validation_s = self.clock() - ended
                if last_val is not None:
                    record["val"] = {k: last_val[k] for k in LOGGED_METRICS if k in last_val}
                if self.planner is not None and self.step < self.total_steps:  # the final one is after the deadline
                    self.planner.validated(validation_s)
            # Wall time since the run began (a resumed run adds its earlier runs'), so the log says how long a
            # validated mAP took to reach, validations included.
            record["elapsed_s"] = self.elapsed_before + self.clock() - started
            self._end_epoch(epoch, record, last_val if "val" in record else None)
            if self.planner is not None:
                self.planner.epoch_ended(self.clock() - ended - validation_s)
            epochs_run += 1
            epoch += 1
            if self.config.stop_after and epochs_run >= self.config.stop_after and epoch < self.config.epochs:
                break
        finished = self.step >= self.total_steps
        if info.is_main:
            if finished:
                self._save_final_model()
            plot_training_curves(self.run_dir / METRICS_FILE, self.run_dir / "training_curves.png")
        barrier(info)
        self.log.close()
        # The kept workers end here, in this process: left to the garbage collector, the loader could be collected
        # in a process forked later (the next train() call's workers: `ssdlite train --search` trains several times),
        # whose __del__ then fails with "can only test a child process" and prints a traceback.
        self._train_loader = None
        history = []
        if info.is_main:
            history = [r for r in read_metrics(self.run_dir / METRICS_FILE) if r.get("kind") == "epoch"]
        return TrainResult(
            self.run_dir,
            self.start_epoch + epochs_run,
            self.step,
            self.best_metric,
            self.best_epoch,
            last_val,
            self.guard.total,
            self.clock() - started,
            history,
        )

    def _report_data(self) -> None:
        """What the readers could not use, printed once as ``ssdlite data check`` prints it, and the counts
        in ``metrics.jsonl``: a box dropped from an annotation trains as background, so it must not go unsaid."""
        for split, dataset in (("train", self.train_dataset), ("val", self.val_dataset)):
            try:
                text, counts = data_summary(dataset)
            except TypeError:  # a dataset without a reader's report (e.g. the in-memory synthetic shapes)
                continue
            severity = counts["by_severity"]
            if severity.get("warning", 0) + severity.get("error", 0) + severity.get("fatal", 0):
                print(f"{split} data: {text}", file=sys.stderr, flush=True)
            else:  # notes only (e.g. background-only images): nothing was lost, one line says so
                notes = ", ".join(f"{n} {kind}" for kind, n in counts["by_kind"].items())
                print(f"{split} data: {counts['samples']} samples, all usable, nothing dropped"
                      + (f" (notes: {notes})" if notes else ""), file=sys.stderr, flush=True)
            self.log.write({"kind": "data", "split": split, "step": self.step, **counts})
            held = [p for p in getattr(getattr(dataset, "report", None), "problems", ()) if p.kind == "split_held_out"]
            if split == "val" and held:  # the one note a user must read: which images the numbers are on
                print(f"val data: {held[0].detail}", file=sys.stderr, flush=True)

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        config, info = self.config, self.info
        # Anything in the main process that draws outside the loader starts the epoch from (seed, epoch, rank).
        seed_everything(derive_seed(config.seed, epoch, info.rank))
        if self._train_loader is None:
            # One loader for the whole run: its workers are forked once, not every epoch (data/loader.py says
            # why that matters on a CPU); each sample's augmentation is seeded by (seed, epoch, index).
            self._train_loader = self._build_train_loader(epoch, persistent=True)
        loader = self._train_loader
        loader.set_epoch(epoch)
        self._train_mode()
        progress = EpochProgress(epoch + 1, config.epochs, self._steps_in(epoch), enabled=info.is_main, plain=self.plain_progress,
                                 clock=self.clock)
        sums, good, steps = {"loss": 0.0, "bbox_regression": 0.0, "classification": 0.0}, 0, 0
        epoch_start = self.clock()
        if self.planner is not None:
            self.planner.steps_begin()
        try:
            for images, targets in loader:
                values = self._step(images, targets)
                lr = self.optimizer.param_groups[0]["lr"]
                self.scheduler.step()
                self.step += 1
                steps += 1
                if values is not None:
                    good += 1
                    for k in sums:
                        sums[k] += values[k]
                    progress.update({k: values[k] for k in sums}, lr, config.batch_size)
                    if self.step % config.log_every == 0:
                        self.log.write(
                            {"kind": "step", "epoch": epoch + 1, "step": self.step, **values, "lr": lr,
                             "images_per_s": progress.images_per_second()}
                        )
                if self.planner is not None:
                    self.planner.step_done()
                    replan = self.planner.replan(self.step, self.total_steps)
                    if replan is not None:
                        self._replan(replan, epoch, progress)
                if self.step >= self.total_steps:  # a re-plan may end the run inside an epoch
                    break
        finally:
            progress.close()
        seconds = self.clock() - epoch_start
        means = {k: v / max(good, 1) for k, v in sums.items()}
        means.update({"lr": self.optimizer.param_groups[0]["lr"], "seconds": seconds,
                      "images_per_s": good * config.batch_size / max(seconds, 1e-9), "skipped_steps": steps - good})
        return means

    def _steps_in(self, epoch: int) -> int:
        """Steps of ``epoch`` in the current plan: all of the loader's, or the rest of the plan's in its last epoch."""
        return min(self.steps_per_epoch, self.total_steps - epoch * self.steps_per_epoch)

    def _replan(self, replan: Replan, epoch: int, progress: EpochProgress) -> None:
        """Adopt a new total: the schedule re-stretched to end there, the epochs it makes, said and logged."""
        self.warp = restretch(self.warp, self.step, replan.new_total, self.steps_per_epoch * self.schedule_epochs)
        rewarp(self.scheduler, self.config.optim, self.steps_per_epoch, self.schedule_epochs, self.warp)
        self.config = self.config.replace(epochs=-(-replan.new_total // self.steps_per_epoch))
        progress.replan(self.config.epochs, self._steps_in(epoch))
        if self.info.is_main:
            progress.note(replan.line())
        self.log.write(replan.record())

    def _validation_fits(self, epoch: int) -> bool:
        """A due validation runs, except a periodic one that would make the run overrun its budget (said and logged)."""
        if self.planner is None or self.step >= self.total_steps or self.planner.validation_fits(self.step, self.total_steps):
            return True
        left = self.planner.left()
        if self.info.is_main:
            print(f"skipped the validation of epoch {epoch + 1}: the {self.total_steps - self.step} steps left need the "
                  f"{left:.0f} s left of the budget", file=sys.stderr, flush=True)
        self.log.write({"kind": "validation_skipped", "epoch": epoch + 1, "step": self.step, "left_s": left})
        return False

    def _build_train_loader(self, epoch: int, persistent: bool):
        return build_loader(
            self.train_dataset,
            self.local_batch,
            epoch=epoch,
            seed=self.config.seed,
            shuffle=True,
            drop_last=True,
            rank=self.info.rank,
            world_size=self.info.world_size,
            num_workers=self.config.data.workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=persistent,
        )

    def _train_mode(self) -> None:
        (self.ddp or self.model).train()
        freeze_batchnorm(self.model, self.config.freeze_bn)

    def images_per_second(self, steps: int, seconds: float, warmup: float) -> float:
        """Time :meth:`_step` over epoch 0's batches as :func:`measure_speed` describes (the scheduler is not
        stepped: a probe's steps run at the warm-up's rate, which costs the same). A split of a few batches is gone
        through again (its workers kept, as training keeps them) until the warm-up and the timed steps are done: on
        a fast machine 32 images in batches of 8 are over before 2 s of warm-up."""
        loader = self._build_train_loader(0, persistent=True)  # at least one batch: __init__ refuses a smaller split
        self._train_mode()
        first, started, timed, done = None, None, 0, 0  # first: the end of the first step
        while True:
            for images, targets in loader:
                if started is None and first is not None and time.perf_counter() - first >= warmup:
                    started, done = time.perf_counter(), 0
                self._step(images, targets)  # returns Python floats: the step has finished on any device
                done += 1
                first = first or time.perf_counter()
                if started is not None:
                    timed += len(images)
                    if done >= steps and time.perf_counter() - started >= seconds:
                        return timed / (time.perf_counter() - started)

    def _validation_due(self, epoch: int) -> bool:
        every = self.config.val_every
        return self.val_dataset is not None and every > 0 and ((epoch + 1) % every == 0 or epoch + 1 == self.config.epochs)

    def _validate(self) -> dict[str, Any] | None:
        """VOC and COCO metrics of the EMA weights (the raw weights without EMA), on rank 0."""
        if not self.info.is_main:
            return None
        from ssdlite.engine.evaluate import evaluate

        model = self._model_to_evaluate()
        metrics = evaluate(model, self.val_dataset, batch_size=16, device=self.device, progress=False)
        self._run_checks(model)
        return metrics

    def _run_checks(self, model: nn.Module) -> None:
        """The caller's validation checks (e.g. ``ssdlite train`` passes the doctor's input-dependence
        check: a collapsed model's loss still falls a little while it predicts the dataset's average
        box, docs/training.md); a failure is a warning, and training goes on."""
        if not self.validation_checks:
            return
        images = [self.val_dataset[i][0] for i in range(min(4, len(self.val_dataset)))]
        for check in self.validation_checks:
            result = check(model, images)
            if result.failed:
                suggestion = result.suggestion
                lagging = self.config.precise_bn_images == 0 and self.config.freeze_bn != "all"
                if result.name == "input dependence" and lagging:
                    # Flattened maps of a model with training BatchNorm and no precise BN: its running statistics lag
                    # the weights (benchmarks/RESULTS.md, session 21: raccoon at --size 224, 4 epochs, the 1x1 extra
                    # maps' spread 2e-6 with them, 0.9 recomputed).
                    suggestion = ("with --precise-bn-images 0 the model is validated with BatchNorm's running statistics, "
                                  "averaged over past training steps, which can lag the weights early in a run: leave "
                                  f"--precise-bn-images at its default to recompute them for these weights; if it stays: {suggestion}")
                print(f"warning: {result.summary}; {suggestion}", file=sys.stderr, flush=True)
                self.log.write({"kind": "warning", "step": self.step, "check": result.name, "summary": result.summary})

    def _model_to_evaluate(self) -> nn.Module:
        """The EMA (or raw) model with BatchNorm statistics recomputed for its weights (see ``ssdlite.models.batchnorm``)."""
        model = self.ema.module if self.ema is not None else self.model
        images = self.config.precise_bn_images
        freeze = self.config.freeze_bn
        if images > 0 and freeze != "all" and self._bn_fresh_at != self.step:
            # Its own seed, so it draws other augmentations than the epoch; deterministic, so resume stays exact.
            loader = build_loader(
                self.train_dataset, self.local_batch, epoch=self.step, seed=derive_seed(self.config.seed, 1),
                shuffle=True, drop_last=True, num_workers=self.config.data.workers,
            )
            skip = model.core.backbone if freeze == "backbone" else None  # frozen statistics stay as they are
            recompute_bn_stats(model, loader, self.device, max_batches=-(-images // self.local_batch), skip=skip)
            self._bn_fresh_at = self.step
        return model

    def _checkpoint_state(self, epoch: int, elapsed: float) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "model_config": self.model.config.to_dict(),
            "classes": self.classes,
            "ema": self.ema.module.state_dict() if self.ema is not None else None,
            "ema_updates": self.ema.updates if self.ema is not None else 0,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "epoch": epoch + 1,
            "step": self.step,
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "best_key": None if self.best_key is None else list(self.best_key),
            "elapsed_s": elapsed,
            "config": self.config.to_dict(),
            "schedule": {"epochs": self.schedule_epochs, "warp": self.warp},
            "budget": self.planner.state() if self.planner is not None else None,
            "rng": rng_state(),
        }

    def _end_epoch(self, epoch: int, record: dict[str, Any], val: dict[str, Any] | None) -> None:
        if self.info.is_main:
            improved = False
            if val is not None:
                key = best_key(val, self.config.best_metric)
                improved = math.isfinite(key[0]) and (self.best_key is None or key > self.best_key)
                if improved:
                    self.best_metric, self.best_epoch, self.best_key = key[0], epoch + 1, key
                record["best_metric"] = self.best_metric
            self.log.write(record)
            state = self._checkpoint_state(epoch, record["elapsed_s"])
            try:
                save_checkpoint(self.run_dir / "last.pt", state)
                if improved:
                    save_checkpoint(self.run_dir / "best.pt", state)
            except NonFiniteWeights as err:
                raise UserError(f"{err}; the last good checkpoint in {self.run_dir} is kept as it was") from err
            self._print_epoch(record)
        barrier(self.info)

    def _print_epoch(self, record: dict[str, Any]) -> None:
        minutes, seconds = divmod(int(record["elapsed_s"]), 60)
        text = (f"epoch {record['epoch']}/{self.config.epochs}: loss {record['loss']:.4f} ({record['images_per_s']:.1f} img/s, "
                f"{minutes}:{seconds:02d} elapsed)")
        if "val" in record:
            text += " " + " ".join(f"{k} {v:.4f}" for k, v in record["val"].items())
        print(text, file=sys.stderr, flush=True)

    def _save_final_model(self) -> None:
        final = self._model_to_evaluate()
        metadata = {"epochs": str(self.config.epochs), "weights": "ema" if self.ema is not None else "raw"}
        if self.best_metric is not None:
            metadata.update({"best_metric": self.config.best_metric, "best_value": f"{self.best_metric:.6f}", "best_epoch": str(self.best_epoch)})
        save_safetensors(final, self.run_dir / "model.safetensors", self.classes, metadata)
