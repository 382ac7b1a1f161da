"""ssdlite: SSDLite object detectors (MobileNetV2 paper, section 6.2) to train, evaluate, run and export."""

from ssdlite.models import SSDLite, build_model, ssdlite_mobilenet_v2

__version__ = "0.1.0"
__all__ = ["SSDLite", "build_model", "ssdlite_mobilenet_v2", "__version__"]
