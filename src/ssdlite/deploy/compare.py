"""What "the same detections" and "the same network outputs" mean when an export is checked against PyTorch.

Detections (the check that decides): the two lists of one image are matched **one to one**. Going
through the expected detections by descending score, each takes the unmatched returned detection
with the same label, a score within ``score_tol`` and the highest IoU, if that IoU is at least
``min_iou`` (0.99 and 1e-3 by default). Whatever is left on either side is *unmatched* and makes
the check fail. IoU does not depend on the unit of the boxes (pixels or normalized), and matching
does not depend on how each runtime orders equal scores.

One exception keeps a correct export from failing at random: a detection that exists on one side
only, scored within ``score_tol`` of ``score_floor``, is counted as *borderline*, not unmatched: a
1e-6 difference in a logit legitimately moves such a candidate across the floor. The floor is the
score threshold, or per image and class the score of the last of the class's top-``k`` candidates
when that cut leaves some out (:func:`score_floors`): two candidates scored 1.6e-6 apart there trade
places in a runtime whose scores differ by 1e-5 (seen on a raccoon model after one epoch, in LiteRT).

Raw network outputs (a coarse check before the detections): a relative-plus-absolute bound scaled
to the output, ``|got - want| <= atol + rtol * max|want|``: float32 rounding grows with the
magnitude of the activations, so an absolute bound alone refuses correct exports of trained models
whose outputs are large.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torchvision.ops import box_iou

RAW_RTOL = 1e-3  # of the output's largest magnitude
RAW_ATOL = 1e-4
MIN_IOU = 0.99
SCORE_TOL = 1e-3


@dataclass
class Comparison:
    """Outcome of matching detections; ``ok`` when nothing is unmatched on either side."""

    images: int = 0
    detections: int = 0  # expected detections
    matched: int = 0
    unmatched_expected: int = 0  # expected, nothing returned matches them
    unmatched_returned: int = 0  # returned, match no expected one
    borderline: int = 0  # on one side only, scored at the threshold or top-k cut (not a failure)
    min_iou: float = 1.0  # over matched pairs
    max_score_diff: float = 0.0  # over matched pairs
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        text = (
            f"{self.matched}/{self.detections} detections matched on {self.images} images (IoU >= {self.min_iou:.4f}, "
            f"scores within {self.max_score_diff:.2g}), {self.unmatched_expected} unmatched expected, "
            f"{self.unmatched_returned} unmatched returned"
        )
        return text + (f", {self.borderline} at the score threshold or a class's top-k cut on one side only" if self.borderline else "")

    def merge(self, other: Comparison) -> Comparison:
        """Add ``other``'s counts (another batch of images) to this one."""
        self.images += other.images
        self.detections += other.detections
        self.matched += other.matched
        self.unmatched_expected += other.unmatched_expected
        self.unmatched_returned += other.unmatched_returned
        self.borderline += other.borderline
        self.min_iou = min(self.min_iou, other.min_iou)
        self.max_score_diff = max(self.max_score_diff, other.max_score_diff)
        self.problems += other.problems
        return self


