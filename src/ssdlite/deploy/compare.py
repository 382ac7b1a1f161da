"""What "the same detections" means when an export is checked against PyTorch.

Two detection lists of one image are the same when they have the same number of detections and,
after sorting each by score (descending; ties broken by label, then box), the labels are equal,
the scores differ by at most ``score_tol`` and the boxes by at most ``box_tol`` (in the unit of
the boxes compared). Sorting first makes the check independent of how each runtime orders equal
scores; anything else (a missing, extra or relabelled detection) is a difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch


@dataclass
class Comparison:
    """Outcome of comparing detections; ``ok`` when every image has the same detections."""

    images: int = 0
    detections: int = 0
    max_box_diff: float = 0.0
    max_score_diff: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _sorted(det: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    boxes = det["boxes"].detach().float().cpu().reshape(-1, 4)
    scores = det["scores"].detach().float().cpu().reshape(-1)
    labels = det["labels"].detach().cpu().to(torch.int64).reshape(-1)
    keys = [(-s, l, *b) for s, l, b in zip(scores.tolist(), labels.tolist(), boxes.tolist())]
    order = sorted(range(len(keys)), key=keys.__getitem__)
    return {"boxes": boxes[order], "scores": scores[order], "labels": labels[order]}


def compare_detections(
    expected: Sequence[dict[str, torch.Tensor]],
    actual: Sequence[dict[str, torch.Tensor]],
    box_tol: float = 1e-3,
    score_tol: float = 1e-5,
) -> Comparison:
    """Compare two eval-mode outputs (one ``{"boxes", "scores", "labels"}`` dict per image)."""
    result = Comparison(images=len(expected))
    if len(expected) != len(actual):
        result.problems.append(f"{len(expected)} images expected, {len(actual)} returned")
        return result
    for i, (e, a) in enumerate(zip(expected, actual)):
        e, a = _sorted(e), _sorted(a)
        ne, na = len(e["scores"]), len(a["scores"])
        result.detections += ne
        if ne != na:
            result.problems.append(f"image {i}: {ne} detections expected, {na} returned")
            continue
        if ne == 0:
            continue
        if not torch.equal(e["labels"], a["labels"]):
            j = int((e["labels"] != a["labels"]).nonzero()[0])
            result.problems.append(f"image {i}: labels differ at rank {j} ({int(e['labels'][j])} vs {int(a['labels'][j])})")
        box_diff = float((e["boxes"] - a["boxes"]).abs().max())
        score_diff = float((e["scores"] - a["scores"]).abs().max())
        result.max_box_diff = max(result.max_box_diff, box_diff)
        result.max_score_diff = max(result.max_score_diff, score_diff)
        if box_diff > box_tol:
            result.problems.append(f"image {i}: boxes differ by up to {box_diff:.3g} (tolerance {box_tol:g})")
        if score_diff > score_tol:
            result.problems.append(f"image {i}: scores differ by up to {score_diff:.3g} (tolerance {score_tol:g})")
    return result
