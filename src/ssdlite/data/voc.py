"""Pascal VOC XML, in the layouts annotation tools and exporters write.

- Pascal VOC itself: ``Annotations/<id>.xml``, ``JPEGImages/``, ``ImageSets/Main/<split>.txt``, ``labels.txt``
  (also ``annotations/`` with ``images/``, as many published datasets name them);
- labelImg's default: each ``<name>.xml`` beside its image in one folder;
- Roboflow's "Pascal VOC" export: one folder per split (``train/``, ``valid/``, ``test/``), XML beside the images.

XML is parsed with defusedxml: entity declarations (billion laughs) and external references (XXE) are
refused as ``annotation_unsafe``. VOC pixel indices are 1-based and inclusive (a box covering a whole
``W``-wide image is ``xmin=1, xmax=W``), so a box becomes xyxy pixels ``(xmin - 1, ymin - 1, xmax, ymax)``;
:func:`write_voc_annotation` writes the inverse.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import defusedxml.ElementTree as SafeET
import numpy as np
from defusedxml import DefusedXmlException, EntitiesForbidden

from ssdlite.data.box_checks import check_boxes
from ssdlite.data.catalog import Catalog, Record, empty_annotation, split_names
from ssdlite.data.classes import UnknownClasses, check_class_list, read_class_file, read_labelmap
from ssdlite.data.decode import MAX_PIXELS, ImageError, image_size
from ssdlite.data.formats import LOOSE_FILES, OWN_LAYOUT
from ssdlite.data.problems import DataReport, Problem
from ssdlite.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# Folder names that make folders of XML a dataset's splits (``val`` also as ``valid``, ``validation``).
KNOWN_SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class VocLayout:
    """Where a VOC dataset keeps its files.

    A sample id is its XML's path under ``annotations`` without ``.xml``: ``000005`` in Pascal VOC and
    labelImg folders, ``train/000005`` with ``split_folders``. ``images`` is the image folder, None when
    each image lies beside its XML. ``split_folders`` maps a folder name to the folder (Roboflow's
    ``train/``, ``valid/``), empty when the splits are ``ImageSets/Main/<split>.txt`` files or absent.
    Folders of XML none of which is named as a split (``batch1/``, ``batch2/``) are one dataset without splits.
    """

    root: Path
    annotations: Path
    images: Path | None
    split_folders: dict[str, Path] = field(default_factory=dict)

    def annotation_files(self) -> list[Path]:
        """Every XML of the dataset, whatever its split."""
        folders = list(self.split_folders.values()) or [self.annotations]
        return sorted(p for folder in folders for p in folder.glob("*.xml"))

    @property
    def split_dir(self) -> Path:
        """Pascal VOC's folder of split files, ``ImageSets/Main``."""
        return self.root / "ImageSets" / "Main"

    def split_files(self) -> list[Path]:
        """``ImageSets/Main/<split>.txt`` files; per-class lists (``cat_train.txt``) are not splits."""
        return sorted(p for p in self.split_dir.glob("*.txt") if "_" not in p.stem) if self.split_dir.is_dir() else []

    def named_splits(self) -> bool:
        """Whether the folders of XML are splits: one at least is named ``train``, ``val``, ``valid``, ... ."""
        return any(name in self.split_folders for split in KNOWN_SPLITS for name in split_names(split))

    def split(self, split: str) -> Path | None:
        """The split folder or ``ImageSets/Main`` file of ``split`` (``val`` also as ``valid``, ``validation``)."""
        if self.named_splits():
            return next((self.split_folders[n] for n in split_names(split) if n in self.split_folders), None)
        return next((self.split_dir / f"{n}.txt" for n in split_names(split) if (self.split_dir / f"{n}.txt").is_file()), None)


def voc_layout(root: str | Path) -> VocLayout | None:
    """The layout of the VOC dataset at ``root``, None when ``root`` holds no VOC annotations."""
    root = Path(root)
    if not root.is_dir():
        return None
    for name, image_names in (("Annotations", ("JPEGImages", "images")), ("annotations", ("images", "JPEGImages"))):
        folder = root / name
        # Lower-case annotations/ is VOC only when it holds XML (COCO keeps its JSON there).
        if folder.is_dir() and (name == "Annotations" or any(folder.glob("*.xml"))):
            images = next((root / n for n in image_names if (root / n).is_dir()), root / image_names[0])
            return VocLayout(root, folder, images)
    if any(root.glob("*.xml")):
        return VocLayout(root, root, None)
    folders = {d.name: d for d in sorted(root.iterdir()) if d.is_dir() and any(d.glob("*.xml"))}
    return VocLayout(root, root, None, folders) if folders else None


