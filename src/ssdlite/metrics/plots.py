"""PNG plots of an evaluation: precision-recall curves per class and the detection confusion matrix.

Figures are built with ``matplotlib.figure.Figure`` (the Agg canvas, no pyplot), so plotting
works without a display and leaves no global state behind. Files are written atomically.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ssdlite.metrics.detection_metrics import DetectionMetrics
from ssdlite.files import write_bytes_atomic
from ssdlite.metrics.voc import VOCClassResult

# A legend with more entries than this hides the plot; larger class sets get one file per class anyway.
MAX_LEGEND_ENTRIES = 20


def _save(fig: Figure, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    return write_bytes_atomic(path, buffer.getvalue())


def _safe_name(name: str) -> str:
    """A class name usable as a file name on every system."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "class"


def _ap_text(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{value:.3f}"


def _draw_curve(ax, result: VOCClassResult, label: str, raw: bool = False) -> None:
    """The interpolated curve the VOC2010+ AP is the area under; with ``raw``, the measured points too."""
    if result.recall.size == 0:
        return
    envelope = np.maximum.accumulate(result.precision[::-1])[::-1]  # (P,) best precision at >= this recall
    # steps-pre: precision envelope[i] holds over (recall[i-1], recall[i]], the rectangles AP sums.
    recall = np.concatenate(([0.0], result.recall))  # (P + 1,)
    precision = np.concatenate(([envelope[0]], envelope))  # (P + 1,)
    (line,) = ax.plot(recall, precision, linewidth=1.4, label=label, drawstyle="steps-pre")
    if raw:
        ax.plot(result.recall, result.precision, linewidth=0.8, alpha=0.5, color=line.get_color(), label="measured")


def _pr_axes(fig: Figure, title: str):
    ax = fig.add_subplot()
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision", title=title)
    ax.grid(alpha=0.3)
    return ax


def plot_precision_recall(results: Sequence[VOCClassResult], classes: Sequence[str], path: str | os.PathLike) -> Path:
    """All classes' VOC precision-recall curves (IoU 0.5) in one figure."""
    fig = Figure(figsize=(7, 6))
    valid = [r.ap for r in results if r.num_gt > 0]
    mean_ap = float(np.mean(valid)) if valid else float("nan")
    ax = _pr_axes(fig, f"Precision-recall at IoU 0.5 (VOC mAP {_ap_text(mean_ap)})")
    for result, name in zip(results, classes):
        if result.num_gt > 0:
            _draw_curve(ax, result, f"{name} {_ap_text(result.ap)}")
    if 0 < len(valid) <= MAX_LEGEND_ENTRIES:
        ax.legend(loc="lower left", fontsize="small")
    return _save(fig, Path(path))


def plot_class_precision_recall(result: VOCClassResult, name: str, path: str | os.PathLike) -> Path:
    """One class's precision-recall curve with its VOC2010+ and VOC2007 AP in the title."""
    fig = Figure(figsize=(5, 4.5))
    title = f"{name}: AP50 {_ap_text(result.ap)} (VOC07 {_ap_text(result.ap07)}), {result.num_gt} boxes"
    ax = _pr_axes(fig, title)
    if result.num_gt > 0:
        _draw_curve(ax, result, "interpolated (AP area)", raw=True)
        ax.legend(loc="lower left", fontsize="small")
    return _save(fig, Path(path))


def plot_confusion_matrix(matrix: np.ndarray, classes: Sequence[str], path: str | os.PathLike, score_threshold: float) -> Path:
    """The detection confusion matrix: colour is the share of each true class's row, text the count."""
    names = [*classes, "background"]
    n = len(names)
    fig = Figure(figsize=(max(6.0, 0.5 * n + 4), max(5.0, 0.5 * n + 3)), layout="constrained")
    ax = fig.add_subplot()
    rows = matrix.sum(axis=1, keepdims=True)  # (K + 1, 1)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)  # (K + 1, K + 1)
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="share of the true class (row)", shrink=0.8)
    ticks = np.arange(n)
    ax.set_xticks(ticks, names, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(ticks, names)
    ax.set(xlabel="predicted", ylabel="true")
    fig.suptitle(f"Detection confusion matrix (IoU 0.5, score >= {score_threshold:g})")
    if n <= 30:  # counts stay legible up to about this size
        for (i, j), count in np.ndenumerate(matrix):
            if count:
                ax.text(j, i, str(count), ha="center", va="center", fontsize="small", color="white" if share[i, j] > 0.5 else "black")
    return _save(fig, Path(path))


def save_plots(metrics: DetectionMetrics, directory: str | os.PathLike, score_threshold: float = 0.25) -> list[Path]:
    """Write ``precision_recall.png``, ``precision_recall/<class>.png`` and ``confusion_matrix.png``.

    ``metrics.compute()`` must have run. Returns the paths written.
    """
    if metrics.voc is None:
        raise ValueError("save_plots needs metrics.compute() to have run first")
    directory = Path(directory)
    written = [plot_precision_recall(metrics.voc, metrics.classes, directory / "precision_recall.png")]
    for k, (result, name) in enumerate(zip(metrics.voc, metrics.classes), start=1):
        # The label number keeps names that sanitize alike ("a b", "a_b") in separate files.
        written.append(plot_class_precision_recall(result, name, directory / "precision_recall" / f"{k:03d}_{_safe_name(name)}.png"))
    matrix = metrics.confusion_matrix(score_threshold=score_threshold)
    written.append(plot_confusion_matrix(matrix, metrics.classes, directory / "confusion_matrix.png", score_threshold))
    return written
