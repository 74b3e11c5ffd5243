"""The ``colorize`` task: the reference-guided colorizer (:class:`psal.models.GuidedColorizer`)."""

from .config import ColorizeConfig, ColorizeEvalConfig
from .task import ColorizeTask, colorize_metrics

__all__ = ["ColorizeConfig", "ColorizeEvalConfig", "ColorizeTask", "colorize_metrics"]
