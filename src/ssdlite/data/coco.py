"""COCO JSON (``instances_*.json``): images, annotations with ``[x, y, w, h]`` boxes, categories.

Category ids are mapped to contiguous labels in ascending id order (label ``i`` is category
``category_ids[i - 1]``, which is what COCO results must be written with). ``iscrowd`` boxes are kept
with ``iscrowd`` and ``difficult`` set: training drops them, evaluation treats them as ignore regions.
Each object's ``area`` is kept as the file gives it (for a segmentation, the mask's area): COCO's
small/medium/large split reads that, not the box, exactly as pycocotools does on the file; an
annotation without a usable ``area`` gets its (checked) box's area. Images without annotations are
kept as background-only samples. A category that only groups the others (named as their ``supercategory``,
used by no annotation, as Roboflow's exports have) is not a class. An annotation naming no image of the file is reported and ignored.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from ssdlite.data.box_checks import check_boxes
from ssdlite.data.catalog import Catalog, Record, empty_annotation, split_names
from ssdlite.data.classes import UnknownClasses, check_class_list
from ssdlite.data.decode import MAX_PIXELS, ImageError, image_size
from ssdlite.data.formats import ANNOTATION_FILES
from ssdlite.data.problems import DataReport, Problem
from ssdlite.errors import DataError


def _load_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise DataError(f"{path}: annotation file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: not a readable COCO JSON file ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(data.get("categories"), list):
        raise DataError(f"{path}: not a COCO detection file (needs 'images' and 'categories' lists)")
    return data


def _xywh_box(bbox) -> list[float] | None:
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        return None
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):
        return None
    return [x, y, x + w, y + h]


# JSON values an id can be compared with; a list or object as an id matches nothing (and is unhashable).
_KEYS = (int, float, str)


def _entry(ann, position: int) -> str:
    """How problems name an annotation: by its ``id``, else by its position in the list."""
    if isinstance(ann, dict) and ann.get("id") is not None:
        return f"annotation {ann['id']}"
    return f"annotations[{position}]"


def _area(ann: dict) -> tuple[float, str | None]:
    """``(area, why the file's value is not used)``; NaN stands for "the box's area" (no usable ``area``)."""
    if "area" not in ann:
        return float("nan"), None
    try:
        area = float(ann["area"])
    except (TypeError, ValueError):
        area = float("nan")
    if not np.isfinite(area) or area < 0:
        return float("nan"), f"area={ann['area']!r} is not a finite number >= 0"
    return area, None


# The ways exporters write COCO's 0/1 ``iscrowd``: numbers, booleans, and (some converters) strings.
_CROWD = {"0": False, "1": True, "false": False, "true": True}


def _crowd(value) -> bool | None:
    """``iscrowd`` as a flag; None when it is none of 0, 1, true, false (as a number, boolean or string).

    ``bool("0")`` is True, so reading the value as Python truth would make every box of a file that writes
    ``"iscrowd": "0"`` a crowd, which training drops.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        return _CROWD.get(value.strip().lower())
    return None


def _group_categories(categories: list[dict], annotations) -> list[dict]:
    """The categories that only group the others: each is named as another category's ``supercategory``
    and no annotation uses it. Roboflow's COCO exports start with one (id 0, e.g. ``"cells"`` over
    ``RBC``/``WBC``/``Platelets``); taken as a class it would be trained to never fire and listed among the
    model's labels."""
    parents = {c.get("supercategory") for c in categories if c.get("supercategory") != c.get("name")}
    used = {a.get("category_id") for a in annotations or [] if isinstance(a, dict)}
    return [c for c in categories if c.get("name") in parents and c.get("id") not in used and len(categories) > 1]


def find_image_dir(annotation_file: Path, file_name: str | None, split: str | None = None) -> Path:
    """The folder ``file_name`` is found in, among the usual COCO layouts around the JSON file:
    ``images/<split>``, ``<split>2017``, ``<split>``, ``images`` beside ``annotations/``, or the JSON's folder."""
    here = annotation_file.parent
    roots = [here.parent, here] if here.name == "annotations" else [here]
    candidates = []
    for root in roots:
        if split:
            candidates += [root / "images" / split, root / f"{split}2017", root / split]
        candidates += [root / "images", root]
    existing = [c for c in candidates if c.is_dir()]
    for folder in existing:
        if file_name and (folder / file_name).is_file():
            return folder
    return existing[0] if existing else here


