"""The non-finite guard: bad steps are skipped and logged; a diverged run stops naming the last good checkpoint."""

from __future__ import annotations

import json

import pytest
import torch

import ssdlite.engine.trainer as trainer
from ssdlite.data import SyntheticShapes, train_transforms
from ssdlite.engine import train
from ssdlite.engine.guard import TrainingDiverged
from ssdlite.models.backbones import SIGNED_UNIT


def _datasets():
    train_set = SyntheticShapes(8, size=128, seed=0, split="train", transforms=train_transforms("none", 128, SIGNED_UNIT[0]))
    return train_set, SyntheticShapes(2, size=128, seed=0, split="val")


def _poison(monkeypatch, bad_step, where: str):
    """Build models whose classification logits (``where="loss"``) or gradients (``"gradient"``)
    become NaN on the forward passes ``bad_step(n)`` says, counting from 0."""
    build = trainer.build_training_model
    calls = {"n": 0}

    def build_poisoned(*args, **kwargs):
        model = build(*args, **kwargs)

        def hook(module, inputs, output):
            if not module.training:
                return output
            n = calls["n"]
            calls["n"] += 1
            if not bad_step(n):
                return output
            cls_logits, bbox_deltas = output
            if where == "loss":
                return cls_logits * float("nan"), bbox_deltas
            bbox_deltas.register_hook(lambda grad: grad * float("nan"))
            return cls_logits, bbox_deltas

        model.core.register_forward_hook(hook)
        return model

    monkeypatch.setattr(trainer, "build_training_model", build_poisoned)


def _records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("where", ["loss", "gradient"])
def test_diverged_run_stops_and_keeps_the_last_good_checkpoint(monkeypatch, tiny_config, tmp_path, where):
    # Two steps per epoch: epoch 1 is clean and checkpointed, every step of epoch 2 is non-finite.
    _poison(monkeypatch, lambda n: n >= 2, where)
    config = tiny_config.replace(epochs=4, max_bad_steps=2, val_every=0)
    with pytest.raises(TrainingDiverged) as err:
        train(config, *_datasets(), tmp_path, plain_progress=True)
    last = tmp_path / "last.pt"
    assert str(last) in str(err.value) and f"non-finite {where}" in str(err.value)
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["step"] == 2, "the last good checkpoint was overwritten"
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    skipped = [r for r in _records(tmp_path) if r["kind"] == "skipped"]
    assert [r["step"] for r in skipped] == [2, 3] and skipped[0]["reason"] == f"non-finite {where}"


def test_isolated_bad_steps_are_skipped_and_training_goes_on(monkeypatch, tiny_config, tmp_path):
    _poison(monkeypatch, lambda n: n % 2 == 1, "gradient")
    result = train(tiny_config.replace(epochs=2, max_bad_steps=2, val_every=0), *_datasets(), tmp_path, plain_progress=True)
    assert result.epochs_done == 2 and result.skipped_steps == 2
    epochs = [r for r in _records(tmp_path) if r["kind"] == "epoch"]
    assert [r["skipped_steps"] for r in epochs] == [1, 1]
    assert (tmp_path / "model.safetensors").exists()
