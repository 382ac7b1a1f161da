"""Every parameter is registered, trained and saved; and the check can fail."""

import torch
from torch import nn

from ssdlite.models import ssdlite_mobilenet_v2
from planted_faults import ListHeldExtras
from ssdlite.models.registration import find_unregistered
from model_checks import all_layers_learn


def test_every_parameter_gets_a_finite_nonzero_gradient_and_is_saved():
    model = ssdlite_mobilenet_v2(4, size=128, width_mult=0.35)
    assert all_layers_learn(model) == []
    n_params = sum(1 for _ in model.parameters())
    assert n_params == len([k for k in model.state_dict() if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))])


def broken_model():
    model = ssdlite_mobilenet_v2(4, size=128, width_mult=0.35)
    model.core.extras = ListHeldExtras(model.core.extras)
    return model


def test_the_check_fails_on_layers_held_in_a_plain_list():
    model = broken_model()
    # The broken model still runs and still "trains"...
    losses = model.train()(
        [torch.rand(3, 64, 64)] * 2, [{"boxes": torch.tensor([[1.0, 1.0, 30.0, 30.0]]), "labels": torch.tensor([1])}] * 2
    )
    assert torch.isfinite(sum(losses.values()))
    # ...but its extra layers are in neither parameters() nor the state dict, and the check says so.
    problems = all_layers_learn(model)
    assert any(p.startswith("unregistered: core.extras.blocks[0]") for p in problems)
    assert not any(k.startswith("core.extras") for k in model.state_dict())
    hidden_params = sum(p.numel() for block in model.core.extras.blocks for p in block.parameters())
    assert hidden_params > 0 and len(find_unregistered(model)) == 4


def test_the_check_fails_on_a_detached_head():
    model = ssdlite_mobilenet_v2(4, size=128, width_mult=0.35)
    model.core.head.regression.predictors[2].requires_grad_(False)
    problems = all_layers_learn(model)
    assert any("head.regression.predictors.2" in p for p in problems)


def test_plain_list_of_references_to_registered_layers_is_not_a_problem():
    model = ssdlite_mobilenet_v2(4, size=128, width_mult=0.35)
    model.aliases = [model.core.extras]  # the same modules are registered through core.extras
    assert find_unregistered(model) == []
    model.hidden = {"p": nn.Parameter(torch.zeros(3))}
    assert find_unregistered(model) == ["hidden['p'] (Parameter (3,))"]
