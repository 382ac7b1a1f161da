"""The evaluation as text: a per-class AP table, the COCO summary line and the error table, for the terminal."""

from __future__ import annotations

from typing import Any

from ssdlite.metrics.errors import ERRORS, FALSE_POSITIVES

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
    """The table of :meth:`DetectionMetrics.compute`'s result: one row per class, then the means, then
    :func:`format_errors` when the result has the error analysis.

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
    if "errors" in result:
        lines += ["", format_errors(result)]
    return "\n".join(lines)


def _share(count: int, total: int) -> str:
    return f"{count} ({count / total:.0%})" if total else str(count)


def format_errors(result: dict[str, Any]) -> str:
    """The error analysis (:mod:`ssdlite.metrics.errors`) of :meth:`DetectionMetrics.compute`'s result.

    Three parts: per class the counted detections by type, each with its share of the class's counted
    detections, and the missed boxes with their share of the class's boxes; per class the AP50 each error
    type costs (dAP, the gain when it alone is fixed); the classes a class's boxes were detected as, each
    with its share of the class's boxes, among the counted detections and at any score (the class of each box's
    highest-scored detection: where an undertrained model's look-alikes show).
    """
    settings, per_class = result["errors"], result["per_class"]
    width = max([len("class"), len("mean"), *(len(name) for name in per_class)])
    types = ("tp", *FALSE_POSITIVES)
    header = f"{'class':<{width}}  {'#gt':>5}  {'#det':>5}" + "".join(f"  {t:>10}" for t in (*types, "missed"))
    lines = [
        f"errors (TIDE): detections scored >= {settings['score_threshold']:g}; found at IoU >= "
        f"{settings['iou_foreground']:g}, background under {settings['iou_background']:g}",
        header,
        "-" * len(header),
    ]
    for name, row in per_class.items():
        e = row["errors"]
        cells = [_share(e[t], e["detections"]) for t in types] + [_share(e["missed"], e["num_gt"])]
        lines.append(f"{name:<{width}}  {e['num_gt']:>5}  {e['detections']:>5}" + "".join(f"  {c:>10}" for c in cells))
    header = f"{'dAP50':<{width}}" + "".join(f"  {t:>6}" for t in ERRORS)
    lines += ["", header + "  (AP50 gained by fixing one error type)", "-" * len(header)]
    rows = [(name, row["errors"]["dap"]) for name, row in per_class.items()] + [("mean", settings["dap"])]
    for name, dap in rows:
        lines.append(f"{name:<{width}}" + "".join(f"  {'-' if dap[t] is None else f'{dap[t]:.3f}':>6}" for t in ERRORS))
    taken = [(name, row["errors"]) for name, row in per_class.items() if row["errors"]["taken_as"]]
    if taken:
        lines += ["", "taken for another class (boxes of the class detected as it, of the class's boxes):"]
        for name, e in taken:
            pairs = ", ".join(f"{other} {n} of {e['num_gt']}" for other, n in e["taken_as"].items())
            lines.append(f"  {name}: {pairs}")
    top = [(name, row["errors"]) for name, row in per_class.items() if row["errors"].get("top_taken_as")]
    if top:
        lines += ["", "taken for another class at any score (boxes whose highest-scored detection is of it):"]
        for name, e in top:
            pairs = ", ".join(f"{other} {n} of {e['num_gt']}" for other, n in e["top_taken_as"].items())
            lines.append(f"  {name}: {pairs}")
    return "\n".join(lines)
