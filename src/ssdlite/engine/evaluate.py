"""Scoring a detector on a dataset: `evaluate(model, dataset)` and `evaluate_predictions(file, dataset)`.

Ground truth always comes from ``dataset.get_annotation(index)`` (original pixels, difficult and
crowd flags, no image decoding) and predictions from the model on the dataset's *untransformed*
images, so boxes, and COCO's small/medium/large areas, are measured in the original pixels.
Both functions return :meth:`ssdlite.metrics.DetectionMetrics.compute`'s dict plus ``seconds``
(wall time of the whole call).
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, Subset
from tqdm import tqdm

from ssdlite.data.loader import build_loader
from ssdlite.errors import UserError
from ssdlite.metrics.coco_results import read_coco_results, to_coco_results, write_coco_results
from ssdlite.metrics.detection_metrics import DetectionMetrics
from ssdlite.models.modes import evaluating


def _root(dataset: Dataset) -> Dataset:
    """The dataset under any ``Subset`` wrappers (it holds ``classes`` and ``category_ids``)."""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    return dataset


def _annotation(dataset: Dataset, index: int) -> dict[str, Any]:
    """``get_annotation`` through ``Subset`` wrappers, so a validation subset can be scored too."""
    while isinstance(dataset, Subset):
        index = int(dataset.indices[index])
        dataset = dataset.dataset
    return dataset.get_annotation(index)


class _EvaluationItems(Dataset):
    """Item ``i``: ``(image, target, i, annotation)``; decoding and annotation parsing happen in the workers."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, target = self.dataset[index]
        return image, target, index, _annotation(self.dataset, index)


def _substituted(target: dict[str, Any], annotation: dict[str, Any]) -> bool:
    """True when the dataset returned another sample for this index.

    ssdlite datasets answer an undecodable image with the next good one (so training never
    stops); scoring that image against this index's boxes would be wrong, so it is skipped.
    """
    return "image_id" in target and int(target["image_id"]) != int(annotation["image_id"])


def _check_untransformed(index: int, image: torch.Tensor, target: dict[str, Any]) -> None:
    orig_size = target.get("orig_size")
    if orig_size is not None and tuple(image.shape[-2:]) != tuple(int(v) for v in orig_size):
        raise ValueError(
            f"image {index} is {tuple(image.shape[-2:])} but its original is {tuple(int(v) for v in orig_size)}: "
            "evaluate() needs the dataset without transforms (transforms=None), because ground truth is "
            "read in the original pixels"
        )


def _on_cpu(output: dict[str, torch.Tensor], score_threshold: float | None) -> dict[str, torch.Tensor]:
    """One image's detections on the CPU, those below ``score_threshold`` dropped."""
    output = {"boxes": output["boxes"].float().cpu(), "scores": output["scores"].float().cpu(), "labels": output["labels"].cpu()}
    if score_threshold is None:
        return output
    keep = output["scores"] >= score_threshold  # (D,)
    return {k: v[keep] for k, v in output.items()}


def _finish(
    metrics: DetectionMetrics, start: float, plots_dir: str | os.PathLike | None, plot_score_threshold: float
) -> dict[str, Any]:
    result = metrics.compute()
    if plots_dir is not None:
        from ssdlite.metrics.plots import save_plots  # matplotlib only when plots are asked for

        save_plots(metrics, plots_dir, score_threshold=plot_score_threshold)
    result["seconds"] = time.perf_counter() - start
    return result


