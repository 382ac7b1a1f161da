"""``ssdlite doctor``: checks that find silent training failures, each a plain function.

- :func:`check_registration`: modules hidden in plain containers, parameters not saved or not optimized;
- :func:`check_gradient_flow`: parameters with no, zero or non-finite gradient, per-part norms;
- :func:`check_labels` and :func:`check_inputs`: labels within 1..K, histogram, input range and normalization;
- :func:`check_input_dependence`: outputs that no longer depend on the image (collapsed features);
- :func:`check_coverage` and :func:`fit_anchors`: how well the default boxes fit the training boxes;
- :func:`check_overfit`: one batch, ~200 steps, loss down by 90% and boxes recovered.
"""

from ssdlite.doctor.collapse import check_input_dependence
from ssdlite.doctor.coverage import check_coverage
from ssdlite.models.anchor_fit import fit_anchors
from ssdlite.doctor.gradients import check_gradient_flow
from ssdlite.doctor.inputs import check_inputs, check_labels
from ssdlite.doctor.overfit import check_overfit
from ssdlite.doctor.registration import check_registration
from ssdlite.doctor.report import FAIL, PASS, WARN, Check, format_report
from ssdlite.doctor.run import run_checks, write_report

__all__ = [
    "FAIL",
    "PASS",
    "WARN",
    "Check",
    "check_coverage",
    "check_gradient_flow",
    "check_input_dependence",
    "check_inputs",
    "check_labels",
    "check_overfit",
    "check_registration",
    "fit_anchors",
    "format_report",
    "run_checks",
    "write_report",
]
