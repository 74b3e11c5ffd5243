"""Data for training inpainting networks: image folders, hole masks, resumable sampling."""

from .folder import IMAGE_EXTENSIONS, InpaintingFolder, list_images, split_files
from .masks import MASK_KINDS, Box, MaskGenerator, box_mask, brush_stroke_mask, random_box
from .sampler import StreamSampler

__all__ = [
    "IMAGE_EXTENSIONS",
    "MASK_KINDS",
    "Box",
    "InpaintingFolder",
    "MaskGenerator",
    "StreamSampler",
    "box_mask",
    "brush_stroke_mask",
    "list_images",
    "random_box",
    "split_files",
]
