"""The data stream's digest: what a rank consumed, whatever the dataset returns."""

import torch

from psal.training.distributed import DistInfo
from psal.training.stream import DataStream


class _NoIndex(torch.utils.data.Dataset):
    """Samples drawn from their ``(index, seed)`` key, with no ``index`` entry (as colorize)."""

    def __len__(self):
        return 5

    def __getitem__(self, key):
        index, seed = key
        g = torch.Generator().manual_seed(int(seed))
        return {"x": torch.full((2,), float(index)) + torch.rand(2, generator=g)}


def _stream(rank=0, world=1, seed=0):
    info = DistInfo(rank=rank, world_size=world)
    return DataStream(_NoIndex(), 2, seed, info, torch.device("cpu"))


def _digest(stream, batches):
    for _ in range(batches):
        stream.next()
    return stream.digest


def test_digest_covers_datasets_without_an_index_entry():
    # the digest hashed batch["index"] only: colorize's pairs have none, so its digest
    # stayed "" (a resume check and the two-rank check that could not fail)
    a = _digest(_stream(), 3)
    assert a and a == _digest(_stream(), 3)
    assert a != _digest(_stream(seed=1), 3)  # other crops and order: another digest
    assert _digest(_stream(0, 2), 3) != _digest(_stream(1, 2), 3)  # ranks see other data
    resumed = _stream()
    resumed.seek(4, _digest(_stream(), 2))  # 2 batches of 2 consumed
    assert _digest(resumed, 1) == a
