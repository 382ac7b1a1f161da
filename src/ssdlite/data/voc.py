"""Pascal VOC: ``Annotations/<id>.xml``, ``JPEGImages/``, ``ImageSets/Main/<split>.txt``, ``labels.txt``.

XML is parsed with defusedxml: entity declarations (billion laughs) and external references (XXE) are
refused as ``annotation_unsafe``. VOC pixel indices are 1-based and inclusive (a box covering a whole
``W``-wide image is ``xmin=1, xmax=W``), so a box becomes xyxy pixels ``(xmin - 1, ymin - 1, xmax, ymax)``;
:func:`write_voc_annotation` writes the inverse.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import defusedxml.ElementTree as SafeET
import numpy as np
from defusedxml import DefusedXmlException, EntitiesForbidden

from ssdlite.data.box_checks import check_boxes
from ssdlite.data.catalog import Catalog, Record, empty_annotation
from ssdlite.data.classes import UnknownClasses, check_class_list, read_class_file
from ssdlite.data.decode import MAX_PIXELS, ImageError, image_size
from ssdlite.data.problems import DataReport, Problem
from ssdlite.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def _split_files(root: Path) -> list[Path]:
    """``ImageSets/Main/<split>.txt`` files; per-class lists (``cat_train.txt``) are not splits."""
    split_dir = root / "ImageSets" / "Main"
    return sorted(p for p in split_dir.glob("*.txt") if "_" not in p.stem) if split_dir.is_dir() else []


def _split_entries(split_files: list[Path]) -> tuple[list[str], dict[str, list[str]]]:
    """``(sample ids in file order, where each is listed as "<split file> line <n>")``."""
    ids: list[str] = []
    where: dict[str, list[str]] = {}
    for split_file in split_files:
        try:
            lines = split_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise DataError(f"{split_file}: cannot read the split file ({err})") from None
        for number, line in enumerate(lines, start=1):
            if line.strip():
                ids.append(line.split()[0])
                where.setdefault(ids[-1], []).append(f"{split_file} line {number}")
    return ids, where


def voc_split_listing(root: Path, split: str | None) -> tuple[list[str], dict[str, list[str]]]:
    """``(sample ids, where each id is listed)`` of one split.

    ``split`` reads ``ImageSets/Main/<split>.txt``. Without split files, or with ``split`` None, the ids
    are every annotation; with ``split`` None they also include every id a split file lists, so a listed
    sample whose annotation is missing is reported when the whole dataset is checked. ``where`` maps an
    id to its listings (``<split file> line <n>``), for the problems.
    """
    annotations = root / "Annotations"
    if not annotations.is_dir():
        raise DataError(f"{root}: not a Pascal VOC dataset (no Annotations/ folder)")
    split_files = _split_files(root)
    if split is not None:
        split_file = root / "ImageSets" / "Main" / f"{split}.txt"
        if split_file.is_file():
            return _split_entries([split_file])
        if split_files:
            present = ", ".join(p.stem for p in split_files)
            raise DataError(f"{split_file}: no such split file (splits present: {present})")
    listed, where = _split_entries(split_files if split is None else [])
    return sorted({p.stem for p in annotations.glob("*.xml")} | set(listed)), where


def _text(node: ET.Element | None, tag: str) -> str | None:
    child = node.find(tag) if node is not None else None
    return child.text.strip() if child is not None and child.text is not None else None


class _Refused(Exception):
    """An annotation file that cannot be used, with its problem kind."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind, self.detail = kind, detail


