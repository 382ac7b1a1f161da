"""The evaluation as text: a per-class AP table and the COCO summary line, for the terminal."""

from __future__ import annotations

from typing import Any

_COCO_SUMMARY = (
    ("AP", "coco_map"),
    ("AP50", "coco_map50"),
    ("AP75", "coco_map75"),
    ("APs", "coco_map_small"),
    ("APm", "coco_map_medium"),
    ("APl", "coco_map_large"),
    ("AR1", "coco_mar1"),
    ("AR10", "coco_mar10"),
    ("AR100", "coco_mar100"),
)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def format_report(result: dict[str, Any]) -> str:
    """The table of :meth:`DetectionMetrics.compute`'s result: one row per class, then the means.

    A class without ground truth shows ``-`` (no AP; left out of the means).
    """
    per_class = result["per_class"]
    width = max([len("class"), len("mean"), *(len(name) for name in per_class)])
    header = f"{'class':<{width}}  {'#gt':>6}  {'#det':>7}  {'VOC07 AP50':>10}  {'VOC AP50':>8}  {'COCO AP':>7}  {'COCO AP50':>9}"
    lines = [header, "-" * len(header)]
    for name, row in per_class.items():
        lines.append(
            f"{name:<{width}}  {row['num_gt']:>6}  {row['num_detections']:>7}  {_fmt(row['voc07_ap50']):>10}  "
            f"{_fmt(row['voc_ap50']):>8}  {_fmt(row['coco_ap']):>7}  {_fmt(row['coco_ap50']):>9}"
        )
    lines.append("-" * len(header))
    lines.append(
        f"{'mean':<{width}}  {result['num_ground_truth']:>6}  {result['num_detections']:>7}  {_fmt(result['voc07_map50']):>10}  "
        f"{_fmt(result['voc_map50']):>8}  {_fmt(result['coco_map']):>7}  {_fmt(result['coco_map50']):>9}"
    )
    lines.append("COCO  " + "  ".join(f"{label} {_fmt(result[key])}" for label, key in _COCO_SUMMARY))
    timing = f"{result['num_images']} images"
    if "seconds" in result:
        timing += f" in {result['seconds']:.1f} s (metrics {result['metric_seconds']:.2f} s)"
    lines.append(timing)
    return "\n".join(lines)
