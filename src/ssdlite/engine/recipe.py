"""A training recipe from the data: every setting the user did not give, derived from the dataset and the machine.

The hand-written recipes in ``configs/`` (raccoon 0.916, BCCD 0.867 VOC07 mAP@0.5 on 2 CPU cores) and the
lessons in docs/training.md, turned into rules. :func:`derive_recipe` fills each setting that is not in
``given`` (the flags and the ``--config`` file) and returns one :class:`Choice` per setting with its reason,
which ``ssdlite train`` prints and writes at the top of the run's ``config.yaml``; the values themselves are
in ``config.yaml``, so ``--config RUN/config.yaml`` reproduces the run with nothing derived again.

:func:`fit_to_budget` turns ``--time-budget MINUTES`` into a number of epochs (or, when even a short
schedule does not fit, a smaller input) from the measured speed of a few training steps on this machine; the
trainer then re-plans them as the speed changes (``ssdlite.engine.budget``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ssdlite.engine.budget import validation_seconds
from ssdlite.engine.config import MAX_EPOCHS as EPOCHS_LIMIT
from ssdlite.engine.config import TrainConfig
from ssdlite.engine.trainer import measure_speed
from ssdlite.errors import UserError
from ssdlite.metrics.errors import CONFIDENT_SCORE, ERRORS, TYPES
from ssdlite.models import backbones
from ssdlite.models.anchor_fit import best_ious, fit_anchors, normalized_boxes, sample_boxes
from ssdlite.models.factory import build_model

#: SGD steps at batch 16 that the shared-backbone recipes needed for one class (raccoon: VOC07 0.913 after
#: 300 steps, 0.916 after 600; BCCD's three classes 0.867 after 540), and the extra share per further
#: class: look-alike classes need longer (a 6-class, 290-image set was still climbing after 540 steps).
BASE_STEPS = 450
STEPS_PER_EXTRA_CLASS = 0.1
MIN_EPOCHS, MAX_EPOCHS = 12, 300
#: Learning rate per image of the batch: the recipes' 0.02 at batch 16 (torchvision's SSDLite reference:
#: 0.15 at 192, i.e. 0.0125 at 16, raised for short fine-tuning runs).
LR_PER_IMAGE = 0.02 / 16
#: Warm-up long enough for this many steps (the random heads' first gradients are large).
WARMUP_STEPS = 30
#: From scratch (no pretrained backbone): AdamW at this rate. On the demo's shapes it reached VOC mAP@0.5 0.946 in
#: 6 epochs where SGD at 0.05 had 0.667 and SGD at 0.1 0.165 (benchmarks/RESULTS.md, "make demo in half the epochs").
SCRATCH_OPTIMIZER, SCRATCH_LR = "adamw", 0.003
#: Zoom-out (the ``ssd`` preset) shrinks objects up to 4x: only worth it when the median box is large, and only for
#: one class: it shrinks with the objects the marks that tell several classes apart (a hand's fingers, a card's index).
#: Several classes with large boxes get ``fine`` (crops that keep every object whole) and zoom-out's longer schedule:
#: asl_letters (26 hand signs, median box 172 px) VOC07 0.8226 against zoom-out's 0.7733, same 76 epochs
#: (benchmarks/RESULTS.md).
ZOOM_OUT_MIN_SIDE = 64
#: Zoom-out makes more, and harder, training examples of every image: the SSD paper (sec. 3.6) has "to double the
#: training iterations" for it. Measured on raccoon (benchmarks/RESULTS.md): 675 steps against 450 raised the
#: all-point AP50 (seeds 0 and 1, one thread) from 0.930/0.928 to 0.958/0.941; the paper's 900 against 675 (seeds 0
#: and 1, two threads, final weights) from 0.931/0.946 to 0.965/0.951, COCO mAP 0.467/0.487 -> 0.507/0.538, for about
#: 4 more minutes on this machine kind (68 epochs: 13.4 min).
ZOOM_OUT_STEPS = 2.0
#: ``fine`` on several classes with large boxes takes a longer schedule too (its crops, like zoom-out, make harder
#: examples): asl_letters VOC07 0.7309 in 51 epochs, 0.8226 in 76 (1.5x; benchmarks/RESULTS.md).
FINE_STEPS = 1.5
#: Tiny boxes (the share that takes the larger input) are learned slowly. Aquarium (7 classes, 22% of the boxes under
#: 16 px at 320) at 448: VOC07 0.3457 after the 26 epochs of its classes (still rising), 0.4967 after twice that (COCO
#: mAP 0.127 -> 0.220; benchmarks/RESULTS.md). The factors multiply the classes' epochs, so "twice" is exactly that.
TINY_STEPS = 2.0
#: A default-box setting from the search replaces the default only when it covers this many more boxes.
ANCHOR_GAIN = 0.03
SEARCH_BOXES = 2000
VALIDATIONS = 5
#: The neck for small objects: chosen when at least this share of the boxes is under this side at the input
#: (COCO's "small" is under 32 x 32 px). BCCD: 7% (platelets); raccoon: none.
SMALL_SIDE, SMALL_SHARE = 32, 0.05
#: A larger input when this share of the boxes is under this side at the backbone's default input: a 16 px die has
#: 2-3 px pips, the marks that tell its classes apart, and a stride-8 cell is half the box. 1.4x the side (320 ->
#: 448) makes them 22 px. dice_d6: VOC07 0.791 against 0.608 at 320, same schedule, for 1.8x the training time (5.0
#: against 9.1 img/s); the inference costs 1.4x (``--search``'s measurement on chess_pieces; benchmarks/RESULTS.md).
TINY_SIDE, TINY_SHARE, LARGE_INPUT_SCALE = 16, 0.10, 1.4
#: Input sizes tried, largest first, when ``--time-budget`` cannot fit ``MIN_EPOCHS`` at the chosen size.
BUDGET_SIZES = (320, 288, 256, 224, 192)
#: Every field a new run derives when it is not given: :func:`derive_recipe` (with :func:`_anchors`), ``size`` and
#: ``epochs`` by :func:`fit_to_budget`, and the settings ``--search`` measures (:mod:`ssdlite.engine.search`). The
#: flags of these fields say "derived from the data" in ``ssdlite train --help`` instead of a default the run would
#: not use; ``choose`` refuses any other field, and tests/engine/test_recipe.py checks the searched ones.
DERIVED = frozenset({
    "backbone_weights", "freeze_bn", "augment", "neck", "fpn_stride8", "batch_size", "optimizer", "lr", "epochs",
    "warmup_epochs", "val_every", "min_scale", "max_scale", "aspect_ratios", "reduce_lowest", "size",
})


@dataclass(frozen=True)
class Choice:
    """One derived setting: ``name`` is the flag's field name."""

    name: str
    value: Any
    reason: str

    def line(self) -> str:
        value = " ".join(map(str, self.value)) if isinstance(self.value, (list, tuple)) else self.value
        return f"{self.name} = {value}: {self.reason}"


