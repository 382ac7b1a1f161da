"""Golden outputs: each architecture's numbers are pinned, so a refactor cannot change them silently.

One case per name in ``ssdlite.models.ARCHS`` (a new architecture fails until it has a golden file)
plus the variants whose code paths differ: FPN with a stride-8 level, a width multiplier,
MobileNetV3's reduced tail, SSD's 3x3 heads. Each case builds its model through the public
``create_model(num_classes, arch=..., ...)`` keywords with a fixed seed and random initialization
(no weight files) and compares a compact fingerprint with ``tests/models/golden/<case>.json``:

- ``state_dict``: the key count, a hash of the sorted key names (a renamed module breaks every
  checkpoint), the sum of each parameter in sorted-name order (another initializer, or another
  init order, changes them) and the BatchNorm ``eps``/``momentum`` settings;
- ``default_boxes``: map sizes, boxes per level, mean, an order-sensitive checksum, every box of each
  level's first location and each level's last box;
- ``core``: ``model.eval(); model.core(x)`` in float32 on a fixed input: shapes, then per output its
  largest magnitude, and divided by it, per-level means, a checksum and three anchors per level.
  Divided, because a fresh MobileNet's outputs are ~1e-8 (with running statistics 0 and 1, its
  activations shrink layer after layer): an absolute tolerance alone would accept anything;
- ``preprocess`` and ``detections``: ``model([images])`` on two non-square images of different
  sizes: the batch handed to ``model.core``, and per image the count, score sum, ten best scores and
  ten best detections (boxes divided by the image size). A hook divides the core's outputs by their
  largest magnitude first: at ~1e-8 every score is exactly 1/K and the detections are ties;
- ``core_train_float64`` (models with BatchNorm): the core in train mode on a fixed batch, where
  BatchNorm keeps activations of order 1, so the nonlinearities act as in a trained model. In
  float64: there a random BatchNorm network amplifies rounding about 1000-fold (measured: 1e-6 of
  noise on each float32 convolution output moves its outputs by 1e-3).

Tolerances (``TOLERANCES``): rtol 1e-4, atol 1e-5 on the float outputs, which are all of order 1;
1e-6 on parameter sums and default boxes, which involve no convolution. Everything runs on one
thread (see :func:`fingerprint`). Measured on the development machine: repeated runs agree bitwise;
2 threads against 1 differ by at most 2e-6 (relative) in ``core`` and 5e-7 in ``detections``, nothing
elsewhere; simulated kernel differences of another CPU (each float32 convolution output times
1 + 1e-6 N(0, 1), 3-4 draws per case) never fail, 1e-5 fails a few of 36 draws. Planted changes fail
by 1e-4 to O(1): min_scale 0.2 -> 0.21, head init std 0.03 -> 0.0301, the extras/head init order,
BatchNorm eps, a renamed head module, the aspect-ratio order, the head's (y, x) permutation, FPN
upsampling mode, antialiasing, box-coder variances, the NMS threshold, the L2Norm scale, SSD300's
first scale. One blind spot: ReLU6's clip at 6, which random-init activations never reach.

Regenerate (``python tests/models/test_golden_outputs.py --regenerate [case ...]``) only for an
intended numerical change: a new default, a fixed bug, a PyTorch whose random generator or kernels
changed, a new case; say which and why in the commit message. A refactor that only moves code must
pass unchanged: if it does not, it changed behaviour. If it renames an accessor used here
(``model.core``, ``model.default_boxes``, ``model.size``, ``model.feature_sizes``), adapt the
accessor, never the stored numbers. Detections are searched, not compared in order, since equal
scores may leave ``topk`` in either order on another CPU.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from ssdlite.models import ARCHS, create_model

GOLDEN_DIR = Path(__file__).with_name("golden")
SEED = 20240
NUM_CLASSES = 3  # background + 2: the smallest head that still has a softmax between classes

#: Cases beyond the plain architectures, and the arguments of each. Plain architectures not listed use
#: their defaults; mobilenet_v2 keeps every default (size 320) and vgg16 its 300 (SSD300's explicit
#: scales, steps and clipping only apply there); the others run at 160 to stay fast.
CASES: dict[str, dict[str, Any]] = {
    "mobilenet_v2": dict(arch="mobilenet_v2"),
    "mobilenet_v3_large": dict(arch="mobilenet_v3_large", size=160),
    "mobilenet_v3_small": dict(arch="mobilenet_v3_small", size=160),
    "mobilenet_v1": dict(arch="mobilenet_v1", size=160),
    "vgg16": dict(arch="vgg16"),
    "mobilenet_v2-fpn-stride8": dict(arch="mobilenet_v2", size=160, neck="fpn", fpn_stride8=True),
    "mobilenet_v2-width0.5": dict(arch="mobilenet_v2", size=160, width_mult=0.5),
    "mobilenet_v3_large-reduced-tail": dict(arch="mobilenet_v3_large", size=160, reduced_tail=True),
    "mobilenet_v2-ssd-head": dict(arch="mobilenet_v2", size=160, head="ssd"),
}

#: ``(rtol, atol)`` per fingerprint section (see the module docstring for the measurements).
TOLERANCES = {
    "state_dict": (1e-6, 1e-6),
    "default_boxes": (1e-6, 1e-6),
    "preprocess": (1e-5, 1e-5),
    "core": (1e-4, 1e-5),
    "detections": (1e-4, 1e-5),
    "core_train_float64": (1e-4, 1e-5),
}
TOP_DETECTIONS = 10


def case_names() -> list[str]:
    """Every architecture the factory knows (a new one fails here until it has a golden file), then the variants."""
    return [*ARCHS, *(name for name in CASES if name not in ARCHS)]


def case_kwargs(name: str) -> dict[str, Any]:
    return dict(CASES.get(name, dict(arch=name)))


# ---- deterministic inputs: closed-form patterns, independent of any random generator ----


def _pattern(channels: int, height: int, width: int, phase: float) -> torch.Tensor:
    """A smooth, non-symmetric ``(C, H, W)`` pattern in [0, 1] with structure at several frequencies."""
    y = torch.linspace(0.0, 1.0, height, dtype=torch.float64)[:, None]  # (H, 1)
    x = torch.linspace(0.0, 1.0, width, dtype=torch.float64)[None, :]  # (1, W)
    planes = [
        torch.sin(2 * math.pi * (3 * x + (c + 1) * 2 * y) + phase + c) * torch.cos(2 * math.pi * 5 * x * y + phase)
        for c in range(channels)
    ]
    return (torch.stack(planes) * 0.5 + 0.5).float()  # (C, H, W)


def core_input(size: int) -> torch.Tensor:
    """``(1, 3, S, S)`` in [-1, 1], the range of a normalized image."""
    return _pattern(3, size, size, phase=0.3)[None] * 2 - 1


def train_batch(size: int) -> torch.Tensor:
    """``(2, 3, S, S)``: the batch of the train-mode pass (BatchNorm needs more than one image)."""
    return torch.stack([_pattern(3, size, size, phase=p) * 2 - 1 for p in (1.1, 2.7)])


def detection_images() -> list[torch.Tensor]:
    """Two uint8 images of different, non-square sizes: the resize and the mapping back are both exercised."""
    return [(_pattern(3, h, w, phase=p) * 255).round().to(torch.uint8) for h, w, p in ((120, 200, 0.0), (90, 70, 1.7))]


# ---- the fingerprint ----


def _r(value: float) -> float:
    """Nine significant digits: far below every tolerance, and keeps the stored files small."""
    return float(f"{float(value):.9g}")


def _rows(t: torch.Tensor) -> list[list[float]]:
    return [[_r(v) for v in row] for row in t.double().tolist()]


def _checksum(t: torch.Tensor) -> float:
    """Mean of ``t`` weighted by a pattern of the flat index: unlike a sum, it changes when elements are reordered."""
    flat = t.detach().double().reshape(-1)
    weights = (torch.arange(flat.numel(), dtype=torch.float64) % 7) - 3.0
    return _r((flat * weights).mean())


def _batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def state_dict_fingerprint(model: nn.Module) -> dict[str, Any]:
    keys = sorted(model.state_dict())
    groups = Counter(".".join(k.split(".")[:3]) for k in keys)
    params = dict(model.named_parameters())
    return {
        "num_keys": len(keys),
        "keys_sha256": hashlib.sha256("\n".join(keys).encode()).hexdigest(),
        "keys_per_module": dict(sorted(groups.items())),
        "num_parameters": sum(p.numel() for p in params.values()),
        "parameter_sums": [_r(params[name].detach().double().sum()) for name in sorted(params)],
        "batchnorm": dict(sorted(Counter(f"eps={m.eps:g} momentum={m.momentum}" for m in _batchnorm_layers(model)).items())),
    }


def default_boxes_fingerprint(model: nn.Module) -> dict[str, Any]:
    boxes = model.default_boxes.boxes  # (A, 4) cx, cy, w, h
    per_level = list(model.default_boxes.boxes_per_level)
    starts = [sum(per_level[:i]) for i in range(len(per_level))]
    # Every box of each level's first location (the order of the box specs), and each level's last box.
    per_location = [n // (h * w) for n, (h, w) in zip(per_level, model.feature_sizes)]
    picks = sorted({i for s, n, b in zip(starts, per_level, per_location) for i in [*range(s, s + b), s + n - 1]})
    return {
        "feature_sizes": [list(s) for s in model.feature_sizes],
        "boxes_per_level": per_level,
        "num_boxes": int(boxes.shape[0]),
        "mean": [_r(v) for v in boxes.double().mean(0).tolist()],
        "checksum": _checksum(boxes),
        "rows": _rows(boxes[picks]),
    }


def _anchor_picks(per_level: list[int]) -> list[int]:
    """First, middle and last anchor of every level."""
    starts = [sum(per_level[:i]) for i in range(len(per_level))]
    return sorted({i for s, n in zip(starts, per_level) for i in (s, s + n // 2, s + n - 1)})


def core_fingerprint(cls_logits: torch.Tensor, bbox_deltas: torch.Tensor, per_level: list[int]) -> dict[str, Any]:
    """Shapes, then each output divided by its largest magnitude (the freshly built MobileNets' outputs are
    ~1e-8, see the module docstring), that magnitude, per-level means, a checksum and three anchors per level."""
    out: dict[str, Any] = {"cls_shape": list(cls_logits.shape), "bbox_shape": list(bbox_deltas.shape)}
    picks = _anchor_picks(per_level)
    for name, t in (("cls", cls_logits), ("bbox", bbox_deltas)):  # (N, A, K) and (N, A, 4)
        scale = t.detach().double().abs().max()
        t = t.detach().double() / scale
        levels = t.split(per_level, dim=1)
        out[f"{name}_scale"] = _r(scale)
        out[f"{name}_level_mean"] = [_r(level.mean()) for level in levels]
        out[f"{name}_level_mean_abs"] = [_r(level.abs().mean()) for level in levels]
        out[f"{name}_checksum"] = _checksum(t)
        out[f"{name}_rows"] = _rows(t[0, picks])
    return out


def preprocess_fingerprint(batch: torch.Tensor) -> dict[str, Any]:
    n, _, s, _ = batch.shape
    spots = [(s // 2, s // 3), (s - 1, 0), (0, s - 1)]
    return {
        "shape": list(batch.shape),
        "channel_mean": _rows(batch.double().mean(dim=(2, 3))),  # (N, 3)
        "checksum": _checksum(batch),
        "pixels": [[_r(batch[i, c, y, x]) for (y, x) in spots for c in range(3)] for i in range(n)],
    }


def detections_fingerprint(
    detections: list[dict[str, torch.Tensor]], sizes: list[tuple[int, int]], top: int | None = TOP_DETECTIONS
) -> list[dict[str, Any]]:
    """Per image: count, score sum, the best scores, and the best detections as ``[label, x1, y1, x2, y2,
    score]`` with the box divided by the image's ``(W, H)`` of ``sizes`` (so one tolerance fits every
    coordinate), ``top=None``: all of them, what the comparison searches.

    No per-class counts: two nearly equal scores at the 200-detection cap may trade places on another
    CPU, which changes a class count but neither the count nor, beyond the tolerance, the score sum.
    """
    out = []
    for d, (h, w) in zip(detections, sizes):
        boxes, scores, labels = d["boxes"], d["scores"], d["labels"]  # (D, 4) in pixels, (D,), (D,) best first
        boxes = boxes.double() / torch.tensor([w, h, w, h], dtype=torch.float64)  # (D, 4) in [0, 1]
        rows = [[int(label), *(_r(v) for v in box), _r(score)] for label, box, score in zip(labels.tolist(), boxes.tolist(), scores.tolist())]
        out.append({
            "count": int(scores.numel()),
            "score_sum": _r(scores.double().sum()),
            "top_scores": [_r(v) for v in scores[:TOP_DETECTIONS].tolist()],
            "top": rows if top is None else rows[:top],
        })
    return out


def fingerprint(name: str, top: int | None = TOP_DETECTIONS) -> dict[str, Any]:
    """Build the case's model from scratch and fingerprint it (see the module docstring); ``top`` as in
    :func:`detections_fingerprint`.

    On one thread: the numbers then do not depend on the machine's thread count, and these small
    layers gain nothing from a second thread, whose synchronization costs seconds on a loaded machine.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fingerprint(name, top)
    finally:
        torch.set_num_threads(threads)


