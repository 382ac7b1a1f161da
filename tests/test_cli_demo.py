"""`ssdlite demo` end to end at a toy scale: every output is written and the summary tells the setting."""

import json

from ssdlite.cli import build_parser, main
from ssdlite.cli.demo import DEMO_MODEL, MAX_EPOCHS, MIN_EPOCHS, TRAIN_MINUTES
from ssdlite.cli.options import model_config_from_args


def test_demo_defaults_are_the_fpn_stride8_model():
    args = build_parser().parse_args(["demo"])
    config = model_config_from_args(args, DEMO_MODEL)
    assert (config.neck, config.fpn_stride8, config.size, config.width_mult) == ("fpn", True, 128, 0.5)
    assert (args.epochs, args.time_budget) == (None, TRAIN_MINUTES)  # epochs fitted to the budget by default
    assert (args.optimizer, args.lr) == (None, None)  # the recipe's from-scratch optimizer and rate unless given
    args = build_parser().parse_args(["demo", "--no-fpn-stride8", "--size", "160"])
    assert (model_config_from_args(args, DEMO_MODEL).fpn_stride8, model_config_from_args(args, DEMO_MODEL).size) == (False, 160)


def test_demo_fits_its_epochs_to_the_measured_speed(tmp_path, monkeypatch, capsys):
    """Without --epochs, the epochs come from the training budget at the measured speed, between MIN_EPOCHS (the
    target accuracy needs them) and MAX_EPOCHS (more do not help); the run reports why."""
    from ssdlite.cli.demo import _fit_epochs
    from ssdlite.engine import TrainConfig, build_datasets, recipe

    speeds = []
    monkeypatch.setattr(recipe, "measure_speed", lambda *a, **k: speeds[-1])
    out = tmp_path / "demo"
    # 0.2 minutes = 11 s of training after the margin, less the demo's 3 validations of (4 + 16) images at a third of
    # the cost: at 8 img/s that is 11.04 - 2.5 = 8.5 s, 68 images, 4 epochs of 16: raised to MIN_EPOCHS.
    speeds.append(8.0)
    argv = ["demo", "--out", str(out), "--num-train", "16", "--num-val", "4", "--draw", "0", "--workers", "0", "--time-budget", "0.2"]
    assert main(argv) == 0
    assert json.loads((out / "summary.json").read_text())["setting"]["training"]["epochs"] == MIN_EPOCHS
    assert f"{MIN_EPOCHS} epochs (at least {MIN_EPOCHS} for the target accuracy; 0.2 minutes at the measured speed would fit 4)" in capsys.readouterr().out

    config = TrainConfig(model=DEMO_MODEL).replace(data=str(out / "data"), epochs=MAX_EPOCHS, workers=0).resolved()
    train_set, val_set = build_datasets(config)
    speeds.append(23.0)  # 0.12 minutes: (6.62 - 3 x 20 / 69) s x 23 img/s = 132 images, 8 epochs of 16
    fitted, reason = _fit_epochs(config, train_set, len(val_set), 0.12)
    assert MIN_EPOCHS < fitted.epochs == 8 < MAX_EPOCHS and "0.12 minutes at the measured 23.0 img/s" in reason
    assert "keeping time for 3 validations" in reason and fitted.val_every == 8 // 3
    speeds.append(0.01)  # not one epoch fits: still the demo, at the floor
    fitted, reason = _fit_epochs(config, train_set, len(val_set), 0.12)
    assert fitted.epochs == MIN_EPOCHS and "not one epoch fits" in reason
    speeds.append(1e6)  # a fast machine: capped
    fitted, reason = _fit_epochs(config, train_set, len(val_set), TRAIN_MINUTES)
    assert fitted.epochs == MAX_EPOCHS and reason.startswith(f"at most {MAX_EPOCHS}")


def test_demo_writes_every_output(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--num-train", "32", "--num-val", "8", "--epochs", "1", "--draw", "2", "--workers", "0"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    table = captured.out
    assert "VOC mAP@0.5 (all-point)" in table and "neck fpn + stride 8" in table
    assert f"[1/4] generated 32+8 synthetic images of 128 px in {out / 'data'}" in captured.err

    summary = json.loads((out / "summary.json").read_text())
    assert summary["setting"]["model"]["neck"] == "fpn" and summary["setting"]["model"]["fpn_stride8"] is True
    optim = summary["setting"]["training"]["optim"]
    assert (optim["optimizer"], optim["lr"], optim["warmup_epochs"]) == ("adamw", 0.003, 0.3) and "adamw lr 0.003" in table
    assert 0.0 <= summary["metrics"]["voc_map50"] <= 1.0
    assert summary["passed"] == (summary["metrics"]["voc_map50"] >= summary["target_voc_map50"])
    for path in ("train/model.safetensors", "train/training_curves.png", "summary.md", *summary["drawn"]):
        assert (out / path).is_file(), path
    assert len(summary["drawn"]) == 2
    assert list((out / "eval").iterdir()), "no evaluation plots"
    # A second run with the same data arguments reuses the images instead of drawing them again (and says so).
    from ssdlite.cli.demo import _dataset

    assert _dataset(out, build_parser().parse_args(argv)) == (out / "data", True)
    argv[argv.index("--num-val") + 1] = "4"
    assert _dataset(out, build_parser().parse_args(argv)) == (out / "data", False)


def test_demo_without_the_neck_drops_the_stride8_level(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--neck", "none", "--num-train", "16", "--num-val", "4", "--epochs", "1", "--draw", "1", "--workers", "0"]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["setting"]["model"]["neck"] == "none" and summary["setting"]["model"]["fpn_stride8"] is False
