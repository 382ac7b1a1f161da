"""The recipe `ssdlite train` derives from the data: given settings stay, the rest follow the data's size,
classes and boxes; `--time-budget` fits the epochs to the measured speed; low-AP classes are explained."""

from __future__ import annotations

import time
import urllib.error

import numpy as np
import pytest
import torch

from ssdlite.data import build_dataset
from ssdlite.engine import recipe
from ssdlite.engine.config import TrainConfig, fields_in_yaml
from ssdlite.engine.recipe import DataStats, budget_epochs, derive_recipe, fit_to_budget, weak_classes
from ssdlite.errors import UserError
from train_helpers import TINY

CPU = torch.device("cpu")


def stats(images: int, classes: int, side: float, boxes_per_image: int = 2) -> DataStats:
    """``images`` square images of 640 px with ``boxes_per_image`` square boxes of relative side ``side``."""
    n = images * boxes_per_image
    annotations = [
        {"boxes": np.tile([[10.0, 10.0, 10 + side * 640, 10 + side * 640]], (boxes_per_image, 1)),
         "labels": np.arange(boxes_per_image) % classes + 1, "width": 640, "height": 640}
        for _ in range(images)
    ]
    return DataStats(images, n, classes, np.full((n, 2), side, np.float32), annotations)


def test_every_setting_not_given_is_derived_with_a_reason():
    config, choices = derive_recipe(TrainConfig(), set(), stats(160, 1, 0.5), CPU)
    by_name = {c.name: c for c in choices}
    assert config.model.backbone_weights == "imagenet" and config.freeze_bn == "none"
    assert config.batch_size == 16 and config.optim.lr == pytest.approx(0.02)
    assert config.epochs == 90 and config.val_every == 18  # 450 steps = 45 epochs of 10, x 2 for zoom-out
    assert config.optim.warmup_epochs == 3.0  # 30 steps
    assert config.data.augment == "ssd"  # 160 px median side at 320: zoom-out is safe
    assert config.model.neck == "none" and "neck" not in by_name  # no small boxes: the plain detector
    assert all(c.reason for c in choices) and "450 steps for 1 class at batch 16, 45 epochs of 10 steps on 160 images, 2x" in by_name["epochs"].reason
    assert "2x for zoom-out" in by_name["epochs"].reason


def test_more_classes_and_images_change_the_schedule_small_boxes_drop_zoom_out():
    config, choices = derive_recipe(TrainConfig(), set(), stats(291, 3, 0.06), CPU)
    assert config.epochs == 30  # 450 * 1.2 = 540 steps of 18: the BCCD recipe's own 30 epochs
    assert config.data.augment == "ssdlite"  # 19 px median side at 320
    assert config.model.neck == "residual_fpn" and config.model.fpn_stride8  # every box under 32 px
    assert "100% of the boxes are under 32 px" in next(c for c in choices if c.name == "neck").reason
    config, _ = derive_recipe(TrainConfig(), {"neck"}, stats(291, 3, 0.06), CPU)
    assert config.model.neck == "none" and not config.model.fpn_stride8  # a given neck stays
    config, _ = derive_recipe(TrainConfig(), set(), stats(20, 1, 0.5), CPU)
    assert config.batch_size == 4 and config.epochs == 300  # a quarter of 20 images; capped at MAX_EPOCHS
    config, choices = derive_recipe(TrainConfig(), set(), stats(20000, 1, 0.5), CPU)
    assert config.epochs == 12  # 1250 steps an epoch: at least MIN_EPOCHS, and the reason counts whole epochs
    assert "1 epoch of 1250 steps on 20000 images" in next(c for c in choices if c.name == "epochs").reason


