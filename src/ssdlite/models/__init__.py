"""The SSDLite network, its configuration and its box machinery.

:class:`ModelConfig` describes a detector; :func:`build_model` (or its keyword form
:func:`create_model`) builds it; :mod:`ssdlite.models.io` saves and loads trained ones.
"""

from ssdlite.models.anchors import DefaultBoxes
from ssdlite.models.backbone import MobileNetV2Backbone
from ssdlite.models.box_coder import BoxCoder
from ssdlite.models.config import ARCHS, HEADS, NECKS, ModelConfig
from ssdlite.models.extras import ExtraLayers
from ssdlite.models.factory import build_model, create_model, ssdlite_mobilenet_v2
from ssdlite.models.fpn import FPNNeck
from ssdlite.models.heads import SSDLiteHead
from ssdlite.models.init_from import init_from
from ssdlite.models.loss import multibox_loss
from ssdlite.models.matcher import match
from ssdlite.models.mobilenet_v1 import MobileNetV1Backbone
from ssdlite.models.mobilenet_v3 import MobileNetV3Backbone
from ssdlite.models.postprocess import PostProcess
from ssdlite.models.ssdlite import SSDLite, SSDLiteCore
from ssdlite.models.transform import Preprocess
from ssdlite.models.vgg import VGG16Backbone, VGGExtras

__all__ = [
    "ARCHS",
    "HEADS",
    "NECKS",
    "BoxCoder",
    "DefaultBoxes",
    "ExtraLayers",
    "FPNNeck",
    "MobileNetV1Backbone",
    "MobileNetV2Backbone",
    "MobileNetV3Backbone",
    "ModelConfig",
    "PostProcess",
    "Preprocess",
    "SSDLite",
    "SSDLiteCore",
    "SSDLiteHead",
    "VGG16Backbone",
    "VGGExtras",
    "build_model",
    "create_model",
    "init_from",
    "match",
    "multibox_loss",
    "ssdlite_mobilenet_v2",
]
