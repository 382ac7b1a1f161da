"""From raw head outputs to final detections.

SSD paper, section 3 (inference): "we filter out most boxes by a confidence threshold of 0.01
and apply non-maximum suppression with jaccard overlap of 0.45 per class and keep the top 200
detections per image". Everything is vectorized over images and classes: one top-k per class,
one ``batched_nms`` call for the whole batch (keyed by image and class).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.ops import batched_nms

from ssdlite.models.box_coder import BoxCoder


class PostProcess(torch.nn.Module):
    """Decode, score, filter, NMS and map back to each image's pixels.

    Args:
        score_threshold: minimum class probability of a candidate.
        nms_threshold: IoU above which a lower-scored box of the same class is suppressed.
        topk_candidates: candidates kept per class before NMS.
        detections_per_image: cap on the final detections per image.
    """

    def __init__(
        self,
        box_coder: BoxCoder,
        score_threshold: float = 0.01,
        nms_threshold: float = 0.45,
        topk_candidates: int = 200,
        detections_per_image: int = 200,
    ) -> None:
        super().__init__()
        self.box_coder = box_coder
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.topk_candidates = topk_candidates
        self.detections_per_image = detections_per_image

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

        keep = top_scores > self.score_threshold  # (N, (K-1)*topk)
        cand_scores = top_scores[keep]  # (C,)
        cand_labels = labels[keep]  # (C,)
        cand_image = image_idx[keep]  # (C,)
        cand_boxes = boxes[cand_image, top_anchor[keep]]  # (C, 4)

        # One NMS for everything: boxes only suppress boxes of the same image and class.
        kept = batched_nms(cand_boxes, cand_scores, cand_image * k + cand_labels, self.nms_threshold)  # (D,) by score
        kept_image = cand_image[kept]  # (D,)
        detections = []
        for i, (h, w) in enumerate(image_sizes):
            idx = kept[kept_image == i][: self.detections_per_image]  # already sorted by score
            scale = cand_boxes.new_tensor([w, h, w, h])
            detections.append({"boxes": cand_boxes[idx] * scale, "scores": cand_scores[idx], "labels": cand_labels[idx]})
        return detections