def evaluate(
    model: nn.Module,
    dataset: Dataset,
    *,
    batch_size: int = 8,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    score_threshold: float | None = None,
    progress: bool = True,
    save_predictions: str | os.PathLike | None = None,
    plots_dir: str | os.PathLike | None = None,
    plot_score_threshold: float = 0.25,
) -> dict[str, Any]:
    """Run ``model`` over ``dataset`` in eval mode and compute VOC and COCO metrics.

    Args:
        model: follows the torchvision detection contract: in eval mode ``model(list of (3, H, W))``
            returns ``[{"boxes" xyxy in each image's pixels, "scores", "labels" in 1..K}]``.
        dataset: items ``(image, target)`` without transforms, plus ``classes``, ``category_ids`` and
            ``get_annotation(index)`` (a ``torch.utils.data.Subset`` of such a dataset works too).
        batch_size, num_workers: the loader's (:func:`ssdlite.data.build_loader`, dataset order); images
            of different sizes are batched as a list, which the model resizes one by one.
        device: where the model runs; default the device of its parameters.
        score_threshold: drop detections scored below this before scoring (default: keep all the
            model returns; AP wants the low-score tail).
        progress: show a progress bar on stderr.
        save_predictions: write the detections to this file in COCO results format, with the
            dataset's ``category_ids`` and ``image_id``s.
        plots_dir: write precision-recall curves and the confusion matrix here (PNG).
        plot_score_threshold: detections counted in the confusion matrix and in the error counts
            (``per_class[name]["errors"]``, :mod:`ssdlite.metrics.errors`; AP and dAP take every detection).

    Returns:
        :meth:`DetectionMetrics.compute`'s dict (``voc07_map50``, ``voc_map50``, ``coco_map``, ...,
        ``per_class`` with each class's ``errors``, ``errors``, ``num_images``, ``metric_seconds``) plus
        ``inference_seconds`` (the loop over the data: decoding, model and bookkeeping), ``seconds`` (the whole call) and
        ``skipped_images`` (file names of images that could not be decoded; they are not scored).
        The model's train/eval mode is restored afterwards.
    """
    start = time.perf_counter()
    root = _root(dataset)
    metrics = DetectionMetrics(root.classes, score_threshold=plot_score_threshold)
    if device is None:
        parameter = next(model.parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
    device = torch.device(device)
    loader = build_loader(_EvaluationItems(dataset), batch_size, num_workers=num_workers, pin_memory=device.type == "cuda")
    results: list[dict[str, Any]] = []
    skipped: list[str] = []
    with evaluating(model), torch.inference_mode():
        with tqdm(total=len(dataset), desc="eval", unit="img", disable=not progress) as bar:
            for images, targets, indices, annotations in loader:  # images: (N, 3, H, W) or N x (3, H_i, W_i)
                bar.update(len(indices))
                usable = []
                for image, target, index, annotation in zip(images, targets, indices, annotations):
                    if _substituted(target, annotation):
                        skipped.append(str(annotation.get("file_name", index)))
                        continue
                    _check_untransformed(index, image, target)
                    usable.append((image.to(device, non_blocking=True), annotation))  # (3, H, W)
                if not usable:
                    continue
                outputs = model([image for image, _ in usable])
                for (_, annotation), output in zip(usable, outputs):
                    metrics.update([_on_cpu(output, score_threshold)], [annotation])
                    if save_predictions is not None:
                        results += to_coco_results(int(annotation["image_id"]), metrics.detections[-1], root.category_ids)
    inference_seconds = time.perf_counter() - start
    if save_predictions is not None:
        write_coco_results(save_predictions, results)
    if not metrics.num_images:
        raise UserError(f"none of the {len(dataset)} images could be decoded, nothing to evaluate")
    result = _finish(metrics, start, plots_dir, plot_score_threshold)
    result["inference_seconds"] = inference_seconds
    result["skipped_images"] = skipped
    return result


class _ImageFinder:
    """Finds the dataset index of a result's ``image_id``: by id (integers) or by file name (strings)."""

    def __init__(self, annotations: Sequence[dict[str, Any]]) -> None:
        self.by_id = {int(a["image_id"]): index for index, a in enumerate(annotations)}
        self.by_name: dict[str, set[int]] = defaultdict(set)  # full name, base name and stem
        for index, annotation in enumerate(annotations):
            file_name = str(annotation.get("file_name") or "")
            if file_name:
                for name in (file_name, Path(file_name).name, Path(file_name).stem):
                    self.by_name[name].add(index)

    def find(self, image_id: int | str, source: str, n: int) -> int:
        if isinstance(image_id, int):
            if image_id in self.by_id:
                return self.by_id[image_id]
            matches: set[int] = set()
        else:
            matches = self.by_name.get(image_id) or self.by_name.get(Path(image_id).stem) or set()
        if len(matches) > 1:
            raise UserError(f"{source}: result {n} has image_id {image_id!r}, which names {len(matches)} images of this dataset")
        if not matches:
            raise UserError(
                f"{source}: result {n} has image_id {image_id!r}, which is no image of this dataset "
                f"({len(self.by_id)} images; integer ids are the dataset's image_id, strings its file names)"
            )
        return next(iter(matches))


def evaluate_predictions(
    predictions: str | os.PathLike | Sequence[dict[str, Any]],
    dataset: Dataset,
    *,
    score_threshold: float | None = None,
    plots_dir: str | os.PathLike | None = None,
    plot_score_threshold: float = 0.25,
) -> dict[str, Any]:
    """Score detections in COCO results format against ``dataset``'s ground truth, without a model.

    Matching rules: ``category_id`` is mapped to a label through ``dataset.category_ids``. An
    integer ``image_id`` is the dataset's ``image_id`` (for COCO data the file's id; for VOC/YOLO
    data the index in the split, which is what ssdlite writes); a string ``image_id`` is matched
    to the image's file name, base name or stem (e.g. ``"000005"`` for ``JPEGImages/000005.jpg``),
    as detectors that score VOC write it. Unknown image or category ids are errors, since they
    mean the file belongs to other data; images without detections count as such.

    Args:
        predictions: a results file path or the already loaded list of entries.
        dataset: a dataset with ``get_annotation``, ``classes`` and ``category_ids``; no image is decoded.
        score_threshold, plots_dir, plot_score_threshold: as in :func:`evaluate`.
    """
    start = time.perf_counter()
    if isinstance(predictions, (str, os.PathLike)):
        source = str(predictions)
        predictions = read_coco_results(predictions)
    else:
        source = "predictions"
    root = _root(dataset)
    label_of = {int(c): k for k, c in enumerate(root.category_ids, start=1)}
    annotations = [_annotation(dataset, index) for index in range(len(dataset))]
    finder = _ImageFinder(annotations)

    per_image: dict[int, list[tuple[list[float], float, int]]] = defaultdict(list)
    for n, entry in enumerate(predictions):
        index = finder.find(entry["image_id"], source, n)
        label = label_of.get(int(entry["category_id"]))
        if label is None:
            raise UserError(
                f"{source}: result {n} has category_id {entry['category_id']}, which is not one of the "
                f"dataset's category ids {sorted(label_of)}"
            )
        if score_threshold is not None and entry["score"] < score_threshold:
            continue
        x, y, w, h = entry["bbox"]
        per_image[index].append(([x, y, x + w, y + h], float(entry["score"]), label))

    metrics = DetectionMetrics(root.classes, score_threshold=plot_score_threshold)
    for index, annotation in enumerate(annotations):
        boxes, scores, labels = zip(*per_image[index]) if per_image[index] else ((), (), ())
        metrics.update([{"boxes": boxes, "scores": scores, "labels": labels}], [annotation])
    return _finish(metrics, start, plots_dir, plot_score_threshold)