def _as_cpu(det: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    boxes = det["boxes"].detach().cpu().double().reshape(-1, 4)
    scores = det["scores"].detach().cpu().double().reshape(-1)
    labels = det["labels"].detach().cpu().to(torch.int64).reshape(-1)
    return boxes, scores, labels


def _iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(P, Q)`` IoU. A box without area (clipped to a line at the image border) has no IoU, so a pair in
    which one box is empty is compared as both boxes grown by 1e-3 of the largest coordinate on every side."""
    iou = box_iou(a, b).nan_to_num(0.0)
    if len(a) and len(b):
        pad = 1e-3 * max(float(a.abs().max()), float(b.abs().max()), 1e-12)
        grown = box_iou(a + a.new_tensor([-pad, -pad, pad, pad]), b + b.new_tensor([-pad, -pad, pad, pad]))
        empty_a = (a[:, 2] <= a[:, 0]) | (a[:, 3] <= a[:, 1])  # (P,)
        empty_b = (b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])  # (Q,)
        iou = torch.where(empty_a[:, None] | empty_b[None, :], grown, iou)
    return iou


def score_floors(post, cls_logits: torch.Tensor) -> list[torch.Tensor]:
    """Per image, ``(C,)``: the lowest score a detection of each class can have under ``post`` (a
    :class:`~ssdlite.models.postprocess.PostProcess`) for ``cls_logits (N, A, K)``: the threshold, or the
    ``topk_candidates``-th best score of the class when fewer than all ``A`` are candidates."""
    scores = cls_logits.detach().float().softmax(dim=-1)[..., 1:].cpu()  # (N, A, C)
    floors = torch.full((scores.shape[0], scores.shape[2]), float(post.score_threshold))  # (N, C)
    if post.topk_candidates < scores.shape[1]:
        floors = floors.maximum(scores.topk(post.topk_candidates, dim=1).values[:, -1, :])  # (N, C): the k-th score
    return list(floors)


def compare_detections(
    expected: Sequence[dict[str, torch.Tensor]],
    actual: Sequence[dict[str, torch.Tensor]],
    min_iou: float = MIN_IOU,
    score_tol: float = SCORE_TOL,
    score_floor: float | Sequence[torch.Tensor] | None = None,
) -> Comparison:
    """Match two eval-mode outputs (one ``{"boxes", "scores", "labels"}`` dict per image) one to one (module doc).

    ``score_floor``: one score for every detection, or per image a ``(C,)`` tensor, class ``l``'s at ``l - 1``
    (:func:`score_floors`)."""
    result = Comparison(images=len(expected))
    if len(expected) != len(actual):
        result.problems.append(f"{len(expected)} images expected, {len(actual)} returned")
        return result
    for i, (e, a) in enumerate(zip(expected, actual)):
        e_boxes, e_scores, e_labels = _as_cpu(e)
        a_boxes, a_scores, a_labels = _as_cpu(a)
        result.detections += len(e_scores)
        # Allowed pairs: same label, scores within score_tol, IoU >= min_iou; ranked by IoU.
        iou = _iou(e_boxes, a_boxes)  # (P, Q)
        allowed = (e_labels[:, None] == a_labels[None, :]) & ((e_scores[:, None] - a_scores[None, :]).abs() <= score_tol)
        iou = torch.where(allowed & (iou >= min_iou), iou, torch.full_like(iou, -1.0))
        free = torch.ones(len(a_scores), dtype=torch.bool)
        missing = []
        for j in e_scores.argsort(descending=True, stable=True).tolist():
            row = torch.where(free, iou[j], torch.full_like(iou[j], -1.0))
            if len(row) and float(row.max()) >= 0:
                q = int(row.argmax())
                free[q] = False
                result.matched += 1
                result.min_iou = min(result.min_iou, float(iou[j, q]))
                result.max_score_diff = max(result.max_score_diff, float((e_scores[j] - a_scores[q]).abs()))
            else:
                missing.append(j)
        extra = free.nonzero().flatten().tolist()

        def real(scores: torch.Tensor, labels: torch.Tensor, idx: list[int]) -> list[int]:
            if score_floor is None:
                return idx
            floor = [float(score_floor)] * len(labels) if isinstance(score_floor, (int, float)) else score_floor[i][labels - 1].tolist()
            return [j for j in idx if float(scores[j]) > floor[j] + score_tol]

        missing_real, extra_real = real(e_scores, e_labels, missing), real(a_scores, a_labels, extra)
        result.borderline += len(missing) - len(missing_real) + len(extra) - len(extra_real)
        result.unmatched_expected += len(missing_real)
        result.unmatched_returned += len(extra_real)
        if missing_real or extra_real:
            described = [
                f"{side} label {int(labels[j])} score {float(scores[j]):.4f} box {[round(v, 2) for v in boxes[j].tolist()]}"
                for side, idx, boxes, scores, labels in (
                    ("expected", missing_real, e_boxes, e_scores, e_labels),
                    ("returned", extra_real, a_boxes, a_scores, a_labels),
                )
                for j in idx[:2]
            ]
            result.problems.append(
                f"image {i}: {len(missing_real)} of {len(e_scores)} expected detections unmatched, "
                f"{len(extra_real)} of {len(a_scores)} returned unmatched (" + "; ".join(described) + ")"
            )
    return result


def raw_difference(got: torch.Tensor, want: torch.Tensor, rtol: float = RAW_RTOL, atol: float = RAW_ATOL) -> tuple[float, float]:
    """``(largest |got - want|, allowed bound atol + rtol * max|want|)``; NaN in ``got`` gives an infinite difference."""
    got, want = got.detach().float().cpu(), want.detach().float().cpu()
    if got.shape != want.shape:
        raise ValueError(f"shape {tuple(got.shape)}, expected {tuple(want.shape)}")
    diff = (got - want).abs()
    worst = float(diff.max()) if diff.numel() else 0.0
    if not torch.isfinite(diff).all():
        worst = float("inf")
    return worst, atol + rtol * (float(want.abs().max()) if want.numel() else 0.0)