@dataclass(frozen=True)
class DataStats:
    """What the recipe reads of the training split (annotations only, no image is decoded)."""

    images: int
    boxes: int
    classes: int
    relative_sides: np.ndarray  # (B, 2) box width / image width, box height / image height
    annotations: list[dict[str, Any]]

    @classmethod
    def of(cls, dataset: Dataset) -> DataStats:
        annotations = [dataset.get_annotation(i) for i in range(len(dataset))]
        boxes = normalized_boxes(annotations)
        sides = (boxes[:, 2:] - boxes[:, :2]).numpy() if len(boxes) else np.zeros((0, 2), np.float32)
        return cls(len(annotations), int(len(boxes)), len(dataset.classes), sides, annotations)

    def share_below(self, size: int, side: float) -> float:
        """The share of boxes whose side ``sqrt(w h)`` at input ``size`` is under ``side`` pixels."""
        if len(self.relative_sides) == 0:
            return 0.0
        return float((np.sqrt(self.relative_sides.prod(axis=1)) * size < side).mean())

    def side_at(self, size: int, q: float) -> float:
        """The ``q`` quantile of the boxes' side ``sqrt(w h)`` in input pixels at ``size``."""
        if len(self.relative_sides) == 0:
            return float("nan")
        return float(np.quantile(np.sqrt(self.relative_sides.prod(axis=1)) * size, q))