def _layout_or_error(root: Path) -> VocLayout:
    layout = voc_layout(root)
    if layout is None:
        raise DataError(
            f"{root}: not a Pascal VOC dataset (no Annotations/ folder, no .xml files in it or in its split folders)"
        )
    return layout


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


def voc_split_listing(layout: VocLayout, split: str | None) -> tuple[list[str], dict[str, list[str]]]:
    """``(sample ids, where each id is listed)`` of one split.

    ``split`` reads its split folder or ``ImageSets/Main/<split>.txt``. Without splits, or with ``split``
    None, the ids are every annotation; with ``split`` None they also include every id a split file lists,
    so a listed sample whose annotation is missing is reported when the whole dataset is checked. ``where``
    maps an id to its listings (``<split file> line <n>``), for the problems.
    """
    root = layout.root
    if layout.split_folders:
        folders = list(layout.split_folders.values())
        if split is not None and layout.named_splits():
            folder = layout.split(split)
            if folder is None:
                present = ", ".join(f"{name}/" for name in layout.split_folders)
                raise DataError(f"{root / split}: no such split folder (folders with annotations: {present})")
            folders = [folder]
        return sorted(f"{folder.name}/{p.stem}" for folder in folders for p in folder.glob("*.xml")), {}
    split_files = layout.split_files()
    if split is not None:
        split_file = layout.split(split)
        if split_file is not None:
            return _split_entries([split_file])
        if split_files:
            present = ", ".join(p.stem for p in split_files)
            raise DataError(f"{layout.split_dir / f'{split}.txt'}: no such split file (splits present: {present})")
    listed, where = _split_entries(split_files if split is None else [])
    return sorted({p.stem for p in layout.annotations.glob("*.xml")} | set(listed)), where


# -- the format's row (ssdlite.data.formats): detect, has_split, splits, read


def detect(folder: Path) -> int:
    """Pascal VOC's own ``Annotations/`` folder; else XML beside the images or in split folders (:func:`voc_layout`),
    which a COCO or YOLO layout in the same folder outranks."""
    if (folder / "Annotations").is_dir():
        return OWN_LAYOUT
    return LOOSE_FILES if voc_layout(folder) is not None else 0


def has_split(root: str | Path, split: str) -> bool:
    """Whether the VOC dataset at ``root`` defines ``split`` (a split folder or file)."""
    layout = voc_layout(root)
    return layout is not None and layout.split(split) is not None


def splits(root: Path) -> list[str | None]:
    """Every annotation once (``[None]``): a split of VOC is a list of the same XML files."""
    return [None]


def read(path: Path, split: str | None, classes: list[str] | None, max_pixels: int) -> Catalog:
    return read_voc(path, split, classes, max_pixels)


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


def _base_name(name: str | None) -> str | None:
    """The file name at the end of a ``<filename>`` or ``<path>`` (Windows paths included), None when empty."""
    return (Path(name.replace("\\", "/")).name or None) if name else None


