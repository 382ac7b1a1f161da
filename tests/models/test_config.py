"""ModelConfig: one place for every model default, resolved once, strict, and readable from older files."""

from __future__ import annotations

import pytest

from ssdlite.errors import ConfigError, UserError
from ssdlite.models import ModelConfig, build_model
from ssdlite.models.backbones import CAFFE, IMAGENET, SIGNED_UNIT, SSD300


def test_resolution_follows_the_architecture_and_the_weights():
    mobile = ModelConfig().resolved()
    assert (mobile.size, mobile.head, mobile.image_mean, mobile.reduce_lowest, mobile.clip_boxes) == (320, "lite", SIGNED_UNIT[0], True, "none")
    assert mobile.aspect_ratios == (2.0, 3.0) and mobile.scales is None
    vgg = ModelConfig(arch="vgg16").resolved()
    assert (vgg.size, vgg.head, vgg.image_mean, vgg.reduce_lowest, vgg.clip_boxes) == (300, "ssd", CAFFE[0], False, "size")
    assert vgg.scales == SSD300.scales == (0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05) and len(vgg.aspect_ratios) == 6
    # SSD300's explicit scales and steps belong to 300; another size derives them from min/max scale.
    assert ModelConfig(arch="vgg16", size=512).resolved().scales is None
    assert ModelConfig(backbone_weights="imagenet").resolved().image_mean == IMAGENET[0]
    assert ModelConfig(arch="vgg16", backbone_weights="imagenet").resolved().image_mean == CAFFE[0]
    # Given values win, and resolving twice changes nothing.
    given = ModelConfig(size=192, head="ssd", image_mean=(0.1, 0.2, 0.3)).resolved()
    assert (given.size, given.head, given.image_mean) == (192, "ssd", (0.1, 0.2, 0.3))
    assert given.resolved() == given


def test_a_model_records_its_resolved_configuration_without_the_weights_file():
    model = build_model(ModelConfig(num_classes=3, size=128, width_mult=0.35))
    assert model.config == ModelConfig(num_classes=3, size=128, width_mult=0.35).resolved()
    assert model.config.backbone_weights is None


def test_configurations_written_by_earlier_versions_still_build():
    # model.config as round-1 create_model wrote it into model.safetensors and checkpoints.
    old = {
        "arch": "ssdlite_mobilenet_v2", "num_classes": 3, "size": 128, "width_mult": 0.35, "head": "lite",
        "neck": "none", "fpn_stride8": False, "reduced_tail": False, "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5], "min_scale": 0.2, "max_scale": 0.95, "aspect_ratios": [2.0, 3.0],
        "reduce_lowest": True, "clip_boxes": False, "scales": None, "steps": None,
    }
    config = ModelConfig.from_dict(old)
    assert (config.arch, config.clip_boxes, config.aspect_ratios) == ("mobilenet_v2", "none", (2.0, 3.0))
    assert build_model(old).config == build_model(ModelConfig(num_classes=3, size=128, width_mult=0.35)).config
    assert ModelConfig.from_dict({**old, "clip_boxes": True}).clip_boxes == "image"


def test_bad_settings_name_the_field_for_users_and_for_library_callers():
    with pytest.raises(ConfigError, match="neck: 'bifpn' is not one of none, fpn"):
        ModelConfig().replace(neck="bifpn")
    assert issubclass(ConfigError, UserError) and issubclass(ConfigError, ValueError)
    with pytest.raises(ConfigError, match="unknown key"):
        ModelConfig.from_dict({"sise": 320})
    with pytest.raises(ConfigError, match="size: expected int"):
        ModelConfig.from_dict({"size": "big"})
    with pytest.raises(ValueError, match=r"image_mean = \[0.5\]: must be 3 values"):
        ModelConfig(image_mean=(0.5,))
    with pytest.raises(ValueError, match="unknown architecture 'resnet50'"):
        ModelConfig(arch="resnet50")
    with pytest.raises(ValueError, match="neck='fpn'"):
        ModelConfig(fpn_stride8=True).resolved()


def test_per_level_aspect_ratios_round_trip():
    per_level = ModelConfig().replace(aspect_ratios=[[2.0], [2.0, 3.0], [2.0], [2.0], [2.0], [2.0]])
    assert per_level.aspect_ratios == ((2.0,), (2.0, 3.0), (2.0,), (2.0,), (2.0,), (2.0,))
    assert ModelConfig.from_dict(per_level.to_dict()) == per_level
    model = build_model(per_level.replace(num_classes=3, size=160, reduce_lowest=False))
    assert model.default_boxes.boxes_per_location == [4, 6, 4, 4, 4, 4]
