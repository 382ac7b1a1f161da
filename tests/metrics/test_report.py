"""The per-class table printed by `ssdlite eval`."""

from __future__ import annotations

from ssdlite.metrics import DetectionMetrics, format_report


def test_table_lists_every_class_and_the_means():
    metrics = DetectionMetrics(["raccoon", "nothing here"])
    metrics.update([{"boxes": [[0, 0, 10, 10]], "scores": [0.9], "labels": [1]}], [{"boxes": [[0, 0, 10, 10]], "labels": [1]}])
    result = metrics.compute() | {"seconds": 2.5}
    lines = format_report(result).splitlines()
    assert lines[0].split() == ["class", "#gt", "#det", "VOC07", "AP50", "VOC", "AP50", "COCO", "AP", "COCO", "AP50"]
    assert lines[2].split() == ["raccoon", "1", "1", "1.0000", "1.0000", "1.0000", "1.0000"]
    assert lines[3].split() == ["nothing", "here", "0", "0", "-", "-", "-", "-"]
    assert lines[5].split()[:5] == ["mean", "1", "1", "1.0000", "1.0000"]
    assert lines[6].startswith("COCO  AP 1.0000  AP50 1.0000")
    assert lines[7].startswith("1 images in 2.5 s")
