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
