"""The training configuration: defaults < YAML < flags, strict parsing, round trips."""

from __future__ import annotations

import argparse

import pytest

from ssdlite.engine.config import TrainConfig, add_config_arguments, load_yaml, overrides_from_args
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
        _parse(["--augment", "mosaic"])  # choices come from the field


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