def _find_image(images: Path, stem: str, xml: ET.Element) -> tuple[Path | None, str | None, str | None]:
    """``(image, problem kind, detail)``: the image in ``images`` that an XML named ``<stem>.xml`` labels.

    The XML names its image three ways: ``<filename>``, the base name of ``<path>`` (the rest of the path is
    the annotator's machine, as labelImg writes it) and its own stem. An image named by ``<filename>`` or
    ``<path>`` is used; when those name two different images, or name one while another lies under the XML's
    own name, which image the boxes belong to is ambiguous (``annotation_ambiguous``). When no named image
    exists, the image under the XML's stem is used, with ``image_renamed`` if ``<filename>`` named another
    stem (an extension missing or changed is no problem: converters and many VOC sets write those).
    """
    named = list(dict.fromkeys(n for n in (_base_name(_text(xml, "filename")), _base_name(_text(xml, "path"))) if n))
    found = list(dict.fromkeys(images / n for n in named if (images / n).is_file()))
    beside = [images / f"{stem}{suffix}" for suffix in IMAGE_SUFFIXES if (images / f"{stem}{suffix}").is_file()]
    if len(found) > 1:
        return None, "annotation_ambiguous", f"its <filename> and <path> name two different images, {found[0]} and {found[1]}"
    if found:
        image = found[0]
        if image.stem != stem and beside:
            detail = f"it names {image.name}, but {beside[0].name} lies beside it under the annotation's own name"
            return None, "annotation_ambiguous", detail
        return image, None, None
    if len(beside) > 1:
        names = " and ".join(p.name for p in beside)
        return None, "annotation_ambiguous", f"{names} both lie under the annotation's name and it names neither"
    if not beside:
        return None, "image_missing", f"no image {named[0] if named else stem + '.*'} in {images}/"
    image = beside[0]
    if named and all(Path(n).stem != stem for n in named):
        return image, "image_renamed", f"it names {named[0]}, which is not in {images}/ ({image.name} is)"
    return image, None, None


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
        root: the dataset folder, in one of the layouts of :func:`voc_layout`, with optionally ``labels.txt``
            (or CVAT's ``labelmap.txt``).
        split: its split folder or ``ImageSets/Main/<split>.txt`` (``val`` also as ``valid``, ``validation``);
            None, or a dataset without splits, reads every annotation.
        classes: foreground class names; default ``labels.txt`` or ``labelmap.txt``, else the sorted names found
            in all the dataset's annotations (a ``classes_inferred`` warning: the order then depends on the data).
        max_pixels: decompression-bomb limit, used when an annotation lacks its size and the image header is read.
    """
    root = Path(root)
    layout = _layout_or_error(root)
    ids, listed = voc_split_listing(layout, split)
    report = DataReport(str(root) + (f" [{split}]" if split else ""), num_samples=len(ids))
    class_source = f"{root} (classes given)"
    for name, read in (("labels.txt", read_class_file), ("labelmap.txt", read_labelmap)):  # labelmap.txt: CVAT's
        if classes is None and (root / name).is_file():
            class_source = str(root / name)
            classes = read(root / name)
    parsed: list[tuple[str, Path, ET.Element]] = []
    for sample_id in ids:
        xml_path = layout.annotations / f"{sample_id}.xml"
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
        class_source = str(layout.annotations)
        everything = [_parse_or_none(p) for p in layout.annotation_files()]
        classes = sorted({_text(o, "name") or "" for x in everything if x is not None for o in x.findall("object")})
        report.add(Problem(class_source, "classes_inferred", f"no labels.txt; classes {classes}"))
    report.extend(check_class_list(classes, class_source))
    label_of = {name: i + 1 for i, name in enumerate(classes)}
    unknown = UnknownClasses()
    records: list[Record] = []
    found: set[Path] = set()
    resolved = [(xml_path, xml, *_find_image(layout.images or xml_path.parent, xml_path.stem, xml)) for _, xml_path, xml in parsed]
    claims: dict[Path, list[Path]] = {}
    for xml_path, _, image_path, _, _ in resolved:
        if image_path is not None:
            claims.setdefault(image_path, []).append(xml_path)
    for xml_path, xml, image_path, kind, detail in resolved:
        source = str(xml_path)
        if kind is not None:
            report.add(Problem(source, kind, detail))
        if image_path is None:
            continue
        found.add(image_path)
        others = [p for p in claims[image_path] if p != xml_path]
        if others:
            detail = f"{', '.join(map(str, others))} also names {image_path}: which annotation is its own is ambiguous"
            report.add(Problem(source, "annotation_ambiguous", detail))
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
            count = len(xml.findall("object"))
            detail = f"all {count} of its objects were dropped" if count else "the annotation lists no objects"
            report.add(Problem(source, "no_objects", detail))
        # image_id is the index among the usable samples, so dataset[i] has image_id i.
        records.append(Record(image_path=image_path, image_id=len(records), source=source, size=size, **arrays))
    report.extend(unknown.problems(class_source, classes))
    if layout.images is None:
        report.extend(_unannotated(sorted({(layout.annotations / f"{i}.xml").parent for i in ids}), found))
    category_ids = list(range(1, len(classes) + 1))
    return Catalog(source=str(root), records=records, classes=list(classes), category_ids=category_ids, report=report)


def _unannotated(folders: list[Path], found: set[Path]) -> list[Problem]:
    """A note per folder of images beside XML that no annotation names: with labelImg these are the
    images not labelled yet, and a user counting images should see why they are not samples."""
    problems = []
    for folder in folders:
        loose = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p not in found)
        if loose:
            shown = ", ".join(loose[:3]) + (", ..." if len(loose) > 3 else "")
            problems.append(Problem(str(folder), "image_unannotated", f"{len(loose)} image(s) without an annotation ({shown})"))
    return problems


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
