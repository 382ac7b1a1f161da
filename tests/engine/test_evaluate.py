"""`ssdlite.engine.evaluate`, `evaluate_predictions` and the `ssdlite eval` command.

The library calls run on a tiny in-test dataset and an oracle detector that follow the contracts
in docs/ARCHITECTURE.md; the command runs on datasets written to disk and read by ssdlite.data.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, Subset
from torchvision import tv_tensors

from ssdlite.engine.evaluate import evaluate, evaluate_predictions
from ssdlite.errors import UserError
from ssdlite.metrics import read_coco_results

RACCOON = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "raccoon"
KEYS = {"voc07_map50", "voc_map50", "coco_map", "coco_map50", "coco_map75", "per_class", "num_images", "seconds", "metric_seconds"}


class TinyDataset(Dataset):
    """Six images of different sizes whose first pixel is their index; COCO-style ids and categories.

    ``broken`` indices behave like an undecodable image in ssdlite.data: the next image is returned.
    """

    classes = ["cat", "dog"]
    category_ids = [17, 18]

    def __init__(self, resize: bool = False, broken: tuple[int, ...] = ()) -> None:
        rng = np.random.default_rng(0)
        self.resize = resize
        self.broken = broken
        self.annotations = []
        for i in range(6):
            h, w = 48 + 8 * i, 64 + 4 * i
            m = i % 3 + 1
            xy = rng.uniform(0, 20, (m, 2))
            boxes = np.concatenate([xy, xy + rng.uniform(10, 28, (m, 2))], axis=1).astype(np.float32)
            self.annotations.append(
                {
                    "boxes": boxes,
                    "labels": rng.integers(1, 3, m),
                    "difficult": np.arange(m) == 2,  # the third box of images 2 and 5
                    "iscrowd": np.zeros(m, bool),
                    "image_id": 100 + i,
                    "height": h,
                    "width": w,
                    "file_name": f"/data/images/img{i}.jpg",
                }
            )

    def __len__(self) -> int:
        return len(self.annotations)

    def get_annotation(self, index: int) -> dict:
        return self.annotations[index]

    def __getitem__(self, index: int):
        if index in self.broken:
            index = (index + 1) % len(self)
        a = self.annotations[index]
        h, w = (32, 32) if self.resize else (a["height"], a["width"])
        image = tv_tensors.Image(torch.full((3, h, w), index, dtype=torch.uint8))
        target = {
            "boxes": tv_tensors.BoundingBoxes(torch.from_numpy(a["boxes"]), format="XYXY", canvas_size=(h, w)),
            "labels": torch.from_numpy(a["labels"]),
            "difficult": torch.from_numpy(a["difficult"]),
            "iscrowd": torch.from_numpy(a["iscrowd"]),
            "image_id": a["image_id"],
            "orig_size": torch.tensor([a["height"], a["width"]]),
        }
        return image, target


class OracleDetector(nn.Module):
    """Eval-mode detector contract; reads the image index from its first pixel and returns that
    image's boxes (scores 0.9), plus a stray low-score box of class 1 with ``stray_score``."""

    def __init__(self, dataset: TinyDataset, stray_score: float | None = None) -> None:
        super().__init__()
        self.dataset = dataset
        self.stray_score = stray_score
        self.scale = nn.Parameter(torch.ones(()))
        self.batch_sizes: list[int] = []

    def forward(self, images):
        assert not self.training, "evaluate must put the model in eval mode"
        assert all(img.dtype == torch.uint8 and type(img) is torch.Tensor for img in images)
        self.batch_sizes.append(len(images))
        outputs = []
        for image in images:
            a = self.dataset.get_annotation(int(image[0, 0, 0]))
            boxes = torch.from_numpy(a["boxes"]) * self.scale
            scores = torch.full((len(boxes),), 0.9)
            labels = torch.from_numpy(a["labels"])
            if self.stray_score is not None:
                boxes = torch.cat([boxes, torch.tensor([[0.0, 0.0, 4.0, 4.0]])])
                scores = torch.cat([scores, torch.tensor([self.stray_score])])
                labels = torch.cat([labels, torch.tensor([1])])
            outputs.append({"boxes": boxes, "scores": scores, "labels": labels})
        return outputs


