"""The model's postprocess as ONNX nodes, appended to an exported core network.

The graph does what :class:`ssdlite.models.PostProcess` does, in the same order, so that
onnxruntime returns final detections:

1. decode ``bbox_deltas`` against the default boxes (SSD paper, eq. 2, with variances) and clip
   to ``[0, 1]``;
2. softmax over classes, drop the background;
3. top-``topk_candidates`` default boxes per (image, class);
4. ONNX ``NonMaxSuppression`` with every (image, class) pair as its own NMS batch entry, so a box
   only suppresses boxes of its image and class (``batched_nms`` keyed by image and class);
   ONNX NMS keeps scores strictly above ``score_threshold`` and suppresses IoU strictly above
   ``iou_threshold``, the same strict comparisons as the PyTorch path;
5. the ``detections_per_image`` best survivors per image by score.

Outputs are padded to a fixed ``D = min(detections_per_image, classes * topk_candidates)``, in the order of
every exported postprocess (:data:`ssdlite.models.postprocess.OUTPUTS`): ``boxes (N, D, 4)`` float xyxy
**normalized to [0, 1]** (multiply by ``(W, H, W, H)`` of the original image), ``scores (N, D)`` sorted
descending, ``labels (N, D)`` int64 in ``1..K``, ``num_detections (N,)`` int64; entries past
``num_detections`` are zero. Files written before this order (ssdlite 0.x up to round 3) put
``num_detections`` first; ssdlite reads outputs by name, so both load.

The tail is built with ``onnx.helper`` rather than traced, so it is written once for every
exporter, and the with-NMS model is the raw export plus these nodes: the network part is exactly
the graph that the raw export verifies.
"""

from __future__ import annotations

import numpy as np
import torch

from ssdlite.deploy.optional import require
from ssdlite.models.box_coder import BBOX_XFORM_CLIP
from ssdlite.models.postprocess import PostprocessSettings

NMS_OUTPUTS = ("boxes", "scores", "labels", "num_detections")  # OUTPUTS's order, the count by its ONNX name
MIN_OPSET = 13  # Squeeze/Unsqueeze/ReduceSum with axes as inputs


