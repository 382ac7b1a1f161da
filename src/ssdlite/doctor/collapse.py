"""Input dependence: a detector whose outputs are the same for every image has stopped seeing.

The failure this catches was met on the raccoon recipe: with frozen BatchNorm statistics on
folded (TFLite-converted) backbone weights, SGD shifted channel means unchecked until the
stride-32 map was identical for every image. Training went on, the loss fell a little (the
heads learned the dataset's average box), validation mAP stalled, and nothing crashed.
``docs/training.md`` ("Frozen BatchNorm and folded weights") tells the story.

The measure, per feature map and per head output, is the spread across images relative to the
overall spread: ``std over images / std over everything``, averaged over positions. Different
photographs give ratios of order 0.1 to 1 on a healthy (trained or random) model; a collapsed
map gives 0 or 1e-4.
"""

from __future__ import annotations

import torch
from torch import nn

from ssdlite.doctor.report import FAIL, PASS, WARN, Check
from ssdlite.models.modes import evaluating

#: Below this relative spread a map no longer depends on its input.
COLLAPSED = 1e-3
#: Below this the dependence is weak enough to be worth a look.
WEAK = 1e-2


def _relative_spread(t: torch.Tensor) -> float:
    """``t`` is ``(N, ...)`` for N images: mean std over images / std over everything."""
    t = t.detach().float().flatten(1)  # (N, D)
    overall = t.std()
    if not torch.isfinite(overall) or overall == 0:
        return 0.0
    return float(t.std(dim=0).mean() / overall)


@torch.no_grad()
def check_input_dependence(model: nn.Module, images: list[torch.Tensor]) -> Check:
    """Run ``images`` (at least 2, different) through the model in eval mode and measure how much
    each feature map and the head outputs vary between them.

    FAIL when the head outputs (or a feature map) hardly vary: the detector gives every image the
    same boxes and scores. Every layer of the model is left in the mode it was in.
    """
    name = "input dependence"
    if len(images) < 2:
        return Check(name, WARN, "skipped: needs at least two images")
    with evaluating(model):
        x, _ = model.preprocess(images)  # (N, 3, S, S)
        maps = model.core.features(x)  # list of (N, C_l, H_l, W_l)
        cls_logits, bbox_deltas = model.core.head(maps)  # (N, A, K), (N, A, 4)
    input_spread = _relative_spread(x)
    spreads = {f"map {i} ({m.shape[1]}x{m.shape[2]}x{m.shape[3]})": _relative_spread(m) for i, m in enumerate(maps)}
    spreads["class logits"] = _relative_spread(cls_logits)
    spreads["box regression"] = _relative_spread(bbox_deltas)
    evidence = [f"input images: {input_spread:.3g}"] + [f"{k}: {v:.3g}" for k, v in spreads.items()]
    data = {"input": input_spread, "spreads": spreads, "collapsed_below": COLLAPSED, "weak_below": WEAK}
    if input_spread < COLLAPSED:
        return Check(name, WARN, "skipped: the sample images are (nearly) identical", evidence, data=data)

    collapsed = [k for k, v in spreads.items() if v < COLLAPSED]
    weak = [k for k, v in spreads.items() if COLLAPSED <= v < WEAK]
    if collapsed:
        return Check(
            name, FAIL,
            f"the outputs barely depend on the image: relative spread across {len(images)} images below {COLLAPSED:g} "
            f"in {', '.join(collapsed)}",
            evidence,
            suggestion="a frozen or broken normalization is the usual cause: if the model was trained with --freeze-bn, "
            "retrain with BatchNorm in train mode (see docs/training.md, 'Frozen BatchNorm and folded weights'); "
            "otherwise check the backbone weights and the input normalization",
            data=data,
        )
    if weak:
        return Check(name, WARN, f"weak dependence on the image in {', '.join(weak)} (relative spread below {WEAK:g})",
                     evidence, suggestion="compare with a freshly built model of the same architecture", data=data)
    low = min(spreads, key=spreads.get)
    return Check(name, PASS, f"every map and output varies with the image (lowest relative spread {spreads[low]:.3g}, {low})",
                 evidence, data=data)
