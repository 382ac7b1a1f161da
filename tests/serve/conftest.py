"""A small model that really detects the synthetic shapes, saved once per session for the serve tests."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install -e '.[serve]'")


@pytest.fixture(scope="session")
def weights(tmp_path_factory):
    """A 128 px, width 0.35 SSDLite overfitted on two synthetic-shapes images (about 10 s on 2 cores)."""
    from model_checks import overfit_problems
    from serve_helpers import TRAINED

    from ssdlite.data.synthetic import SHAPES, SyntheticShapes
    from ssdlite.models import ssdlite_mobilenet_v2
    from ssdlite.models.io import save_safetensors

    dataset = SyntheticShapes(num_images=max(TRAINED) + 1, size=128, seed=0, split="val")
    images, targets = [], []
    for index in TRAINED:
        image, target = dataset[index]
        images.append(image.as_subclass(torch.Tensor))
        targets.append({"boxes": target["boxes"].as_subclass(torch.Tensor), "labels": target["labels"]})
    torch.manual_seed(0)
    model = ssdlite_mobilenet_v2(len(SHAPES) + 1, size=128, width_mult=0.35)
    assert overfit_problems(model, images, targets, steps=80) == []  # it finds every shape: boxes to draw and count
    path = tmp_path_factory.mktemp("serve") / "model.safetensors"
    save_safetensors(model.eval(), path, classes=list(SHAPES))
    return path


@pytest.fixture(scope="session")
def predictor(weights):
    from ssdlite.deploy.predictor import Predictor

    return Predictor(weights, score_threshold=0.0)