def append_postprocess(
    model,
    default_boxes: torch.Tensor,
    settings: PostprocessSettings,
    cls_name: str = "cls_logits",
    box_name: str = "bbox_deltas",
):
    """Return a copy of ``model`` (``onnx.ModelProto`` with outputs ``cls_name (N, A, K)`` and
    ``box_name (N, A, 4)``) whose outputs are :data:`NMS_OUTPUTS` instead.

    Args:
        default_boxes: ``(A, 4)`` as ``(cx, cy, w, h)`` in ``[0, 1]``, the model's anchors.
        settings: the model's postprocess (:meth:`PostprocessSettings.of` its config).
    """
    onnx = require("onnx", "ONNX export")
    from onnx import TensorProto, helper, numpy_helper

    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset < MIN_OPSET:
        raise ValueError(f"the in-graph postprocess needs opset >= {MIN_OPSET}, the model has {opset}")
    outputs = {o.name: o for o in model.graph.output}
    if cls_name not in outputs or box_name not in outputs:
        raise ValueError(f"the model must output {cls_name!r} and {box_name!r}, it outputs {sorted(outputs)}")
    num_classes = outputs[cls_name].type.tensor_type.shape.dim[-1].dim_value
    if num_classes < 2:
        raise ValueError(f"{cls_name} must have a static class dimension, got {outputs[cls_name].type.tensor_type.shape}")
    a = int(default_boxes.shape[0])
    c = num_classes - 1  # foreground classes
    k = min(settings.topk_candidates, a)
    d = min(settings.detections_per_image, c * k)
    variances, nms_threshold, score_threshold = settings.variances, settings.nms_threshold, settings.score_threshold

    nodes, inits = [], []

    def name(s: str) -> str:
        return f"postprocess/{s}"

    def const(s: str, value) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), name(s)))
        return name(s)

    def node(op: str, inputs: list[str], out: str | list[str], **attrs) -> str | list[str]:
        outs = [name(o) for o in ([out] if isinstance(out, str) else out)]
        nodes.append(helper.make_node(op, inputs, outs, name=outs[0], **attrs))
        return outs[0] if isinstance(out, str) else outs

    f32 = np.float32
    boxes_np = default_boxes.detach().cpu().to(torch.float32).numpy()
    centre = const("anchor_centre", boxes_np[:, :2])  # (A, 2)
    size = const("anchor_size", boxes_np[:, 2:])  # (A, 2)
    var_xy = const("var_xy", np.array(variances[:2], f32))
    var_wh = const("var_wh", np.array(variances[2:], f32))
    i64 = lambda s, v: const(s, np.array(v, np.int64))  # noqa: E731

    # 1. Decode, in BoxCoder.decode's order of operations: (N, A, 4) normalized xyxy.
    axis2 = i64("axis2", [2])
    d_xy = node("Slice", [box_name, i64("s0", [0]), i64("s2", [2]), axis2], "d_xy")  # (N, A, 2)
    d_wh = node("Slice", [box_name, i64("s2b", [2]), i64("s4", [4]), axis2], "d_wh")  # (N, A, 2)
    xy = node("Add", [node("Mul", [node("Mul", [d_xy, var_xy], "dxy_v"), size], "dxy_vs"), centre], "centre")
    log_wh = node("Clip", [node("Mul", [d_wh, var_wh], "dwh_v"), "", const("clip_max", np.array(BBOX_XFORM_CLIP, f32))], "log_wh")
    wh = node("Mul", [node("Exp", [log_wh], "exp_wh"), size], "wh")  # (N, A, 2)
    half = node("Div", [wh, const("two", np.array(2.0, f32))], "half")
    xyxy = node("Concat", [node("Sub", [xy, half], "xy1"), node("Add", [xy, half], "xy2")], "xyxy", axis=-1)
    boxes = node("Clip", [xyxy, const("zero", np.array(0.0, f32)), const("one", np.array(1.0, f32))], "boxes01")

    # 2. Class probabilities without the background, classes first for NMS: (N, C, A).
    probs = node("Softmax", [cls_name], "probs", axis=-1)  # (N, A, K)
    fg = node("Slice", [probs, i64("s1", [1]), i64("sK", [num_classes]), axis2], "fg")  # (N, A, C)
    fg_t = node("Transpose", [fg], "fg_t", perm=[0, 2, 1])  # (N, C, A)

    # 3. Top-k default boxes per (image, class), sorted by score as torch.topk.
    top_scores, top_anchor = node("TopK", [fg_t, i64("k", [k])], ["top_scores", "top_anchor"], axis=-1, largest=1, sorted=1)  # (N, C, k)

    # 4. One NMS batch entry per (image, class): boxes (N*C, k, 4), scores (N*C, 1, k).
    flat_anchor = node("Reshape", [top_anchor, i64("shape_nck1", [0, -1, 1])], "flat_anchor")  # (N, C*k, 1)
    cand = node("GatherND", [boxes, flat_anchor], "cand", batch_dims=1)  # (N, C*k, 4)
    nms_boxes = node("Reshape", [cand, i64("shape_bk4", [-1, k, 4])], "nms_boxes")  # (N*C, k, 4)
    nms_scores = node("Reshape", [top_scores, i64("shape_b1k", [-1, 1, k])], "nms_scores")  # (N*C, 1, k)
    selected = node(
        "NonMaxSuppression",
        [nms_boxes, nms_scores, i64("max_out", [k]), const("iou", np.array([nms_threshold], f32)),
         const("score_thr", np.array([score_threshold], f32))],
        "selected",
    )  # (S, 3): (image * C + class, 0, candidate)

    # 5. Survivors onto a (N, C*k) grid of -1 (every real score is >= 0), then the best D per image.
    sel_entry = node("Gather", [selected, i64("col0", 0)], "sel_entry", axis=1)  # (S,)
    sel_cand = node("Gather", [selected, i64("col2", 2)], "sel_cand", axis=1)  # (S,)
    sel_flat = node("Add", [node("Mul", [sel_entry, i64("k_scalar", k)], "sel_base"), sel_cand], "sel_flat")  # (S,)
    flat_scores = node("Reshape", [top_scores, i64("shape_flat", [-1])], "flat_scores")  # (N*C*k,)
    sel_scores = node("Gather", [flat_scores, sel_flat], "sel_scores", axis=0)  # (S,)
    empty = node(
        "ConstantOfShape", [node("Shape", [flat_scores], "flat_shape")], "empty",
        value=helper.make_tensor("minus_one", TensorProto.FLOAT, [1], [-1.0]),
    )  # (N*C*k,)
    axis1 = i64("axis1", [1])
    sel_index = node("Unsqueeze", [sel_flat, axis1], "sel_index")  # (S, 1)
    grid = node("ScatterND", [empty, sel_index, sel_scores], "grid_flat")
    grid = node("Reshape", [grid, i64("shape_grid", [-1, c * k])], "grid")  # (N, C*k)
    best, best_idx = node("TopK", [grid, i64("d", [d])], ["best", "best_idx"], axis=-1, largest=1, sorted=1)  # (N, D)

    valid = node("Greater", [best, const("half_neg", np.array(-0.5, f32))], "valid")  # (N, D)
    num = node("ReduceSum", [node("Cast", [valid], "valid_i64", to=TensorProto.INT64), axis1], "num", keepdims=0)  # (N,)
    labels = node("Add", [node("Div", [best_idx, i64("k_label", k)], "class0"), i64("one_i64", 1)], "labels_all")  # (N, D)
    anchor_grid = node("Reshape", [top_anchor, i64("shape_nck", [0, -1])], "anchor_grid")  # (N, C*k)
    det_anchor = node("GatherElements", [anchor_grid, best_idx], "det_anchor", axis=1)  # (N, D)
    det_anchor = node("Unsqueeze", [det_anchor, i64("axis_last", [-1])], "det_anchor3")  # (N, D, 1)
    det_boxes = node("GatherND", [boxes, det_anchor], "det_boxes", batch_dims=1)  # (N, D, 4)
    valid3 = node("Unsqueeze", [valid, i64("axis_last2", [-1])], "valid3")  # (N, D, 1)

    nodes.append(helper.make_node("Where", [valid3, det_boxes, const("zero_b", np.array(0.0, f32))], ["boxes"], name="boxes"))
    nodes.append(helper.make_node("Where", [valid, best, const("zero_s", np.array(0.0, f32))], ["scores"], name="scores"))
    nodes.append(helper.make_node("Where", [valid, labels, i64("zero_l", 0)], ["labels"], name="labels"))
    nodes.append(helper.make_node("Identity", [num], ["num_detections"], name="num_detections"))

    out = onnx.ModelProto()
    out.CopyFrom(model)
    out.graph.node.extend(nodes)
    out.graph.initializer.extend(inits)
    del out.graph.output[:]
    batch = outputs[cls_name].type.tensor_type.shape.dim[0]
    n_dim = batch.dim_param or batch.dim_value
    out.graph.output.extend(
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [n_dim, d, 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [n_dim, d]),
            helper.make_tensor_value_info("labels", TensorProto.INT64, [n_dim, d]),
            helper.make_tensor_value_info("num_detections", TensorProto.INT64, [n_dim]),
        ]
    )
    onnx.checker.check_model(out)
    return out