def _fingerprint(name: str, top: int | None) -> dict[str, Any]:
    kwargs = case_kwargs(name)
    torch.manual_seed(SEED)
    model = create_model(NUM_CLASSES, **kwargs)
    result: dict[str, Any] = {"case": kwargs, "num_classes": NUM_CLASSES, "seed": SEED}
    result["state_dict"] = state_dict_fingerprint(model)
    result["default_boxes"] = default_boxes_fingerprint(model)
    per_level = result["default_boxes"]["boxes_per_level"]
    size = int(model.size)  # the square input size, resolved by create_model (320 or 300 when not given)

    # 1. The model as built, in eval mode and float32: what a user's fresh model computes.
    model.eval()
    with torch.no_grad():
        cls_logits, bbox_deltas = model.core(core_input(size))  # (1, A, K), (1, A, 4)
    result["core"] = core_fingerprint(cls_logits, bbox_deltas, per_level)

    # 2. The whole pipeline, model([images]): the batch handed to the core, and the detections, with the
    # core's outputs divided by their largest magnitude so that scores differ (see the module docstring).
    seen: list[torch.Tensor] = []

    def rescale(module: nn.Module, args: tuple, outputs: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        seen.append(args[0].detach().clone())
        return tuple(t / t.detach().abs().max() for t in outputs)

    images = detection_images()
    hook = model.core.register_forward_hook(rescale)
    try:
        with torch.no_grad():
            detections = model(images)
    finally:
        hook.remove()
    result["preprocess"] = preprocess_fingerprint(seen[0])
    result["detections"] = detections_fingerprint(detections, [tuple(i.shape[-2:]) for i in images], top)

    # 3. With BatchNorm, the network where its activations are of order 1: train mode (each layer normalized
    # with the batch's statistics), in float64 because there a random network amplifies rounding ~1e3x.
    # Without BatchNorm (vgg16) train mode computes what section 1 did, and the outputs are already O(1).
    if _batchnorm_layers(model):
        model.double().train()
        with torch.no_grad():
            cls_logits, bbox_deltas = model.core(train_batch(size).double())  # (2, A, K), (2, A, 4)
        result["core_train_float64"] = core_fingerprint(cls_logits, bbox_deltas, per_level)
    return result


# ---- comparison ----


def compare(actual: Any, expected: Any, rtol: float, atol: float, path: str = "") -> list[str]:
    """Every difference between two fingerprints, as ``path: actual != expected`` lines.

    Floats must agree within ``atol + rtol * |expected|``; everything else (counts, shapes, labels,
    hashes, names) exactly.
    """
    if isinstance(expected, dict) and isinstance(actual, dict):
        problems = [f"{path}.{k}: missing (expected {expected[k]!r:.80})" for k in expected if k not in actual]
        problems += [f"{path}.{k}: unexpected" for k in actual if k not in expected]
        for k in expected:
            if k in actual:
                problems += compare(actual[k], expected[k], rtol, atol, f"{path}.{k}")
        return problems
    if isinstance(expected, list) and isinstance(actual, list):
        if len(actual) != len(expected):
            return [f"{path}: length {len(actual)} != {len(expected)}"]
        return [p for i, (a, e) in enumerate(zip(actual, expected)) for p in compare(a, e, rtol, atol, f"{path}[{i}]")]
    if isinstance(expected, float) and isinstance(actual, (int, float)) and not isinstance(actual, bool):
        if math.isfinite(actual) and abs(actual - expected) <= atol + rtol * abs(expected):
            return []
        return [f"{path}: {actual!r} != {expected!r} (diff {abs(actual - expected):.3g})"]
    return [] if actual == expected and type(actual) is type(expected) else [f"{path}: {actual!r:.80} != {expected!r:.80}"]


def match_detections(actual: list[list[float]], expected: list[list[float]], rtol: float, atol: float, path: str) -> list[str]:
    """Each expected detection must be among the actual ones (same label, numbers within tolerance).

    Searched, not compared in order: nearly equal scores may come out of ``topk`` in either order on
    another CPU.
    """
    problems, free = [], list(actual)
    for i, want in enumerate(expected):
        found = next((got for got in free if not compare(got, want, rtol, atol)), None)
        if found is None:
            problems.append(f"{path}[{i}]: no detection {want} among the {len(actual)} found")
        else:
            free.remove(found)
    return problems


def compare_fingerprints(actual: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """All differences; ``actual`` may hold every detection (``fingerprint(name, top=None)``)."""
    problems = []
    for section in expected:
        rtol, atol = TOLERANCES.get(section, (0.0, 0.0))
        if section == "detections" and isinstance(actual.get(section), list) and len(actual[section]) == len(expected[section]):
            for i, (got, want) in enumerate(zip(actual[section], expected[section])):
                path = f"detections[{i}]"
                problems += compare({k: v for k, v in got.items() if k != "top"}, {k: v for k, v in want.items() if k != "top"}, rtol, atol, path)
                problems += match_detections(got.get("top", []), want.get("top", []), rtol, atol, f"{path}.top")
            continue
        problems += compare(actual.get(section), expected[section], rtol, atol, section)
    problems += [f"{section}: not in the golden file" for section in actual if section not in expected]
    return problems


def golden_path(name: str) -> Path:
    return GOLDEN_DIR / f"{name}.json"


@pytest.mark.parametrize("name", case_names())
def test_outputs_match_the_golden_fingerprint(name):
    path = golden_path(name)
    if not path.exists():
        pytest.fail(f"no golden file {path} for case {name!r} (a new architecture?): run "
                    f"`python tests/models/test_golden_outputs.py --regenerate {name}` and commit it")
    expected = json.loads(path.read_text())
    assert expected["case"] == case_kwargs(name), f"{path} was made for other arguments: regenerate it"
    problems = compare_fingerprints(fingerprint(name, top=None), expected)
    shown = "\n".join(problems[:40]) + (f"\n... and {len(problems) - 40} more" if len(problems) > 40 else "")
    assert not problems, (
        f"{name}: {len(problems)} values differ from {path.name}; the model's numbers changed. If that is intended, "
        f"regenerate (see this module's docstring) and say why in the commit.\n{shown}"
    )


def test_every_golden_file_belongs_to_a_case():
    """A case renamed or dropped must not leave a stale file behind that nothing checks."""
    assert sorted(p.stem for p in GOLDEN_DIR.glob("*.json")) == sorted(case_names())


def test_the_comparison_catches_small_changes():
    """The comparison itself: a 1e-3 change in one output value or a changed count fails, a 1e-7 change passes."""
    expected = {"core": {"rows": [[0.5, -0.25]], "count": 3}}
    assert compare_fingerprints(json.loads(json.dumps(expected)), expected) == []
    assert compare_fingerprints({"core": {"rows": [[0.5 + 1e-7, -0.25]], "count": 3}}, expected) == []
    assert compare_fingerprints({"core": {"rows": [[0.5, -0.25 + 1e-3]], "count": 3}}, expected) == ["core.rows[0][1]: -0.249 != -0.25 (diff 0.001)"]
    assert compare_fingerprints({"core": {"rows": [[0.5, -0.25]], "count": 4}}, expected) == ["core.count: 4 != 3"]
    assert compare_fingerprints({"core": {"rows": [[0.5, float("nan")]], "count": 3}}, expected) != []


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Indented, with lists of numbers on one line each (small, readable diffs); atomic: temp file, then rename."""
    text = json.dumps(data, indent=1)
    text = re.sub(r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(text + "\n")
    os.replace(tmp, path)


def regenerate(names: list[str]) -> None:
    GOLDEN_DIR.mkdir(exist_ok=True)
    for name in names:
        _write_json(golden_path(name), fingerprint(name))
        print(f"wrote {golden_path(name)} ({golden_path(name).stat().st_size} bytes)")


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] != "--regenerate":
        sys.exit(f"usage: python {sys.argv[0]} --regenerate [case ...]   (cases: {', '.join(case_names())})")
    unknown = [n for n in sys.argv[2:] if n not in case_names()]
    if unknown:
        sys.exit(f"unknown cases {unknown}; choose from {case_names()}")
    regenerate(sys.argv[2:] or case_names())
