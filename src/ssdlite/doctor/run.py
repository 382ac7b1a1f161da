"""``ssdlite doctor``: every check on one dataset and one model, with a report and plots."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from ssdlite.doctor.collapse import check_input_dependence
from ssdlite.doctor.coverage import check_coverage, plot_coverage
from ssdlite.doctor.gradients import check_gradient_flow
from ssdlite.doctor.inputs import check_inputs, check_labels
from ssdlite.doctor.overfit import check_overfit
from ssdlite.doctor.registration import check_registration
from ssdlite.doctor.report import Check, format_report, report_json


def overfit_batch(dataset, size: int, count: int = 4) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
    """The first ``count`` images that have boxes, resized to the model size (no augmentation)."""
    images, targets = [], []
    for index in range(len(dataset)):
        ann = dataset.get_annotation(index)
        if len(ann["labels"]) == 0:
            continue
        image, target = dataset[index]
        images.append(image)
        targets.append({"boxes": target["boxes"].as_subclass(torch.Tensor).float(), "labels": target["labels"]})
        if len(images) == count:
            break
    if len(images) < 2:
        from ssdlite.errors import UserError

        raise UserError(f"{getattr(dataset, 'source', 'dataset')}: fewer than 2 images with boxes; nothing to check on")
    return images, targets


def run_checks(
    model: torch.nn.Module,
    dataset,
    optimizer: torch.optim.Optimizer | None = None,
    backbone_weights: str | None = None,
    overfit_steps: int = 200,
    overfit_seconds: float | None = 75.0,
    log=print,
) -> list[Check]:
    """All checks in order: the cheap ones first, the overfit last.

    ``dataset`` yields ``(image, target)`` resized to the model's input (``eval_transforms(size)``) and has
    ``get_annotation``; ``classes`` names the labels.
    """
    classes = list(getattr(dataset, "classes", []))
    checks = []

    def run(name, fn, *args, **kwargs):
        start = time.perf_counter()
        check = fn(*args, **kwargs)
        log(f"{check.status:4} {check.name} ({time.perf_counter() - start:.1f} s)")
        checks.append(check)
        return check

    annotations = [dataset.get_annotation(i) for i in range(len(dataset))]
    run("registration", check_registration, model, optimizer)
    run("labels", check_labels, annotations, model.num_classes, classes)
    images, targets = overfit_batch(dataset, model.size)
    run("inputs", check_inputs, images, model.config.image_mean, backbone_weights, model.config.arch)
    run("input dependence", check_input_dependence, model, images)
    run("gradient flow", check_gradient_flow, model, images, targets)
    run("coverage", check_coverage, annotations, model.default_boxes, model.size)
    labels_ok = all(c.status != "FAIL" for c in checks if c.name == "labels")
    if labels_ok:
        run("overfit", check_overfit, model, images, targets, steps=overfit_steps, max_seconds=overfit_seconds)
    else:
        checks.append(Check("overfit one batch", "FAIL", "skipped: the labels are out of range, training on them would crash",
                            suggestion="fix the labels first"))
    return checks


def write_report(checks: list[Check], out: str | Path) -> list[Path]:
    """``report.txt``, ``report.json``, ``coverage.png`` and ``overfit_loss.png`` under ``out``."""
    from ssdlite.files import atomic_write

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "report.txt", out / "report.json"]
    text = format_report(checks, max_evidence=1000)
    atomic_write(written[0], lambda tmp: Path(tmp).write_text(text + "\n"))
    atomic_write(written[1], lambda tmp: Path(tmp).write_text(report_json(checks)))
    for check in checks:
        if check.name == "default-box coverage" and "ious" in check.data:
            atomic_write(out / "coverage.png", lambda tmp: plot_coverage(check, _png(tmp)))
            written.append(out / "coverage.png")
        if check.name == "overfit one batch" and check.data.get("history"):
            atomic_write(out / "overfit_loss.png", lambda tmp: _plot_history(check, _png(tmp)))
            written.append(out / "overfit_loss.png")
    return written


def _png(tmp: str):
    """matplotlib picks the format from the file name; the temp name has none, so pass a handle."""
    return open(tmp, "wb")


def _plot_history(check: Check, handle) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = check.data["history"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in history[0]:
        ax.plot([h[key] for h in history], label=key)
    ax.plot([sum(h.values()) for h in history], label="total", color="black")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(check.summary, fontsize=8)
    ax.legend()
    fig.tight_layout()
    fig.savefig(handle, format="png", dpi=100)
    handle.close()
    plt.close(fig)


def checks_to_json(checks: list[Check]) -> dict[str, Any]:
    return json.loads(report_json(checks))
