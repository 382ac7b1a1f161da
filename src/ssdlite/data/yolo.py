"""YOLO (Ultralytics) layout: ``images/<split>/*.jpg`` with ``labels/<split>/*.txt`` beside them; also
labelImg's YOLO mode (each ``<name>.txt`` beside its image in one folder, with ``classes.txt``) and Darknet's
(CVAT's "YOLO 1.1" export: ``obj.data`` naming ``obj.names`` and the ``train.txt``/``valid.txt`` image lists,
each label beside its image in ``obj_<subset>_data/``).

Each label line is ``class cx cy w h`` normalized to ``[0, 1]`` (or ``class x1 y1 x2 y2 ...``, a
segmentation polygon, whose bounding box is used). Class ids are 0-based and become labels
``id + 1`` (label 0 is background). Class names come from ``data.yaml`` (``names`` as a list or an
``{id: name}`` map; ``path`` and the split keys as Ultralytics reads them), else from ``names``, else
from ``classes.txt``. An image without a label file is a background-only image, as in Ultralytics.
Boxes are checked in normalized coordinates and scaled by the decoded image's size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from ssdlite.data.box_checks import check_boxes
from ssdlite.data.catalog import Catalog, Record, empty_annotation, split_names
from ssdlite.data.classes import UnknownClasses, check_class_list, read_class_file
from ssdlite.data.formats import OWN_LAYOUT
from ssdlite.data.problems import DataReport, Problem
from ssdlite.data.voc import IMAGE_SUFFIXES
from ssdlite.errors import DataError

YAML_NAMES = ("data.yaml", "dataset.yaml", "data.yml")


def find_yolo_yaml(root: Path) -> Path | None:
    if root.is_file() and root.suffix in (".yaml", ".yml"):
        return root
    for name in YAML_NAMES:
        if (root / name).is_file():
            return root / name
    return None


def read_yolo_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise DataError(f"{path}: cannot read the YOLO data file ({err})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: not a YOLO data file (expected a mapping with 'names' and split keys)")
    return data


def read_darknet_data(path: Path) -> dict[str, str]:
    """The ``key = value`` lines of a Darknet ``obj.data`` (``names``, ``train``, ``valid``, ...)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read the Darknet data file ({err})") from None
    pairs = [line.split("#", 1)[0].split("=", 1) for line in lines]
    return {pair[0].strip(): pair[1].strip() for pair in pairs if len(pair) == 2 and pair[1].strip()}


def _darknet_path(root: Path, entry: str) -> Path:
    """A path of ``obj.data`` or of an image list: relative to the export's folder, which Darknet (and CVAT's
    older exports) call ``data/``."""
    path = Path(entry) if Path(entry).is_absolute() else root / entry
    if not path.exists() and entry.startswith("data/"):
        path = root / entry[len("data/"):]
    return path


def darknet_split(data: dict[str, str], split: str) -> str | None:
    """The ``obj.data`` key of ``split`` (``val`` is Darknet's ``valid``)."""
    return next((name for name in split_names(split) if data.get(name)), None)


def _darknet_layout(data_file: Path, split: str | None, names: list[str] | None) -> tuple[list[Path], list[str], str]:
    root, data = data_file.parent, read_darknet_data(data_file)
    split = split or "train"
    key = darknet_split(data, split)
    if key is None:
        present = [k for k in ("train", "valid", "test") if data.get(k)]
        raise DataError(f"{data_file}: no {split!r} image list (lists present: {', '.join(present) or 'none'})")
    listing = _darknet_path(root, data[key])
    try:
        lines = listing.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{data_file}: cannot read its {key} list {listing} ({err})") from None
    entries = [line.strip() for line in lines if line.strip()]
    images = [_darknet_path(root, entry) for entry in entries]
    if names is not None:
        return images, list(names), str(data_file)
    names_file = _darknet_path(root, data.get("names", "obj.names"))
    if not names_file.is_file():
        raise DataError(f"{data_file}: its class names file {names_file} does not exist")
    return images, read_class_file(names_file), str(names_file)


