"""Small datasets written by the tests themselves, in VOC, COCO and YOLO layouts, and the checks
that a bad sample did not cost any good one.

The writers are independent of ``ssdlite.data`` (hand-written XML, JSON and txt), so the readers are
checked against the formats, not against their own writer. Boxes are integer xyxy pixels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ["cat", "dog", "bird"]
# ../shared beside the project (present on developers' machines and in CI, not in a user's clone).
SHARED_DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"

# XML prologs of the two entity attacks: an external entity (XXE) and nested entities (billion laughs).
XXE = '<?xml version="1.0"?>\n<!DOCTYPE annotation [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE annotation [<!ENTITY lol "lol">'
    + "".join(f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10))
    + "]>\n"
)


@dataclass
class Sample:
    """One image: ``stem``, ``size`` ``(H, W)`` and objects ``(name, x1, y1, x2, y2, difficult)``."""

    stem: str
    size: tuple[int, int]
    objects: list[tuple[str, int, int, int, int, bool]] = field(default_factory=list)


def default_samples() -> list[Sample]:
    return [
        Sample("a", (48, 64), [("cat", 4, 6, 30, 40, False), ("dog", 20, 10, 60, 44, False)]),
        Sample("b", (40, 40), [("bird", 0, 0, 40, 40, False)]),
        Sample("c", (50, 70), [("dog", 10, 12, 22, 30, True), ("cat", 30, 5, 69, 49, False)]),
        Sample("d", (32, 48), [("bird", 5, 5, 20, 20, False), ("bird", 25, 8, 45, 30, False), ("cat", 1, 2, 9, 9, False)]),
    ]


def write_image(path: Path, size: tuple[int, int], seed: int = 0, mode: str = "RGB") -> np.ndarray:
    """A random-colour image of ``size`` ``(H, W)``; returns the RGB pixels written (before JPEG)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[0], size[1], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(pixels)
    if mode != "RGB":
        image = image.convert(mode)
    image.save(path)
    return pixels


def voc_object_xml(name: str, x1: int, y1: int, x2: int, y2: int, difficult: bool = False) -> str:
    """An ``<object>`` in VOC's 1-based inclusive convention for the pixel box ``x1, y1, x2, y2``."""
    return voc_raw_object(name, x1 + 1, y1 + 1, x2, y2, difficult)


def voc_raw_object(name: str, xmin, ymin, xmax, ymax, difficult: bool = False) -> str:
    """An ``<object>`` whose bndbox fields are written exactly as given."""
    return (
        f"<object><name>{name}</name><difficult>{int(difficult)}</difficult>"
        f"<bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>"
    )


def voc_xml(filename: str, size: tuple[int, int] | None, objects_xml: str, prolog: str = "") -> str:
    size_xml = f"<size><width>{size[1]}</width><height>{size[0]}</height><depth>3</depth></size>" if size else ""
    return f"{prolog}<annotation><filename>{filename}</filename>{size_xml}{objects_xml}</annotation>\n"


def write_voc(
    root: Path, samples: list[Sample], classes: list[str] | None = CLASSES, splits: dict[str, list[str]] | None = None
) -> Path:
    """VOC layout with ``labels.txt`` (unless ``classes`` is None) and optional ``ImageSets/Main`` splits."""
    for i, sample in enumerate(samples):
        write_image(root / "JPEGImages" / f"{sample.stem}.jpg", sample.size, seed=i)
        objects = "".join(voc_object_xml(*obj) for obj in sample.objects)
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "Annotations" / f"{sample.stem}.xml").write_text(voc_xml(f"{sample.stem}.jpg", sample.size, objects))
    if classes is not None:
        (root / "labels.txt").write_text("\n".join(classes) + "\n")
    for split, stems in (splits or {}).items():
        (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(stems) + "\n")
    return root


def write_voc_beside_images(root: Path, samples: list[Sample], folders: dict[str, list[str]] | None = None) -> Path:
    """labelImg's default (each ``<stem>.xml`` beside its ``.png`` image in ``root``, no ``labels.txt``) or,
    with ``folders``, Roboflow's VOC export (``root/<folder>/`` per split, XML beside the images). The XML
    is labelImg's: ``<folder>``, ``<path>`` on the annotator's machine, ``<source>``, ``<segmented>``."""
    folder_of = {stem: name for name, stems in (folders or {}).items() for stem in stems}
    for i, sample in enumerate(samples):
        folder = root / folder_of[sample.stem] if folders else root
        write_image(folder / f"{sample.stem}.png", sample.size, seed=i)
        objects = "".join(voc_object_xml(*obj) for obj in sample.objects)
        extra = f"<folder>{folder.name}</folder><path>C:\\Users\\me\\{sample.stem}.png</path><source><database>Unknown</database></source>"
        xml = voc_xml(f"{sample.stem}.png", sample.size, objects).replace("<annotation>", f"<annotation>{extra}")
        (folder / f"{sample.stem}.xml").write_text(xml.replace("</annotation>", "<segmented>0</segmented></annotation>"))
    return root


