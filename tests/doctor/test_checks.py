"""Each doctor check FAILs on a planted fault and PASSes on the healthy model."""

import numpy as np
import pytest
import torch
from torch import nn

from planted_faults import Detached, ListHeldExtras, Zeroed
from ssdlite.doctor import (
    FAIL,
    PASS,
    WARN,
    check_coverage,
    check_gradient_flow,
    check_input_dependence,
    check_inputs,
    check_labels,
    check_overfit,
    check_registration,
    fit_anchors,
)
from ssdlite.models import ssdlite_mobilenet_v2


def small_model():
    return ssdlite_mobilenet_v2(4, size=128, width_mult=0.35)


def batch():
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 128, 128, generator=g) for _ in range(2)]
    targets = [
        # Boxes of many sizes so every level has a positive default box.
        {"boxes": torch.tensor([[4.0, 4.0, 20.0, 20.0], [30.0, 30.0, 70.0, 70.0], [0.0, 0.0, 127.0, 127.0]]), "labels": torch.tensor([1, 2, 3])},
        {"boxes": torch.tensor([[10.0, 60.0, 60.0, 120.0], [64.0, 2.0, 126.0, 96.0], [5.0, 5.0, 122.0, 100.0]]), "labels": torch.tensor([3, 1, 2])},
    ]
    return images, targets


def annotations(boxes_per_image, labels=None, size=(100, 100)):
    out = []
    for i, boxes in enumerate(boxes_per_image):
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        lab = np.ones(len(boxes), dtype=np.int64) if labels is None else np.asarray(labels[i])
        out.append({"boxes": boxes, "labels": lab, "height": size[0], "width": size[1], "file_name": f"img{i}.jpg"})
    return out


def test_registration_passes_healthy_and_names_layers_in_a_plain_list():
    model = small_model()
    assert check_registration(model, torch.optim.SGD(model.parameters(), lr=0.1)).status == PASS
    model.core.extras = ListHeldExtras(model.core.extras)
    check = check_registration(model)
    assert check.status == FAIL
    assert any("core.extras.blocks[0]" in e for e in check.evidence)
    assert check.data["hidden_params"] > 0


def test_registration_fails_on_an_optimizer_built_before_a_layer_was_added():
    model = small_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.core.head.classification.predictors[0] = nn.Sequential(*model.core.head.classification.predictors[0])  # rebuilt layer
    model.core.head.classification.predictors[0][1] = nn.Conv2d(16, 3 * 4, 1)
    check = check_registration(model, optimizer)
    assert check.status == FAIL
    assert any("missing from the optimizer: core.head.classification.predictors.0.1.weight" in e for e in check.evidence)


def test_gradient_flow_passes_healthy_and_names_a_detached_head():
    model = small_model()
    images, targets = batch()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert check_gradient_flow(model, images, targets).status == PASS
    # The check leaves the model as it was: its train-mode forward must not move the BatchNorm statistics.
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    model.core.head.regression.predictors[1] = Detached(model.core.head.regression.predictors[1])
    check = check_gradient_flow(model, images, targets)
    assert check.status == FAIL
    assert any(e.startswith("core.head.regression.predictors.1.inner") and "no gradient" in e for e in check.evidence)


def test_gradient_flow_reports_frozen_parts_as_a_warning():
    model = small_model()
    model.core.backbone.requires_grad_(False)
    check = check_gradient_flow(model, *batch())
    assert check.status == WARN and "frozen" in check.summary


def test_gradient_flow_does_not_blame_levels_without_positives():
    model = small_model()
    images = [torch.rand(3, 128, 128), torch.rand(3, 128, 128)]
    targets = [{"boxes": torch.tensor([[0.0, 0.0, 127.0, 127.0]]), "labels": torch.tensor([1])}] * 2  # only the largest level
    check = check_gradient_flow(model, images, targets)
    assert check.status == PASS, check.evidence
    assert 0 in check.data["idle_regression_levels"]


def test_gradient_flow_does_not_blame_levels_that_this_batch_leaves_idle():
    """Untrained, two images, five boxes: hard-negative mining picks no default box of the coarse levels, so their
    classification branch and the neck layers feeding only them get an exactly zero gradient (this FAILed). They
    are wired (a gradient when every default box counts): idle, not a fault. A branch multiplied by zero still FAILs."""
    from model_checks import synthetic_pair

    from ssdlite import create_model

    model = create_model(4, arch="mobilenet_v2", neck="residual_fpn", size=300, width_mult=0.35)
    images, targets = synthetic_pair(300)
    check = check_gradient_flow(model, images, targets)
    assert check.status == PASS, check.evidence
    assert any(n.startswith("core.head.classification") for n in check.data["idle_parameters"])
    assert "wired, idle for these images" in check.summary
    model.core.head.classification.predictors[0] = Zeroed(model.core.head.classification.predictors[0])
    check = check_gradient_flow(model, images, targets)
    assert check.status == FAIL
    assert any(e.startswith("core.head.classification.predictors.0.inner") and "exactly zero" in e for e in check.evidence)


