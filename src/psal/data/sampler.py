"""An endless, resumable, rank-sharded stream of ``(index, seed)`` sample keys.

The stream of a run is one global sequence: the concatenation of seeded permutations of
the dataset, one per epoch. Element ``j`` of that sequence goes to rank ``j % world_size``,
so the ranks of a distributed run see disjoint samples of each epoch, and every element
carries its own seed (for the random crop and mask of that sample, see
:class:`psal.data.InpaintingFolder`). The position of a rank in its stream is a single
integer, stored in checkpoints: a sampler rebuilt with ``start=position`` continues the
stream exactly, whatever the number of loader workers.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

from .._checks import check_int

__all__ = ["StreamSampler"]


class StreamSampler(Sampler):
    """Endless sampler of ``(index, seed)`` keys, sharded across ranks.

    Args:
        num_samples: dataset length (>= 1).
        seed: seed of the shuffles and of the per-sample seeds.
        rank: this process's rank.
        world_size: number of processes.
        start: number of keys of this rank's stream to skip (the resume position).
        shuffle: shuffle each epoch (otherwise the dataset order, repeated).

    Example:
        >>> s = StreamSampler(5, seed=0, rank=1, world_size=2)
        >>> keys = [k for k, _ in zip(s, range(3))]
        >>> [k[0] for k in keys] == [k[0] for k in s.keys(0, 3)]
        True
    """

    def __init__(
        self,
        num_samples: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        start: int = 0,
        shuffle: bool = True,
    ) -> None:
        self.num_samples = check_int(num_samples, "num_samples", 1)
        self.seed = check_int(seed, "seed", 0)
        self.world_size = check_int(world_size, "world_size", 1)
        self.rank = check_int(rank, "rank", 0)
        if self.rank >= self.world_size:
            raise ValueError(f"rank must be < world_size={self.world_size}, got {self.rank}")
        self.start = check_int(start, "start", 0)
        self.shuffle = bool(shuffle)
        self._perm_epoch = -1
        self._perm = np.arange(self.num_samples)

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._perm_epoch:
            if self.shuffle:
                self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.num_samples)
            self._perm_epoch = epoch
        return self._perm

    def key(self, position: int) -> tuple[int, int]:
        """The key at ``position`` of this rank's stream."""
        j = position * self.world_size + self.rank
        epoch, offset = divmod(j, self.num_samples)
        index = int(self._permutation(epoch)[offset])
        seed = int(np.random.SeedSequence([self.seed, j]).generate_state(1, np.uint64)[0]) >> 1
        return index, seed

    def keys(self, start: int, count: int) -> list[tuple[int, int]]:
        """``count`` keys of this rank's stream from ``start``."""
        return [self.key(p) for p in range(start, start + count)]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        position = self.start
        while True:
            yield self.key(position)
            position += 1
