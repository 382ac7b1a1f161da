"""The postprocess with static shapes only, so that ``torch.export`` and every runtime can lower it.

``model.postprocess`` (and torchvision's ``batched_nms``) produce data-dependent shapes: the number of
candidates above the threshold, the number of survivors. ExecuTorch, LiteRT and OpenVINO want a graph
whose every tensor shape is known at export time. This module computes the same detections with a
fixed number of everything:

1. decode and clip the boxes, softmax, drop the background (as ``PostProcess``);
2. the top-``k`` default boxes per (image, class), ``k = min(topk_candidates, A)``; a candidate at or
   below ``score_threshold`` gets score -1;
3. the ``M`` best of those ``C * k`` candidates per image (``M = candidates``), sorted by score;
4. greedy NMS over the ``M`` as a fixed number of matrix steps. With ``S[j, i] = 1`` where candidate
   ``j`` (earlier, same class, IoU > ``nms_threshold``) suppresses ``i``, greedy NMS keeps exactly the
   solution of ``keep = valid & not (S^T keep)`` (forward substitution in score order makes it unique).
   The iteration ``keep_{t+1} = valid & not (S^T keep_t)`` from ``keep_0 = valid`` makes the first
   ``t`` candidates final after ``t`` steps, and its odd iterates only grow towards the solution (an
   antitone map: odd iterates are subsets of the solution, even ones supersets). ``nms_steps`` (odd)
   steps are run. The longest suppression chain decides how many are needed: up to 10 measured on
   trained raccoon models (1% of images past 9), so the default is 15, and an export raises it to what
   its verification images need (:meth:`StaticPostProcess.steps_needed`). If an image needs more, the
   output is an odd iterate: boxes that greedy NMS keeps, none that it suppresses;
5. the ``D = detections_per_image`` best survivors, padded.

Exactness: a candidate's survival depends only on higher-scored candidates of its class, so the
survivors among the ``M`` best are exactly the full NMS's survivors among them (the argument of
:mod:`ssdlite.models.postprocess`). The capped result equals NMS over every candidate when step 4
converged and at least ``D`` of the ``M`` survive or the image has at most ``M`` candidates above
the threshold; :meth:`StaticPostProcess.exact` says, per image, whether that holds. An export raises
``M`` to what its verification images need (:meth:`StaticPostProcess.candidates_needed`), and verifies
the file on them. ``tests/deploy`` proves the equality against ``torchvision.ops.batched_nms``
and ``model.postprocess``.

Outputs, for ``N`` images: ``boxes (N, D, 4)`` float32 xyxy **normalized to [0, 1]**, ``scores (N, D)``
float32 descending, ``labels (N, D)`` int64 in ``1..K-1``, ``count (N,)`` int64; entries past
``count`` are zero.
"""

from __future__ import annotations

import torch
from torch import nn

from ssdlite.models.box_coder import BoxCoder
from ssdlite.models.postprocess import PostprocessSettings

NMS_STEPS = 15  # the default matrix steps of step 4 (module doc); an export fits them to its images


