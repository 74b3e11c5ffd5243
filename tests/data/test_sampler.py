import itertools

import pytest

from psal.data import StreamSampler


def take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


def test_ranks_are_disjoint_and_cover_each_epoch():
    n = 10
    r0 = take(StreamSampler(n, seed=1, rank=0, world_size=2), 5)
    r1 = take(StreamSampler(n, seed=1, rank=1, world_size=2), 5)
    idx0, idx1 = {k[0] for k in r0}, {k[0] for k in r1}
    assert idx0.isdisjoint(idx1) and idx0 | idx1 == set(range(n))
    seeds = [k[1] for k in r0 + r1]
    assert len(set(seeds)) == len(seeds)


def test_epochs_reshuffle_and_repeat_by_seed():
    s = take(StreamSampler(6, seed=0), 12)
    assert sorted(k[0] for k in s[:6]) == list(range(6))
    assert [k[0] for k in s[:6]] != [k[0] for k in s[6:]]
    assert take(StreamSampler(6, seed=0), 12) == s
    assert take(StreamSampler(6, seed=1), 12) != s


def test_start_resumes_the_stream():
    full = take(StreamSampler(7, seed=2, rank=1, world_size=3), 20)
    assert take(StreamSampler(7, seed=2, rank=1, world_size=3, start=9), 11) == full[9:]


def test_bad_arguments():
    with pytest.raises(ValueError, match="rank"):
        StreamSampler(5, rank=2, world_size=2)
    with pytest.raises(ValueError, match="num_samples"):
        StreamSampler(0)
