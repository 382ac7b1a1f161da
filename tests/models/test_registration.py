"""Every parameter is registered, trained and saved; and the check can fail."""

import torch
from torch import nn

from ssdlite.models import ssdlite_mobilenet_v2
from planted_faults import ListHeldExtras
from ssdlite.registration import find_unregistered


def training_step_gradients(model: nn.Module) -> dict[str, torch.Tensor | None]:
    model.train()
    images = [torch.rand(3, 120, 100), torch.rand(3, 128, 128)]
    targets = [
        {"boxes": torch.tensor([[10.0, 10.0, 60.0, 90.0], [50.0, 5.0, 95.0, 40.0]]), "labels": torch.tensor([1, 2])},
        {"boxes": torch.tensor([[0.0, 0.0, 127.0, 127.0], [30.0, 40.0, 50.0, 60.0]]), "labels": torch.tensor([3, 1])},
    ]
    model.zero_grad(set_to_none=True)
    losses = model(images, targets)
    sum(losses.values()).backward()
    return {name: p.grad for name, p in model.named_parameters()}


def all_layers_learn(model: nn.Module) -> list[str]:
    """Names of problems: a layer used in forward that gets no gradient or is not saved."""
    problems = []
    grads = training_step_gradients(model)
    for name, grad in grads.items():
        if grad is None or not torch.isfinite(grad).all() or grad.abs().sum() == 0:
            problems.append(f"{name}: no finite non-zero gradient")
    state = model.state_dict()
    problems += [f"{name}: not in the state dict" for name in grads if name not in state]
    # A layer that runs in forward but is invisible to parameters() never gets here: count them directly.
    problems += [f"unregistered: {item}" for item in find_unregistered(model)]
    return problems


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
