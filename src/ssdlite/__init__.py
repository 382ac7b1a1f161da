"""ssdlite: SSDLite object detectors (MobileNetV2 paper, section 6.2) to train, evaluate, run and export."""

from ssdlite.models import ModelConfig, SSDLite, build_model, create_model, ssdlite_mobilenet_v2

__version__ = "0.1.0"
__all__ = ["ModelConfig", "Predictor", "SSDLite", "build_model", "create_model", "ssdlite_mobilenet_v2", "__version__"]


def __getattr__(name: str):
    # Predictor pulls in the data package (decoding); import it only when asked for.
    if name == "Predictor":
        from ssdlite.deploy.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'ssdlite' has no attribute {name!r}")
