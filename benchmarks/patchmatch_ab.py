"""The numba PatchMatch engine of another commit against this tree's, side by side.

This VM's speed drifts by 1.3-2x within an hour, so two ``benchmarks/patchmatch.py``
runs made at different times cannot show a 10% change. This script runs both engines
**in one process, alternated** in ABBA order (neither always runs first): the base
commit's ``src/psal`` is extracted with ``git archive`` into a temporary folder and
imported as the package ``psal_ab_base`` (its compiled kernels cached in a temporary
``NUMBA_CACHE_DIR``, so neither tree's cache is touched), and each round times both
engines on the same inputs (the workloads of ``benchmarks/patchmatch.py``: k=3, 5
iterations). Reported: the minimum and median wall time over the rounds, the ratio of
the minima, and the quality of each engine's field on a fixed sample of query pixels
against the exact search (``dist ratio`` = mean nearest distance / exact, NN and kNN
recall), as in ``benchmarks/patchmatch.py``.

Usage:
    python benchmarks/patchmatch_ab.py --base e2a5351             # feat, rgb, rand at 256²
    python benchmarks/patchmatch_ab.py --base HEAD~3 --workloads rgb --size 512 --rounds 7
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

_CACHE = tempfile.TemporaryDirectory(prefix="psal-ab-numba-")
os.environ["NUMBA_CACHE_DIR"] = _CACHE.name  # before numba is imported

import importlib.util  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import environment, print_table  # noqa: E402
from patchmatch import ITERS, WORKLOADS, K, field_quality, make_inputs, sample_mask  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_base(rev: str, folder: str):
    """The ``cpu_numba`` module of commit ``rev``, imported from ``folder``."""
    archive = subprocess.run(["git", "-C", ROOT, "archive", rev, "src/psal"], check=True,
                             capture_output=True).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
    pkg = os.path.join(folder, "src", "psal")
    spec = importlib.util.spec_from_file_location(
        "psal_ab_base", os.path.join(pkg, "__init__.py"), submodule_search_locations=[pkg]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["psal_ab_base"] = module
    spec.loader.exec_module(module)
    return importlib.import_module("psal_ab_base.patchmatch.cpu_numba")


def _at(field, sel) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices, distances) of a (1, k, H, W) field as (N, k) tensors at flat pixels ``sel``."""
    return tuple(torch.as_tensor(a).reshape(K, -1)[:, sel].t() for a in field)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="git revision to compare against")
    ap.add_argument("--workloads", nargs="+", default=["feat", "rgb", "rand"],
                    choices=list(WORKLOADS))  # fmt: skip
    ap.add_argument("--size", type=int, default=256, help="map side (default 256)")
    ap.add_argument("--rounds", type=int, default=5, help="alternated rounds (default 5)")
    ap.add_argument(
        "--sample",
        type=int,
        default=1024,
        help="query pixels scored against the exact search (0: no quality)",
    )
    args = ap.parse_args(argv)

    def short(name: str) -> str:
        res = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "--verify", "--quiet",
                              f"{name}^{{commit}}"], capture_output=True, text=True)  # fmt: skip
        if res.returncode != 0:
            ap.error(f"--base: {name!r} is not a commit of the repository at {ROOT}")
        return res.stdout.strip()

    rev, head = short(args.base), short("HEAD")

    import psal
    from psal.patchmatch import cpu_numba as new

    with tempfile.TemporaryDirectory(prefix="psal-ab-src-") as folder:
        old = load_base(rev, folder)
        env = environment()
        env["load"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
        print("environment: " + ", ".join(f"{k}={v}" for k, v in env.items()), flush=True)
        rows = []
        for kind in args.workloads:
            q, k = (t.numpy() for t in make_inputs(kind, args.size, torch.device("cpu")))
            kw = dict(k=K, patch_size=WORKLOADS[kind], iters=ITERS, query_valid=None,
                      key_ok=None, seed=0, init=None)  # fmt: skip
            engines = {f"base {rev}": old, f"this tree ({head})": new}
            out, times = {}, {name: [] for name in engines}
            for eng in engines.values():  # compile (or load) and warm up
                eng.search_arrays(q, k, **kw)
            for r in range(args.rounds):  # ABBA order: no engine always runs first
                order = list(engines.items())
                for name, eng in order if r % 2 == 0 else order[::-1]:
                    t0 = time.perf_counter()
                    out[name] = eng.search_arrays(q, k, **kw)
                    times[name].append(time.perf_counter() - t0)
            if args.sample:
                mask = sample_mask(args.size, args.sample, torch.device("cpu"))
                ex = psal.patchmatch(torch.from_numpy(q), torch.from_numpy(k), k=K,
                                     patch_size=WORKLOADS[kind], backend="exact",
                                     query_valid=mask)  # fmt: skip
                sel = (torch.from_numpy(np.flatnonzero(mask.numpy().ravel())) if mask is not None
                       else torch.arange(args.size**2))  # fmt: skip
                exact = _at(ex, sel)
            base_min = min(times[f"base {rev}"])
            for name in engines:
                row = {"workload": f"{kind} {args.size}²", "engine": name,
                       "min (s)": f"{min(times[name]):.3f}",
                       "median (s)": f"{np.median(times[name]):.3f}",
                       "min / base": f"{min(times[name]) / base_min:.2f}"}  # fmt: skip
                if args.sample:
                    ratio, nn, knn = field_quality(*_at(out[name], sel), *exact)
                    row.update({"dist ratio": f"{ratio:.4f}", "NN recall": f"{nn:.3f}",
                                "kNN recall": f"{knn:.3f}"})  # fmt: skip
                rows.append(row)
            print(f"  {kind}: done", flush=True)
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\nwall time of search_arrays, {args.rounds} alternated rounds, "
          f"{env.get('numba_threads', '?')} threads; load at the end {load}")  # fmt: skip
    print_table(rows, list(rows[0]))


if __name__ == "__main__":
    main()
