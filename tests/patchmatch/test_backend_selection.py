"""Backend selection: precedence of backend=, use_backend, set_default_backend, env."""

from __future__ import annotations

import threading

import pytest
import torch

import psal
from psal.patchmatch import backends

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    monkeypatch.delenv(backends.ENV_VAR, raising=False)
    psal.patchmatch.set_default_backend(None)
    yield
    psal.patchmatch.set_default_backend(None)


def test_precedence_argument_block_process_environment_device(monkeypatch):
    monkeypatch.setenv(backends.ENV_VAR, "torch")
    assert backends.resolve_backend("auto", CPU) == "torch"  # environment over device rule
    psal.patchmatch.set_default_backend("exact")
    assert backends.resolve_backend("auto", CPU) == "exact"  # process over environment
    with psal.patchmatch.use_backend("numba"):
        assert backends.resolve_backend("auto", CPU) == "numba"  # block over process
        assert backends.resolve_backend("torch", CPU) == "torch"  # argument over all
        with psal.patchmatch.use_backend(None):  # None: the rule (environment here)
            assert backends.resolve_backend("auto", CPU) == "torch"
        assert backends.resolve_backend("auto", CPU) == "numba"
    assert backends.resolve_backend("auto", CPU) == "exact"
    # an explicit backend never reads a bad environment variable
    monkeypatch.setenv(backends.ENV_VAR, "nope")
    assert backends.resolve_backend("exact", CPU) == "exact"


@pytest.mark.parametrize("bad", ["Exact", "cuda", "", None, 3])
def test_bad_backend_names_are_clear_errors(bad):
    q = torch.rand(1, 1, 4, 4)
    with pytest.raises(ValueError, match="backend must be one of 'auto', 'exact'"):
        psal.patchmatch(q, q, 1, 1, backend=bad)
    if bad is not None:
        with pytest.raises(ValueError, match="backend must be one of 'exact'"):
            psal.patchmatch.set_default_backend(bad)
        with pytest.raises(ValueError, match="backend must be one of 'exact'"):
            with psal.patchmatch.use_backend(bad):
                pass
    assert backends.resolve_backend("auto", CPU) == "numba"  # nothing was left set


def test_use_backend_blocks_overlapping_in_two_threads_restore_the_default():
    # A enters, B enters, A leaves, B leaves: each block restored the value it saw on
    # entry, so B's exit set the process default to A's backend for good (fails before)
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def thread_a():
        with psal.patchmatch.use_backend("exact"):
            a_in.set()
            b_in.wait(10)
        a_out.set()

    def thread_b():
        a_in.wait(10)
        with psal.patchmatch.use_backend("torch"):
            b_in.set()
            a_out.wait(10)
            seen["inside"] = backends.resolve_backend("auto", CPU)

    threads = [threading.Thread(target=thread_a), threading.Thread(target=thread_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert seen["inside"] == "torch"  # B's block still open after A's closed
    assert backends._default is None
    assert backends.resolve_backend("auto", CPU) == "numba"
