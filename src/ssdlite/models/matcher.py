"""Matching ground-truth boxes to default boxes.

SSD paper, section 2.2 "Matching strategy": each ground-truth box is matched to the default box
with the best Jaccard overlap, then every default box is matched to any ground truth with overlap
above 0.5. This is torchvision's ``SSDMatcher(0.5)``, done here for a whole batch at once.
"""

from __future__ import annotations

import torch
from torchvision.ops import box_iou


def match(gt_boxes: list[torch.Tensor], default_boxes_xyxy: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Assign each default box a ground-truth index, or -1 for background.

    Args:
        gt_boxes: per image ``(G_i, 4)`` xyxy, in the same normalized coordinates as the default boxes.
        default_boxes_xyxy: ``(A, 4)``.
        iou_threshold: overlap from which a default box is a positive.

    Returns:
        ``matches (N, A)`` int64: index into that image's ``gt_boxes`` or -1.
    """
    n, a = len(gt_boxes), default_boxes_xyxy.shape[0]
    device = default_boxes_xyxy.device
    counts = [b.shape[0] for b in gt_boxes]
    g_max = max(counts, default=0)
    matches = torch.full((n, a), -1, dtype=torch.int64, device=device)
    if g_max == 0:
        return matches
    # One IoU call for the whole batch, scattered into a padded (N, G_max, A) block; padding is -1
    # so it never wins a max against a real overlap (which is >= 0).
    iou_flat = box_iou(torch.cat(gt_boxes), default_boxes_xyxy)  # (sum G_i, A)
    image_idx = torch.repeat_interleave(torch.arange(n, device=device), torch.tensor(counts, device=device))  # (sum G_i,)
    gt_idx = torch.cat([torch.arange(c, device=device) for c in counts])  # (sum G_i,)
    iou = iou_flat.new_full((n, g_max, a), -1.0)  # (N, G_max, A)
    iou[image_idx, gt_idx] = iou_flat

    best_iou, best_gt = iou.max(dim=1)  # (N, A) each
    matches = torch.where(best_iou >= iou_threshold, best_gt, matches)  # (N, A)
    # Every ground truth keeps its best default box even below the threshold (first rule of the paper).
    best_default = iou_flat.argmax(dim=1)  # (sum G_i,)
    matches[image_idx, best_default] = gt_idx
    return matches