def derive_recipe(
    config: TrainConfig, given: set[str], stats: DataStats, device: torch.device
) -> tuple[TrainConfig, list[Choice]]:
    """``config`` with every field not in ``given`` derived from ``stats`` and ``device``; the choices made."""
    choices: list[Choice] = []

    def choose(name: str, value: Any, reason: str) -> None:
        nonlocal config
        assert name in DERIVED, f"{name}: add it to DERIVED, so that train --help does not show a default for it"
        if name in given:
            return
        config = config.replace(**{name: value})
        choices.append(Choice(name, value, reason))

    backbone = backbones.get(config.model.arch)
    if backbone.imagenet is None:
        choose("backbone_weights", None, f"there are no ImageNet weights of {backbone.title} to download; the backbone starts random")
    else:
        choose("backbone_weights", "imagenet", f"ImageNet-pretrained backbone ({backbone.imagenet}, cached after the first "
               "download); the recipes' results all start from one, from scratch needs many times the epochs")
    choose("freeze_bn", "none", "BatchNorm trains with batch statistics: frozen statistics let folded or fine-tuned "
           "weights drift to image-independent features (docs/training.md)")

    size = config.model.resolved().size
    tiny, tiny_at = stats.share_below(size, TINY_SIDE), size
    tiny_boxes = tiny >= TINY_SHARE
    if tiny_boxes:
        large = int(round(size * LARGE_INPUT_SCALE / 32)) * 32
        choose("size", large, f"{tiny:.0%} of the boxes are under {TINY_SIDE} px at input {size} (10th percentile "
               f"{stats.side_at(size, 0.1):.0f} px): at {large} they keep the detail that tells their classes apart")
        size = config.model.resolved().size
    median_side = stats.side_at(size, 0.5)
    large_boxes = median_side >= ZOOM_OUT_MIN_SIDE
    if large_boxes and stats.classes > 1:
        choose("augment", "fine", f"median box side {median_side:.0f} px at input {size}, {stats.classes} classes: zoom-out "
               "would shrink the marks that tell classes apart up to 4x, so crops that keep every object whole, no hue "
               "change (the `fine` preset)")
    elif large_boxes:
        choose("augment", "ssd", f"median box side {median_side:.0f} px at input {size}: large enough for zoom-out "
               "(SSD's full pipeline: zoom-out, IoU crops, photometric)")
    elif tiny_boxes:
        # `ssdlite`'s IoU crops (0.3 to 1 of each side) zoom in up to 3x, so tiny boxes are mostly taught larger
        # than they are seen, where a mosaic tile keeps about the plain resize's scale (YOLOv4 sec. 3.3; the same
        # along the longer side: a tile keeps its aspect where the resize squashes). The likely reason, not isolated
        # by a measurement. Aquarium at 448, 52 epochs: VOC07 0.5292 against `ssdlite`'s 0.4967 (COCO mAP 0.217
        # against 0.220: found more, placed no better; benchmarks/RESULTS.md).
        choose("augment", "mosaic", f"median box side {median_side:.0f} px at input {size}, {tiny:.0%} under {TINY_SIDE} "
               f"px at input {tiny_at}: four-image mosaics (YOLOv4) for half the samples, tiles at about the plain resize's "
               "scale where crops zoom in, and `ssdlite`'s IoU crops and flips for the other half")
    else:
        choose("augment", "ssdlite", f"median box side {median_side:.0f} px at input {size}: zoom-out would shrink "
               "the objects further, so IoU crops and flips only")

    small = stats.share_below(size, SMALL_SIDE)
    if "neck" not in given and backbone.stride8_channels is not None and small >= SMALL_SHARE:
        # One choice, two fields: the stride-8 level is what small objects need (so only for a backbone that has one
        # to add), the residual top-down path what keeps the pretrained maps (benchmarks/RESULTS.md: BCCD with and
        # without it).
        config = config.replace(neck="residual_fpn", fpn_stride8=True)
        choices.append(Choice("neck", "residual_fpn + stride 8", f"{small:.0%} of the boxes are under {SMALL_SIDE} px at "
                              f"input {size}: a stride-8 level for them, the FPN top-down path added to the pretrained maps"))

    cuda = device.type == "cuda"
    batch = min(32 if cuda else 16, max(2, 2 ** int(math.log2(max(stats.images // 4, 2)))))
    choose("batch_size", batch, f"{'32 on CUDA' if cuda else '16 on the CPU (the recipes measured)'}, at most a quarter "
           f"of the {stats.images} training images so an epoch has several steps")
    batch = config.batch_size
    scratch = config.model.backbone_weights is None and config.init_from is None
    if scratch:
        choose("optimizer", SCRATCH_OPTIMIZER, "from scratch (no pretrained backbone): AdamW learned the demo's shapes in "
               "half the epochs of SGD (benchmarks/RESULTS.md)")
    if config.optim.optimizer == "adamw" and scratch:
        choose("lr", SCRATCH_LR, f"AdamW from scratch: {SCRATCH_LR:g}, the demo's measured rate")
    elif config.optim.optimizer == "sgd":
        choose("lr", round(LR_PER_IMAGE * batch, 6), f"{LR_PER_IMAGE * 16:g} per batch of 16, scaled linearly to batch {batch}")
    else:  # AdamW's step size does not scale with the gradient's size: its usual 1e-3
        choose("lr", 0.001, "AdamW's usual 1e-3 (SGD's scaled rate would be far too large for it)")
    steps_per_epoch = max(stats.images // batch, 1)
    # Longer schedules, each with its factor: zoom-out's (SSD sec. 3.6), the same for `fine` where it stands in for
    # zoom-out on large boxes, and tiny boxes'.
    longer = []
    if config.data.augment == "ssd":
        longer.append((ZOOM_OUT_STEPS, "zoom-out, SSD sec. 3.6"))
    elif config.data.augment == "fine" and large_boxes:
        longer.append((FINE_STEPS, "crops of large boxes, as for zoom-out"))
    if tiny_boxes:
        longer.append((TINY_STEPS, f"{tiny:.0%} of the boxes under {TINY_SIDE} px at input {tiny_at}, slow to learn"))
    class_steps = BASE_STEPS * (1 + STEPS_PER_EXTRA_CLASS * (stats.classes - 1)) * 16 / batch
    class_epochs = max(1, round(class_steps / steps_per_epoch))  # the classes' schedule; the factors multiply it
    epochs = int(min(MAX_EPOCHS, max(MIN_EPOCHS, round(class_epochs * math.prod(f for f, _ in longer)))))
    why = "".join(f", {f:g}x for {reason}" for f, reason in longer)
    choose("epochs", epochs, f"about {class_steps:.0f} steps for {stats.classes} class{'es' * (stats.classes > 1)} at "
           f"batch {batch}, {class_epochs} epoch{'s' * (class_epochs != 1)} of {steps_per_epoch} steps on {stats.images} images{why}")
    warmup = min(5, max(1, math.ceil(WARMUP_STEPS / steps_per_epoch)))
    choose("warmup_epochs", float(warmup), f"{warmup * steps_per_epoch} warm-up steps (at least {WARMUP_STEPS})")
    choose("val_every", max(1, config.epochs // VALIDATIONS), f"about {VALIDATIONS} validations in {config.epochs} epochs")
    config, anchor_choices = _anchors(config, given, stats)
    return config, choices + anchor_choices


def _anchors(config: TrainConfig, given: set[str], stats: DataStats) -> tuple[TrainConfig, list[Choice]]:
    """The ``anchors fit`` search, adopted when it covers clearly more training boxes than the default."""
    searched = ("min_scale", "max_scale", "aspect_ratios", "reduce_lowest")
    base = config.model.resolved()
    # Explicit scales (a backbone's own, SSD300's) leave min/max scale unused: nothing to search.
    if given & set(searched) or stats.boxes == 0 or base.scales is not None:
        return config, []
    probe = build_model(base.replace(num_classes=stats.classes + 1, backbone_weights=None), load_backbone=False)
    boxes = sample_boxes(normalized_boxes(stats.annotations), SEARCH_BOXES)  # the boxes the search measures
    before = float((best_ious(boxes, probe.default_boxes) >= 0.5).float().mean())
    best = fit_anchors(stats.annotations, probe.feature_sizes, base, max_boxes=SEARCH_BOXES)[0]
    if best["covered"] < before + ANCHOR_GAIN:
        return config, [Choice("anchors", "default", f"the default boxes cover {before:.1%} of the training boxes "
                               f"(IoU >= 0.5); the best searched setting {best['covered']:.1%}")]
    config = config.replace(**{k: best[k] for k in searched})
    setting = f"scales {best['min_scale']}-{best['max_scale']}, ratios {' '.join(map(str, best['aspect_ratios']))}"
    return config, [Choice("anchors", setting, f"covers {best['covered']:.1%} of the training boxes (IoU >= 0.5) "
                           f"against {before:.1%} with the default boxes")]


def budget_epochs(minutes: float, images_per_s: float, config: TrainConfig, train_images: int, val_images: int,
                  validations: int = VALIDATIONS, spent_s: float = 0.0) -> int:
    """Epochs that fit ``minutes`` (``spent_s`` of them already used: reading the data, measuring the speed) at
    ``images_per_s``, leaving room for ``validations`` validations and precise BatchNorm
    (:func:`ssdlite.engine.budget.validation_seconds`).
    """
    seconds = (minutes * 60 - spent_s) * 0.92  # checkpoints, the loader's start and the final plot take the rest
    per_validation = validation_seconds(val_images, min(config.precise_bn_images, train_images), images_per_s)
    train_seconds = seconds - validations * per_validation
    return min(int(train_seconds * images_per_s // train_images), EPOCHS_LIMIT)  # a very fast machine: the setting's bound


def fit_to_budget(
    config: TrainConfig, given: set[str], minutes: float, train_set: Dataset, val_images: int, device: torch.device,
    build_train_set, validations: int = VALIDATIONS, started: float | None = None,
) -> tuple[TrainConfig, Dataset, list[Choice], float]:
    """``(config, training split, choices, measured images/s)``: ``config`` with ``epochs`` (and, if needed, the input
    size) fitted to ``minutes`` from a measured speed.

    ``build_train_set(config)`` rebuilds the training split for another input size; ``validations`` is how many
    validations the run will make (time is kept for them); ``started``, a ``time.perf_counter()`` reading of when
    the command began, makes the time already spent (the speed measurement included) count.
    """
    if "epochs" in given:
        raise UserError("--time-budget chooses the number of epochs: leave out --epochs (or the epochs: line of --config)")
    size = config.model.resolved().size  # the rules' (a larger one for tiny boxes) or the user's
    sizes = [size] if "size" in given else [size, *(s for s in BUDGET_SIZES if s < size)]
    choices: list[Choice] = []
    for size in sizes:
        if size != config.model.resolved().size:
            config = config.replace(size=size)
            train_set = build_train_set(config)
        speed = measure_speed(config, train_set, device)
        spent = time.perf_counter() - started if started is not None else 0.0
        epochs = budget_epochs(minutes, speed, config, len(train_set), val_images, validations, spent)
        if epochs >= MIN_EPOCHS or size == sizes[-1] or spent >= minutes * 60:  # no time left to measure another
            break
    if epochs < 1:
        raise UserError(f"--time-budget {minutes:g}: one epoch of {len(train_set)} images at {speed:.1f} img/s does not "
                        f"fit{f' after the {spent:.0f} s spent before training' if started is not None else ''}; give more "
                        "minutes or a smaller --size")
    config = config.replace(epochs=epochs, val_every=max(1, epochs // validations))
    if size != sizes[0]:
        choices.append(Choice("size", size, f"the largest input at which {MIN_EPOCHS}+ epochs fit {minutes:g} minutes"))
    choices.append(Choice("epochs", epochs, f"{minutes:g} minutes at the measured {speed:.1f} img/s, keeping time for "
                          f"{validations} validations{f' ({spent:.0f} s already spent)' if started is not None else ''}"))
    choices.append(Choice("val_every", config.val_every, f"about {validations} validations in {epochs} epochs"))
    return config, train_set, choices, speed


#: A run without ``--time-budget`` should end within this many minutes on the machine it runs on; a schedule the
#: data needs that takes longer is said, with why and how long, before training starts.
LONG_RUN_MINUTES = 30


def training_minutes(config: TrainConfig, images_per_s: float, train_images: int, val_images: int) -> float:
    """Minutes ``config``'s schedule takes at ``images_per_s``: its epochs and its validations."""
    validations = config.epochs // max(config.val_every, 1) + 1  # every val_every epochs, and the last
    per_validation = validation_seconds(val_images, min(config.precise_bn_images, train_images), images_per_s)
    return (config.epochs * train_images / images_per_s + validations * per_validation) / 60


def time_note(config: TrainConfig, given: set[str], choices: Sequence[Choice], train_set: Dataset, val_images: int,
              device: torch.device) -> str | None:
    """How long the derived schedule takes here, from a measured speed; when longer than :data:`LONG_RUN_MINUTES`,
    why the data needs it and how to cap it. ``None`` when the epochs were given (the user chose the length)."""
    if "epochs" in given:
        return None
    speed = measure_speed(config, train_set, device)
    minutes = training_minutes(config, speed, len(train_set), val_images)
    text = (f"time: about {minutes:.0f} minutes ({config.epochs} epochs of {len(train_set)} images and their validations "
            f"at the measured {speed:.1f} img/s)")
    if minutes > LONG_RUN_MINUTES:
        why = next((c.reason for c in choices if c.name == "epochs"), f"{config.epochs} epochs")
        why += next((f"; input {c.value}: {c.reason}" for c in choices if c.name == "size"), "")
        text += (f"\n  longer than {LONG_RUN_MINUTES} minutes because the data needs that schedule ({why}); "
                 f"`--time-budget {LONG_RUN_MINUTES}` fits it to {LONG_RUN_MINUTES} minutes instead, with fewer epochs")
    return text


def recipe_text(choices: Sequence[Choice]) -> str:
    """The lines ``ssdlite train`` prints and writes as comments at the top of ``config.yaml``."""
    return "\n".join(["recipe (settings not given, derived from the data):", *(f"  {c.line()}" for c in choices)])


ERROR_NAMES = {"cls": "classification errors", "loc": "localisation errors (boxes found but placed off, IoU 0.1-0.5)",
               "both": "classification and localisation errors (placed off on another class's object)",
               "dupe": "duplicates", "bkg": "background detections"}
#: Advice for each error type of :mod:`ssdlite.metrics.errors`, by what fixes it: look-alike classes need examples
#: and detail to tell them apart; misplaced boxes more training or detail; duplicates a stricter NMS; background
#: detections negatives or a higher score cut. Missed boxes have their own advice, from their sizes (:func:`_box_facts`).
ERROR_ADVICE = {
    "cls": "look-alike classes ({pair}): more training examples of them (training boxes now: {examples}), a larger input than --size "
           "{size} so the marks that tell them apart survive, and a longer schedule than {epochs} epochs",
    "loc": "a longer schedule than {epochs} epochs or a larger input than --size {size}",
    "both": "a longer schedule than {epochs} epochs, a larger input than --size "
            "{size}, and more training examples (training boxes now: {examples})",
    "dupe": "a lower --nms-threshold than {nms:g} (the NMS IoU), so that a second box on the same object is suppressed",
    "bkg": "more training images of the scenes without the objects (negatives), or a higher --score-threshold when predicting",
}


def _dominant(errors: dict[str, Any]) -> str | None:
    """The error type that costs the class most AP50, as TIDE ranks them (sec. 2.3: each type fixed alone, every
    detection at any score, as AP takes them); by the counted detections when no fix gains anything."""
    gains = {e: v for e, v in errors["dap"].items() if v}
    if any(v > 0 for v in gains.values()):
        return max(gains, key=gains.get)
    counts = {e: errors[e] for e in ERRORS}
    counts["cls"] += sum(errors["taken_as"].values())
    return max(counts, key=counts.get) if any(counts.values()) else None


def _box_facts(name: str, boxes: torch.Tensor, probe: torch.nn.Module, size: int) -> tuple[str, str | None]:
    """``(facts, remedy)`` for one class's training boxes: their size at the input and the default boxes' reach, and
    the remedy they call for (small boxes: size, neck, default boxes; shapes the default boxes miss: the search),
    ``None`` when neither."""
    if len(boxes) == 0:
        return f"no training boxes of {name}", "add examples"
    sides = np.sqrt((boxes[:, 2:] - boxes[:, :2]).prod(dim=1).numpy()) * size
    covered = float((best_ious(boxes, probe.default_boxes) >= 0.5).float().mean())
    q10, q50, q90 = np.quantile(sides, [0.1, 0.5, 0.9])
    facts = (f"{len(boxes)} training boxes, side {q10:.0f}/{q50:.0f}/{q90:.0f} px (10th/50th/90th percentile), "
             f"{covered:.0%} matched by a default box")
    if q50 < SMALL_SIDE:
        return facts, "small boxes: a larger --size, `--neck residual_fpn --fpn-stride8`, or `ssdlite anchors fit`"
    if covered < 0.9:
        return facts, "shapes the default boxes miss: `ssdlite anchors fit`"
    return facts, None


def weak_classes(metrics: dict[str, Any], stats: DataStats, config: TrainConfig, run_dir: str, threshold: float = 0.5) -> str | None:
    """Why accuracy is low: for each class whose validation AP50 is below ``threshold``, its errors typed as TIDE
    types them (:mod:`ssdlite.metrics.errors`: the type that costs the most AP50, the classes its boxes were taken
    for with their shares) and the advice that fits that type; ``None`` when every class reaches it.
    """
    per_class = metrics.get("per_class") or {}
    weak = {name: row for name, row in per_class.items() if row.get("voc_ap50") is not None and row["voc_ap50"] < threshold}
    if not weak:
        return None
    model = config.model.resolved()
    names = list(per_class)
    labels = [np.asarray(a["labels"], np.int64).reshape(-1) for a in stats.annotations]
    training = np.bincount(np.concatenate([np.zeros(0, np.int64), *labels]), minlength=len(names) + 1)  # (K + 1,) per label
    probe = None
    score = (metrics.get("errors") or {}).get("score_threshold", CONFIDENT_SCORE)  # the counts' threshold
    lines = [f"classes below AP50 {threshold} on the validation split (input {model.size}), by the error that costs most:"]
    for name, row in weak.items():
        errors = row["errors"]
        label = names.index(name) + 1
        dominant = _dominant(errors)
        costs = ", ".join(f"{e} {v:.3f}" for e, v in sorted(errors["dap"].items(), key=lambda kv: -(kv[1] or 0)) if v)
        lines.append(f"  {name}: AP50 {row['voc_ap50']:.3f}; dAP50 when fixed: {costs or '-'}")
        # Look-alikes both ways: this class's boxes taken for others, and its detections on others' boxes. When its
        # costliest error shows only under the count threshold (an undertrained model's scores are low), the same
        # at any score: the class of each box's highest-scored detection, the one AP ranks first.
        below = dominant not in (None, "missed") and errors[dominant] == 0 and (dominant != "cls" or not errors["taken_as"])
        key = "top_taken_as" if below else "taken_as"
        taken_as = errors.get(key, {})  # (results written before top_taken_as have none)
        taken_from = {other: r["errors"][key][name] for other, r in per_class.items() if name in r["errors"].get(key, {})}
        if below and not taken_as:
            lines.append(f"    its {ERROR_NAMES[dominant].split(' (')[0]} are all in detections scored under {score:g} (uncounted below)")
        if taken_as:
            shares = ", ".join(f"{o} {n} of {errors['num_gt']} {name} boxes ({n / errors['num_gt']:.0%})" for o, n in taken_as.items())
            lines.append(f"    {f'scored under {score:g} (uncounted below), ' if below else ''}taken for: {shares}")
        if taken_from:
            lines.append(f"    {name} detections on: " + ", ".join(f"{o} {n} of {per_class[o]['errors']['num_gt']} {o} boxes"
                                                              for o, n in taken_from.items()))
        counts = ", ".join(f"{t} {errors[t]}" for t in TYPES)
        lines.append(f"    {errors['detections']} detections scored {score:g}+: {counts}; missed {errors['missed']} of {errors['num_gt']} boxes")
        if dominant is None:
            continue
        if dominant in ("missed", "loc"):
            if probe is None:
                probe = build_model(model.replace(num_classes=stats.classes + 1, backbone_weights=None), load_backbone=False)
            mine = [{**a, "boxes": np.asarray(a["boxes"]).reshape(-1, 4)[np.asarray(a["labels"]) == label]} for a in stats.annotations]
            facts, remedy = _box_facts(name, normalized_boxes(mine), probe, model.size)
            if dominant == "missed":
                lines.append(f"    mostly missed: {facts}; {remedy or f'more training examples of {name} or a longer schedule than {config.epochs} epochs'}")
                continue
            # Misplaced boxes of a small class want the small-box remedies too; its box facts say which.
            advice = ERROR_ADVICE["loc"].format(size=model.size, epochs=config.epochs) + f" ({facts}{f'; {remedy}' if remedy else ''})"
        else:
            look_alikes = [name, *dict.fromkeys([*taken_as, *taken_from])]
            advice = ERROR_ADVICE[dominant].format(
                pair=", ".join(look_alikes), size=model.size, epochs=config.epochs, nms=model.nms_threshold,
                examples=", ".join(f"{n} {int(training[names.index(n) + 1])}" for n in look_alikes),
            )
        lines.append(f"    mostly {ERROR_NAMES[dominant]}: {advice}")
    lines.append(f"  the full error table: `ssdlite eval --weights {run_dir} --data {config.data.data}`")
    return "\n".join(lines)