def postprocess_model(num_classes: int, default_boxes: torch.Tensor, opset: int, settings: PostprocessSettings):
    """The postprocess alone as an ONNX model: inputs ``cls_logits_in (N, A, K)``, ``bbox_deltas_in (N, A, 4)``.

    The same nodes as :func:`append_postprocess`, so it can be checked on chosen network outputs (no detections,
    more candidates than the cap, ...).
    """
    require("onnx", "ONNX export")
    from onnx import TensorProto, helper

    a = int(default_boxes.shape[0])
    graph = helper.make_graph(
        [
            helper.make_node("Identity", ["cls_logits_in"], ["cls_logits"]),
            helper.make_node("Identity", ["bbox_deltas_in"], ["bbox_deltas"]),
        ],
        "ssdlite_postprocess",
        [
            helper.make_tensor_value_info("cls_logits_in", TensorProto.FLOAT, ["batch", a, num_classes]),
            helper.make_tensor_value_info("bbox_deltas_in", TensorProto.FLOAT, ["batch", a, 4]),
        ],
        [
            helper.make_tensor_value_info("cls_logits", TensorProto.FLOAT, ["batch", a, num_classes]),
            helper.make_tensor_value_info("bbox_deltas", TensorProto.FLOAT, ["batch", a, 4]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return append_postprocess(model, default_boxes, settings)


def detections_from_padded(boxes, scores, labels, num_detections, image_sizes) -> list[dict[str, torch.Tensor]]:
    """Padded final outputs in :data:`~ssdlite.models.postprocess.OUTPUTS`'s order (this in-graph NMS's, or
    :mod:`ssdlite.deploy.static_postprocess`'s) -> the model's eval-mode list of ``{"boxes", "scores", "labels"}``
    in each image's pixels.

    Args:
        boxes ``(N, D, 4)`` normalized, scores ``(N, D)``, labels ``(N, D)``, num_detections ``(N,)``: numpy arrays
            or tensors;
        image_sizes: ``(H, W)`` per image.
    """
    boxes, scores, labels, num_detections = (torch.as_tensor(np.asarray(v)) for v in (boxes, scores, labels, num_detections))
    detections = []
    for i, (h, w) in enumerate(image_sizes):
        n = int(num_detections[i])
        scale = torch.tensor([w, h, w, h], dtype=torch.float32)
        detections.append(
            {
                "boxes": boxes[i, :n].float() * scale,
                "scores": scores[i, :n].float().clone(),
                "labels": labels[i, :n].to(torch.int64).clone(),
            }
        )
    return detections