def _names(value, source: Path) -> list[str]:
    if isinstance(value, dict):
        try:
            ids = sorted(int(k) for k in value)
        except (TypeError, ValueError):
            raise DataError(f"{source}: 'names' keys must be class ids 0..K-1") from None
        if ids != list(range(len(ids))):
            raise DataError(f"{source}: 'names' ids must be 0..{len(ids) - 1} without gaps, got {ids}")
        return [str(value.get(i, value.get(str(i)))) for i in ids]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    raise DataError(f"{source}: 'names' must be a list or an {{id: name}} mapping")


def _resolve(base: Path, entry: str) -> Path:
    path = Path(entry)
    if not path.is_absolute():
        path = base / path
        if not path.exists() and entry.startswith("../"):  # Roboflow writes ../train/images beside data.yaml
            path = base / entry[3:]
    return path


def _images_in(location: Path, base: Path) -> list[Path]:
    if location.is_dir():
        return sorted(p for p in location.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if location.is_file() and location.suffix == ".txt":
        lines = [line.strip() for line in location.read_text(encoding="utf-8").splitlines() if line.strip()]
        return [_resolve(base, line[2:] if line.startswith("./") else line) for line in lines]
    raise DataError(f"{location}: YOLO image location not found")


def yolo_layout(root: str | Path, split: str | None, names: list[str] | None) -> tuple[list[Path], list[str], str]:
    """``(image paths, class names, class-list source)`` of one split."""
    root = Path(root)
    data_file = find_yolo_yaml(root)
    if data_file is not None:
        data = read_yolo_yaml(data_file)
        base = data_file.parent
        if data.get("path"):
            candidate = Path(str(data["path"]))
            candidate = candidate if candidate.is_absolute() else base / candidate
            base = candidate if candidate.is_dir() else base  # a dataset moved since data.yaml was written
        split = split or "train"
        if split not in data or not data[split]:
            splits = [k for k in ("train", "val", "test") if data.get(k)]
            raise DataError(f"{data_file}: no {split!r} split (splits present: {', '.join(splits) or 'none'})")
        entries = data[split] if isinstance(data[split], list) else [data[split]]
        images = [p for entry in entries for p in _images_in(_resolve(base, str(entry)), base)]
        if names is None:
            if "names" not in data:
                raise DataError(f"{data_file}: no 'names' (the class names)")
            names = _names(data["names"], data_file)
        return images, list(names), str(data_file)
    if (root / "obj.data").is_file():
        return _darknet_layout(root / "obj.data", split, names)
    names_of_split = split_names(split) if split else ()
    candidates = [c for name in names_of_split for c in (root / "images" / name, root / name / "images")]
    folder = next((c for c in candidates if c.is_dir()), root / "images")
    if not folder.is_dir() and is_flat_yolo(root):  # labelImg: every split is the one folder
        images = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if names is None:
            return images, read_class_file(root / "classes.txt"), str(root / "classes.txt")
        return images, list(names), str(root)
    if not folder.is_dir():
        raise DataError(f"{root}: not a YOLO dataset (no data.yaml and no images/ folder)")
    present = sorted(p.name for p in folder.iterdir() if p.is_dir()) if split and folder == root / "images" else []
    if present:  # split folders, but not this one (a flat images/ is every split)
        raise DataError(f"{root}: no {split!r} split (no images/{split}/ or {split}/images/; folders in images/: {', '.join(present)})")
    if names is None:
        class_file = root / "classes.txt"
        if not class_file.is_file():
            raise DataError(f"{root}: YOLO dataset without data.yaml or classes.txt; pass the class names")
        return _images_in(folder, root), read_class_file(class_file), str(class_file)
    return _images_in(folder, root), list(names), str(root)


def is_flat_yolo(root: Path) -> bool:
    """labelImg's YOLO folder: ``classes.txt`` and other ``.txt`` label files beside images, no ``images/``."""
    if not (root / "classes.txt").is_file() or (root / "images").is_dir():
        return False
    files = [p for p in root.iterdir() if p.is_file()]
    labels = any(p.suffix == ".txt" and p.name != "classes.txt" for p in files)
    return labels and any(p.suffix.lower() in IMAGE_SUFFIXES for p in files)


def label_path(image_path: Path) -> Path:
    """Ultralytics' rule: the last ``/images/`` in the path becomes ``/labels/``, the suffix ``.txt``; when
    there is no such file but one beside the image (labelImg, Darknet), that one."""
    text = str(image_path)
    marker = "/images/"
    if marker in text:
        head, tail = text.rsplit(marker, 1)
        text = head + "/labels/" + tail
    mapped, beside = Path(text).with_suffix(".txt"), image_path.with_suffix(".txt")
    return beside if not mapped.is_file() and beside.is_file() else mapped


def label_claims(images: list[Path]) -> dict[Path, list[Path]]:
    """``{label file: the images that would take it}`` for the existing label files of ``images``; two
    images with one stem (``a.jpg``, ``a.png``) map to one ``a.txt``, and neither can be told to be its image."""
    claims: dict[Path, list[Path]] = {}
    for image_path in dict.fromkeys(images):  # an image listed twice is one image
        labels_file = label_path(image_path)
        if image_path.is_file() and labels_file.is_file():
            claims.setdefault(labels_file, []).append(image_path)
    return claims


def _parse_line(fields: list[str]) -> tuple[int, list[float]] | str:
    """``(class id, normalized xyxy)`` of one label line, or why it is not a box or polygon.

    A non-finite value gives a box of NaNs, so :func:`check_boxes` reports it as ``box_nonfinite``
    (a polygon's min/max would otherwise hide a NaN vertex: ``min([0.2, nan])`` is 0.2).
    """
    if len(fields) < 5 or (len(fields) > 5 and len(fields) % 2 == 0):
        return f"has {len(fields)} fields; a box has 5 (class cx cy w h), a polygon an odd number from 7 (class x1 y1 x2 y2 x3 y3 ...)"
    numbers = []
    for position, field in enumerate(fields, start=1):
        try:
            numbers.append(float(field))
        except ValueError:
            return f"field {position} {field!r} is not a number"
    class_id, values = numbers[0], numbers[1:]
    if not np.isfinite(class_id) or class_id != int(class_id):
        return f"class {fields[0]!r} is not an integer class id"
    if not np.all(np.isfinite(values)):
        return int(class_id), [float("nan")] * 4
    if len(values) == 4:
        cx, cy, w, h = values
        return int(class_id), [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
    xs, ys = values[0::2], values[1::2]  # polygon x1 y1 x2 y2 ...
    return int(class_id), [min(xs), min(ys), max(xs), max(ys)]


def read_yolo(root: str | Path, split: str | None = "train", names: list[str] | None = None) -> Catalog:
    """Read and check one split of a YOLO dataset (no image is decoded).

    Args:
        root: the dataset folder (with ``data.yaml``, or ``images/`` and ``labels/``) or the yaml file.
        split: the yaml key (``train``, ``val``, ``test``) or the ``images/<split>`` folder.
        names: class names in id order; default from ``data.yaml`` or ``classes.txt``.
    """
    images, names, class_source = yolo_layout(root, split, names)
    report = DataReport(f"{root}" + (f" [{split}]" if split else ""), num_samples=len(images))
    report.extend(check_class_list(names, class_source))
    unknown = UnknownClasses()
    records: list[Record] = []
    claims = label_claims(images)
    for image_path in images:
        if not image_path.is_file():
            report.add(Problem(str(image_path), "image_missing", "listed image not found"))
            continue
        labels_file = label_path(image_path)
        source = str(labels_file)
        others = [p for p in claims.get(labels_file, []) if p != image_path]
        if others:
            detail = (
                f"its label file {labels_file} is also the label file of {', '.join(str(p) for p in others)}: which "
                "image it was written for is ambiguous (rename the other image, or give it its own label file)"
            )
            report.add(Problem(str(image_path), "annotation_ambiguous", detail))
            continue
        boxes, labels, described, entries = [], [], [], []
        if labels_file.is_file():
            try:
                lines = labels_file.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as err:
                report.add(Problem(source, "annotation_malformed", f"cannot read label file ({err})"))
                continue
            entries = [(number, line) for number, line in enumerate(lines, start=1) if line.strip()]
            for number, line in entries:
                parsed = _parse_line(line.split())
                what = f"line {number} {line.strip()!r}"
                if isinstance(parsed, str):
                    report.add(Problem(source, "box_malformed", f"{what} {parsed}"))
                    continue
                class_id, box = parsed
                if not 0 <= class_id < len(names):
                    unknown.add(f"id {class_id}", f"{source} {what}")
                    continue
                boxes.append(box)
                labels.append(class_id + 1)
                described.append(what)
        checked, keep, problems = check_boxes(
            np.asarray(boxes, dtype=np.float64).reshape(-1, 4), (1.0, 1.0), source, described, frame="the normalized [0, 1] image"
        )
        report.extend(problems)
        arrays = empty_annotation()
        if len(keep):
            arrays["boxes"] = checked
            arrays["labels"] = np.asarray([labels[k] for k in keep], dtype=np.int64)
            arrays["difficult"] = np.zeros(len(keep), dtype=bool)
            arrays["iscrowd"] = np.zeros(len(keep), dtype=bool)
        elif not labels_file.is_file():
            report.add(Problem(source, "label_missing", f"no label file for {image_path.name}"))
        else:
            detail = f"all {len(entries)} of its label lines were dropped" if entries else "the label file is empty"
            report.add(Problem(source, "no_objects", detail))
        records.append(Record(image_path=image_path, image_id=len(records), source=source, size=None, **arrays))
    report.extend(unknown.problems(class_source, [f"{i}: {n}" for i, n in enumerate(names)]))
    return Catalog(source=str(root), records=records, classes=names, category_ids=list(range(1, len(names) + 1)), report=report)


# -- the format's row (ssdlite.data.formats): detect, has_split, splits, read


def detect(folder: Path) -> int:
    """A marker only YOLO writes: ``data.yaml``, Darknet's ``obj.data``, ``images/`` + ``labels/``, labelImg's
    ``classes.txt`` beside the labels."""
    marked = find_yolo_yaml(folder) is not None or (folder / "obj.data").is_file() or is_flat_yolo(folder)
    return OWN_LAYOUT if marked or ((folder / "images").is_dir() and (folder / "labels").is_dir()) else 0


def has_split(root: Path, split: str) -> bool:
    """Whether ``data.yaml`` (or ``obj.data``) names ``split``, or, without either, its ``images/<split>`` or
    ``<split>/images`` folder exists (``val`` also as ``valid``, ``validation``)."""
    data_file = find_yolo_yaml(root)
    if data_file is not None:
        return bool(read_yolo_yaml(data_file).get(split))
    if (root / "obj.data").is_file():
        return darknet_split(read_darknet_data(root / "obj.data"), split) is not None
    return any((root / "images" / name).is_dir() or (root / name / "images").is_dir() for name in split_names(split))


def splits(root: Path) -> list[str | None]:
    """The splits ``data.yaml`` names (else ``train``), or the split folders present (else every image once)."""
    data_file = find_yolo_yaml(root)
    if data_file is not None:
        data = read_yolo_yaml(data_file)
        return [s for s in ("train", "val", "test") if data.get(s)] or ["train"]
    return [s for s in ("train", "val", "test") if has_split(root, s)] or [None]


def read(path: Path, split: str | None, classes: list[str] | None, max_pixels: int) -> Catalog:
    """(``max_pixels`` is the decoder's business: YOLO labels carry no image size to check.)"""
    return read_yolo(path, split, classes)
