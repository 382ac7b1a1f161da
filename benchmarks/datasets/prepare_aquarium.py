"""Prepare Roboflow's Aquarium dataset (638 photos, 7 classes, YOLO) as ``data/aquarium/``.

A third benchmark dataset of a different domain from raccoon (web photos, 1 class) and BCCD
(microscopy, 3 classes): phone photos through aquarium glass at the Henry Doorly Zoo (Omaha) and
the National Aquarium (Baltimore), with fish, jellyfish, penguin, puffin, shark, starfish and
stingray boxes; crowded scenes, many small fish, strong class imbalance (fish are over half of the
boxes, starfish about 2%). Images and annotations: CC BY 4.0, by Roboflow (Brad Dwyer).

Source: Roboflow's export "Aquarium Combined - v2 raw-1024" (YOLO v5 PyTorch format, exported
2020-11-18; published splits train 448 / valid 127 / test 63), as committed unchanged with its two
Roboflow READMEs in the public GitHub repository sumit2011/underwater-object-detection, folder
``dataset/aquarium_pretrain`` (single commit ``fdc8d386...``, 2024-02-05). The images there are
real JPEG bytes (no Git LFS). Get it with the session tool ``fetch github:sumit2011/underwater-object-detection``
(a bare git directory under /work/.mirror/), or with a plain clone::

    git clone --bare https://github.com/sumit2011/underwater-object-detection /tmp/aquarium.git

then::

    .venv/bin/python benchmarks/datasets/prepare_aquarium.py [--repo GIT_DIR] [--out data/aquarium]
    .venv/bin/ssdlite data check data/aquarium

What it writes (the published YOLO layout, files byte for byte as committed)::

    data/aquarium/{train,valid,test}/{images,labels}/   images and label files, same names
    data/aquarium/data.yaml            names as published; train/val/test keys -> train, valid, test
    data/aquarium/data.roboflow.yaml   the published data.yaml, verbatim (train and val keys only)
    data/aquarium/README.dataset.txt, README.roboflow.txt   Roboflow's, verbatim
    data/aquarium/SOURCE.md            source, licence, counts, how it was prepared

The script reads the files straight from the git object store at the pinned commit, refuses
anything that is not a JPEG (for example a Git LFS pointer), checks that every image has its label
file and every label line is ``class cx cy w h`` with a known class, and replaces the output folder
only when it is one this script wrote (it holds SOURCE.md) or is empty. Re-running it gives the same
files.
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import tarfile
from collections import Counter
from pathlib import Path

import yaml
from PIL import Image

REPOSITORY = "sumit2011/underwater-object-detection"
COMMIT = "fdc8d38616e34872045c2b0550285f00ece1e5af"
FOLDER = "dataset/aquarium_pretrain"
DEFAULT_REPO = Path("/work/.mirror/sumit2011+underwater-object-detection/repo")
ROOT = Path(__file__).resolve().parents[2]
SPLITS = {"train": "train", "val": "valid", "test": "test"}  # data.yaml key -> published folder
VERBATIM = ("README.dataset.txt", "README.roboflow.txt")


def read_tree(git_dir: Path, commit: str) -> dict[str, bytes]:
    """Every file under FOLDER at ``commit``, keyed by its path relative to FOLDER."""
    archive = subprocess.run(
        ["git", "--git-dir", str(git_dir), "archive", "--format=tar", commit, FOLDER],
        check=True, capture_output=True,
    ).stdout
    files = {}
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar.getmembers():
            if member.isfile():
                files[member.name[len(FOLDER) + 1:]] = tar.extractfile(member).read()
    return files


def parse_labels(text: str, source: str, num_classes: int) -> list[tuple[int, float, float]]:
    """``(class id, box width, box height)`` (normalized) per line; raises on anything else."""
    boxes = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5 or not 0 <= int(fields[0]) < num_classes:
            raise SystemExit(f"{source} line {number}: expected 'class cx cy w h', got {line!r}")
        boxes.append((int(fields[0]), float(fields[3]), float(fields[4])))
    return boxes


def prepare(git_dir: Path, out: Path) -> None:
    files = read_tree(git_dir, COMMIT)
    published = yaml.safe_load(files["data.yaml"])
    names = [str(n) for n in published["names"]]
    assert published["nc"] == len(names) == 7, published

    if out.exists() and any(out.iterdir()) and not (out / "SOURCE.md").is_file():
        raise SystemExit(f"{out} exists, is not empty and was not written by this script; not touching it")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)

    stats = {}
    for key, folder in SPLITS.items():
        images = sorted(p for p in files if p.startswith(f"{folder}/images/"))
        labels = sorted(p for p in files if p.startswith(f"{folder}/labels/"))
        stems = {Path(p).stem for p in images}
        if stems != {Path(p).stem for p in labels}:
            raise SystemExit(f"{folder}: image and label file names differ")
        boxes, sizes, empty, degenerate = Counter(), Counter(), 0, []
        widths, heights = [], []
        for path in images:
            data = files[path]
            if data[:3] != b"\xff\xd8\xff":
                raise SystemExit(f"{path}: not JPEG bytes (a Git LFS pointer?): {data[:40]!r}")
            with Image.open(io.BytesIO(data)) as image:
                sizes[image.size] += 1
                image_w, image_h = image.size
            label_path = f"{folder}/labels/{Path(path).stem}.txt"
            parsed = parse_labels(files[label_path].decode("utf-8"), label_path, len(names))
            empty += not parsed
            for class_id, w, h in parsed:
                boxes[class_id] += 1
                if w <= 0 or h <= 0:  # published as is; ssdlite drops it with a box_empty warning
                    degenerate.append(f"{label_path} ({names[class_id]})")
                    continue
                widths.append(w * image_w)
                heights.append(h * image_h)
            for source in (path, label_path):
                target = out / source
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(files[source])
        sides = sorted(min(w, h) for w, h in zip(widths, heights))
        stats[key] = dict(
            folder=folder, images=len(images), empty=empty, boxes=boxes, sizes=sizes, sides=sides, degenerate=degenerate
        )

    for name in VERBATIM:
        (out / name).write_bytes(files[name])
    (out / "data.roboflow.yaml").write_bytes(files["data.yaml"])
    data_yaml = {key: f"{folder}/images" for key, folder in SPLITS.items()}
    data_yaml.update(nc=len(names), names=names)
    (out / "data.yaml").write_text(yaml.safe_dump(data_yaml, sort_keys=False), encoding="utf-8")
    (out / "SOURCE.md").write_text(source_md(git_dir, names, stats), encoding="utf-8")

    total_images = sum(s["images"] for s in stats.values())
    total_boxes = sum(sum(s["boxes"].values()) for s in stats.values())
    print(f"wrote {out}: {total_images} images, {total_boxes} boxes, classes {names}")


def source_md(git_dir: Path, names: list[str], stats: dict) -> str:
    rows = []
    for key, s in stats.items():
        per_class = " | ".join(str(s["boxes"][i]) for i in range(len(names)))
        count = sum(s["boxes"].values())
        rows.append(f"| {key} (`{s['folder']}/`) | {s['images']} | {s['empty']} | {count} | {per_class} |")
    total = [sum(s["boxes"][i] for s in stats.values()) for i in range(len(names))]
    share = {name: f"{100 * n / sum(total):.0f}%" for name, n in zip(names, total)}
    rows.append(
        f"| all | {sum(s['images'] for s in stats.values())} | {sum(s['empty'] for s in stats.values())} "
        f"| {sum(total)} | " + " | ".join(map(str, total)) + " |"
    )
    sides = sorted(v for s in stats.values() for v in s["sides"])

    def quantile(q: float) -> float:
        return sides[min(len(sides) - 1, int(q * len(sides)))]

    small = sum(v < 32 for v in sides)
    degenerate = [d for s in stats.values() for d in s["degenerate"]]
    degenerate_text = "; ".join(f"`{d}`" for d in degenerate) or "none"
    sizes = Counter()
    for s in stats.values():
        sizes.update(s["sizes"])
    size_text = ", ".join(f"{w}x{h}: {n}" for (w, h), n in sizes.most_common())
    head = " | ".join(names)
    return f"""# aquarium

