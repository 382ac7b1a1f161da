"""Whether a split can be used at all: at least one sample, and at least one box that training uses.

A split without a usable box (every box dropped, difficult or crowd, or no annotation at all) trains a
detector on nothing but background and gives no evaluation, so it is a ``fatal`` problem (``no_boxes``),
found when the split is read: ``ssdlite data check`` exits 1 on it and every command refuses it before
any work. The detail says why, and where a layout found no label file for any image, where files named
after the images lie instead (YOLO labels in ``labels_old/``, VOC XML in a folder no layout reads).
"""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

from ssdlite.data.catalog import Catalog
from ssdlite.data.problems import KINDS, Problem

# Files that can hold a sample's annotation, looked for when none was found where the layout reads them.
ANNOTATION_SUFFIXES = (".txt", ".xml", ".json")
# Folders listed at most in the detail; the count covers all of them.
SHOWN = 3
# Paths looked at, at most, in that search: a dataset given as a file is searched from its folder, which may be
# a home folder; the hint is not worth minutes.
MAX_SCANNED = 200_000


def _counts(counter: Counter) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in sorted(counter.items()))


def stray_annotations(root: Path, stems: set[str] | None, read: set[Path]) -> dict[Path, int]:
    """Annotation files under ``root`` that the reader did not read, ``{folder: count}``: those named after one of
    ``stems`` (``a.txt``, ``a.xml`` for ``a.jpg``), or with ``stems`` None (a split without a sample) every XML."""
    suffixes = ANNOTATION_SUFFIXES if stems is not None else (".xml",)
    folders: Counter = Counter()
    for path in itertools.islice(root.rglob("*"), MAX_SCANNED):
        if path.suffix.lower() in suffixes and (stems is None or path.stem in stems) and path not in read and path.is_file():
            folders[path.parent] += 1
    return dict(folders)


def _stray_reason(root: Path | None, stems: set[str] | None, read: set[Path]) -> list[str]:
    """Where annotation files lie that the layout does not read, as one reason (or none)."""
    stray = stray_annotations(root, stems, read) if root is not None and root.is_dir() else {}
    if not stray:
        return []
    shown = sorted(stray, key=lambda folder: (-stray[folder], str(folder)))[:SHOWN]
    where = ", ".join(f"{stray[folder]} in {folder}/" for folder in shown)
    more = f" and {len(stray) - SHOWN} more folders" if len(stray) > SHOWN else ""
    named = "named after its images " if stems is not None else ""
    return [f"{sum(stray.values())} annotation files {named}lie where the layout does not read them: {where}{more}"]


def usability_problems(catalog: Catalog, root: Path | None = None) -> list[Problem]:
    """``no_samples`` or ``no_boxes`` (each ``fatal``, with why) when the split cannot be used, else nothing.

    Args:
        catalog: the split as read (its report holds the problems that explain an empty split).
        root: the dataset folder, searched for annotation files the layout does not read when no
            sample had one; None skips that search.
    """
    report = catalog.report
    counts = report.counts()
    if not catalog.records:
        errors = Counter({kind: n for kind, n in counts.items() if KINDS[kind][0] == "error"})
        if errors:
            why = [f"every one of its {report.num_samples} samples was skipped ({_counts(errors)})"]
        else:
            why = ["the split lists no sample", *_stray_reason(root, None, set())]
        return [Problem(report.source, "no_samples", "no usable sample: " + "; ".join(why))]
    records = catalog.records
    boxes = sum(len(r.labels) for r in records)
    usable = sum(int((~(r.difficult | r.iscrowd)).sum()) for r in records)
    if usable:
        return []
    reasons = []
    missing = counts.get("label_missing", 0)
    if missing:
        example = next(r for r in records if not Path(r.source).is_file())
        which = "none of its {} images has a label file" if missing == len(records) else f"{missing} of its {{}} images have no label file"
        reasons.append(which.format(len(records)) + f" (for {example.image_path} it reads {example.source})")
    dropped = Counter({kind: n for kind, n in counts.items() if KINDS[kind][1] == "box dropped"})
    if dropped:
        reasons.append(f"{sum(dropped.values())} boxes were dropped as unusable ({_counts(dropped)}; each is listed)")
    if counts.get("annotation_orphan"):
        reasons.append(f"{counts['annotation_orphan']} annotations name no image of the file")
    if boxes:
        reasons.append(f"all {boxes} of its boxes are marked difficult (VOC) or iscrowd (COCO), which training ignores")
    if not reasons:
        reasons.append(f"the annotations of its {len(records)} samples list no objects")
    if missing == len(records):
        reasons += _stray_reason(root, {r.image_path.stem for r in records}, {Path(r.source) for r in records})
    detail = "no usable box: " + "; ".join(reasons) + " (a detector needs boxes to train on and to be evaluated against)"
    return [Problem(report.source, "no_boxes", detail)]
