"""Task-generic evaluation helpers: the metric-averaging loop and the results table.

Each task owns its metrics and its ``evaluate`` (the ``inpaint`` task's:
:mod:`psal.training.tasks.inpaint.evaluate`); :func:`mean_metrics` runs the loop
(batches, averaging of finite per-image values, progress bar) and :func:`format_table`
prints results. ``psal.training.evaluate`` and ``psal.training.METRICS`` (the package
names) are still the inpaint task's, re-exported.

Example:
    >>> print(format_table({"run": {"psnr": 31.234, "l1": 0.0123, "images": 4}}))
          psnr      l1  images
    ---  -----  ------  ------
    run  31.23  0.0123       4
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from .._deprecation import warn_deprecated

__all__ = ["format_table", "mean_metrics"]


@torch.no_grad()
def mean_metrics(
    batch_metrics: Callable[[Any], dict[str, torch.Tensor]],
    dataset: Dataset,
    *,
    batch_size: int = 8,
    num_workers: int = 0,
    limit: int | None = None,
    progress: bool = False,
    order: Sequence[str] = (),
) -> dict[str, float]:
    """Mean over ``dataset`` of the per-image metrics that ``batch_metrics`` computes.

    Args:
        batch_metrics: ``batch_metrics(batch) -> {name: (B,) tensor}``, ``batch`` as the
            data loader collates it (run under ``torch.no_grad``).
        dataset: the evaluation images, in a fixed order.
        batch_size: images per batch.
        num_workers: data loader processes.
        limit: evaluate only the first ``limit`` images.
        progress: show a progress bar on stderr.
        order: metric names in the order the result lists them first; the others follow
            in the order they first appear.

    Returns:
        ``{name: mean}`` over the images where the value is finite (NaN where none is),
        then ``"images"``, the number of images.
    """
    indices = list(range(len(dataset) if limit is None else min(limit, len(dataset))))
    subset = torch.utils.data.Subset(dataset, indices)
    loader = DataLoader(subset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(indices), desc="eval", unit="img", file=sys.stderr)
    for batch in loader:
        values_by_name = batch_metrics(batch)
        for name, values in values_by_name.items():
            finite = values[torch.isfinite(values)]
            sums[name] = sums.get(name, 0.0) + float(finite.sum())
            counts[name] = counts.get(name, 0) + int(finite.numel())
        if bar is not None and values_by_name:
            bar.update(next(iter(values_by_name.values())).shape[0])
    if bar is not None:
        bar.close()
    names = [n for n in order if n in sums] + [n for n in sums if n not in order]
    results: dict[str, float] = {n: sums[n] / counts[n] if counts[n] else math.nan for n in names}
    results["images"] = len(indices)
    return results


def format_table(rows: dict[str, dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A plain-text table: one row per named result, one column per metric.

    Args:
        rows: ``{row name: {column: value}}``; floats print with 4 decimals (2 for
            columns whose name starts with ``psnr``).
        columns: preferred column order; the other columns follow, sorted. None: the
            columns in the order they first appear in ``rows``.
    """
    if columns is None:
        columns = list(dict.fromkeys(k for r in rows.values() for k in r))
    cols = [c for c in columns if any(c in r for r in rows.values())]
    extra = sorted({k for r in rows.values() for k in r} - set(cols))
    cols += extra
    head = ["", *cols]
    lines = [head]
    for name, r in rows.items():
        cells = [name]
        for c in cols:
            v = r.get(c, "")
            if isinstance(v, float):
                cells.append(f"{v:.2f}" if c.startswith("psnr") else f"{v:.4f}")
            else:
                cells.append(str(v))
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = []
    for i, line in enumerate(lines):
        out.append(
            "  ".join(
                cell.rjust(widths[j]) if j else cell.ljust(widths[j]) for j, cell in enumerate(line)
            )
        )
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


_MOVED = ("METRICS", "evaluate", "image_metrics")


def __getattr__(name: str) -> Any:
    """The inpaint task's names, once here: still importable, with a warning."""
    if name in _MOVED:
        warn_deprecated(
            f"psal.training.evaluate.{name} moved to psal.training.tasks.inpaint.evaluate"
            + (f"; psal.training.{name} still works" if name != "image_metrics" else "")
        )
        import importlib

        return getattr(importlib.import_module(".tasks.inpaint.evaluate", __package__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
