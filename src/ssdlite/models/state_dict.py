"""Comparing a state dict with a model's, so a mismatch is reported by key, not as a deep traceback."""

from __future__ import annotations

from collections.abc import Mapping

import torch


def state_dict_mismatch(own: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor]) -> str | None:
    """What keeps ``given`` from loading into a module whose state dict is ``own``; None when it fits.

    E.g. ``"missing keys (1): a.weight; unexpected keys (2): b, c; shape mismatches (1): d: file (3,) vs model (4,)"``.
    """
    missing = sorted(set(own) - set(given))
    unexpected = sorted(set(given) - set(own))
    mis_shaped = sorted(
        f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}" for k, v in given.items() if k in own and v.shape != own[k].shape
    )
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {', '.join(missing[:10])}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected[:10])}")
    if mis_shaped:
        problems.append(f"shape mismatches ({len(mis_shaped)}): {'; '.join(mis_shaped[:5])}")
    return "; ".join(problems) or None


def classifier_features(own: Mapping[str, torch.Tensor], state_dict: Mapping[str, torch.Tensor], what: str) -> dict[str, torch.Tensor]:
    """The ``features.*`` tensors of an ImageNet classifier's state dict, checked against ``own``.

    ``classifier.*`` (the ImageNet head) is dropped; any other key does not belong to such a file.

    Raises:
        ValueError: ``"{what}: {mismatch}"`` when the features do not fit ``own`` key for key and shape for shape.
    """
    features = {k: v for k, v in state_dict.items() if k.startswith("features.")}
    foreign = {k: v for k, v in state_dict.items() if not k.startswith(("features.", "classifier."))}
    problem = state_dict_mismatch(own, {**features, **foreign})
    if problem:
        raise ValueError(f"{what}: {problem}")
    return features