def read_coco(
    annotation_file: str | Path,
    image_dir: str | Path | None = None,
    classes: list[str] | None = None,
    max_pixels: int = MAX_PIXELS,
    split: str | None = None,
) -> Catalog:
    """Read and check a COCO detection JSON (no image is decoded).

    Args:
        annotation_file: the JSON file.
        image_dir: folder that each image's ``file_name`` is relative to; default: :func:`find_image_dir`.
        classes: if given, must equal the category names in ascending id order (a check, not a remapping).
        max_pixels: decompression-bomb limit, used when an image entry lacks its size.
        split: only a hint for finding ``image_dir``.
    """
    annotation_file = Path(annotation_file)
    source = str(annotation_file)
    data = _load_json(annotation_file)
    if image_dir is None:
        first = data["images"][0].get("file_name") if data["images"] and isinstance(data["images"][0], dict) else None
        image_dir = find_image_dir(annotation_file, first, split)
    image_dir = Path(image_dir)
    try:
        categories = sorted(data["categories"], key=lambda c: int(c["id"]))
        category_ids = [int(c["id"]) for c in categories]
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(f"{source}: a category lacks an integer 'id' or a 'name' ({err})") from None
    report = DataReport(source, num_samples=len(data["images"]))
    groups = _group_categories(categories, data.get("annotations"))
    for category in groups:
        children = [str(c.get("name")) for c in categories if c.get("supercategory") == category.get("name") and c is not category]
        detail = f"category {category['id']} {category.get('name')!r} is the supercategory of {', '.join(children)} and no box uses it"
        report.add(Problem(source, "category_group", detail))
    categories = [c for c in categories if c not in groups]
    try:
        category_ids = [int(c["id"]) for c in categories]
        names = [str(c["name"]) for c in categories]
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(f"{source}: a category lacks an integer 'id' or a 'name' ({err})") from None
    if classes is not None and list(classes) != names:
        raise DataError(f"{source}: classes {list(classes)} differ from the file's categories {names}")
    report.extend(check_class_list(names, source))
    label_of = {cid: i + 1 for i, cid in enumerate(category_ids)}

    images: dict[int, dict] = {}
    for entry in data["images"]:
        try:
            image_id = int(entry["id"])
            str(entry["file_name"])
        except (KeyError, TypeError, ValueError):
            detail = f"image entry {str(entry)[:80]} lacks an integer 'id' or 'file_name'"
            report.add(Problem(source, "annotation_malformed", detail))
            continue
        if image_id in images:
            detail = f"image id {image_id} is listed twice (second: {entry['file_name']})"
            report.add(Problem(source, "annotation_malformed", detail))
            continue
        images[image_id] = entry

    per_image: dict[int, list[tuple[str, dict]]] = defaultdict(list)
    unknown = UnknownClasses()
    for position, ann in enumerate(data.get("annotations") or []):
        entry = _entry(ann, position)
        if not isinstance(ann, dict):
            report.add(Problem(source, "box_malformed", f"{entry} is not a JSON object: {str(ann)[:80]}"))
            continue
        image_id = ann.get("image_id")
        if not isinstance(image_id, _KEYS) or image_id not in images:
            # A warning: the image it names does not exist, so no image of the dataset loses an object.
            detail = f"{entry} refers to image id {image_id!r}, which is not in 'images'"
            report.add(Problem(source, "annotation_orphan", detail))
            continue
        if not isinstance(ann.get("category_id"), _KEYS) or ann["category_id"] not in label_of:
            unknown.add(str(ann.get("category_id")), f"{entry} of {images[image_id]['file_name']}")
            continue
        per_image[image_id].append((entry, ann))

    records: list[Record] = []
    # One image file, one entry: two entries resolving to one file ("a.jpg", "./a.jpg") would train the image
    # on whichever boxes each entry lists.
    claims: dict[Path, list[int]] = defaultdict(list)
    for image_id, entry in images.items():
        claims[Path(os.path.normpath(image_dir / str(entry["file_name"])))].append(image_id)
    for image_id, entry in images.items():
        file_name = str(entry["file_name"])
        image_path = image_dir / file_name
        where = f"{source} ({file_name})"
        others = [i for i in claims[Path(os.path.normpath(image_path))] if i != image_id]
        if others:
            detail = (
                f"image id {image_id} and image id {', '.join(map(str, others))} name the same file {image_path}: "
                "which boxes are its own is ambiguous"
            )
            report.add(Problem(where, "annotation_ambiguous", detail))
            continue
        if not image_path.is_file():
            report.add(Problem(str(image_path), "image_missing", f"image id {image_id} of {source} not found"))
            continue
        try:
            size = (int(entry["height"]), int(entry["width"]))
            if size[0] <= 0 or size[1] <= 0:
                raise ValueError
        except (KeyError, TypeError, ValueError):
            try:
                size = image_size(image_path, max_pixels)
            except ImageError as err:
                report.add(Problem(str(image_path), err.kind, err.detail))
                continue
            detail = f"image id {image_id} has no valid width/height; the image is {size[1]}x{size[0]}"
            report.add(Problem(where, "size_missing", detail))
        boxes, labels, crowd, areas, described = [], [], [], [], []
        for name, ann in per_image.get(image_id, []):
            what = f"{name} bbox={ann.get('bbox')}"
            box = _xywh_box(ann.get("bbox"))
            if box is None:
                report.add(Problem(where, "box_malformed", f"{what} is not 4 numbers"))
                continue
            crowd_flag = _crowd(ann.get("iscrowd", 0))
            if crowd_flag is None:
                report.add(Problem(where, "box_malformed", f"{name} iscrowd={ann['iscrowd']!r} is not 0, 1, true or false"))
                continue
            area, invalid = _area(ann)
            if invalid is not None:
                report.add(Problem(where, "area_invalid", f"{name} {invalid}"))
            boxes.append(box)
            labels.append(label_of[ann["category_id"]])
            crowd.append(crowd_flag)
            areas.append(area)
            described.append(what)
        checked, keep, problems = check_boxes(np.asarray(boxes, dtype=np.float64).reshape(-1, 4), size, where, described)
        report.extend(problems)
        arrays = empty_annotation()
        area = None
        if len(keep):
            flags = np.asarray([crowd[k] for k in keep], dtype=bool)
            arrays = {
                "boxes": checked,
                "labels": np.asarray([labels[k] for k in keep], dtype=np.int64),
                "difficult": flags.copy(),
                "iscrowd": flags,
            }
            area = np.asarray([areas[k] for k in keep], dtype=np.float64)  # (K,)
            pixels = checked.astype(np.float64)  # (K, 4), as ImageGroundTruth computes a box area
            box_area = (pixels[:, 2] - pixels[:, 0]) * (pixels[:, 3] - pixels[:, 1])  # (K,)
            area = np.where(np.isnan(area), box_area, area)
        elif not per_image.get(image_id):
            report.add(Problem(where, "no_objects", f"image id {image_id} has no annotations"))
        else:
            count = len(per_image[image_id])
            report.add(Problem(where, "no_objects", f"image id {image_id}: all {count} of its annotations were dropped"))
        records.append(Record(image_path=image_path, image_id=image_id, source=where, size=size, area=area, **arrays))
    report.extend(unknown.problems(source, [str(c) for c in category_ids]))
    return Catalog(source=source, records=records, classes=names, category_ids=category_ids, report=report)


