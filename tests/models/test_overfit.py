"""It learns: overfitting two synthetic images recovers every box with the right label."""

import torch

from model_checks import overfit_problems, synthetic_pair
from ssdlite.models import ssdlite_mobilenet_v2


def test_overfits_two_images():
    torch.manual_seed(0)
    images, targets = synthetic_pair()
    model = ssdlite_mobilenet_v2(4, size=160, width_mult=0.5)
    assert overfit_problems(model, images, targets) == []
