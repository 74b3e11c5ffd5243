"""Training data: image folders, hole masks, LR/HR pairs, resumable sampling."""

from .colorize import ColorizationPairs, PairSource, find_pair_sources, split_sources
from .folder import (
    IMAGE_EXTENSIONS,
    InpaintingFolder,
    list_images,
    readable_images,
    split_files,
)
from .masks import MASK_KINDS, Box, MaskGenerator, box_mask, brush_stroke_mask, random_box
from .sampler import StreamSampler
from .superres import SuperResolutionFolder, degrade, usable_images

__all__ = [
    "IMAGE_EXTENSIONS",
    "MASK_KINDS",
    "Box",
    "ColorizationPairs",
    "InpaintingFolder",
    "MaskGenerator",
    "PairSource",
    "StreamSampler",
    "SuperResolutionFolder",
    "box_mask",
    "brush_stroke_mask",
    "degrade",
    "find_pair_sources",
    "list_images",
    "random_box",
    "readable_images",
    "split_files",
    "split_sources",
    "usable_images",
]
