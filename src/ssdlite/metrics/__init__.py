"""Detection metrics: VOC AP (2007 11-point and 2010+ all-point), COCO metrics via pycocotools, plots.

Plots live in :mod:`ssdlite.metrics.plots` and are imported on demand (matplotlib is slow to import).
"""

from ssdlite.metrics.annotations import ImageDetections, ImageGroundTruth
from ssdlite.metrics.coco import COCO_STAT_NAMES, COCOResult, evaluate_coco
from ssdlite.metrics.coco_results import read_coco_results, to_coco_results, write_coco_results
from ssdlite.metrics.confusion import confusion_matrix
from ssdlite.metrics.detection_metrics import DetectionMetrics
from ssdlite.metrics.report import format_report
from ssdlite.metrics.voc import VOCClassResult, average_precision, evaluate_voc, match_image, mean_average_precision

__all__ = [
    "COCO_STAT_NAMES",
    "COCOResult",
    "DetectionMetrics",
    "ImageDetections",
    "ImageGroundTruth",
    "VOCClassResult",
    "average_precision",
    "confusion_matrix",
    "evaluate_coco",
    "evaluate_voc",
    "format_report",
    "match_image",
    "mean_average_precision",
    "read_coco_results",
    "to_coco_results",
    "write_coco_results",
]