def without_times(result: dict) -> dict:
    return {k: v for k, v in result.items() if not k.endswith("seconds") and k != "skipped_images"}


def test_perfect_detector_scores_one_in_batches():
    dataset = TinyDataset()
    model = OracleDetector(dataset).train()
    result = evaluate(model, dataset, batch_size=4, progress=False)
    assert KEYS <= set(result)
    assert result["voc07_map50"] == 1.0 and result["voc_map50"] == 1.0
    assert result["coco_map"] == pytest.approx(1.0, abs=1e-12) and result["coco_map50"] == pytest.approx(1.0, abs=1e-12)
    assert result["num_images"] == 6 and result["skipped_images"] == []
    assert result["per_class"]["cat"]["voc_ap50"] == 1.0
    assert sum(row["num_gt"] for row in result["per_class"].values()) == 10  # 12 boxes, 2 difficult
    assert model.batch_sizes == [4, 2]
    assert model.training  # the caller's mode is restored
    assert result["seconds"] >= result["inference_seconds"] and result["seconds"] >= result["metric_seconds"] > 0
    json.dumps(result, allow_nan=False)


def test_saved_predictions_score_the_same_and_use_original_ids(tmp_path):
    dataset = TinyDataset()
    model = OracleDetector(dataset, stray_score=0.95)  # a stray box ranked first: AP below 1
    path = tmp_path / "predictions.json"
    result = evaluate(model, dataset, progress=False, save_predictions=path)
    assert result["voc_map50"] < 1.0
    saved = read_coco_results(path)
    assert {r["category_id"] for r in saved} == {17, 18}
    assert {r["image_id"] for r in saved} == set(range(100, 106))
    assert without_times(evaluate_predictions(path, dataset)) == without_times(result)


def test_score_threshold_drops_low_scores():
    dataset = TinyDataset()
    model = OracleDetector(dataset, stray_score=0.05)
    assert evaluate(model, dataset, progress=False)["num_detections"] == 12 + 6
    result = evaluate(model, dataset, progress=False, score_threshold=0.1)
    assert result["num_detections"] == 12 and result["voc_map50"] == 1.0


def test_subset_of_a_dataset():
    dataset = TinyDataset()
    result = evaluate(OracleDetector(dataset), Subset(dataset, [1, 3, 5]), progress=False)
    assert result["num_images"] == 3 and result["voc_map50"] == 1.0


def test_transformed_images_are_refused():
    dataset = TinyDataset(resize=True)
    with pytest.raises(ValueError, match="transforms=None"):
        evaluate(OracleDetector(dataset), dataset, progress=False)


def test_undecodable_images_are_skipped_and_listed():
    dataset = TinyDataset(broken=(2,))
    result = evaluate(OracleDetector(dataset), dataset, progress=False)
    assert result["skipped_images"] == ["/data/images/img2.jpg"]
    assert result["num_images"] == 5 and result["voc_map50"] == 1.0


def test_plots_are_written(tmp_path):
    dataset = TinyDataset()
    evaluate(OracleDetector(dataset), dataset, progress=False, plots_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.rglob("*.png")) == ["001_cat.png", "002_dog.png", "confusion_matrix.png", "precision_recall.png"]


def entry(image_id, category_id=17, bbox=(0, 0, 10, 10), score=0.5):
    return {"image_id": image_id, "category_id": category_id, "bbox": list(bbox), "score": score}


