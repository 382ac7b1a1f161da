import pytest
import torch

from ssdlite.models import ssdlite_mobilenet_v2


@pytest.fixture(scope="module")
def model():
    return ssdlite_mobilenet_v2(4, size=128, width_mult=0.35).train()


@pytest.mark.parametrize(
    "target, message",
    [
        ({"boxes": torch.tensor([[0.0, 0.0, 10.0]]), "labels": torch.tensor([1])}, "shape"),
        ({"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]), "labels": torch.tensor([1, 2])}, "labels must have shape"),
        ({"boxes": torch.tensor([[5.0, 0.0, 5.0, 10.0]]), "labels": torch.tensor([1])}, "degenerate"),
        ({"boxes": torch.tensor([[9.0, 0.0, 5.0, 10.0]]), "labels": torch.tensor([1])}, "degenerate"),
        ({"boxes": torch.tensor([[0.0, float("nan"), 5.0, 10.0]]), "labels": torch.tensor([1])}, "NaN"),
        ({"boxes": torch.tensor([[0.0, 0.0, 5.0, 10.0]]), "labels": torch.tensor([0])}, "0 is the background"),
        ({"boxes": torch.tensor([[0.0, 0.0, 5.0, 10.0]]), "labels": torch.tensor([4])}, "1..3"),
        ({"boxes": torch.tensor([[0.0, 0.0, 5.0, 10.0]]), "labels": torch.tensor([1.0])}, "integers"),
        ({"labels": torch.tensor([1])}, "no 'boxes'"),
    ],
)
def test_bad_targets_raise_value_error_saying_what(model, target, message):
    with pytest.raises(ValueError, match=message):
        model([torch.rand(3, 64, 64)] * 2, [target] * 2)


def test_train_mode_needs_targets(model):
    with pytest.raises(ValueError, match="needs targets"):
        model([torch.rand(3, 64, 64)] * 2)


def test_bad_images_raise(model):
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        model.eval()([torch.rand(1, 64, 64)])
    model.train()
