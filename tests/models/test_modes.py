"""Train/eval mode for a block, with every layer's own mode restored afterwards."""

from __future__ import annotations

import pytest
from torch import nn

from ssdlite.models.modes import evaluating, in_mode


def _net() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Sequential(nn.Dropout(0.5), nn.BatchNorm2d(4)))


def _modes(module: nn.Module) -> list[bool]:
    return [m.training for m in module.modules()]


def test_evaluating_restores_mixed_modes_layer_by_layer():
    net = _net().train()
    net[2][1].eval()  # a frozen BatchNorm inside a training model
    before = _modes(net)
    with evaluating(net):
        assert not any(_modes(net))
    assert _modes(net) == before == [True, True, True, True, True, False]


def test_each_module_gets_its_own_flag_back():
    backbone, extras = _net().eval(), _net().train()
    with evaluating(backbone, extras):
        assert not any(_modes(backbone)) and not any(_modes(extras))
    assert not any(_modes(backbone)) and all(_modes(extras))


def test_train_mode_for_a_block_and_restore_on_an_exception():
    net = _net().eval()
    with pytest.raises(RuntimeError, match="boom"), in_mode(net, training=True):
        assert all(_modes(net))
        raise RuntimeError("boom")
    assert not any(_modes(net))


def test_an_overridden_train_is_obeyed_on_entry():
    class KeepsNormFrozen(nn.Sequential):
        def train(self, mode: bool = True):
            super().train(mode)
            self[1].eval()
            return self

    net = KeepsNormFrozen(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).eval()
    with in_mode(net, training=True):
        assert net.training and net[0].training and not net[1].training
    assert not any(_modes(net))
