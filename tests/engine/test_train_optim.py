"""Optimizer groups and learning-rate schedules."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ssdlite.engine.config import OptimConfig
from ssdlite.engine.ema import ModelEMA
from ssdlite.engine.optim import build_optimizer, lr_factor, parameter_groups


def test_no_weight_decay_on_batchnorm_and_biases():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.Conv2d(8, 4, 1), nn.Linear(4, 2))
    decay, no_decay = parameter_groups(model, 4e-5)
    assert decay["weight_decay"] == 4e-5 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(model[0].weight), id(model[2].weight), id(model[3].weight)}
    assert {id(p) for p in no_decay["params"]} == {id(model[1].weight), id(model[1].bias), id(model[2].bias), id(model[3].bias)}
    sgd = build_optimizer(model, OptimConfig(lr=0.1))
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["momentum"] == 0.9
    assert isinstance(build_optimizer(model, OptimConfig(optimizer="adamw")), torch.optim.AdamW)


def test_warmup_then_cosine():
    f = lr_factor(OptimConfig(warmup_epochs=1, warmup_factor=0.01), steps_per_epoch=10, epochs=11)
    assert f(0) == pytest.approx(0.01)
    assert f(5) == pytest.approx(0.505)  # halfway up the linear ramp
    assert f(10) == pytest.approx(1.0)  # peak at the end of warm-up
    assert f(60) == pytest.approx(0.5)  # cosine halfway through the 100 remaining steps
    assert f(109) == pytest.approx(0.5 * (1 + math.cos(math.pi * 99 / 100)))
    values = [f(s) for s in range(10, 110)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_sgdr_restarts_and_multistep_decays():
    sgdr = lr_factor(OptimConfig(schedule="sgdr", warmup_epochs=0, sgdr_period=2, sgdr_mult=2), steps_per_epoch=5, epochs=14)
    assert sgdr(0) == pytest.approx(1.0) and sgdr(10) == pytest.approx(1.0) and sgdr(30) == pytest.approx(1.0)  # cycles 10, 20, 40
    assert sgdr(5) == pytest.approx(0.5) and sgdr(20) == pytest.approx(0.5)
    step = lr_factor(OptimConfig(schedule="multistep", warmup_epochs=0, milestones=(0.5, 0.75), gamma=0.1), steps_per_epoch=10, epochs=10)
    assert [step(s) for s in (0, 49, 50, 74, 75, 99)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


def test_ema_follows_with_a_warmed_up_decay():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = ModelEMA(model, decay=0.9, tau=1.0)
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[1].num_batches_tracked.fill_(5)
    before = ema.module[0].weight.clone()
    ema.update(model)
    d = 0.9 * (1 - math.exp(-1.0))
    torch.testing.assert_close(ema.module[0].weight, d * before + (1 - d) * torch.ones(2, 2))
    assert int(ema.module[1].num_batches_tracked) == 5  # integer buffers are copied
    assert not any(p.requires_grad for p in ema.module.parameters())
    for _ in range(200):
        ema.update(model)
    torch.testing.assert_close(ema.module[0].weight, torch.ones(2, 2))
