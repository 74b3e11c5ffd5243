"""The ``upscale`` task: single-image super-resolution (EDSR with PSAL attention)."""

from .task import UpscaleConfig, UpscaleEvalConfig, UpscaleTask, sr_metrics

__all__ = ["UpscaleConfig", "UpscaleEvalConfig", "UpscaleTask", "sr_metrics"]
