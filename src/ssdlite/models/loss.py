"""The MultiBox loss with hard-negative mining.

SSD paper, section 2.2 "Training objective" and "Hard negative mining": smooth L1 on the encoded
offsets of the positives plus softmax cross-entropy over all classes; negatives are the default
boxes with the highest classification loss, at most 3 per positive. Both terms are divided by the
number of positives (at least 1). Equal to torchvision's ``SSD.compute_loss`` on the same inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def multibox_loss(
    cls_logits: torch.Tensor,
    bbox_deltas: torch.Tensor,
    cls_targets: torch.Tensor,
    bbox_targets: torch.Tensor,
    neg_pos_ratio: float,
    min_negatives: int,
) -> dict[str, torch.Tensor]:
    """Compute the two loss terms.

    Args:
        cls_logits: ``(N, A, K)`` raw class scores, class 0 = background.
        bbox_deltas: ``(N, A, 4)`` predicted offsets.
        cls_targets: ``(N, A)`` int64 class per default box, 0 for background.
        bbox_targets: ``(N, A, 4)`` encoded offsets (only read where ``cls_targets > 0``).
        neg_pos_ratio: negatives kept per positive (3 in the paper).
        min_negatives: negatives kept per image even with no positive (the TensorFlow reference's
            ``min_negatives_per_image``), so that background-only images still teach "nothing here".

    Returns:
        ``{"bbox_regression": scalar, "classification": scalar}``.
    """
    positive = cls_targets > 0  # (N, A)
    num_pos_per_image = positive.sum(dim=1, keepdim=True)  # (N, 1)
    normalizer = num_pos_per_image.sum().clamp(min=1).to(cls_logits.dtype)

    bbox_loss = F.smooth_l1_loss(bbox_deltas[positive], bbox_targets[positive], reduction="sum")

    k = cls_logits.shape[-1]
    ce = F.cross_entropy(cls_logits.reshape(-1, k), cls_targets.reshape(-1), reduction="none").view_as(cls_targets)  # (N, A)
    # Hard negatives: rank the background boxes by loss (positives pushed to the end) and keep the top ones.
    num_neg = (neg_pos_ratio * num_pos_per_image).to(torch.int64).clamp(min=min_negatives)  # (N, 1)
    negative_loss = ce.detach().masked_fill(positive, -float("inf"))  # (N, A)
    order = negative_loss.argsort(dim=1, descending=True, stable=True)  # (N, A); stable: ties (equal losses) break by index
    rank = order.argsort(dim=1)  # (N, A): rank of each box by loss
    negative = (rank < num_neg) & ~positive  # (N, A)
    cls_loss = ce[positive].sum() + ce[negative].sum()
    return {"bbox_regression": bbox_loss / normalizer, "classification": cls_loss / normalizer}
