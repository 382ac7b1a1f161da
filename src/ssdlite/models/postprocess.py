"""From raw head outputs to final detections.

SSD paper, section 3 (inference): "we filter out most boxes by a confidence threshold of 0.01
and apply non-maximum suppression with jaccard overlap of 0.45 per class and keep the top 200
detections per image". Everything is vectorized over images and classes: one top-k per class,
then NMS over the whole batch at once (keyed by image and class).

NMS runs on the best candidates of each image first and looks further only if needed. A
candidate's survival depends only on higher-scored candidates of its class, so the survivors
among an image's ``M`` best candidates are exactly the survivors of the full list restricted to
them; when there are at least ``detections_per_image`` of them, the capped result is the same as
NMS over every candidate. An untrained model scores all 90 COCO classes of every box alike
(about 1/91, above 0.01): 18 000 candidates per image, of which typically the first few hundred
decide.

:class:`PostprocessSettings` is the postprocess described once, from the model's configuration: this module's
:class:`PostProcess` runs it in PyTorch, ``ssdlite.deploy.onnx_postprocess`` writes it as ONNX nodes and
``ssdlite.deploy.static_postprocess`` with static shapes for ExecuTorch, LiteRT and OpenVINO. The exported
forms give padded outputs in one order, :data:`OUTPUTS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torchvision.ops import nms

from ssdlite.models.box_coder import BoxCoder

#: The padded outputs of every exported postprocess, in this order (N images, D = detections per image):
#: ``boxes (N, D, 4)`` float xyxy normalized to [0, 1], ``scores (N, D)`` descending, ``labels (N, D)`` in
#: ``1..K-1`` (``classes[label - 1]``), ``count (N,)`` (the ONNX graph names it ``num_detections``); entries past
#: ``count`` are zero. Apps that need another layout (MediaPipe, Frigate) get it from a wrapper around these.
OUTPUTS = ("boxes", "scores", "labels", "count")


@dataclass(frozen=True)
class PostprocessSettings:
    """What the postprocess does, whichever form runs it (module doc); :meth:`of` reads it from a model config.

    Args:
        variances: box coding (SSD eq. 2), ``(cx, cy, w, h)``.
        score_threshold: minimum class probability of a candidate.
        nms_threshold: IoU above which a lower-scored box of the same class is suppressed.
        topk_candidates: candidates kept per class before NMS.
        detections_per_image: cap on the final detections per image.
    """

    variances: tuple[float, ...]
    score_threshold: float
    nms_threshold: float
    topk_candidates: int
    detections_per_image: int

    @classmethod
    def of(cls, config) -> PostprocessSettings:
        """The settings of a :class:`~ssdlite.models.config.ModelConfig` (or of ``model.config``)."""
        return cls(tuple(float(v) for v in config.variances), float(config.score_threshold), float(config.nms_threshold),
                   int(config.topk_candidates), int(config.detections_per_image))


class PostProcess(torch.nn.Module):
    """Decode, score, filter, NMS and map back to each image's pixels, as ``settings`` say."""

    def __init__(self, settings: PostprocessSettings) -> None:
        super().__init__()
        self.settings = settings
        self.box_coder = BoxCoder(settings.variances)
        self.score_threshold = settings.score_threshold
        self.nms_threshold = settings.nms_threshold
        self.topk_candidates = settings.topk_candidates
        self.detections_per_image = settings.detections_per_image

    def forward(
        self,
        cls_logits: torch.Tensor,
        bbox_deltas: torch.Tensor,
        default_boxes: torch.Tensor,
        image_sizes: Sequence[tuple[int, int]],
    ) -> list[dict[str, torch.Tensor]]:
        """
        Args:
            cls_logits: ``(N, A, K)``; bbox_deltas: ``(N, A, 4)``; default_boxes: ``(A, 4)`` cx, cy, w, h.
            image_sizes: ``(H, W)`` of each original image; boxes are returned in those pixels.
        """
        n, a, k = cls_logits.shape
        boxes = self.box_coder.decode(bbox_deltas.float(), default_boxes).clamp(0, 1)  # (N, A, 4) normalized
        scores = cls_logits.float().softmax(dim=-1)[..., 1:]  # (N, A, K-1), background dropped
        # Top-k default boxes per (image, class) before NMS.
        topk = min(self.topk_candidates, a)
        top_scores, top_anchor = scores.topk(topk, dim=1)  # (N, topk, K-1) each
        top_scores = top_scores.transpose(1, 2).reshape(n, -1)  # (N, (K-1)*topk)
        top_anchor = top_anchor.transpose(1, 2).reshape(n, -1)  # (N, (K-1)*topk)
        labels = torch.arange(1, k, device=cls_logits.device).repeat_interleave(topk).expand(n, -1)  # (N, (K-1)*topk)
        image_idx = torch.arange(n, device=cls_logits.device)[:, None].expand_as(top_anchor)  # (N, (K-1)*topk)

        top_scores = torch.where(top_scores > self.score_threshold, top_scores, -1.0)  # (N, (K-1)*topk); -1: below
        total = top_scores.shape[1]
        m = min(total, 2 * self.detections_per_image)
        while True:
            cand_scores, order = top_scores.topk(m, dim=1)  # (N, M) best candidates first
            valid = cand_scores > -1.0  # (N, M)
            cand_scores = cand_scores[valid]  # (C,)
            cand_labels = labels.gather(1, order)[valid]  # (C,)
            cand_image = image_idx[:, :m][valid]  # (C,)
            cand_boxes = boxes[cand_image, top_anchor.gather(1, order)[valid]]  # (C, 4)
            kept = _nms_per_group(cand_boxes, cand_scores, cand_image * k + cand_labels, self.nms_threshold)  # (D,) by score
            kept_image = cand_image[kept]  # (D,)
            survivors = torch.bincount(kept_image, minlength=n)  # (N,)
            exhausted = valid.sum(dim=1) < m  # (N,) every candidate of the image was looked at
            if m == total or bool(((survivors >= self.detections_per_image) | exhausted).all()):
                break
            m = min(total, 4 * m)
        detections = []
        for i, (h, w) in enumerate(image_sizes):
            idx = kept[kept_image == i][: self.detections_per_image]  # already sorted by score
            scale = cand_boxes.new_tensor([w, h, w, h])
            detections.append({"boxes": cand_boxes[idx] * scale, "scores": cand_scores[idx], "labels": cand_labels[idx]})
        return detections


def _nms_per_group(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """NMS in which boxes only suppress boxes of their own group; indices ``(D,)`` sorted by score.

    Boxes are in [0, 1]: shifted by ``2 * group`` the groups never overlap, so one ``nms`` call does
    all of them. In float64 the shift leaves every IoU as exact as float32 coordinates give it
    (float32 would lose 1e-5 of a box's coordinates to an offset of a few hundred).
    """
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    dtype = torch.float32 if boxes.device.type == "mps" else torch.float64  # MPS has no float64
    shifted = boxes.to(dtype) + groups.to(dtype)[:, None] * 2.0  # (C, 4)
    return nms(shifted, scores.to(dtype), iou_threshold)
