"""Networks: DeepFill v1 inpainting, EDSR super-resolution, the guided colorizer, inference.

DeepFill v1 has swappable attention; EDSR super-resolution has PSAL non-local blocks
(``edsr_psal``, :class:`Upscaler`); the guided colorizer (``guided_colorizer``,
:class:`Colorizer`) has PSAL at several scales.

Networks are registered by name (:mod:`psal.models.registry`) for configs, checkpoints
and the command line.
"""

from ..layers.registry import build_attention, list_attentions
from . import losses
from .colorizer import Colorizer, GuidedColorizer
from .critics import SNPatchGANCritic, WGANCritic
from .deepfill import DeepFillV1, InpaintOutput
from .edsr import EDSRPSAL
from .inpainter import Inpainter
from .io import load_weights, resolve_weights_file, save_weights
from .registry import ATTENTIONS, MODELS, create_model, list_models, register_model
from .upscaler import Upscaler

__all__ = [
    "ATTENTIONS",
    "EDSRPSAL",
    "MODELS",
    "Colorizer",
    "DeepFillV1",
    "GuidedColorizer",
    "InpaintOutput",
    "Inpainter",
    "SNPatchGANCritic",
    "Upscaler",
    "WGANCritic",
    "build_attention",
    "create_model",
    "list_attentions",
    "list_models",
    "load_weights",
    "losses",
    "register_model",
    "resolve_weights_file",
    "save_weights",
]
