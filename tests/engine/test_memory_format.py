"""Training runs in channels_last on the CPU by default (oneDNN's fast path), contiguous when told, and the
saved weights are plain contiguous tensors either way."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from ssdlite.engine import build_datasets, train, trainer


@pytest.mark.parametrize("setting, expected", [(None, True), (False, False)])
def test_trainer_memory_format(train_voc, tiny_config, tmp_path, monkeypatch, setting, expected):
    placed = []
    original = trainer.place_model

    def recording(model, device, channels_last=None):
        model = original(model, device, channels_last)
        placed.append(model.core.backbone.features[0][0].weight.is_contiguous(memory_format=torch.channels_last))
        return model

    monkeypatch.setattr(trainer, "place_model", recording)
    config = tiny_config.replace(epochs=1, val_every=0, precise_bn_images=0, channels_last=setting)
    train_set, _ = build_datasets(config.replace(data=str(train_voc), val_split=""))
    train(config, train_set, None, tmp_path / "run", plain_progress=True)
    assert placed == [expected]
    assert all(t.is_contiguous() for t in load_file(str(tmp_path / "run" / "model.safetensors")).values())
