"""Converting torchvision's SSD detectors into ssdlite models.

torchvision ships two detectors of this family with COCO weights: ``ssdlite320_mobilenet_v3_large``
(MobileNetV3 paper, section 6.2) and ``ssd300_vgg16`` (SSD paper). :func:`from_torchvision` builds
the ssdlite model with the same settings (input size, default boxes, postprocess) and loads the
converted weights, so it gives the same detections.

Two things differ besides key names:

* torchvision's ``SSDLiteFeatureExtractorMobileNet`` splits the MobileNet ``features`` at the C4
  expansion into ``features.0`` / ``features.1``; ours keeps ``features`` whole (so ImageNet
  classifier weights load as they are) and taps the expansion inside the C4 block.
* The order of the default boxes at one location. torchvision's ``DefaultBoxGenerator`` lists
  ``(s_k, 1), (s'_k, 1), (s_k, a), (s_k, 1/a), ...``; ours (:meth:`DefaultBoxes.box_specs`) lists
  ``(s_k, 1), (s_k, a), (s_k, 1/a), ..., (s'_k, 1)``. Both heads are anchor-major (the values of
  box ``b`` are output channels ``b*V .. b*V + V - 1``), so the final convolution of every
  predictor has its output channels permuted by box; the permutation is computed by matching the
  boxes' ``(w, h)``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ssdlite.models.anchors import DefaultBoxes
from ssdlite.models.state_dict import state_dict_mismatch
from ssdlite.models.vgg import SSD300_EXTRAS, VGG16_CFG
from ssdlite.models.weights import read_state_dict

if TYPE_CHECKING:
    from ssdlite.models.ssdlite import SSDLite

#: Prefixes of torchvision's SSD head tensors and the ssdlite modules they become.
HEAD_PREFIXES = {
    "head.classification_head.module_list.": "core.head.classification.predictors.",
    "head.regression_head.module_list.": "core.head.regression.predictors.",
}
#: torchvision's builder name of each architecture it converts.
TORCHVISION_NAMES = {"mobilenet_v3_large": "ssdlite320_mobilenet_v3_large", "vgg16": "ssd300_vgg16"}

#: ``ssdlite320_mobilenet_v3_large``'s settings: six boxes on every map (``DefaultBoxGenerator([[2, 3]] * 6,
#: min_ratio=0.2, max_ratio=0.95)``, sizes capped at 1), inputs in [-1, 1], and its postprocess defaults.
MOBILENET_V3_SETTINGS: dict[str, Any] = {
    "size": 320,
    "reduce_lowest": False,
    "aspect_ratios": (2.0, 3.0),
    "min_scale": 0.2,
    "max_scale": 0.95,
    "clip_boxes": "size",
    "image_mean": (0.5, 0.5, 0.5),
    "image_std": (0.5, 0.5, 0.5),
    "score_threshold": 0.001,
    "nms_threshold": 0.55,
    "topk_candidates": 300,
    "detections_per_image": 300,
}
#: ``ssd300_vgg16``'s postprocess (``SSD``'s defaults); its boxes and normalization are ssdlite's vgg16 defaults.
SSD300_SETTINGS: dict[str, Any] = {
    "score_threshold": 0.01,
    "nms_threshold": 0.45,
    "topk_candidates": 400,
    "detections_per_image": 200,
}


def detect_kind(state_dict: Mapping[str, Any]) -> str:
    """``"vgg16"`` for a torchvision ``ssd300_vgg16`` state dict, ``"mobilenet_v3_large"`` for ``ssdlite320_mobilenet_v3_large``.

    Raises:
        ValueError: the state dict is not a torchvision SSD detector's.
    """
    if not isinstance(state_dict, Mapping):
        raise ValueError(f"expected a torchvision detector state dict, got {type(state_dict).__name__}")
    not_tensors = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise ValueError(f"not a state dict: {len(not_tensors)} values are not tensors, e.g. {not_tensors[0]!r}")
    for prefix in HEAD_PREFIXES:
        if not any(k.startswith(prefix) for k in state_dict):
            sample = ", ".join(list(state_dict)[:3]) or "none"
            raise ValueError(f"not a torchvision SSD/SSDLite detector state dict: no '{prefix}*' keys (first keys: {sample})")
    # ssd300_vgg16's backbone carries the L2Norm scale of conv4_3 (SSD paper, section 3.1, "ParseNet").
    return "vgg16" if "backbone.scale_weight" in state_dict else "mobilenet_v3_large"


def _final_conv_key(kind: str, prefix: str, level: int) -> str:
    """torchvision's key of the prediction convolution's weight: ``_prediction_block``'s ``[1]`` or SSD's plain 3x3."""
    return f"{prefix}{level}.1.weight" if kind == "mobilenet_v3_large" else f"{prefix}{level}.weight"


def _num_classes(state_dict: Mapping[str, torch.Tensor], kind: str) -> int:
    """Classes (with background) from the first map's predictors: ``B*K`` class rows over ``B*4`` box rows."""
    cls_prefix, box_prefix = HEAD_PREFIXES
    cls_key, box_key = _final_conv_key(kind, cls_prefix, 0), _final_conv_key(kind, box_prefix, 0)
    for key in (cls_key, box_key):
        if key not in state_dict:
            raise ValueError(f"torchvision {TORCHVISION_NAMES[kind]} state dict without {key}")
    cls_rows, box_rows = state_dict[cls_key].shape[0], state_dict[box_key].shape[0]
    if box_rows < 4 or box_rows % 4 or cls_rows % (box_rows // 4):
        raise ValueError(f"{cls_key} has {cls_rows} outputs and {box_key} {box_rows}: not B*K and B*4 for one box count B")
    return cls_rows // (box_rows // 4)


def _mobilenet_v3_reduced_tail(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """Whether the MobileNetV3-Large backbone has the reduced tail, from its last convolution's output channels."""
    from ssdlite.models.mobilenet_v3 import MobileNetV3Backbone

    last_conv = re.compile(r"^backbone\.features\.1\.(\d+)\.0\.weight$")
    found = sorted((int(m.group(1)), k) for k in state_dict if (m := last_conv.match(k)))
    if not found:
        raise ValueError("torchvision ssdlite320_mobilenet_v3_large state dict without backbone.features.1.*.0.weight")
    key = found[-1][1]
    channels = state_dict[key].shape[0]
    for reduced_tail in (False, True):
        if MobileNetV3Backbone("mobilenet_v3_large", reduced_tail=reduced_tail).out_channels[-1] == channels:
            return reduced_tail
    raise ValueError(f"{key} has {channels} output channels: not MobileNetV3-Large at width 1.0 (960, or 480 with the reduced tail)")


def torchvision_box_shapes(default_boxes: DefaultBoxes, level: int) -> list[tuple[float, float]]:
    """``(w, h)`` of the boxes at one location of ``level`` in torchvision's order.

    ``DefaultBoxGenerator._generate_wh_pairs``: ``(s_k, s_k)``, ``(s'_k, s'_k)`` with
    ``s'_k = sqrt(s_k s_{k+1})``, then ``(s_k sqrt(a), s_k / sqrt(a))`` and its transpose per ratio.
    """
    s_k, s_next = default_boxes.scales[level], default_boxes.scales[level + 1]
    s_prime = math.sqrt(s_k * s_next)
    shapes = [(s_k, s_k), (s_prime, s_prime)]
    for a in default_boxes.level_aspect_ratios[level]:
        shapes += [(s_k * math.sqrt(a), s_k / math.sqrt(a)), (s_k / math.sqrt(a), s_k * math.sqrt(a))]
    return shapes


def anchor_permutation(default_boxes: DefaultBoxes, level: int) -> list[int]:
    """For each of our boxes at one location of ``level`` (in :meth:`DefaultBoxes.box_specs` order), its index in torchvision's order.

    Raises:
        ValueError: the two sets of box shapes differ (e.g. ``reduce_lowest`` boxes have no torchvision counterpart).
    """
    ours = [(s * math.sqrt(a), s / math.sqrt(a)) for s, a in default_boxes.box_specs(level)]
    theirs = torchvision_box_shapes(default_boxes, level)
    permutation = []
    for w, h in ours:
        same = [j for j, (tw, th) in enumerate(theirs) if math.isclose(w, tw, rel_tol=1e-9) and math.isclose(h, th, rel_tol=1e-9)]
        if len(same) != 1:
            raise ValueError(
                f"map {level}: box (w={w:.4f}, h={h:.4f}) has {len(same)} counterparts among torchvision's {len(theirs)} boxes"
            )
        permutation.append(same[0])
    if sorted(permutation) != list(range(len(theirs))):
        raise ValueError(f"map {level}: our {len(ours)} boxes do not cover torchvision's {len(theirs)}")
    return permutation


def torchvision_anchor_index(default_boxes: DefaultBoxes) -> torch.Tensor:
    """``(A,)`` int64: for each of our default boxes, its index in torchvision's flat box order.

    Both flatten level by level and, within a level, location by location (row-major); only the
    order within a location differs. ``ours[:, i]`` corresponds to ``theirs[:, index[i]]``.
    """
    parts, offset = [], 0
    for level, (h, w) in enumerate(default_boxes.feature_sizes):
        permutation = torch.tensor(anchor_permutation(default_boxes, level))  # (B,)
        b = permutation.numel()
        location = torch.arange(h * w)[:, None] * b  # (H*W, 1): first box of each location
        parts.append(offset + (location + permutation[None, :]).reshape(-1))  # (H*W*B,)
        offset += h * w * b
    return torch.cat(parts)  # (A,)


def _rename_mobilenet_v3(state_dict: Mapping[str, torch.Tensor], c4_index: int) -> dict[str, torch.Tensor]:
    """torchvision ``SSDLiteFeatureExtractorMobileNet`` keys -> ``core.backbone.features`` / ``core.extras.blocks``.

    Raises:
        ValueError: listing the keys that have no place in the model.
    """
    converted, unknown = {}, []
    for key, tensor in state_dict.items():
        new = _mobilenet_v3_key(key, c4_index)
        if new is None:
            unknown.append(key)
        else:
            converted[new] = tensor
    if unknown:
        raise ValueError(f"unconverted torchvision backbone keys ({len(unknown)}): {', '.join(unknown[:10])}")
    return converted


def _mobilenet_v3_key(key: str, c4: int) -> str | None:
    """Our name of one torchvision backbone key, None for a key with no place in our model.

    torchvision's ``features.0`` is ``features[:c4]`` plus the C4 block's expansion ``block[0]``;
    ``features.1.0`` is the rest of that block (``block[1:]``, whose layers keep their indices 1, 2, ...),
    and ``features.1.{i}`` for ``i >= 1`` is ``features[c4 + i]``.
    """
    if m := re.fullmatch(r"backbone\.features\.0\.(\d+)\.(.+)", key):
        index, rest = int(m.group(1)), m.group(2)
        if index < c4:
            return f"core.backbone.features.{index}.{rest}"
        if index == c4:
            return f"core.backbone.features.{c4}.block.0.{rest}"  # the C4 expansion
        return None
    if m := re.fullmatch(r"backbone\.features\.1\.0\.(.+)", key):
        return f"core.backbone.features.{c4}.block.{m.group(1)}"
    if m := re.fullmatch(r"backbone\.features\.1\.(\d+)\.(.+)", key):
        return f"core.backbone.features.{c4 + int(m.group(1))}.{m.group(2)}"
    if m := re.fullmatch(r"backbone\.extra\.(.+)", key):
        return f"core.extras.blocks.{m.group(1)}"
    return None


def _final_conv_name(predictor: nn.Module) -> str:
    """Name (relative to the predictor) of its last convolution, the one producing ``B * V`` channels."""
    names = [name for name, module in predictor.named_modules() if isinstance(module, nn.Conv2d)]
    return names[-1]


def _convert_head(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> tuple[dict[str, torch.Tensor], int]:
    """Rename the head keys and permute the prediction convolutions' output channels from torchvision's box order to ours.

    Returns the converted tensors and the number of convolutions whose channels were permuted.
    """
    converted = {}
    for key, tensor in state_dict.items():
        for theirs, ours in HEAD_PREFIXES.items():
            if key.startswith(theirs):
                converted[ours + key[len(theirs) :]] = tensor
    permuted = 0
    for prefix in HEAD_PREFIXES.values():
        prediction = model.get_submodule(prefix.removesuffix(".predictors."))  # core.head.classification / .regression
        for level, predictor in enumerate(prediction.predictors):
            permutation = torch.tensor(anchor_permutation(model.default_boxes, level))  # (B,)
            conv = _final_conv_name(predictor)
            for param in ("weight", "bias"):
                key = f"{prefix}{level}.{conv + '.' if conv else ''}{param}"
                if key not in converted:
                    continue  # reported as missing by the caller's key check
                tensor = converted[key]
                if tensor.shape[0] != permutation.numel() * prediction.values:
                    continue  # a shape mismatch, reported by the caller's key check
                by_box = tensor.reshape(permutation.numel(), prediction.values, *tensor.shape[1:])  # (B, V, ...)
                converted[key] = by_box[permutation].reshape(tensor.shape)  # our box b <- their box permutation[b]
                if param == "weight":
                    permuted += 1
    return converted, permuted


def convert_state_dict(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """A torchvision ``ssdlite320_mobilenet_v3_large`` / ``ssd300_vgg16`` state dict as ``model``'s state dict.

    ``model`` must be built with the torchvision-equivalent settings (see :func:`from_torchvision`).

    Raises:
        ValueError: a key that is not converted, or one ``model`` lacks, misses or has in another shape.
    """
    converted, _ = _convert(state_dict, model)
    return converted


def _check_no_foreign_keys(state_dict: Mapping[str, torch.Tensor]) -> None:
    """Every key must belong to the backbone (with extras) or the head: anything else would be dropped silently."""
    foreign = [k for k in state_dict if not k.startswith(("backbone.", *HEAD_PREFIXES))]
    if foreign:
        raise ValueError(f"unconverted keys ({len(foreign)}), neither backbone nor head: {', '.join(foreign[:10])}")


def _convert(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> tuple[dict[str, torch.Tensor], list[str]]:
    """:func:`convert_state_dict` plus lines saying what was done."""
    kind = detect_kind(state_dict)
    arch = model.config.arch
    if arch != kind:
        raise ValueError(f"the state dict is torchvision's {TORCHVISION_NAMES[kind]} but the model's architecture is {arch!r}")
    _check_no_foreign_keys(state_dict)
    backbone_keys = {k: v for k, v in state_dict.items() if k.startswith("backbone.")}
    head_keys = [k for k in state_dict if k.startswith(tuple(HEAD_PREFIXES))]
    if kind == "vgg16":
        body = convert_ssd300_backbone(dict(backbone_keys))
        body_note = f"backbone and extras: {len(backbone_keys)} tensors renamed (VGG16 with conv4_3 L2Norm, SSD300 extras)"
    else:
        c4_index = model.core.backbone.c4_index
        body = _rename_mobilenet_v3(backbone_keys, c4_index)
        body_note = (
            f"backbone and extras: {len(backbone_keys)} tensors renamed (torchvision's features.0/features.1 split at the "
            f"C4 expansion, features[{c4_index}].block[0], joined into core.backbone.features; extra -> core.extras.blocks)"
        )
    head, permuted = _convert_head(state_dict, model)
    converted = {**body, **head}
    problem = state_dict_mismatch(model.state_dict(), converted)
    if problem:
        raise ValueError(f"torchvision {TORCHVISION_NAMES[kind]} state dict does not fit the {arch} model: {problem}")
    levels = range(len(model.default_boxes.feature_sizes))
    orders = {str(anchor_permutation(model.default_boxes, level)) for level in levels}  # one per box count
    notes = [
        body_note,
        f"heads: {len(head_keys)} tensors renamed; output channels of {permuted} prediction convolutions permuted from "
        f"torchvision's box order (s_k, s'_k, ratios) to ours (s_k, ratios, s'_k): ours <- theirs {', '.join(sorted(orders, key=len))}",
    ]
    return converted, notes


def from_torchvision(state_dict: Mapping[str, torch.Tensor], num_classes: int | None = None) -> tuple[SSDLite, list[str]]:
    """Build the ssdlite equivalent of a torchvision SSD detector and load its weights.

    Args:
        state_dict: of torchvision's ``ssdlite320_mobilenet_v3_large`` (full or reduced tail, any
            class count) or ``ssd300_vgg16``.
        num_classes: if given, the class count (with background) the state dict must have.

    Returns:
        ``(model, notes)``: the :class:`~ssdlite.models.SSDLite` (in train mode, like a builder's)
        and lines saying what was detected and converted.

    Raises:
        ValueError: not such a state dict, another class count, or keys that do not convert.
    """
    from ssdlite.models.factory import create_model

    kind = detect_kind(state_dict)
    _check_no_foreign_keys(state_dict)  # before the model is built: a clear error fast
    detected = _num_classes(state_dict, kind)
    if num_classes is not None and num_classes != detected:
        raise ValueError(f"the state dict has {detected} classes (with background), not {num_classes}")
    if kind == "vgg16":
        model = create_model(detected, arch="vgg16", **SSD300_SETTINGS)
        description = f"torchvision ssd300_vgg16, {detected} classes"
        settings = SSD300_SETTINGS
    else:
        reduced_tail = _mobilenet_v3_reduced_tail(state_dict)
        model = create_model(detected, arch="mobilenet_v3_large", reduced_tail=reduced_tail, **MOBILENET_V3_SETTINGS)
        tail = "reduced tail" if reduced_tail else "full tail"
        description = f"torchvision ssdlite320_mobilenet_v3_large, {detected} classes, {tail}"
        settings = MOBILENET_V3_SETTINGS
    converted, notes = _convert(state_dict, model)
    model.load_state_dict(converted)
    settings_note = "settings as torchvision's: " + ", ".join(f"{k}={v}" for k, v in settings.items())
    return model, [description, *notes, settings_note]


def load_torchvision_file(path: str | Path) -> tuple[SSDLite, list[str]]:
    """:func:`from_torchvision` on a file saved with ``torch.save`` (a state dict, or a checkpoint with ``"model"``).

    Raises:
        UserError: naming the file, when it is missing, unreadable or not a torchvision SSD detector.
    """
    from ssdlite.errors import UserError

    loaded = read_state_dict(path, "torchvision weights")
    try:
        return from_torchvision(loaded)
    except ValueError as err:
        raise UserError(f"torchvision weights {path}: {err}") from err


# -- torchvision's ssd300_vgg16 backbone (SSD paper, section 3): see ssdlite.models.vgg for the layout


def _ssd300_layout() -> tuple[int, int]:
    """torchvision's ``backbone.extra.0`` is ``vgg.features[pool4:pool5]`` followed by the fc block:
    returns ``(pool4, number of VGG layers in it)``."""
    positions, index = [], 0
    for v in VGG16_CFG:  # make_layers: "M" adds one max-pool, a depth adds a conv and a ReLU
        if v == "M":
            positions.append(index)
        index += 1 if v == "M" else 2
    pool4, pool5 = positions[3], positions[4]
    return pool4, pool5 - pool4


_TV_FEATURES = re.compile(r"^backbone\.features\.(\d+)\.(weight|bias)$")
_TV_CONV5_FC = re.compile(r"^backbone\.extra\.0\.(\d+)\.(.+)$")
_TV_EXTRA = re.compile(r"^backbone\.extra\.(\d+)\.(\d+\.(?:weight|bias))$")


def convert_ssd300_backbone(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the ``backbone.*`` tensors of torchvision's ``ssd300_vgg16`` to this model's keys.

    ========================================  ===============================================
    torchvision                               ssdlite
    ========================================  ===============================================
    ``backbone.scale_weight``                 ``core.backbone.l2norm.weight``
    ``backbone.features.<i>.*`` (to conv4_3)  ``core.backbone.features.<i>.*``
    ``backbone.extra.0.<j>.*`` (j < 7)        ``core.backbone.features.<pool4 + j>.*`` (conv5)
    ``backbone.extra.0.7.<k>.*``              ``core.backbone.fc.<k>.*`` (fc6, fc7)
    ``backbone.extra.<m>.*`` (m = 1 .. 4)     ``core.extras.blocks.<m - 1>.*``
    ========================================  ===============================================

    Tensors are not copied. Shapes are checked when the result is loaded.

    Raises:
        ValueError: for a key that is not one of the above (non-``backbone.`` keys, SSD512's fifth
            extra block, batch-norm tensors).
    """
    pool4, conv5_layers = _ssd300_layout()
    converted, unknown = {}, []
    for key, value in state_dict.items():
        if key == "backbone.scale_weight":
            converted["core.backbone.l2norm.weight"] = value
        elif (m := _TV_FEATURES.match(key)) and int(m.group(1)) < pool4:
            converted[f"core.backbone.features.{m.group(1)}.{m.group(2)}"] = value
        elif m := _TV_CONV5_FC.match(key):
            j, rest = int(m.group(1)), m.group(2)
            if j < conv5_layers and re.fullmatch(r"weight|bias", rest):
                converted[f"core.backbone.features.{pool4 + j}.{rest}"] = value
            elif j == conv5_layers and (fc := re.fullmatch(r"(\d+)\.(weight|bias)", rest)):
                converted[f"core.backbone.fc.{fc.group(1)}.{fc.group(2)}"] = value
            else:
                unknown.append(key)
        elif (m := _TV_EXTRA.match(key)) and 1 <= int(m.group(1)) <= len(SSD300_EXTRAS):
            converted[f"core.extras.blocks.{int(m.group(1)) - 1}.{m.group(2)}"] = value
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(
            f"not a torchvision ssd300_vgg16 backbone: {len(unknown)} unknown keys: {', '.join(unknown[:10])}"
        )
    return converted