def test_predictions_matched_by_file_name_or_stem():
    dataset = TinyDataset()
    a = dataset.get_annotation(3)
    x1, y1, x2, y2 = (float(v) for v in a["boxes"][0])
    category = dataset.category_ids[int(a["labels"][0]) - 1]
    for image_id in ("img3", "img3.jpg", "/data/images/img3.jpg", 103):
        result = evaluate_predictions([entry(image_id, category, (x1, y1, x2 - x1, y2 - y1), 0.9)], dataset)
        assert result["num_detections"] == 1
        name = dataset.classes[int(a["labels"][0]) - 1]
        assert result["per_class"][name]["voc_ap50"] > 0


def test_predictions_for_other_data_are_errors():
    dataset = TinyDataset()
    with pytest.raises(UserError, match="result 1 has image_id 7, which is no image"):
        evaluate_predictions([entry(100), entry(7)], dataset)
    with pytest.raises(UserError, match="image_id 'img9'"):
        evaluate_predictions([entry("img9")], dataset)
    with pytest.raises(UserError, match=r"category_id 1, which is not one of the dataset's category ids \[17, 18\]"):
        evaluate_predictions([entry(100, category_id=1)], dataset)


def test_no_predictions_at_all():
    result = evaluate_predictions([], TinyDataset())
    assert result["voc_map50"] == 0.0 and result["coco_map"] == 0.0 and result["num_detections"] == 0


# ---- the `ssdlite eval` command on datasets on disk ----------------------------------------------


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    from ssdlite.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """The synthetic shapes dataset (VOC layout), 6 validation images of 96 px."""
    from ssdlite.data import write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("data") / "shapes", num_train=0, num_val=6, size=96)


def perfect_results(data_path, split="val"):
    """COCO results that repeat the ground truth of ``data_path``'s split."""
    from ssdlite.data import build_dataset
    from ssdlite.metrics import ImageDetections, to_coco_results

    dataset = build_dataset(data_path, split=split, keep_difficult=True)
    results = []
    for i in range(len(dataset)):
        a = dataset.get_annotation(i)
        detections = ImageDetections(np.asarray(a["boxes"], float), np.full(len(a["labels"]), 0.9), np.asarray(a["labels"]))
        results += to_coco_results(a["image_id"], detections, dataset.category_ids)
    return results


def test_cli_predictions_writes_json_and_plots(shapes, tmp_path):
    predictions = tmp_path / "pred.json"
    predictions.write_text(json.dumps(perfect_results(shapes)))
    out_json, plots = tmp_path / "metrics.json", tmp_path / "plots"
    code, stdout, _ = run_cli(["eval", "--predictions", str(predictions), "--data", str(shapes), "--json", str(out_json), "--plots", str(plots)])
    assert code == 0
    result = json.loads(out_json.read_text())
    assert KEYS <= set(result)
    assert result["voc07_map50"] == 1.0 and result["voc_map50"] == 1.0 and result["num_images"] == 6
    assert set(result["per_class"]) == {"circle", "square", "triangle", "star", "ring"}
    assert {"voc_ap50", "coco_ap"} <= set(result["per_class"]["circle"])
    assert (plots / "precision_recall.png").is_file() and (plots / "confusion_matrix.png").is_file()
    assert len(list((plots / "precision_recall").glob("*.png"))) == 5
    assert "VOC07 AP50" in stdout and "circle" in stdout  # the per-class table


