"""Training data: image folders, hole masks, LR/HR pairs, resumable sampling."""

from .folder import IMAGE_EXTENSIONS, InpaintingFolder, list_images, split_files
from .masks import MASK_KINDS, Box, MaskGenerator, box_mask, brush_stroke_mask, random_box
from .sampler import StreamSampler
from .superres import SuperResolutionFolder, degrade, usable_images

__all__ = [
    "IMAGE_EXTENSIONS",
    "MASK_KINDS",
    "Box",
    "InpaintingFolder",
    "MaskGenerator",
    "StreamSampler",
    "SuperResolutionFolder",
    "box_mask",
    "brush_stroke_mask",
    "degrade",
    "list_images",
    "random_box",
    "split_files",
    "usable_images",
]
