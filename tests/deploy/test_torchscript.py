"""TorchScript export: loads, carries its config, and matches the eager network."""

from __future__ import annotations

import torch
from deploy_helpers import CLASSES

from ssdlite.cli import main
from ssdlite.deploy.samples import sample_images
from ssdlite.deploy.torchscript import load_torchscript


def test_torchscript_export_loads_and_matches(tmp_path, weights, model):
    path = tmp_path / "model.pt"
    assert main(["export", "--weights", str(weights), "--format", "torchscript", "--out", str(path)]) == 0
    module, info = load_torchscript(path)
    assert info["classes"] == CLASSES and info["config"] == model.config.to_dict()
    for n in (1, 4):
        x, _ = model.preprocess(sample_images(n, 100, 140, seed=n))
        with torch.no_grad(), torch.jit.optimized_execution(False):  # the profiling executor costs seconds per shape
            for want, got in zip(model.core(x), module(x)):
                assert got.shape == want.shape
                assert torch.allclose(got, want, atol=1e-4, rtol=0)
