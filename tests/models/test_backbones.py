"""The backbone table: every row builds, and what it declares (channels, strides, the stride-8 map, ImageNet weights)
is what a real forward pass and the builder give; the configuration and the flags offer exactly its rows."""

from __future__ import annotations

import math

import pytest
import torch

from ssdlite.errors import UserError
from ssdlite.models import ARCHS, ModelConfig, backbones, create_model
from ssdlite.models.factory import _build_backbone

#: An input every backbone's maps fit (SSD300's VGG16 too), small enough to run fast.
SIZE = 96


def _maps(row: backbones.Backbone, **fields) -> tuple[torch.nn.Module, list[torch.Tensor]]:
    backbone, _ = _build_backbone(ModelConfig(arch=row.name, **fields))
    with torch.no_grad():
        return backbone, backbone.eval()(torch.zeros(1, 3, SIZE, SIZE))


@pytest.mark.parametrize("row", backbones.BACKBONES, ids=lambda r: r.name)
def test_a_row_declares_the_maps_its_backbone_returns(row):
    backbone, maps = _maps(row)
    assert backbone.out_channels == row.channels
    # (channels, stride) of each map as the forward pass gives them: stride from the map's side (ceil division).
    assert [m.shape[1] for m in maps] == list(row.channels)
    assert [m.shape[-1] for m in maps] == [math.ceil(SIZE / s) for s in row.strides]
    if row.stride8_channels is None:
        with pytest.raises(ValueError, match="no stride-8 map"):
            _build_backbone(ModelConfig(arch=row.name, neck="fpn", fpn_stride8=True))
        return
    backbone, maps = _maps(row, neck="fpn", fpn_stride8=True)
    assert backbone.out_channels == (row.stride8_channels, *row.channels)
    assert [m.shape[-1] for m in maps] == [math.ceil(SIZE / s) for s in (8, *row.strides)]


@pytest.mark.parametrize("row", backbones.BACKBONES, ids=lambda r: r.name)
def test_a_row_says_whether_imagenet_weights_exist(row):
    backbone, _ = _build_backbone(ModelConfig(arch=row.name))
    if row.imagenet is None:
        assert not hasattr(backbone, "imagenet_state_dict")
        with pytest.raises(UserError, match=f"no ImageNet weights for {row.name}"):
            create_model(3, arch=row.name, size=SIZE, backbone_weights="imagenet")
    else:
        assert callable(backbone.imagenet_state_dict)  # not called: it downloads
    assert callable(backbone.load_torchvision_state_dict)
    if not row.widths:
        with pytest.raises(ValueError, match="no width multiplier"):
            _build_backbone(ModelConfig(arch=row.name, width_mult=0.5))


def test_the_configuration_and_the_flags_offer_the_rows():
    assert ARCHS == backbones.names() and ModelConfig().arch == backbones.DEFAULT.name
    for row in backbones.BACKBONES:
        for alias in row.aliases:
            assert ModelConfig.from_dict({"arch": alias}).arch == row.name
        resolved = ModelConfig(arch=row.name).resolved()
        assert (resolved.size, resolved.head) == (row.defaults.size, row.defaults.head)
    from ssdlite.cli import build_parser

    train = next(a for a in build_parser()._actions if a.dest == "command").choices["train"]
    assert next(a for a in train._actions if a.dest == "arch").choices == backbones.names()
