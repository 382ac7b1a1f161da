"""The SSDLite network and its box machinery."""

from ssdlite.models.anchors import DefaultBoxes
from ssdlite.models.backbone import MobileNetV2Backbone
from ssdlite.models.box_coder import BoxCoder
from ssdlite.models.extras import ExtraLayers
from ssdlite.models.heads import SSDLiteHead
from ssdlite.models.loss import multibox_loss
from ssdlite.models.matcher import match
from ssdlite.models.postprocess import PostProcess
from ssdlite.models.ssdlite import SSDLite, SSDLiteCore, build_model, ssdlite_mobilenet_v2
from ssdlite.models.transform import Preprocess

__all__ = [
    "BoxCoder",
    "DefaultBoxes",
    "ExtraLayers",
    "MobileNetV2Backbone",
    "PostProcess",
    "Preprocess",
    "SSDLite",
    "SSDLiteCore",
    "SSDLiteHead",
    "build_model",
    "match",
    "multibox_loss",
    "ssdlite_mobilenet_v2",
]