Roboflow's **Aquarium** object-detection dataset ("Aquarium Combined - v2 raw-1024"): phone photographs
taken through the glass at two US aquariums (Henry Doorly Zoo, Omaha, 2020-10-16; National Aquarium,
Baltimore, 2020-11-14), boxes for {len(names)} classes, labelled by the Roboflow team (with help from
SageMaker Ground Truth). YOLO v5 format with Roboflow's published train / valid / test split.

## Source

- Original: Roboflow, https://public.roboflow.com/object-detection/aquarium
  (also https://universe.roboflow.com/brad-dwyer/aquarium-combined), export "Aquarium Combined - v2
  raw-1024", YOLO v5 PyTorch format, exported 2020-11-18 (see `README.roboflow.txt`, verbatim).
- Copy used: GitHub repository https://github.com/{REPOSITORY},
  folder `{FOLDER}/`, commit `{COMMIT}`
  (the repository's only commit touching that folder, "init commit", 2024-02-05). It holds the
  Roboflow export as downloaded: 638 JPEGs, 638 label files, `data.yaml`,
  `README.dataset.txt`, `README.roboflow.txt`. Images are real JPEG bytes (not Git LFS pointers).
- Read from the git directory `{git_dir}` (obtained with `fetch github:{REPOSITORY}`).

## License

**CC BY 4.0** (https://creativecommons.org/licenses/by/4.0/), stated in Roboflow's
`README.dataset.txt`: "Images and annotations are released under a Creative Commons By-Attribution
license. You are free to use them for any purposes personal, commercial, or academic provided you
give acknowledgement of their source." Attribution: Aquarium dataset, Roboflow (Brad Dwyer),
https://public.roboflow.com/object-detection/aquarium. (The GitHub repository's own MIT licence
covers its code, not this data.)

## Classes

`data.yaml` `names`, in id order (YOLO id 0..{len(names) - 1}, ssdlite label 1..{len(names)}): {", ".join(names)}.

## Counts (boxes per class)

| split (folder) | images | without boxes | boxes | {head} |
|---|---|---|---|{"---|" * len(names)}
{chr(10).join(rows)}

The counts are the label lines as published. {len(degenerate)} of them have zero width or height, which
ssdlite drops with a `box_empty` warning (`ssdlite data check` still passes; `--strict` fails on them):
{degenerate_text}. They are kept here unchanged.

Image sizes (fit within 1024x1024 by Roboflow): {size_text}.
Box size, shorter side in pixels at that resolution (the {len(sides)} boxes with a size): median
{quantile(0.5):.0f}, 10th percentile {quantile(0.1):.0f}, 90th percentile {quantile(0.9):.0f};
{small} ({100 * small / len(sides):.0f}%) are under 32 pixels.

## How it was prepared

`benchmarks/datasets/prepare_aquarium.py` (in the ssdlite repository):

1. reads every file under `{FOLDER}/` at commit `{COMMIT[:12]}` from the git
   object store (`git archive`), nothing else;
2. checks that each image is JPEG bytes, that every image has a label file with the same name and
   vice versa, and that every label line is `class cx cy w h` with a class id in 0..{len(names) - 1};
3. writes images and label files byte for byte under the same names in the published layout
   (`train/`, `valid/`, `test/`, each with `images/` and `labels/`); nothing is resized,
   re-encoded, filtered or re-split;
4. copies `README.dataset.txt`, `README.roboflow.txt` verbatim, and the published `data.yaml` as
   `data.roboflow.yaml` (it has only `train: ../train/images` and `val: ../valid/images`);
5. writes `data.yaml` with the same `nc` and `names` and split keys `train: train/images`,
   `val: valid/images`, `test: test/images` (the published test split made reachable; paths
   relative to the dataset folder);
6. writes this file.

Splits are Roboflow's (train 448 / valid 127 / test 63); use `val` (`valid/`) for validation during
training and keep `test` for final numbers. The one image with an empty label file is a background
image (ssdlite keeps it as such).

Caveats: many small and overlapping fish in crowded tanks; strong class imbalance (fish are about
{share['fish']} of the boxes, starfish about {share['starfish']}); consecutive photos and video frames
(`*_MOV-*`) of the same tanks appear across splits, so the split is not independent by scene.
Descriptions of the dataset elsewhere quote 4,821 annotations; this export has {sum(total)} label
lines (the difference was not traced).
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", type=Path, default=DEFAULT_REPO, help="git directory of the fetched repository")
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "aquarium", help="output folder")
    args = parser.parse_args()
    prepare(args.repo, args.out)


if __name__ == "__main__":
    main()
