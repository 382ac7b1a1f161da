"""The check every export runs before it writes its file: the runtime against PyTorch on real images.

For each batch of images, the runtime's detections (after its NMS, in the images' pixels) are
matched one to one with the PyTorch model's (:func:`ssdlite.deploy.compare.compare_detections`:
same label, IoU >= 0.99, score within 1e-3); any unmatched detection fails the export. When the
runtime also gives the raw network outputs, they must lie within the scaled bound of
:func:`ssdlite.deploy.compare.raw_difference` first (a coarse check that names the broken part).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ssdlite.deploy.compare import Comparison, compare_detections, raw_difference, score_floors
from ssdlite.errors import UserError

RAW_OUTPUTS = ("cls_logits", "bbox_deltas")

# images -> (detections in pixels, one dict per image; raw (cls_logits, bbox_deltas) or None)
RunFn = Callable[[Sequence[torch.Tensor]], tuple[list[dict[str, torch.Tensor]], tuple[torch.Tensor, ...] | None]]


class ExportMismatchError(UserError):
    """The exported model does not reproduce PyTorch; nothing was written."""


def check_raw(runtime: str, got: Sequence[torch.Tensor], want: Sequence[torch.Tensor], where: str) -> float:
    """Largest difference of the raw outputs; raises :class:`ExportMismatchError` past the scaled bound."""
    worst = 0.0
    for name, g, w in zip(RAW_OUTPUTS, got, want):
        try:
            diff, bound = raw_difference(g, w)
        except ValueError as err:
            raise ExportMismatchError(f"{runtime} output {name} has {err} {where}") from err
        if not diff <= bound:
            raise ExportMismatchError(
                f"{runtime} output {name} differs from PyTorch by up to {diff:.3g} {where} "
                f"(bound {bound:.3g} = 1e-4 + 1e-3 x its largest magnitude {float(w.abs().max()):.3g})"
            )
        worst = max(worst, diff)
    return worst


def verify_detections(
    model, run: RunFn, images: Sequence[torch.Tensor], batches: Sequence[int], runtime: str
) -> tuple[Comparison, float]:
    """Run ``run`` and the PyTorch ``model`` (eval mode) on ``images`` in batches of ``batches[0]``,
    ``batches[1]``, ... (the last size repeats until every image has been run).

    Returns ``(comparison, largest raw difference)``; raises :class:`ExportMismatchError` with the counts
    and the first differences when a detection is unmatched.
    """
    comparison, worst = Comparison(), 0.0
    start, k = 0, 0
    while start < len(images):
        chunk = list(images[start : start + batches[min(k, len(batches) - 1)]])
        where = f"on images {start}..{start + len(chunk) - 1} (batch {len(chunk)})"
        with torch.no_grad():
            x, sizes = model.preprocess(chunk)  # (n, 3, S, S)
            raw_want = model.core(x)
            expected = model.postprocess(*raw_want, sizes)
        got, raw_got = run(chunk)
        if raw_got is not None:
            worst = max(worst, check_raw(runtime, raw_got, raw_want, where))
        floors = score_floors(model.postprocess_detections, raw_want[0])  # the threshold or the top-k cut, per class
        comparison.merge(compare_detections(expected, got, score_floor=floors))
        start, k = start + len(chunk), k + 1
    if not comparison.ok:
        raise ExportMismatchError(
            f"{runtime} does not give PyTorch's detections: {comparison.summary()}; " + "; ".join(comparison.problems[:3])
        )
    return comparison, worst