def write_coco(root: Path, samples: list[Sample], classes: list[str] = CLASSES, category_ids: list[int] | None = None) -> Path:
    """``annotations/instances_train.json`` + ``images/train/``; ``difficult`` objects become ``iscrowd``."""
    category_ids = category_ids or [1 + i for i in range(len(classes))]
    images, annotations = [], []
    for i, sample in enumerate(samples):
        write_image(root / "images" / "train" / f"{sample.stem}.jpg", sample.size, seed=i)
        images.append({"id": 100 + i, "file_name": f"{sample.stem}.jpg", "height": sample.size[0], "width": sample.size[1]})
        for name, x1, y1, x2, y2, crowd in sample.objects:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": 100 + i,
                    "category_id": category_ids[classes.index(name)],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": int(crowd),
                }
            )
    categories = [{"id": cid, "name": name} for cid, name in zip(category_ids, classes)]
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    data = {"images": images, "annotations": annotations, "categories": categories}
    (root / "annotations" / "instances_train.json").write_text(json.dumps(data))
    return root


def yolo_line(class_id: int, box, size: tuple[int, int]) -> str:
    x1, y1, x2, y2 = box
    h, w = size
    return f"{class_id} {(x1 + x2) / 2 / w:.8f} {(y1 + y2) / 2 / h:.8f} {(x2 - x1) / w:.8f} {(y2 - y1) / h:.8f}"


def write_yolo(root: Path, samples: list[Sample], classes: list[str] = CLASSES, yaml_names: str = "list") -> Path:
    """``images/train`` + ``labels/train`` + ``data.yaml`` (``names`` as a list, a map, or no yaml: ``"none"``)."""
    for i, sample in enumerate(samples):
        write_image(root / "images" / "train" / f"{sample.stem}.jpg", sample.size, seed=i)
        lines = [yolo_line(classes.index(o[0]), o[1:5], sample.size) for o in sample.objects]
        (root / "labels" / "train").mkdir(parents=True, exist_ok=True)
        (root / "labels" / "train" / f"{sample.stem}.txt").write_text("\n".join(lines) + "\n")
    if yaml_names == "list":
        (root / "data.yaml").write_text(f"path: .\ntrain: images/train\nnames: {json.dumps(classes)}\n")
    elif yaml_names == "map":
        mapping = "".join(f"  {i}: {name}\n" for i, name in enumerate(classes))
        (root / "data.yaml").write_text(f"train: images/train\nnames:\n{mapping}")
    return root


def voc_with_bad(tmp_path: Path, objects_xml: str, size=(40, 60), recorded=True, image: bytes | None = None, prolog="") -> Path:
    """Four good samples plus ``bad``: a 40x60 (HxW) image unless ``image`` gives the file's bytes."""
    root = write_voc(tmp_path / "voc", default_samples())
    if image is None:
        write_image(root / "JPEGImages" / "bad.jpg", size, seed=9)
    else:
        (root / "JPEGImages" / "bad.jpg").write_bytes(image)
    (root / "Annotations" / "bad.xml").write_text(voc_xml("bad.jpg", size if recorded else None, objects_xml, prolog))
    return root


def index_of(ds, stem: str) -> int | None:
    """Index of the sample whose image file is ``<stem>.*``, or None when it was skipped."""
    stems = [r.image_path.stem for r in ds.records]
    return stems.index(stem) if stem in stems else None


def assert_good_samples_loaded(ds) -> None:
    """Every sample of :func:`default_samples` is in ``ds`` and loads with its (non-difficult) boxes."""
    for sample in default_samples():
        stem = sample.stem
        index = index_of(ds, stem)
        assert index is not None, f"good sample {stem} lost"
        image, target = ds[index]
        assert tuple(image.shape[-2:]) == sample.size
        expected = [o[1:5] for o in sample.objects if not o[5]]
        np.testing.assert_allclose(target["boxes"].numpy(), np.array(expected, dtype=np.float32).reshape(-1, 4))
        assert target["labels"].tolist() == [CLASSES.index(o[0]) + 1 for o in sample.objects if not o[5]]
