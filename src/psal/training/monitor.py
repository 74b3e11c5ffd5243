"""What a run shows and logs on rank 0: progress bar, steps per second, TensorBoard.

Nothing is written before the first step has completed: :meth:`Monitor.start` then
writes ``config.json`` and opens the TensorBoard writer (``out/tensorboard``). A resumed
run purges what an earlier one logged after the step it resumes from (TensorBoard's
``purge_step``), so that the steps it logs again are shown once.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any

from ..utils.jsonfile import write_json

__all__ = ["Monitor"]


def summary_writer_class() -> Any:
    """TensorBoard's ``SummaryWriter``; a clear ImportError if it is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise ImportError(
            "TensorBoard logging needs the 'tensorboard' package: pip install "
            "'psal[train]', or turn it off (--no-tensorboard / tensorboard=false)"
        ) from err
    return SummaryWriter


class Monitor:
    """Rank 0's progress bar and TensorBoard writer (does nothing on other ranks).

    Args:
        out: run folder.
        config: dict written to ``config.json`` at :meth:`start`.
        enabled: True on rank 0.
        tensorboard: write TensorBoard logs (fails now if the package is missing).
        progress: show a progress bar.
    """

    def __init__(
        self, out: Path, config: dict, enabled: bool, tensorboard: bool, progress: bool
    ) -> None:
        self.out, self.config, self.enabled = out, config, enabled
        # Fail now, not after the first step, if TensorBoard is wanted but missing.
        self._writer_class = summary_writer_class() if tensorboard and enabled else None
        self.progress = progress and enabled
        self.writer: Any = None
        self.bar: Any = None
        self._clock = (time.perf_counter(), 0)
        self._first_step = 0  # the step the run starts (or resumes) from

    @property
    def images(self) -> bool:
        """True when images can be logged."""
        return self._writer_class is not None

    def open_bar(self, step: int, end: int) -> None:
        """Start the progress bar at ``step`` of ``end`` (the step the run resumes from)."""
        self._clock = (time.perf_counter(), step)
        if self.writer is None:
            self._first_step = step
        if self.progress:
            from tqdm import tqdm

            self.bar = tqdm(total=end, initial=step, desc="train", unit="step", file=sys.stderr)

    def start(self) -> None:
        """After the first completed step: write ``config.json``, open TensorBoard.

        Events an earlier run logged after the step this one started from (given to
        :meth:`open_bar`: the checkpoint's step) are purged: that run stopped after
        them, and this one logs those steps again.
        """
        if not self.enabled:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        write_json(self.out / "config.json", self.config)
        if self._writer_class is not None and self.writer is None:
            self.writer = self._writer_class(
                str(self.out / "tensorboard"), purge_step=self._first_step + 1
            )

    def advance(self) -> None:
        """One step done."""
        if self.bar is not None:
            self.bar.update(1)

    def scalars(self, logs: dict[str, float], step: int, shown: tuple[str, ...]) -> None:
        """Log ``logs`` (adds ``steps_per_s`` since the last call); show ``shown`` keys."""
        now = time.perf_counter()
        logs["steps_per_s"] = (step - self._clock[1]) / max(now - self._clock[0], 1e-9)
        self._clock = (now, step)
        if self.bar is not None:
            self.bar.set_postfix({k: f"{logs[k]:.3g}" for k in shown if k in logs})
        if self.writer is not None:
            for k, v in logs.items():
                self.writer.add_scalar(f"train/{k}", v, step)

    def validation(self, results: dict[str, float], step: int, line: str) -> None:
        """Log validation ``results`` and print ``line``."""
        if self.writer is not None:
            for k, v in results.items():
                if isinstance(v, float) and math.isfinite(v):
                    self.writer.add_scalar(f"val/{k}", v, step)
        if results and self.enabled:
            text = f"step {step}: {line}"
            if self.bar is not None:
                self.bar.write(text, file=sys.stderr)
            else:
                print(text, file=sys.stderr)

    def close_bar(self) -> None:
        """Close the progress bar and flush TensorBoard."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        """Close everything."""
        self.close_bar()
        if self.writer is not None:
            self.writer.close()
            self.writer = None
