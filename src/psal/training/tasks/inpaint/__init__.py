"""The ``inpaint`` task: DeepFill v1 (and v2's SN-PatchGAN critic) training."""

from .config import InpaintConfig, InpaintEvalConfig
from .task import InpaintTask, crop_boxes

__all__ = ["InpaintConfig", "InpaintEvalConfig", "InpaintTask", "crop_boxes"]