def test_several_classes_with_large_boxes_keep_their_marks_fine_instead_of_zoom_out():
    # Issue 31's held-out regime: 6 look-alike classes, 290 images, boxes of median side 103 px at 320.
    config, choices = derive_recipe(TrainConfig(), set(), stats(290, 6, 103 / 320), CPU)
    by_name = {c.name: c for c in choices}
    assert config.data.augment == "fine" and "6 classes: zoom-out would shrink the marks" in by_name["augment"].reason
    assert config.epochs == 57  # 450 x 1.5 (classes) = 675 steps: 38 epochs of 18, x 1.5 (as for zoom-out)
    assert "1.5x for crops of large boxes" in by_name["epochs"].reason
    config, _ = derive_recipe(TrainConfig(), set(), stats(290, 1, 103 / 320), CPU)
    assert config.data.augment == "ssd" and config.epochs == 50  # one class: zoom-out, as measured on raccoon (2x)
    # `fine` chosen by the user for small boxes: crops around small boxes zoom in, no longer schedule for them.
    config, _ = derive_recipe(TrainConfig().replace(augment="fine"), {"augment"}, stats(291, 3, 0.06), CPU)
    assert config.epochs == 30


def test_tiny_boxes_get_a_larger_input_and_the_rest_follows_it():
    # 14 px at 320 (a die of dice_d6's 10th percentile): 448, where the same boxes are 20 px.
    config, choices = derive_recipe(TrainConfig(), set(), stats(200, 6, 14 / 320), CPU)
    assert config.model.size == 448
    assert config.epochs == 112  # 450 x 1.5 (classes) = 675 steps: 56 epochs of 12, x 2 for the tiny boxes
    assert "2x for 100% of the boxes under 16 px at input 320, slow to learn" in next(c for c in choices if c.name == "epochs").reason
    reason = next(c for c in choices if c.name == "size").reason
    assert reason.startswith("100% of the boxes are under 16 px at input 320 (10th percentile 14 px): at 448")
    neck = next(c for c in choices if c.name == "neck").reason
    assert "under 32 px at input 448" in neck  # the later rules read the boxes at the new size
    augment = next(c for c in choices if c.name == "augment").reason
    assert config.data.augment == "mosaic"  # tiny boxes: mosaics at the plain resize's scale, not crops that zoom in
    assert augment.startswith("median box side 20 px at input 448, 100% under 16 px at input 320: four-image mosaics")
    config, choices = derive_recipe(TrainConfig(), {"size"}, stats(200, 6, 14 / 320), CPU)
    assert config.model.resolved().size == 320 and "size" not in {c.name for c in choices}  # a given size stays
    assert config.epochs == 112  # and the boxes, tiny at it, still take the longer schedule
    config, choices = derive_recipe(TrainConfig(), set(), stats(200, 6, 17 / 320), CPU)
    assert config.model.resolved().size == 320 and "size" not in {c.name for c in choices}  # 17 px: not tiny
    assert config.epochs == 56 and config.data.augment == "ssdlite"
    config, _ = derive_recipe(TrainConfig().replace(augment="ssdlite"), {"augment"}, stats(200, 6, 14 / 320), CPU)
    assert config.data.augment == "ssdlite" and config.epochs == 112  # a given augmentation stays


def test_given_settings_are_kept():
    start = TrainConfig().replace(epochs=7, lr=0.5, batch_size=4, augment="none", backbone_weights="none")
    given = {"epochs", "lr", "batch_size", "augment", "backbone_weights"}
    config, choices = derive_recipe(start, given, stats(160, 1, 0.5), CPU)
    assert (config.epochs, config.optim.lr, config.batch_size, config.data.augment) == (7, 0.5, 4, "none")
    assert config.model.backbone_weights is None  # "none" means from scratch, said explicitly
    assert not given & {c.name for c in choices}
    # The longer schedule belongs to zoom-out, also when the user chose the augmentation: without it, 450 steps.
    config, _ = derive_recipe(TrainConfig().replace(augment="ssdlite"), {"augment"}, stats(160, 1, 0.5), CPU)
    assert config.epochs == 45


