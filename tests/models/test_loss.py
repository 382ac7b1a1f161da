import pytest
import torch

from ssdlite.models import ssdlite_mobilenet_v2


def small_model(num_classes=4):
    return ssdlite_mobilenet_v2(num_classes, size=160, width_mult=0.35).train()


def empty_target():
    return {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}


def test_no_ground_truth_gives_zero_box_loss_and_a_finite_class_loss():
    losses = small_model()([torch.rand(3, 100, 120)] * 2, [empty_target()] * 2)
    assert losses["bbox_regression"].item() == 0.0
    # Background-only images still teach "nothing here" through the minimum of hard negatives.
    assert torch.isfinite(losses["classification"]) and losses["classification"].item() > 0


def test_one_ground_truth_gives_both_losses_positive():
    target = {"boxes": torch.tensor([[10.0, 20.0, 60.0, 90.0]]), "labels": torch.tensor([2])}
    losses = small_model()([torch.rand(3, 100, 120), torch.rand(3, 90, 80)], [target, empty_target()])
    assert losses["bbox_regression"].item() > 0
    assert losses["classification"].item() > 0


def test_a_single_image_batch_in_train_mode_is_refused_clearly():
    with pytest.raises(ValueError, match="at least 2 images"):
        small_model()([torch.rand(3, 100, 120)], [empty_target()])


def test_boxes_are_read_in_each_images_own_pixels():
    # The same relative box on two image sizes is the same normalized target, so the same loss.
    model = small_model().eval()  # eval: BN uses running stats, so the two forwards are comparable
    image = torch.rand(3, 160, 160)
    small = {"boxes": torch.tensor([[16.0, 32.0, 80.0, 120.0]]), "labels": torch.tensor([1])}
    big = {"boxes": small["boxes"] * 2, "labels": small["labels"]}
    x, sizes_small = model.preprocess([image])
    logits, deltas = model.core(x)
    loss_small = model.compute_loss(logits, deltas, [small], sizes_small)
    loss_big = model.compute_loss(logits, deltas, [big], [(320, 320)])
    for key in loss_small:
        torch.testing.assert_close(loss_small[key], loss_big[key])


def test_a_stacked_batch_is_preprocessed_like_a_list():
    model = small_model()
    images = [torch.rand(3, 100, 120), torch.rand(3, 100, 120)]
    as_list, sizes_list = model.preprocess(images)
    as_batch, sizes_batch = model.preprocess(torch.stack(images))
    torch.testing.assert_close(as_batch, as_list)
    assert sizes_batch == sizes_list == [(100, 120), (100, 120)]
    uint8 = (torch.stack(images) * 255).round().to(torch.uint8)
    torch.testing.assert_close(model.preprocess(uint8)[0], model.preprocess(list(uint8))[0])
