"""The training configuration: defaults < YAML < flags, strict parsing, round trips."""

from __future__ import annotations

import argparse

import pytest

from ssdlite.engine.config import OptimConfig, TrainConfig, add_config_arguments, load_yaml, overrides_from_args
from ssdlite.errors import UserError


def _parse(argv):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return overrides_from_args(parser.parse_args(argv))


def test_flags_are_generated_from_fields_and_only_given_ones_override():
    overrides = _parse(["--epochs", "7", "--lr", "0.2", "--size", "160", "--no-ema", "--augment", "none", "--milestones", "0.5", "0.8"])
    assert overrides == {"epochs": 7, "lr": 0.2, "size": 160, "ema": False, "augment": "none", "milestones": [0.5, 0.8]}
    config = TrainConfig().replace(**overrides)
    assert (config.epochs, config.optim.lr, config.model.size, config.ema, config.data.augment) == (7, 0.2, 160, False, "none")
    assert config.optim.milestones == (0.5, 0.8)
    assert config.optim.momentum == TrainConfig().optim.momentum  # untouched fields keep their defaults
    with pytest.raises(SystemExit):
        _parse(["--augment", "cutmix"])  # choices come from the field


def test_yaml_sets_defaults_and_round_trips(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("epochs: 3\nmodel:\n  size: 160\n  width_mult: 0.5\noptim:\n  lr: 0.1\n  schedule: sgdr\n")
    config = load_yaml(path)
    assert (config.epochs, config.model.size, config.model.width_mult, config.optim.lr, config.optim.schedule) == (3, 160, 0.5, 0.1, "sgdr")
    config = config.replace(lr=0.05)  # a flag on top of the file
    saved = tmp_path / "config.yaml"
    config.save_yaml(saved)
    assert load_yaml(saved) == config
    assert TrainConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    "text, message",
    [
        ("epochs: 3\nmodle:\n  size: 160\n", "unknown key(s) modle"),
        ("model:\n  size: big\n", "model.size: expected int"),
        ("optim:\n  schedule: linear\n", "optim.schedule: 'linear' is not one of"),
        ("epochs: [3\n", "not valid YAML"),
    ],
)
def test_bad_yaml_names_the_file_and_the_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as err:
        load_yaml(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_config_is_frozen():
    with pytest.raises(AttributeError):
        TrainConfig().epochs = 3


def test_training_configurations_of_earlier_versions_still_read():
    """Round 1 kept freeze_bn, sync_bn and init_from in the model section: resumed runs and old recipes still load."""
    config = TrainConfig.from_dict({"model": {"size": 160, "freeze_bn": "backbone", "init_from": "run"}, "epochs": 3})
    assert (config.freeze_bn, config.init_from, config.model.size, config.epochs) == ("backbone", "run", 160, 3)


def test_the_model_section_is_the_model_configuration():
    from ssdlite.models import ModelConfig

    config = TrainConfig().replace(arch="vgg16", nms_threshold=0.5)
    assert isinstance(config.model, ModelConfig) and config.model.nms_threshold == 0.5
    assert config.resolved().model == ModelConfig(arch="vgg16", nms_threshold=0.5).resolved()


def test_a_setting_out_of_its_range_names_the_key_the_value_and_what_is_allowed(tmp_path):
    """issue 34: a negative learning rate in --config reached torch.optim and ended in its traceback."""
    path = tmp_path / "run.yaml"
    path.write_text("optim:\n  lr: -0.1\n")
    with pytest.raises(UserError, match=rf"^{path}: optim.lr = -0.1: must be in \(0, 10\]$"):
        load_yaml(path)
    path.write_text("model:\n  variances: [0.1, 0.1, 0.2]\n")
    with pytest.raises(UserError, match=r"model.variances = \[0.1, 0.1, 0.2\]: must be 4 values, each > 0"):
        load_yaml(path)
    path.write_text("optim:\n  milestones: [0.5, .nan]\n")
    with pytest.raises(UserError, match=r"optim.milestones = \[0.5, nan\]: must be a finite number"):
        load_yaml(path)
    # The same rule for library callers and for a checkpoint's stored configuration (read by from_dict).
    with pytest.raises(ValueError, match=r"^batch_size = 0: must be in \[1, 65536\]$"):
        TrainConfig(batch_size=0)
    with pytest.raises(UserError, match=r"^last.pt: data.workers = -1: must be in \[0, 256\]$"):
        TrainConfig.from_dict({**TrainConfig().to_dict(), "data": {"workers": -1}}, "last.pt")


def test_a_flag_out_of_its_range_is_the_parsers_error(capsys):
    """issue 34: `--batch-size 0` ended in a ZeroDivisionError in the recipe, `--workers -1` in DataLoader's ValueError."""
    for argv, message in [
        (["--batch-size", "0"], "argument --batch-size: invalid value '0': must be in [1, 65536]"),
        (["--workers", "-1"], "argument --workers: invalid value '-1': must be in [0, 256]"),
        (["--lr", "nan"], "argument --lr: invalid value 'nan': must be a finite number"),
        (["--milestones", "0.5", "2"], "argument --milestones: invalid value '2': must be in [0, 1]"),
        (["--aspect-ratios", "2", "/", "0.5"], "--aspect-ratios: invalid value '0.5': must be in (1, 100]"),
    ]:
        with pytest.raises(SystemExit) as exit:
            _parse(argv)
        assert exit.value.code == 2 and message in capsys.readouterr().err
    # The range is in the help, next to the default.
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    assert "peak learning rate (after warm-up) for the whole global batch (default: 0.03; in (0, 10])" in " ".join(parser.format_help().split())


def test_sgdr_with_cycles_that_do_not_grow_is_refused_and_its_position_costs_no_loop():
    """issue 34: `sgdr_mult` below 1 made the schedule's cycle loop spin forever (cycles shrinking to nothing; with
    0 the second cycle is empty): with a one-step first cycle, in the scheduler's update after the first step, before
    the progress bar ever showed it."""
    from ssdlite.engine.optim import lr_factor

    with pytest.raises(UserError, match=r"optim.sgdr_mult = 0.5: must be >= 1"):
        TrainConfig.from_dict({"optim": {"schedule": "sgdr", "sgdr_mult": 0.5}})
    with pytest.raises(ValueError, match=r"sgdr_mult = 0.0: must be >= 1"):
        OptimConfig(schedule="sgdr", sgdr_mult=0.0)
    # The largest allowed run at the shortest cycle: the factor at its last step is immediate (closed form).
    factor = lr_factor(OptimConfig(schedule="sgdr", warmup_epochs=0, sgdr_period=1e-9, sgdr_mult=1.0), 10_000, 100_000)
    assert factor(10_000 * 100_000 - 1) == pytest.approx(1.0)


def test_ssdlite_train_refuses_an_out_of_range_setting_before_any_work(tmp_path, capsys):
    """The issue's reproductions through the program: exit 2, one line naming the key, no traceback."""
    from ssdlite.cli import main

    path = tmp_path / "run.yaml"
    path.write_text("optim:\n  lr: -0.1\n")
    assert main(["train", "--config", str(path), "--data", str(tmp_path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"ssdlite train: error: {path}: optim.lr = -0.1: must be in (0, 10]" in err and "Traceback" not in err
    for flag, value in (("--batch-size", "0"), ("--workers", "-1"), ("--sgdr-mult", "0")):
        with pytest.raises(SystemExit) as exit:
            main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), flag, value])
        assert exit.value.code == 2 and f"argument {flag}: invalid value '{value}'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_new_run_never_overwrites_an_earlier_run(tmp_path, capsys):
    """--out naming a finished (or interrupted) run is refused before any work, pointing to --resume; a file is not a
    run directory; an empty existing folder is fine (the data check then refuses the empty dataset, not the folder)."""
    from ssdlite.cli import main

    run = tmp_path / "run"
    run.mkdir()
    (run / "best.pt").write_bytes(b"earlier work")
    assert main(["train", "--data", str(tmp_path), "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert f"--out {run}: holds a training run (best.pt); continue it with --resume {run}" in err and "Traceback" not in err
    assert (run / "best.pt").read_bytes() == b"earlier work"
    (tmp_path / "file").write_text("x")
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "file")]) == 2
    assert "is a file, not a folder to write into" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "holds a training run" not in err and "not a folder" not in err and "Traceback" not in err