def test_default_boxes_change_only_when_the_search_covers_clearly_more():
    # Boxes four times wider than tall, anywhere in the image: the default ratios (2, 3) miss most of them.
    rng = np.random.default_rng(0)
    s = stats(32, 1, 0.3, boxes_per_image=1)
    for a in s.annotations:
        side = rng.uniform(0.1, 0.3) * 640
        w, h = side * 2, side / 2
        x, y = rng.uniform(0, 640 - w), rng.uniform(0, 640 - h)
        a["boxes"] = np.array([[x, y, x + w, y + h]])
    small = TrainConfig().replace(size=128, width_mult=0.35)
    config, choices = derive_recipe(small, {"size", "width_mult"}, s, CPU)
    anchors = next(c for c in choices if c.name == "anchors")
    searched = lambda m: (m.min_scale, m.max_scale, m.aspect_ratios, m.reduce_lowest)  # noqa: E731
    assert searched(config.model) != searched(small.model) and "against" in anchors.reason
    assert _changed(small, config) <= recipe.DERIVED  # train --help says "derived" for the anchor fields too
    config, choices = derive_recipe(small, {"size", "width_mult"}, stats(32, 1, 0.5), CPU)
    assert next(c for c in choices if c.name == "anchors").value == "default" and searched(config.model) == searched(small.model)