# -- the format's row (ssdlite.data.formats): detect, has_split, splits, read; COCO's layout rules


#: Where a COCO export keeps its JSON when no split is named: ``annotations/``, the root, Roboflow's split folders.
JSON_PLACES = ("annotations/*.json", "*.json", "*/_annotations.coco.json")


def detect(folder: Path) -> int:
    """JSON files where COCO exports keep them (a YOLO layout beside them outranks them)."""
    return ANNOTATION_FILES if any(any(folder.glob(pattern)) for pattern in JSON_PLACES) else 0


def coco_annotation_file(root: Path, split: str | None) -> Path:
    """The COCO JSON of ``split`` under ``root``: ``annotations/instances_<split>*.json``,
    ``annotations/<split>.json``, ``<split>.json`` or ``<split>/_annotations.coco.json`` (Roboflow), where
    ``val`` is also found as ``valid`` or ``validation``."""
    if root.is_file():
        return root
    names = split_names(split) if split else ()
    patterns = (
        [p for name in names for p in (f"annotations/instances_{name}*.json", f"annotations/{name}.json", f"{name}.json", f"{name}/_annotations.coco.json")]
        if split
        else ["annotations/*.json", "*.json"]
    )
    for pattern in patterns:
        found = sorted(root.glob(pattern))
        if found:
            return found[0]
    present = sorted(str(p.relative_to(root)) for pattern in JSON_PLACES for p in root.glob(pattern))
    raise DataError(f"{root}: no COCO annotation file for split {split!r} (JSON files present: {present or 'none'})")


def has_split(root: Path, split: str) -> bool:
    """Whether ``root`` has an annotation file of ``split`` (:func:`coco_annotation_file`)."""
    try:
        coco_annotation_file(root, split)
    except DataError:
        return False
    return True


def splits(root: Path) -> list[str | None]:
    """The splits with an annotation file, else every JSON as one (``[None]``)."""
    return [s for s in ("train", "val", "test") if has_split(root, s)] or [None]


def read(path: Path, split: str | None, classes: list[str] | None, max_pixels: int) -> Catalog:
    return read_coco(coco_annotation_file(path, split), None, classes, max_pixels, split=split)