class StaticPostProcess(nn.Module):
    """``(cls_logits (N, A, K), bbox_deltas (N, A, 4))`` -> ``(boxes, scores, labels, count)`` with static shapes.

    Args:
        default_boxes: ``(A, 4)`` ``(cx, cy, w, h)`` in ``[0, 1]`` (the model's anchors).
        settings: the model's postprocess (:class:`~ssdlite.models.postprocess.PostprocessSettings`).
        candidates: ``M``, the candidates per image that go through NMS (default ``2 * D``, the first
            pass of ``PostProcess``); more costs an ``(M, M)`` matrix.
        nms_steps: matrix steps of the NMS (odd; module doc).
    """

    def __init__(
        self,
        default_boxes: torch.Tensor,
        settings: PostprocessSettings,
        num_classes: int,
        candidates: int | None = None,
        nms_steps: int = NMS_STEPS,
    ) -> None:
        super().__init__()
        if nms_steps < 1 or nms_steps % 2 == 0:
            raise ValueError(f"nms_steps must be odd (an odd iterate keeps no suppressed box), got {nms_steps}")
        self.nms_steps = nms_steps
        self.register_buffer("default_boxes", default_boxes.detach().float().clone())
        self.box_coder = BoxCoder(settings.variances)
        self.score_threshold = settings.score_threshold
        self.nms_threshold = settings.nms_threshold
        a = default_boxes.shape[0]
        self.k = min(settings.topk_candidates, a)
        total = (num_classes - 1) * self.k
        self.d = min(settings.detections_per_image, total)
        self.m = min(candidates or 2 * self.d, total)
        if self.m < self.d:
            raise ValueError(f"candidates ({self.m}) must be at least the detections per image ({self.d})")

    @classmethod
    def from_model(cls, model, candidates: int | None = None, nms_steps: int = NMS_STEPS) -> StaticPostProcess:
        return cls(model.default_boxes.boxes, PostprocessSettings.of(model.config), model.num_classes, candidates, nms_steps)

    def candidates(self, cls_logits: torch.Tensor, bbox_deltas: torch.Tensor, m: int | None = None) -> tuple[torch.Tensor, ...]:
        """Steps 1 to 3: the ``M`` best candidates per image (``m`` instead of ``M`` if given), ``(scores (N, M),
        boxes (N, M, 4), labels (N, M), number above the threshold (N,))``; scores -1 below the threshold."""
        m = self.m if m is None else m
        n, _, num_classes = cls_logits.shape
        boxes = self.box_coder.decode(bbox_deltas.float(), self.default_boxes).clamp(0, 1)  # (N, A, 4)
        scores = cls_logits.float().softmax(dim=-1)[..., 1:]  # (N, A, C)
        top_scores, top_anchor = scores.topk(self.k, dim=1)  # (N, k, C)
        top_scores = top_scores.transpose(1, 2).reshape(n, -1)  # (N, C*k), class-major as PostProcess
        top_anchor = top_anchor.transpose(1, 2).reshape(n, -1)  # (N, C*k)
        above = top_scores > self.score_threshold
        top_scores = torch.where(above, top_scores, torch.full_like(top_scores, -1.0))
        cand_scores, order = top_scores.topk(m, dim=1)  # (N, M) descending
        cand_labels = torch.div(order, self.k, rounding_mode="floor") + 1  # (N, M) in 1..C
        cand_anchor = top_anchor.gather(1, order)  # (N, M)
        cand_boxes = boxes.gather(1, cand_anchor.unsqueeze(-1).expand(n, m, 4))  # (N, M, 4)
        return cand_scores, cand_boxes, cand_labels, above.sum(dim=1)

    def suppression(self, boxes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``(N, M, M)`` float: 1 where candidate ``j`` (earlier, same class, IoU > threshold) suppresses ``i``."""
        x1, y1, x2, y2 = boxes.unbind(-1)  # (N, M) each
        area = (x2 - x1) * (y2 - y1)  # (N, M)
        w = (torch.minimum(x2[:, :, None], x2[:, None, :]) - torch.maximum(x1[:, :, None], x1[:, None, :])).clamp(min=0)
        h = (torch.minimum(y2[:, :, None], y2[:, None, :]) - torch.maximum(y1[:, :, None], y1[:, None, :])).clamp(min=0)
        inter = w * h  # (N, M, M)
        union = area[:, :, None] + area[:, None, :] - inter
        # IoU > t  <=>  inter > t * union (no division: an empty pair has inter = union = 0 and does not suppress).
        overlap = inter > self.nms_threshold * union
        same = labels[:, :, None] == labels[:, None, :]
        m = boxes.shape[1]
        earlier = torch.ones(m, m, dtype=torch.bool, device=boxes.device).triu(diagonal=1)  # j < i
        return (overlap & same & earlier).float()  # [n, j, i]

    @staticmethod
    def _step(valid: torch.Tensor, keep: torch.Tensor, suppresses: torch.Tensor) -> torch.Tensor:
        """One matrix step of step 4: ``(N, M)`` -> ``(N, M)``."""
        hits = torch.bmm(keep.unsqueeze(1), suppresses).squeeze(1)  # (N, M): kept earlier suppressors of each i
        return valid * (hits < 0.5).float()

    def keep(self, scores: torch.Tensor, suppresses: torch.Tensor, steps: int) -> torch.Tensor:
        """``(N, M)`` float 0/1 after ``steps`` steps of step 4 (module doc)."""
        valid = (scores > 0).float()  # (N, M); 0 for the -1 placeholders
        keep = valid
        for _ in range(steps):
            keep = self._step(valid, keep, suppresses)
        return keep

    def steps_needed(self, cls_logits: torch.Tensor, bbox_deltas: torch.Tensor) -> torch.Tensor:
        """``(N,)`` int64: per image, the fewest (odd) ``nms_steps`` with which step 4 reaches greedy NMS's
        solution over these ``M`` candidates. The first ``t`` candidates are final after ``t`` steps, so it
        converges within ``M`` steps; the longest suppression chain decides (about 10 on trained models)."""
        scores, boxes, labels, _ = self.candidates(cls_logits, bbox_deltas)
        suppresses = self.suppression(boxes, labels)
        valid = (scores > 0).float()  # (N, M)
        needed = torch.full((scores.shape[0],), -1, dtype=torch.int64, device=scores.device)
        keep = valid
        for t in range(self.m + 1):
            after = self._step(valid, keep, suppresses)
            needed = torch.where((needed < 0) & (after == keep).all(dim=1), t, needed)  # keep_t is the fixed point
            if bool((needed >= 0).all()):
                break
            keep = after
        return (needed.clamp(min=1) | 1).cpu()

    def candidates_needed(self, cls_logits: torch.Tensor, bbox_deltas: torch.Tensor) -> torch.Tensor:
        """``(N,)`` int64: per image, the fewest candidates ``M`` (at least ``D``) whose survivors are those of NMS
        over every candidate: the ``M`` best reach the ``D``-th survivor, or the last one if fewer survive (a
        candidate past it is suppressed whether or not it is looked at)."""
        from ssdlite.models.postprocess import _nms_per_group

        n, _, num_classes = cls_logits.shape
        scores, boxes, labels, _ = self.candidates(cls_logits, bbox_deltas, m=(num_classes - 1) * self.k)  # (N, C*k) descending
        needed = []
        for i in range(n):
            valid = scores[i] > 0
            kept = _nms_per_group(boxes[i][valid], scores[i][valid], labels[i][valid], self.nms_threshold).sort().values
            needed.append(int(kept[min(self.d, len(kept)) - 1]) + 1 if len(kept) else 0)
        return torch.tensor(needed, dtype=torch.int64).clamp(min=self.d)

    def forward(self, cls_logits: torch.Tensor, bbox_deltas: torch.Tensor) -> tuple[torch.Tensor, ...]:
        scores, boxes, labels, _ = self.candidates(cls_logits, bbox_deltas)
        keep = self.keep(scores, self.suppression(boxes, labels), self.nms_steps)  # (N, M)
        kept_scores = torch.where(keep > 0, scores, torch.full_like(scores, -1.0))  # (N, M)
        best, idx = kept_scores.topk(self.d, dim=1)  # (N, D) descending
        valid = best > 0
        out_boxes = boxes.gather(1, idx.unsqueeze(-1).expand(-1, -1, 4)) * valid.unsqueeze(-1)  # (N, D, 4)
        out_scores = best * valid
        out_labels = labels.gather(1, idx) * valid
        return out_boxes, out_scores, out_labels, valid.sum(dim=1)

    def exact(self, cls_logits: torch.Tensor, bbox_deltas: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        """``(N,)`` bool: whether each image's detections are those of NMS over every candidate (module doc)."""
        scores, boxes, labels, above = self.candidates(cls_logits, bbox_deltas)
        suppresses = self.suppression(boxes, labels)
        converged = (self.keep(scores, suppresses, self.nms_steps) == self.keep(scores, suppresses, self.nms_steps + 1)).all(dim=1)
        return converged & ((count >= self.d) | (above <= self.m))


class StaticDetector(nn.Module):
    """``model.core`` followed by :class:`StaticPostProcess`: normalized ``(N, 3, S, S)`` -> the padded
    outputs in :data:`ssdlite.models.postprocess.OUTPUTS`'s order."""

    def __init__(self, model, candidates: int | None = None, nms_steps: int = NMS_STEPS) -> None:
        super().__init__()
        self.core = model.core
        self.postprocess = StaticPostProcess.from_model(model, candidates, nms_steps)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.postprocess(*self.core(images))