def _parse_xml(path: Path) -> ET.Element:
    """The XML root; raises ``_Refused`` with the problem kind when it is unsafe or malformed."""
    try:
        return SafeET.parse(path).getroot()
    except EntitiesForbidden as err:
        where = f" (external {err.sysid})" if err.sysid else ""
        detail = f"XML declares entity {err.name!r}{where}: entity declarations are refused (XXE, billion laughs)"
        raise _Refused("annotation_unsafe", detail) from None
    except DefusedXmlException as err:
        raise _Refused("annotation_unsafe", f"XML refers to an external resource or DTD ({err})") from None
    except ET.ParseError as err:
        raise _Refused("annotation_malformed", f"XML is not well-formed ({err})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise _Refused("annotation_malformed", f"cannot read annotation ({err})") from None


def _find_image(root: Path, sample_id: str, filename: str | None) -> Path | None:
    images = root / "JPEGImages"
    if filename:
        candidate = images / Path(filename).name
        if candidate.is_file():
            return candidate
    for suffix in IMAGE_SUFFIXES:
        candidate = images / f"{sample_id}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _recorded_size(xml: ET.Element) -> tuple[int, int] | None:
    size = xml.find("size")
    try:
        height, width = int(float(_text(size, "height"))), int(float(_text(size, "width")))
    except (TypeError, ValueError):
        return None
    return (height, width) if height > 0 and width > 0 else None


_CORNERS = ("xmin", "ymin", "xmax", "ymax")


def _is_number(text: str | None) -> bool:
    try:
        float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def _objects(xml: ET.Element, source: str) -> tuple[list[str], list[list[float]], list[bool], list[str], list[Problem]]:
    """Names, xyxy pixel boxes, difficult flags and descriptions of the parseable objects."""
    names, boxes, difficult, described, problems = [], [], [], [], []
    for i, obj in enumerate(xml.findall("object")):
        name = _text(obj, "name") or ""
        what = f"object {i} {name!r}"
        box = obj.find("bndbox")
        raw = [_text(box, tag) for tag in _CORNERS]
        try:
            xmin, ymin, xmax, ymax = (float(v) for v in raw)
        except (TypeError, ValueError):
            if box is None:
                why = "no <bndbox>"
            else:
                why = ", ".join(
                    f"<{tag}> missing" if v is None else f"{tag} {v!r} is not a number"
                    for tag, v in zip(_CORNERS, raw)
                    if not _is_number(v)
                )
            problems.append(Problem(source, "box_malformed", f"{what} has no usable bndbox: {why}"))
            continue
        names.append(name)
        boxes.append([xmin - 1.0, ymin - 1.0, xmax, ymax])
        difficult.append((_text(obj, "difficult") or "0") in ("1", "1.0", "true", "True"))
        described.append(f"{what} xmin={raw[0]} ymin={raw[1]} xmax={raw[2]} ymax={raw[3]}")
    return names, boxes, difficult, described, problems


def read_voc(
    root: str | Path,
    split: str | None = "train",
    classes: list[str] | None = None,
    max_pixels: int = MAX_PIXELS,
) -> Catalog:
    """Read and check one split of a Pascal VOC dataset (no image is decoded).

    Args:
        root: folder with ``Annotations/``, ``JPEGImages/`` and optionally ``ImageSets/Main/`` and ``labels.txt``.
        split: ``ImageSets/Main/<split>.txt``; None, or a dataset without split files, reads every annotation.
        classes: foreground class names; default ``labels.txt``, else the sorted names found in all
            annotations (a ``classes_inferred`` warning: the order then depends on the data).
        max_pixels: decompression-bomb limit, used when an annotation lacks its size and the image header is read.
    """
    root = Path(root)
    ids, listed = voc_split_listing(root, split)
    report = DataReport(str(root) + (f" [{split}]" if split else ""), num_samples=len(ids))
    class_source = f"{root} (classes given)"
    if classes is None and (root / "labels.txt").is_file():
        class_source = str(root / "labels.txt")
        classes = read_class_file(root / "labels.txt")
    parsed: list[tuple[str, Path, ET.Element]] = []
    for sample_id in ids:
        xml_path = root / "Annotations" / f"{sample_id}.xml"
        if not xml_path.is_file():
            # An error: without its annotation a listed sample could only be read as background-only,
            # which would teach its objects as background.
            where = ", ".join(listed.get(sample_id, ["the split"]))
            detail = f"{sample_id!r} is listed in {where}, but there is no annotation file"
            report.add(Problem(str(xml_path), "annotation_missing", detail))
            continue
        try:
            parsed.append((sample_id, xml_path, _parse_xml(xml_path)))
        except _Refused as refused:
            report.add(Problem(str(xml_path), refused.kind, refused.detail))
    if classes is None:
        class_source = str(root / "Annotations")
        everything = [_parse_or_none(p) for p in sorted((root / "Annotations").glob("*.xml"))]
        classes = sorted({_text(o, "name") or "" for x in everything if x is not None for o in x.findall("object")})
        report.add(Problem(class_source, "classes_inferred", f"no labels.txt; classes {classes}"))
    report.extend(check_class_list(classes, class_source))
    label_of = {name: i + 1 for i, name in enumerate(classes)}
    unknown = UnknownClasses()
    records: list[Record] = []
    for sample_id, xml_path, xml in parsed:
        source = str(xml_path)
        image_path = _find_image(root, sample_id, _text(xml, "filename"))
        if image_path is None:
            report.add(Problem(source, "image_missing", f"no image {_text(xml, 'filename') or sample_id + '.*'} in JPEGImages/"))
            continue
        size = _recorded_size(xml)
        if size is None:
            try:
                size = image_size(image_path, max_pixels)
            except ImageError as err:
                report.add(Problem(str(image_path), err.kind, err.detail))
                continue
            report.add(Problem(source, "size_missing", f"no valid <size>; the image is {size[1]}x{size[0]}"))
        names, boxes, difficult, described, problems = _objects(xml, source)
        report.extend(problems)
        for name in names:
            if name not in label_of:
                unknown.add(name, source)
        boxes, keep, problems = check_boxes(np.asarray(boxes).reshape(-1, 4), size, source, described)
        report.extend(problems)
        arrays = empty_annotation()
        if len(keep):
            arrays = {
                "boxes": boxes,
                "labels": np.asarray([label_of.get(names[k], 0) for k in keep], dtype=np.int64),
                "difficult": np.asarray([difficult[k] for k in keep], dtype=bool),
                "iscrowd": np.zeros(len(keep), dtype=bool),
            }
        else:
            listed = len(xml.findall("object"))
            detail = f"all {listed} of its objects were dropped" if listed else "the annotation lists no objects"
            report.add(Problem(source, "no_objects", detail))
        # image_id is the index among the usable samples, so dataset[i] has image_id i.
        records.append(Record(image_path=image_path, image_id=len(records), source=source, size=size, **arrays))
    report.extend(unknown.problems(class_source, classes))
    category_ids = list(range(1, len(classes) + 1))
    return Catalog(source=str(root), records=records, classes=list(classes), category_ids=category_ids, report=report)


def _parse_or_none(path: Path) -> ET.Element | None:
    try:
        return _parse_xml(path)
    except _Refused:
        return None


def write_voc_annotation(
    path: str | Path,
    filename: str,
    size: tuple[int, int],
    boxes: np.ndarray,
    names: list[str],
    difficult: list[bool] | None = None,
) -> None:
    """Write one VOC XML. ``boxes`` are ``(M, 4)`` xyxy pixels, rounded to VOC's 1-based inclusive integers."""
    height, width = size
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "JPEGImages"
    ET.SubElement(root, "filename").text = filename
    size_node = ET.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size_node, tag).text = str(value)
    for i, (box, name) in enumerate(zip(np.asarray(boxes).reshape(-1, 4), names)):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = name
        ET.SubElement(obj, "difficult").text = "1" if difficult is not None and difficult[i] else "0"
        bndbox = ET.SubElement(obj, "bndbox")
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        for tag, value in (("xmin", x1 + 1), ("ymin", y1 + 1), ("xmax", x2), ("ymax", y2)):
            ET.SubElement(bndbox, tag).text = str(value)
    ET.indent(root)
    Path(path).write_bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n")