def test_cli_error_table_in_text_and_json(shapes, tmp_path):
    """Every circle reported as a square: the table and the JSON say circles are taken for squares."""
    from ssdlite.data import build_dataset

    ids = build_dataset(shapes, split="val").category_ids  # label k has category id ids[k - 1]
    results = perfect_results(shapes)
    for r in results:
        if r["category_id"] == ids[0]:
            r["category_id"] = ids[1]
    predictions, out_json = tmp_path / "pred.json", tmp_path / "metrics.json"
    predictions.write_text(json.dumps(results))
    code, stdout, _ = run_cli(["eval", "--predictions", str(predictions), "--data", str(shapes), "--json", str(out_json)])
    assert code == 0
    result = json.loads(out_json.read_text())
    circle = result["per_class"]["circle"]["errors"]
    n = circle["num_gt"]
    assert n > 0 and circle["taken_as"] == {"square": n} and circle["detections"] == circle["missed"] == 0
    assert result["per_class"]["square"]["errors"]["cls"] == n and result["per_class"]["square"]["errors"]["tp"] > 0
    assert circle["dap"]["cls"] == 1.0 and result["errors"]["score_threshold"] == 0.25
    assert set(result["errors"]["dap"]) == {"cls", "loc", "both", "dupe", "bkg", "missed"}
    assert f"  circle: square {n} of {n}" in stdout.splitlines() and "errors (TIDE)" in stdout


def test_cli_weights_json_to_stdout(shapes, tmp_path):
    from ssdlite.models import ssdlite_mobilenet_v2
    from ssdlite.models.io import save_safetensors

    run = tmp_path / "run"
    model = ssdlite_mobilenet_v2(num_classes=6, size=96, width_mult=0.35)
    save_safetensors(model, run / "model.safetensors", classes=["circle", "square", "triangle", "star", "ring"])
    saved = tmp_path / "detections.json"
    code, stdout, stderr = run_cli(
        ["eval", "--weights", str(run), "--data", str(shapes), "--json", "-", "--save-predictions", str(saved), "--workers", "0", "--no-progress", "--device", "cpu"]
    )
    assert code == 0, stderr
    result = json.loads(stdout)  # stdout is pure JSON; the table went to stderr
    assert KEYS <= set(result) and result["num_images"] == 6
    assert "VOC07 AP50" in stderr
    # The saved detections, scored without the model, give the same numbers.
    code, stdout, _ = run_cli(["eval", "--predictions", str(saved), "--data", str(shapes), "--json", "-"])
    assert code == 0
    again = json.loads(stdout)
    for key in ("voc07_map50", "voc_map50", "coco_map", "per_class", "num_detections"):
        assert again[key] == result[key]


def test_cli_weights_from_a_training_checkpoint(shapes, tmp_path):
    from ssdlite.models import ssdlite_mobilenet_v2

    model = ssdlite_mobilenet_v2(num_classes=6, size=96, width_mult=0.35)
    classes = ["circle", "square", "triangle", "star", "ring"]
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"model": model.state_dict(), "model_config": model.config.to_dict(), "classes": classes}, run / "best.pt")
    out_json = tmp_path / "m.json"
    code, _, stderr = run_cli(["eval", "--weights", str(run), "--data", str(shapes), "--json", str(out_json), "--workers", "0", "--no-progress"])
    assert code == 0, stderr
    result = json.loads(out_json.read_text())
    assert KEYS <= set(result) and list(result["per_class"]) == classes


def write_coco_dataset(root: Path, rng: np.random.Generator) -> tuple[Path, Path]:
    """A COCO dataset on disk (12 images, categories 1/5/9, crowd boxes) and a results file for it."""
    from PIL import Image

    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    category_ids = [1, 5, 9]
    images, annotations, results = [], [], []
    for n in range(12):
        image_id = int(1000 + 37 * n)
        Image.new("RGB", (200, 150), (n * 20, 90, 160)).save(root / "images" / f"{image_id}.jpg")
        images.append({"id": image_id, "file_name": f"{image_id}.jpg", "width": 200, "height": 150})
        for _ in range(int(rng.integers(0, 5))):
            w, h = (round(float(v), 2) for v in rng.uniform(6, 90, 2))
            x, y = round(float(rng.uniform(0, 200 - w)), 2), round(float(rng.uniform(0, 150 - h)), 2)
            category = int(rng.choice(category_ids))
            annotations.append(
                {"id": len(annotations) + 1, "image_id": image_id, "category_id": category, "bbox": [x, y, w, h], "area": w * h, "iscrowd": int(rng.random() < 0.1)}
            )
            for _ in range(int(rng.integers(0, 3))):  # hits, near misses and duplicates
                jitter = rng.normal(0, 0.1, 4) * [w, h, w, h]
                box = [round(float(v), 2) for v in np.maximum([x, y, w, h] + jitter, [0, 0, 1, 1])]
                label = category if rng.random() < 0.85 else int(rng.choice(category_ids))
                results.append({"image_id": image_id, "category_id": label, "bbox": box, "score": round(float(rng.random()), 4)})
        results.append({"image_id": image_id, "category_id": 5, "bbox": [10.5, 20.25, 30.0, 40.0], "score": 0.3})
    categories = [{"id": c, "name": f"thing{c}"} for c in category_ids]
    (root / "annotations" / "instances_val.json").write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    (root / "results.json").write_text(json.dumps(results))
    return root / "annotations" / "instances_val.json", root / "results.json"


