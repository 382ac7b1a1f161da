"""Checks on annotated boxes, run when the annotations are read (before any image is decoded).

The policy (also the table in :mod:`ssdlite.data.problems`): a box partly outside the image is
clipped to it; a box with a non-finite coordinate, inverted corners, zero width or height, or lying
entirely outside the image is dropped. Each case is one :class:`~ssdlite.data.problems.Problem`
naming the file, the box (as the file wrote it) and what was done, so nothing is fixed silently;
except an overshoot within :data:`ROUNDING` of the image's side, which is the file's rounding (a YOLO line
written to 6 decimals puts a box at the edge up to 5e-7 past it), clipped without a warning.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ssdlite.data.problems import Problem

# Past the image by at most this fraction of its side: rounding in the file, clipped without a warning.
ROUNDING = 1e-4


def _fmt(values: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in values) + "]"


def check_boxes(
    boxes: np.ndarray,
    size: tuple[float, float],
    file: str,
    descriptions: Sequence[str],
    frame: str | None = None,
) -> tuple[np.ndarray, np.ndarray, list[Problem]]:
    """Clip or drop the boxes of one image.

    Args:
        boxes: ``(M, 4)`` float xyxy in the image's coordinates (pixels, or normalized with ``size=(1, 1)``).
        size: ``(H, W)`` of the image in the same coordinates.
        file: the annotation file, for the problems.
        descriptions: one text per box as the file wrote it (``object 2 'dog' xmin=..``), for the problems.
        frame: how the problems name the image extent; default ``"the WxH image"``.

    Returns:
        ``(boxes (K, 4) float32 clipped, keep (K,) int64 indices of the kept input boxes, problems)``.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    height, width = float(size[0]), float(size[1])
    frame = frame or f"the {width:g}x{height:g} image"
    keep: list[int] = []
    problems: list[Problem] = []
    out = boxes.copy()
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        what = descriptions[i]
        if not np.all(np.isfinite(boxes[i])):
            problems.append(Problem(file, "box_nonfinite", f"{what} has a non-finite coordinate"))
        elif x2 < x1 or y2 < y1:
            problems.append(Problem(file, "box_inverted", f"{what} has max < min"))
        elif x2 == x1 or y2 == y1:
            problems.append(Problem(file, "box_empty", f"{what} has zero width or height"))
        elif x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
            problems.append(Problem(file, "box_outside", f"{what} lies entirely outside {frame}"))
        else:
            clipped = np.array([max(x1, 0.0), max(y1, 0.0), min(x2, width), min(y2, height)])
            overshoot = np.abs(clipped - boxes[i]) / np.array([width, height, width, height])
            if overshoot.max() > ROUNDING:
                problems.append(
                    Problem(
                        file,
                        "box_clipped",
                        f"{what} extends outside {frame} (clipped box xyxy {_fmt(clipped)})",
                    )
                )
            out[i] = clipped
            keep.append(i)
    keep_idx = np.asarray(keep, dtype=np.int64)
    return out[keep_idx].astype(np.float32).reshape(-1, 4), keep_idx, problems
