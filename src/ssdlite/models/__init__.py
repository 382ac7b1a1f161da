"""The SSDLite network and its box machinery."""

from ssdlite.models.anchors import DefaultBoxes
from ssdlite.models.backbone import MobileNetV2Backbone
from ssdlite.models.box_coder import BoxCoder
from ssdlite.models.extras import ExtraLayers
from ssdlite.models.heads import SSDLiteHead
from ssdlite.models.loss import multibox_loss
from ssdlite.models.matcher import match
from ssdlite.models.postprocess import PostProcess
from ssdlite.models.fpn import FPNNeck
from ssdlite.models.init_from import init_from
from ssdlite.models.mobilenet_v1 import MobileNetV1Backbone
from ssdlite.models.mobilenet_v3 import MobileNetV3Backbone
from ssdlite.models.ssdlite import ARCHS, SSDLite, SSDLiteCore, build_model, create_model, ssdlite_mobilenet_v2
from ssdlite.models.vgg import VGG16Backbone, VGGExtras
from ssdlite.models.transform import Preprocess

__all__ = [
    "ARCHS",
    "BoxCoder",
    "DefaultBoxes",
    "ExtraLayers",
    "FPNNeck",
    "MobileNetV1Backbone",
    "MobileNetV2Backbone",
    "MobileNetV3Backbone",
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