def test_fields_in_yaml_flattens_sections(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 3\nmodel:\n  size: 160\n  freeze_bn: all\noptim:\n  lr: 0.1\ndata:\n  data: x\n")
    assert fields_in_yaml(path) == {"epochs", "size", "freeze_bn", "lr", "data"}


def test_budget_epochs_leaves_time_for_validation():
    config = TrainConfig()
    # 10 minutes at 12 img/s, 160 training and 40 val images: 5 validations of (40 + 160) / 36 s each.
    assert budget_epochs(10, 12.0, config, 160, 40) == int((600 * 0.92 - 5 * 200 / 36) * 12 // 160)
    # A run that validates less often (the demo: 3 times) keeps time for its own validations, not five.
    assert budget_epochs(10, 12.0, config, 160, 40, validations=3) == int((600 * 0.92 - 3 * 200 / 36) * 12 // 160)


def test_time_budget_shrinks_the_input_when_the_epochs_do_not_fit(train_voc, monkeypatch):
    config = TrainConfig().replace(**{**TINY, "size": 320, "data": str(train_voc)}).resolved()
    seen = []

    def speed(cfg, train_set, device, steps=4):  # 1 img/s at 320, faster as the input shrinks
        seen.append(cfg.model.size)
        return (320 / cfg.model.size) ** 2

    monkeypatch.setattr(recipe, "measure_speed", speed)
    rebuild = lambda c: build_dataset(str(train_voc), None, "train")  # noqa: E731
    train_set = rebuild(config)
    fitted, _, choices, speed = fit_to_budget(config, set(), 3.5, train_set, 4, CPU, rebuild)
    assert seen[0] == 320 and fitted.model.size < 320 and fitted.epochs >= recipe.MIN_EPOCHS
    assert speed == (320 / fitted.model.size) ** 2  # the speed the plan was made for, for the trainer's re-plans
    assert {c.name for c in choices} == {"size", "epochs", "val_every"}
    with pytest.raises(UserError, match="leave out --epochs"):
        fit_to_budget(config, {"epochs"}, 3.5, train_set, 4, CPU, rebuild)
    with pytest.raises(UserError, match="does not fit"):
        fit_to_budget(config, {"size"}, 0.05, train_set, 4, CPU, rebuild)
    # The time before training counts: a budget already spent (measuring, here) tries no smaller input and says why.
    seen.clear()
    with pytest.raises(UserError, match=r"does not fit after the \d+ s spent before training"):
        fit_to_budget(config, set(), 1.0, train_set, 4, CPU, rebuild, started=time.perf_counter() - 120)
    assert seen == [320]
    # A larger input the rules chose (tiny boxes) is tried first, then the usual ones below it.
    seen.clear()
    fitted, *_ = fit_to_budget(config.replace(size=448).resolved(), set(), 3.5, train_set, 4, CPU, rebuild)
    assert seen[:2] == [448, 320] and fitted.model.size < 320


def test_a_run_longer_than_30_minutes_says_why_and_how_long_before_training(train_voc, monkeypatch):
    config = TrainConfig().replace(**{**TINY, "data": str(train_voc)}).resolved()
    train_set = build_dataset(str(train_voc), None, "train")
    monkeypatch.setattr(recipe, "measure_speed", lambda cfg, data, device: 0.01)  # a very slow machine
    why = [recipe.Choice("epochs", 60, "about 2362 steps for 26 classes at batch 16")]
    config = config.replace(epochs=60, val_every=12)
    text = recipe.time_note(config, set(), why, train_set, 4, CPU)
    expected = recipe.training_minutes(config, 0.01, len(train_set), 4)
    assert expected > 60 * len(train_set) / 0.01 / 60  # the validations count too
    assert text.startswith(f"time: about {expected:.0f} minutes (60 epochs of {len(train_set)} images and their validations "
                           "at the measured 0.0 img/s)")
    assert "longer than 30 minutes because the data needs that schedule (about 2362 steps for 26 classes at batch 16); " \
           "`--time-budget 30` fits it to 30 minutes instead" in text
    monkeypatch.setattr(recipe, "measure_speed", lambda cfg, data, device: 1e6)  # fast: the time, no warning
    assert "longer than" not in recipe.time_note(config, set(), why, train_set, 4, CPU)
    assert recipe.time_note(config, {"epochs"}, why, train_set, 4, CPU) is None  # the user chose the length


def test_measure_speed_times_the_training_loops_own_step(train_voc, tmp_path, monkeypatch):
    """The probe runs the trainer's step (its memory format, BatchNorm mode, precision, clipping and EMA), not
    a copy of it, on a throwaway model, and writes nothing."""
    from ssdlite.engine import build_datasets, trainer

    config = TrainConfig().replace(**{**TINY, "data": str(train_voc)}).resolved()
    train_set, _ = build_datasets(config)
    steps, real_step = [], trainer._Trainer._step

    def step(self, images, targets):
        steps.append(len(images))
        return real_step(self, images, targets)

    monkeypatch.setattr(trainer._Trainer, "_step", step)
    monkeypatch.chdir(tmp_path)
    speed = recipe.measure_speed(config, train_set, CPU, steps=2, seconds=0, warmup=0)
    assert speed > 0
    assert len(steps) >= 3 and set(steps) == {config.batch_size}  # one untimed step, then at least 2 timed
    assert list(tmp_path.iterdir()) == []
    # A split of a few batches goes round again until the warm-up and the timed steps are done (a fast machine
    # used to finish 32 images before the 2 s warm-up and refuse: "too small to measure a training step").
    steps.clear()
    batches = len(train_set) // config.batch_size
    assert recipe.measure_speed(config, train_set, CPU, steps=3 * batches, seconds=0, warmup=0) > 0
    assert len(steps) > 3 * batches


def test_offline_imagenet_weights_give_a_clear_error(monkeypatch):
    from ssdlite.models.backbone import MobileNetV2Backbone
    from ssdlite.models.factory import create_model

    def offline(self):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(MobileNetV2Backbone, "imagenet_state_dict", offline)
    with pytest.raises(UserError, match="--backbone-weights FILE.*--backbone-weights none"):
        create_model(2, size=128, backbone_weights="imagenet")


def validation(classes: list[str], truth: list[tuple[list[float], int]], found: list[tuple[list[float], float, int]], images: int):
    """``DetectionMetrics.compute()`` of ``images`` copies of one image with boxes ``truth`` and detections ``found``."""
    from ssdlite.metrics import DetectionMetrics

    metrics = DetectionMetrics(classes)
    target = {"boxes": [b for b, _ in truth], "labels": [k for _, k in truth]}
    prediction = {"boxes": [b for b, _, _ in found], "scores": [s for _, s, _ in found], "labels": [k for _, _, k in found]}
    metrics.update([prediction] * images, [target] * images)
    return metrics.compute()


def test_look_alike_classes_get_look_alike_advice_with_the_confused_share():
    """Small boxes (13 px at 128) whose errors are classification: the advice is for look-alikes, not for small boxes."""
    ten, nine = [0, 0, 10, 10], [20, 0, 30, 10]
    metrics = validation(["ten", "nine"], [(ten, 1), (nine, 2)], [(ten, 0.95, 2), (nine, 0.9, 2)], images=4)
    text = weak_classes(metrics, stats(10, 2, 0.1), TrainConfig().replace(size=128, width_mult=0.35, data="D"), "RUN", threshold=0.6)
    assert "ten: AP50 0.000; dAP50 when fixed: cls 1.000" in text
    assert "taken for: nine 4 of 4 ten boxes (100%)" in text and "nine detections on: ten 4 of 4 ten boxes" in text
    assert "mostly classification errors: look-alike classes (ten, nine): more training examples of them " \
           "(training boxes now: ten 10, nine 10), a larger input than --size 128" in text
    assert "--neck residual_fpn" not in text and "default box" not in text
    assert "ssdlite eval --weights RUN --data D" in text


def test_missed_small_boxes_get_the_small_box_advice():
    a, b = [0, 0, 10, 10], [20, 0, 30, 10]
    # b has no detection at all: nothing to fix but the missed boxes, and they are small (13 px at 128).
    metrics = validation(["a", "b"], [(a, 1), (b, 2)], [(a, 0.9, 1)], images=2)
    text = weak_classes(metrics, stats(10, 2, 0.1), TrainConfig().replace(size=128, width_mult=0.35, data="D"), "RUN")
    assert "  a: AP50" not in text and "  b: AP50 0.000;" in text
    assert "0 detections scored 0.25+: tp 0, cls 0, loc 0, both 0, dupe 0, bkg 0; missed 2 of 2 boxes" in text
    assert "mostly missed: 10 training boxes, side 13/13/13 px" in text and "matched by a default box" in text
    assert "small boxes: a larger --size, `--neck residual_fpn --fpn-stride8`" in text
    assert weak_classes(validation(["a"], [(a, 1)], [(a, 0.9, 1)], images=1), stats(10, 1, 0.1), TrainConfig(), "RUN") is None


def test_errors_under_the_count_threshold_are_typed_as_tide_types_them():
    """TIDE ranks the error types by the AP their fix gains, at every score: a class whose detections all score under
    the count threshold (an undertrained model) is not "missed" when its boxes' detections are there, misplaced or
    of another class."""
    a, b = [0, 0, 10, 10], [20, 0, 30, 10]
    config = TrainConfig().replace(size=128, width_mult=0.35, data="D")
    # b's only detection is off its box (IoU 0.4) and scored 0.1: a localisation error, on small boxes.
    misplaced = validation(["a", "b"], [(a, 1), (b, 2)], [(a, 0.9, 1), ([20, 0, 24, 10], 0.1, 2)], images=2)
    assert misplaced["per_class"]["b"]["errors"]["dap"]["loc"] == 1.0
    text = weak_classes(misplaced, stats(10, 2, 0.1), config, "RUN")
    assert "its localisation errors are all in detections scored under 0.25 (uncounted below)" in text
    assert "mostly localisation errors (boxes found but placed off, IoU 0.1-0.5): a longer schedule than 120 epochs " \
           "or a larger input than --size 128 (10 training boxes, side 13/13/13 px" in text
    assert "small boxes: a larger --size, `--neck residual_fpn --fpn-stride8`" in text and "mostly missed" not in text
    # On a's box the highest-scored detection is b's (0.2), and a's own detection on b's box outranks its true one.
    confused = validation(["a", "b"], [(a, 1), (b, 2)], [(b, 0.9, 2), (a, 0.2, 2), (b, 0.2, 1), (a, 0.1, 1)], images=3)
    row = confused["per_class"]["a"]
    assert row["voc_ap50"] == 0.5 and row["errors"]["detections"] == 0 and row["errors"]["taken_as"] == {}
    assert row["errors"]["top_taken_as"] == {"b": 3} and confused["per_class"]["b"]["errors"]["top_taken_as"] == {}
    text = weak_classes(confused, stats(10, 2, 0.1), config, "RUN", threshold=0.6)
    assert "  a: AP50 0.500; dAP50 when fixed: cls 0.500" in text
    assert "scored under 0.25 (uncounted below), taken for: b 3 of 3 a boxes (100%)" in text
    assert "mostly classification errors: look-alike classes (a, b): more training examples of them" in text
    assert "mostly missed" not in text and "  b: AP50" not in text


def test_duplicates_and_background_get_their_own_advice():
    a, b = [0, 0, 40, 40], [50, 0, 90, 40]
    dupes = validation(["a"], [(a, 1), (b, 1)], [(a, 0.9, 1), ([0, 0, 40, 36], 0.8, 1), (b, 0.7, 1)], images=1)
    text = weak_classes(dupes, stats(10, 1, 0.3), TrainConfig().replace(size=128, width_mult=0.35), "RUN", threshold=0.99)
    assert "mostly duplicates: a lower --nms-threshold than 0.45" in text
    background = validation(["a"], [(a, 1), (b, 1)], [(a, 0.9, 1), ([200, 200, 240, 240], 0.8, 1), (b, 0.7, 1)], images=1)
    text = weak_classes(background, stats(10, 1, 0.3), TrainConfig().replace(size=128, width_mult=0.35), "RUN", threshold=0.99)
    assert "mostly background detections: more training images of the scenes without the objects (negatives)" in text


def test_adamw_gets_its_own_learning_rate():
    config, _ = derive_recipe(TrainConfig().replace(optimizer="adamw"), {"optimizer"}, stats(160, 1, 0.5), CPU)
    assert config.optim.lr == 0.001


def test_from_scratch_trains_with_adamw():
    """No pretrained backbone and no detector to start from: AdamW at the demo's rate; a pretrained start keeps SGD."""
    scratch = TrainConfig().replace(backbone_weights="none")
    config, choices = derive_recipe(scratch, {"backbone_weights"}, stats(160, 1, 0.5), CPU)
    assert (config.optim.optimizer, config.optim.lr) == ("adamw", 0.003)
    assert "from scratch" in next(c for c in choices if c.name == "optimizer").reason
    config, _ = derive_recipe(scratch.replace(init_from="run"), {"backbone_weights", "init_from"}, stats(160, 1, 0.5), CPU)
    assert (config.optim.optimizer, config.optim.lr) == ("sgd", 0.02)
    config, _ = derive_recipe(scratch.replace(optimizer="sgd"), {"backbone_weights", "optimizer"}, stats(160, 1, 0.5), CPU)
    assert (config.optim.optimizer, config.optim.lr) == ("sgd", 0.02)


def _changed(before: TrainConfig, after: TrainConfig) -> set[str]:
    """The (flat) field names whose values differ."""
    flat = lambda c: {k: v for s in c.to_dict().values() for k, v in (s.items() if isinstance(s, dict) else ())}  # noqa: E731
    a, b = {**before.to_dict(), **flat(before)}, {**after.to_dict(), **flat(after)}
    return {k for k in a if k not in ("model", "data", "optim") and a[k] != b[k]}


def test_train_help_names_no_default_the_recipe_replaces(capsys):
    """Every field the recipe derives (measured: what derive_recipe changes on a few datasets, what --search tries)
    says "derived from the data" in `ssdlite train --help`; no other field does."""
    from ssdlite.cli import main
    from ssdlite.engine.search import candidate_space
    from ssdlite.models.options import DERIVED_DEFAULT, flag_name

    changed = set()
    anchors = {"min_scale", "max_scale", "aspect_ratios", "reduce_lowest"}  # their search: the default-boxes test
    for start, data in [(TrainConfig(), stats(160, 1, 0.5)), (TrainConfig(), stats(291, 3, 0.06)),
                        (TrainConfig().replace(arch="mobilenet_v1"), stats(40, 2, 0.3))]:
        changed |= _changed(start, derive_recipe(start, anchors, data, CPU)[0])
    changed |= set(candidate_space(TrainConfig(), set(), 0.1))
    assert changed <= recipe.DERIVED, changed - recipe.DERIVED
    assert {"lr", "epochs", "batch_size", "augment", "optimizer", "size", "neck"} <= changed
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in recipe.DERIVED:
        assert f"{flag_name(name)} " in text
    shown = text.count(f"(default: {DERIVED_DEFAULT}")
    assert shown == len(recipe.DERIVED), shown