@pytest.mark.parametrize("bad_label, needle", [(0, "0 is the background"), (4, "above K = 3")])
def test_labels_fail_on_background_or_out_of_range_and_name_the_file(bad_label, needle):
    good = annotations([[[10, 10, 50, 50]], [[20, 20, 60, 60]]], labels=[[1], [2]])
    assert check_labels(good, 4, ["a", "b", "c"]).status in (PASS, WARN)
    bad = annotations([[[10, 10, 50, 50]], [[20, 20, 60, 60], [0, 0, 9, 9]]], labels=[[1], [2, bad_label]])
    check = check_labels(bad, 4, ["a", "b", "c"])
    assert check.status == FAIL
    assert check.evidence[0].startswith("img1.jpg") and needle in check.evidence[0]


def test_labels_warn_when_a_class_has_no_box():
    check = check_labels(annotations([[[10, 10, 50, 50]]], labels=[[1]]), 3, ["a", "b"])
    assert check.status == WARN and "b" in check.evidence[0]


def test_inputs_fail_on_0_255_floats_and_on_normalization_that_misfits_the_weights():
    assert check_inputs([torch.rand(3, 8, 8)], (0.5, 0.5, 0.5), "file.pth").status == PASS
    assert check_inputs([torch.rand(3, 8, 8) * 255], (0.5, 0.5, 0.5)).status == FAIL
    assert check_inputs([torch.rand(3, 8, 8) * 2 - 1], (0.5, 0.5, 0.5)).status == FAIL
    check = check_inputs([torch.randint(0, 255, (3, 8, 8), dtype=torch.uint8)], (0.485, 0.456, 0.406), "shared.pth")
    assert check.status == WARN and "expect mean" in check.evidence[0]


def test_coverage_passes_on_ordinary_boxes_and_fails_on_tiny_ones():
    model = small_model()
    ordinary = annotations([[[10, 10, 60, 70]], [[0, 0, 90, 95]], [[30, 20, 80, 60]]])
    assert check_coverage(ordinary, model.default_boxes, model.size).status == PASS
    tiny = annotations([[[10, 10, 12, 12]], [[50, 50, 51.5, 52]], [[70, 30, 72, 33]]])
    check = check_coverage(tiny, model.default_boxes, model.size)
    assert check.status == FAIL and check.data["table"]["by_size"]["small"]["covered"] == 0.0
    assert "anchors fit" in check.suggestion


def test_fit_anchors_improves_coverage_of_small_boxes():
    model = small_model()
    # 5 px boxes (0.05 of the image) on the centres of the 8x8 map (stride 16 at input 128).
    boxes = annotations([[[16.25, 16.25, 21.25, 21.25], [41.25, 66.25, 46.25, 71.25]] for _ in range(3)])
    default = check_coverage(boxes, model.default_boxes, model.size).data["table"]["all"]["covered"]
    results = fit_anchors(
        boxes, model.feature_sizes, model.config, min_scales=(0.05, 0.2), max_scales=(0.95,), aspect_ratio_sets=((2.0, 3.0),),
        reduce_lowest=(True, False),
    )
    best = results[0]
    assert default == 0.0 and best["covered"] == 1.0
    assert (best["min_scale"], best["reduce_lowest"]) == (0.05, False)
    assert [r["covered"] for r in results] == sorted((r["covered"] for r in results), reverse=True)


def test_fit_anchors_refuses_annotations_without_boxes():
    from ssdlite.errors import DataError

    model = small_model()
    with pytest.raises(DataError, match="no boxes in the 2 annotations"):  # not a "best" setting ranked on NaN coverage
        fit_anchors(annotations([[], []]), model.feature_sizes, model.config)


def test_overfit_passes_healthy_and_fails_with_a_detached_class_head():
    torch.manual_seed(0)
    images, targets = batch()
    model = ssdlite_mobilenet_v2(4, size=128, width_mult=0.5)
    check = check_overfit(model, images, targets, steps=150)
    assert check.status == PASS, (check.summary, check.evidence)
    broken = ssdlite_mobilenet_v2(4, size=128, width_mult=0.5)
    for i, p in enumerate(broken.core.head.classification.predictors):
        broken.core.head.classification.predictors[i] = Detached(p)
    check = check_overfit(broken, images, targets, steps=20)
    assert check.status == FAIL and check.suggestion


def test_input_dependence_passes_healthy_and_fails_when_stale_statistics_flatten_a_map():
    model = small_model()
    images, _ = batch()
    assert check_input_dependence(model, images).status == PASS
    # Statistics that no longer fit the weights (the frozen-BatchNorm drift met on raccoon): a mean far
    # off saturates the ReLU6 after the last backbone BatchNorm, so that map is 6 for every image.
    last_bn = [m for m in model.core.backbone.modules() if isinstance(m, nn.BatchNorm2d)][-1]
    last_bn.running_mean.fill_(-1e3)
    check = check_input_dependence(model, images)
    assert check.status == FAIL
    assert "map 1" in check.summary and "class logits" in check.summary
    assert model.training  # left in the mode it was in


def test_input_dependence_skips_identical_images():
    image = torch.rand(3, 128, 128, generator=torch.Generator().manual_seed(1))
    assert check_input_dependence(small_model(), [image, image.clone()]).status == WARN