def test_cli_predictions_give_exactly_pycocotools_numbers(tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from ssdlite.metrics import COCO_STAT_NAMES

    annotation_file, results_file = write_coco_dataset(tmp_path / "coco", np.random.default_rng(5))
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(annotation_file))
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(str(results_file)), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    code, stdout, stderr = run_cli(["eval", "--predictions", str(results_file), "--data", str(tmp_path / "coco"), "--json", "-"])
    assert code == 0, stderr
    result = json.loads(stdout)
    assert 0.1 < result["coco_map"] < 0.9
    for name, value in zip(COCO_STAT_NAMES, evaluator.stats):
        assert result[f"coco_{name}"] == (value if value > -1 else None), name


def test_cli_errors(shapes, tmp_path):
    code, _, stderr = run_cli(["eval", "--predictions", str(tmp_path / "absent.json"), "--data", str(shapes)])
    assert code == 2 and "absent.json: no such file" in stderr
    code, _, stderr = run_cli(["eval", "--predictions", str(tmp_path / "p.json"), "--data", str(shapes), "--save-predictions", "x.json"])
    assert code == 2 and "--save-predictions needs --weights" in stderr
    predictions = tmp_path / "pred.json"
    predictions.write_text("[]")
    (tmp_path / "taken").mkdir()
    code, _, stderr = run_cli(["eval", "--predictions", str(predictions), "--data", str(shapes), "--json", str(tmp_path / "taken")])
    assert code == 2 and "taken: is a folder; give the name of the file to write" in stderr  # checked before any work
    with pytest.raises(SystemExit):  # argparse: one of --weights / --predictions is required
        run_cli(["eval", "--data", str(shapes)])


def test_cli_class_mismatch_is_an_error(shapes, tmp_path):
    from ssdlite.models import ssdlite_mobilenet_v2
    from ssdlite.models.io import save_safetensors

    save_safetensors(ssdlite_mobilenet_v2(num_classes=2, size=96, width_mult=0.35), tmp_path / "model.safetensors", classes=["raccoon"])
    code, _, stderr = run_cli(["eval", "--weights", str(tmp_path / "model.safetensors"), "--data", str(shapes), "--no-progress", "--workers", "0"])
    assert code == 2, stderr
    assert "unknown classes 'circle'" in stderr and "the classes are those of the model" in stderr


@pytest.mark.skipif(not RACCOON.is_dir(), reason=f"{RACCOON} not present (../shared is not part of the repository)")
def test_cli_predictions_on_raccoon(tmp_path):
    predictions = tmp_path / "pred.json"
    predictions.write_text(json.dumps(perfect_results(RACCOON)))
    code, stdout, _ = run_cli(["eval", "--predictions", str(predictions), "--data", str(RACCOON), "--json", "-"])
    assert code == 0
    result = json.loads(stdout)
    assert result["num_images"] == 40 and result["voc_map50"] == 1.0
