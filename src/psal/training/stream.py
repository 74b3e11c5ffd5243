"""The training data of one process: an endless, resumable stream of batches.

The engine reads a task's training set through a :class:`~psal.data.StreamSampler`:
the dataset's ``__getitem__`` receives ``(index, seed)`` keys (the seed drives that
sample's random crop, mask, degradation...) and returns a dict of tensors. The stream's
state is two values stored with every checkpoint: the number of samples this rank has
consumed (``position``) and a running hash of the ``(index, seed)`` keys it consumed
(``digest``, to check that a resumed run saw the same data, crops and masks as an
uninterrupted one, and that the ranks of a run saw different data), whatever the
dataset returns.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..data import StreamSampler
from .distributed import DistInfo

__all__ = ["DataStream"]


class DataStream:
    """Batches of ``dataset`` for this rank, on ``device``, resumable at ``position``."""

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        seed: int,
        info: DistInfo,
        device: torch.device,
        num_workers: int = 0,
    ) -> None:
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self.info, self.device, self.num_workers = info, device, num_workers
        self.position = 0  # samples of this rank's stream consumed so far
        self.digest = ""  # running hash of the (index, seed) keys consumed
        self._iter: Iterator[dict[str, torch.Tensor]] | None = None
        self._keys: StreamSampler | None = None

    def _sampler(self) -> StreamSampler:
        return StreamSampler(
            len(self.dataset),
            seed=self.seed,
            rank=self.info.rank,
            world_size=self.info.world_size,
            start=self.position,
        )

    def _loader(self) -> Iterator[dict[str, torch.Tensor]]:
        sampler = self._sampler()
        loader = DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            drop_last=True,
            pin_memory=self.device.type == "cuda",
            # Its own generator: creating the iterator must not draw from the global RNG
            # (a resumed run creates one at a different step).
            generator=torch.Generator().manual_seed(self.seed),
        )
        return iter(loader)

    def next(self) -> dict[str, torch.Tensor]:
        """The next batch, moved to the device."""
        if self._iter is None:
            self._iter = self._loader()
            self._keys = self._sampler()
        batch = next(self._iter)
        n = len(next(iter(batch.values())))
        # the keys the loader's sampler gave this batch (a pure function of the position)
        keys = self._keys.keys(self.position, n)  # type: ignore[union-attr]
        h = hashlib.sha1(self.digest.encode())
        h.update(np.asarray(keys, dtype=np.uint64).tobytes())
        self.digest = h.hexdigest()
        self.position += n
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def seek(self, position: int, digest: str = "") -> None:
        """Continue from ``position`` (a checkpoint's), restarting the loader."""
        self.position, self.digest, self._iter = int(position), str(digest), None
