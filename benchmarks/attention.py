"""Attention layers against feature size: time and peak memory, forward and forward+backward.

Self-attention (query = key = value = one feature map, ``requires_grad`` for the backward
pass) on ``(B, 64, S, S)`` features of a fixed random 3-layer CNN applied to scikit-image
photos (coherent, like real CNN features, so PatchMatch sees a realistic search), for S
from 32 to 512 on CPU (to 2048 on CUDA). The layers:

* ``psal-center`` / ``psal-patch``: :func:`psal.ps_attention`, k=3 neighbours, 3x3
  patches, 5 PatchMatch iterations, ``--temperature`` (default 0.5, the order of the
  3rd-neighbour patch distances of these features), aggregation ``"center"`` /
  ``"patch"``; the backend is ``"auto"`` (numba on CPU, torch on CUDA). Memory
  O(k·H·W·C).
* ``contextual``: :func:`psal.contextual_attention` with DeepFill's defaults (3x3 patches,
  rate 2, fuse_k 3, softmax scale 10), called **without a mask**: every pixel attends
  every background patch. Its score matrix is ``(H·W / rate²)²`` per sample.
* ``dense``: :func:`psal.patch_attention` with ``k=None``: exact attention over all
  ``H·W`` key patches, same distances and temperature as PSAttention (``"center"``).
  It never holds the full ``(H·W)²`` score matrix: query chunks of at most 128 MB of
  scores, checkpointed under autograd, so its limit is time, O((H·W)²·C·p²).
* ``sdpa``: :func:`torch.nn.functional.scaled_dot_product_attention`, one head, query =
  key = the unfolded 3x3 patches (C·9 = 576 dims, reflection border as psal), value =
  the centre pixel's features (64 dims), default scale 1/sqrt(576): dot-product
  attention over patches, what stock PyTorch offers. Because the value dimension
  differs from the query's, PyTorch's CPU dispatcher picks the *math* backend, which
  materialises the ``(H·W)²`` score matrix (and its softmax and gradients).

Each (layer, size) case runs in a fresh spawned process, so its peak memory is its own:
on CPU the growth of the resident size over one forward+backward pass (high-water mark
reset just before it through ``/proc/self/clear_refs``, after ``malloc_trim``), on CUDA
``torch.cuda.max_memory_allocated`` above the inputs. Inputs are not counted; the input
gradient is. The process runs the layer once on a tiny map (numba compilation, lazy
initialisation), then once at full size (warm-up), then the timed runs: the median of
``--repeats`` runs (more for fast cases: about 2 s of runs, at most 15, unless
``--repeats 1``). "fwd" is inference (``torch.no_grad``); "fwd+bwd" is the forward with
autograd plus the backward of ``(out * w).sum()``, ``w`` fixed random weights. Devices
are synchronised before reading clocks. A case whose warm-up took more than ``--slow``
seconds is run once only: that run gives the forward+backward time and the peak memory,
plus one forward run. On CPU, the peak of the other cases is measured in a second
process where glibc ``mmap``s every buffer of 128 KiB or more, so that freed memory
leaves the resident size at once (``MALLOC_ENV``; it slows allocations, so timings use
the default settings; skipped with ``--repeats 1``, the quick mode). The slow cases'
buffers are mostly above glibc's 32 MiB mmap ceiling, so the default settings measure
them well.

Cases that cannot run are skipped, never attempted: the dense layers that materialise
scores (``sdpa``, ``contextual``) when their estimated peak (a measured multiple of the
score-matrix bytes) exceeds ``--mem-limit``, and every dense layer beyond ``--dense-max``
(matching resolution: ``contextual`` matches at S / rate), where the time, extrapolated
as (H·W)² from the largest size measured, is prohibitive. The table says which and why.
PSAttention and the ``conv3x3`` yardstick are never skipped. On CUDA, ``sdpa`` is not
pre-skipped (PyTorch may pick a memory-efficient kernel there); an out-of-memory error is
caught and reported. A case whose process dies is reported as failed, with its exit
code, and the script then exits with status 1.

Prints a Markdown table, then PSAttention's speed-up and memory ratio against each dense
layer at the sizes where both ran. With ``--out PREFIX`` also writes ``PREFIX.csv``,
``PREFIX.json`` (rows and environment) and ``PREFIX.png`` (log-log plot: fwd+bwd time
and peak memory against pixels, one line per layer).

Usage:
    python benchmarks/attention.py                          # full table (~15 min, 2 cores)
    python benchmarks/attention.py --quick                  # sanity check (~1 min)
    python benchmarks/attention.py --out docs/attention     # also CSV, JSON and plot
    python benchmarks/attention.py --device cuda            # up to 2048x2048
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import multiprocessing as mp
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (
    cnn_features,
    environment,
    peak_end,
    peak_start,
    print_table,
    set_threads,
    skimage_photo,
    sync,
    write_json,
)

CHANNELS, K, PATCH, ITERS, RATE = 64, 3, 3, 5, 2
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
LAYERS = {
    "psal-center": "PSAttention center",
    "psal-patch": "PSAttention patch",
    "contextual": "ContextualAttention",
    "dense": "PatchAttention (dense)",
    "sdpa": "SDPA (3x3 patches)",
    "conv3x3": "Conv2d 3x3, 64->64 (yardstick)",
}
DENSE = ("contextual", "dense", "sdpa")
# Estimated peak memory of a forward+backward pass, in multiples of the score-matrix bytes:
# the measured ratios rounded up (CPU, batch 1: contextual 5.3 at 128x128 and 5.1 at
# 256x256, for the scores, fused scores, softmax and their gradients; sdpa's math backend
# 3.1 at 128x128, for the scores, softmax and their gradients).
PEAK_PER_SCORE_BYTE = {"contextual": 6.0, "sdpa": 4.0}
GiB = 2**30


def score_bytes(layer: str, size: int, batch: int) -> int:
    """Bytes of the float32 score matrix (all pairs) a layer would need for one map."""
    n = size * size
    if layer.startswith("psal"):
        return batch * n * K * (PATCH * PATCH if layer == "psal-patch" else 1) * 4
    if layer == "contextual":
        n = math.ceil(size / RATE) ** 2
    return batch * n * n * 4


def human_bytes(b: float) -> str:
    for unit, scale in (("TiB", 2**40), ("GiB", GiB), ("MiB", 2**20)):
        if b >= scale:
            return f"{b / scale:.3g} {unit}"
    return f"{b / 2**10:.3g} KiB"


def human_time(s: float) -> str:
    if s >= 3600:
        return f"{s / 3600:.2g} h"
    if s >= 60:
        return f"{s / 60:.2g} min"
    return f"{s:.2g} s"


def make_features(size: int, batch: int, device: torch.device) -> torch.Tensor:
    photos = [skimage_photo(PHOTOS[i % len(PHOTOS)], size) for i in range(batch)]
    return cnn_features(torch.cat(photos).to(device), CHANNELS).contiguous()  # on the device


def make_layer(layer: str, temperature: float):
    """``fn(x) -> (B, C, H, W)``: the layer applied as self-attention on x."""
    import torch.nn.functional as F

    import psal
    from psal.patchmatch import unfold_patches

    if layer.startswith("psal"):
        agg = layer.split("-")[1]
        return lambda x: psal.ps_attention(
            x,
            x,
            x,
            k=K,
            patch_size=PATCH,
            iters=ITERS,
            temperature=temperature,
            aggregation=agg,
            seed=0,
        )
    if layer == "contextual":
        return lambda x: psal.contextual_attention(x, x, x, patch_size=PATCH, rate=RATE)
    if layer == "dense":
        return lambda x: psal.patch_attention(x, x, x, patch_size=PATCH, temperature=temperature)
    if layer == "conv3x3":  # the cost of one plain layer of the same width (issue 14)
        conv = torch.nn.Conv2d(CHANNELS, CHANNELS, 3, padding=1)
        return lambda x: conv.to(x.device)(x)
    if layer == "sdpa":

        def sdpa(x):
            b, c, h, w = x.shape
            qk = unfold_patches(x, PATCH).transpose(1, 2).unsqueeze(1)  # (B, 1, HW, C*9)
            v = x.flatten(2).transpose(1, 2).unsqueeze(1)  # (B, 1, HW, C)
            out = F.scaled_dot_product_attention(qk, qk, v)
            return out.squeeze(1).transpose(1, 2).reshape(b, c, h, w)

        return sdpa
    raise ValueError(f"layer must be one of {list(LAYERS)}, got {layer!r}")


def _timed(fn, device: torch.device) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def _case(mode, layer, size, batch, device_name, temperature, repeats, slow, threads, conn):
    """Runs in a child process; sends a dict with the times (s) and the peak (bytes).

    ``mode="time"``: warm-up, timed runs; the warm-up's peak memory is reported too.
    ``mode="memory"``: one forward+backward run, its peak memory only.
    """
    device = torch.device(device_name)
    if threads:
        set_threads(threads)
    try:
        fn = make_layer(layer, temperature)

        def runner(x, w, backward):
            def run():
                if backward:
                    x.grad = None
                    (fn(x) * w).sum().backward()
                else:
                    with torch.no_grad():
                        fn(x)

            return run

        # warm-up on a tiny map: numba compilation or cache load, lazy initialisations
        tiny = make_features(16, batch, device).requires_grad_(True)
        runner(tiny, torch.ones_like(tiny), True)()
        del tiny
        x = make_features(size, batch, device).requires_grad_(True)
        g = torch.Generator().manual_seed(1)
        w = torch.randn(x.shape, generator=g).to(device)
        fwd, fwd_bwd = runner(x, w, False), runner(x, w, True)

        base = peak_start(device)
        first = _timed(fwd_bwd, device)  # the warm-up (and memory) run
        peak = peak_end(device, base)
        out = {"first": first, "peak": peak}
        if mode == "time":
            if first > slow:
                out.update(fwd_bwd=first, fwd=_timed(fwd, device))
            else:
                n = repeats  # fast cases: more runs (about 2 s of them, at most 15)
                if repeats > 1:
                    n = max(repeats, min(15, int(2.0 / max(first, 1e-3))))
                out["fwd_bwd"] = statistics.median(_timed(fwd_bwd, device) for _ in range(n))
                _timed(fwd, device)
                out["fwd"] = statistics.median(_timed(fwd, device) for _ in range(n))
        out["load"] = os.getloadavg()[0]
        conn.send(out)
    except torch.cuda.OutOfMemoryError as e:
        conn.send({"error": "out of memory: " + str(e).splitlines()[0][:80]})
    except RuntimeError as e:  # CPU allocator failure and the like
        conn.send({"error": str(e).splitlines()[0][:120]})
    conn.close()


#: glibc settings for the memory-only process: every buffer of 128 KiB or more gets its
#: own mmap and goes back to the system when freed, so the resident size follows the
#: memory in use. By default glibc raises that threshold (up to 32 MiB) as buffers are
#: freed and keeps later ones in its heap, which overstates the peak of small cases
#: (about 2x for PSAttention at 128x128) but makes them faster: timings use the default.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}


def _spawn(*args, env: dict[str, str] | None = None) -> dict:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_case, args=(*args, child))
    saved = {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})  # the child inherits the environment at start
    try:
        p.start()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    child.close()
    try:
        out = parent.recv()
    except EOFError:  # the child died without answering (e.g. killed for memory)
        out = None
    p.join()
    if out is None:
        out = {"error": f"process died (exit code {p.exitcode})"}
    return out


def run_case(layer, size, batch, device, temperature, repeats, slow, threads) -> dict:
    """Times in one process; on CPU, the peak of fast cases in a second one (MALLOC_ENV)."""
    args = (layer, size, batch, device, temperature, repeats, slow, threads)
    out = _spawn("time", *args)
    cpu = torch.device(device).type == "cpu"
    if "error" not in out and cpu and out["first"] <= slow and repeats > 1:
        mem = _spawn("memory", *args, env=MALLOC_ENV)
        if "error" not in mem:
            out["peak"] = mem["peak"]
    return out


def skip_reason(layer, size, batch, device, args, measured) -> tuple[str | None, float | None]:
    """Why a case is not run (None: run it) and its extrapolated fwd+bwd time, if known.

    ``measured``: {layer: (pixels, fwd+bwd seconds)} of the largest size run so far; the
    dense layers' time is extrapolated as (H·W)².
    """
    if layer not in DENSE:  # PSAttention and the conv3x3 yardstick always run
        return None, None
    est_time = None
    if layer in measured:
        n0, t0 = measured[layer]
        est_time = t0 * (size * size / n0) ** 2
    scores = score_bytes(layer, size, batch)
    match_size = math.ceil(size / RATE) if layer == "contextual" else size
    est_peak = PEAK_PER_SCORE_BYTE.get(layer, 0) * scores
    pre_skip_memory = layer in PEAK_PER_SCORE_BYTE and not (
        device.type == "cuda" and layer == "sdpa"
    )
    if pre_skip_memory and est_peak > args.mem_limit * GiB:
        reason = (
            f"needs {human_bytes(scores)} for scores (~{human_bytes(est_peak)} peak > "
            f"--mem-limit {args.mem_limit:g} GiB): skipped"
        )
        return reason, est_time
    if match_size > args.dense_max:
        why = f"scores {human_bytes(scores)}" + (" (chunked)" if layer == "dense" else "")
        if est_time is not None:
            why += f", est. ~{human_time(est_time)} fwd+bwd"
        return f"{why}: skipped (--dense-max {args.dense_max})", est_time
    return None, None


def plot(rows: list[dict], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from psal.utils.atomic import atomic_path

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    markers = dict(zip(LAYERS, "os^Dvx", strict=True))
    for layer, label in LAYERS.items():
        ok = [r for r in rows if r["layer"] == layer and r["status"] == "ok"]
        if not ok:
            continue
        px = [r["pixels"] for r in ok]
        kw = {"marker": markers[layer], "label": label, "markersize": 4}
        axes[0].loglog(px, [r["fwd_bwd_s"] for r in ok], **kw)
        axes[1].loglog(px, [r["peak_mb"] for r in ok], **kw)
        # skipped sizes: estimated time (extrapolated) and peak (score-materialising layers)
        skipped = [r for r in rows if r["layer"] == layer and r["status"] == "skipped"]
        color = axes[0].get_lines()[-1].get_color()
        panels = ((axes[0], "fwd_bwd_s", "est_fwd_bwd_s"), (axes[1], "peak_mb", "est_peak_mb"))
        for ax, key, est_key in panels:
            est = [r for r in skipped if r[est_key]]
            if est:
                xs = [px[-1]] + [r["pixels"] for r in est]
                ys = [ok[-1][key]] + [r[est_key] for r in est]
                ax.loglog(xs, ys, ls=":", color=color, marker=markers[layer], mfc="none", ms=4)
    axes[0].set_ylabel("forward + backward time (s)")
    axes[1].set_ylabel("peak memory, forward + backward (MB)")
    axes[1].plot([], [], "k:", marker="o", mfc="none", ms=4, label="estimated (skipped)")
    sizes = sorted({r["size"] for r in rows})
    for ax in axes:
        ax.set_xlabel("feature map H x W (64 channels)")
        ax.set_xticks([s * s for s in sizes], [f"{s}²" for s in sizes])
        ax.minorticks_off()
        ax.grid(True, which="major", alpha=0.3)
    if rows and rows[0]["device"] == "cpu" and rows[0]["batch"] == 1:  # the targets
        if 128 in sizes:
            axes[0].plot([128**2], [1.0], "k*", ms=9, label="target (PSAttention, issue 3)")
        if 512 in sizes:
            axes[1].plot([512**2], [2000.0], "k*", ms=9, label="target (PSAttention, issue 3)")
    axes[1].legend(fontsize=7, loc="upper left")
    if 128 in sizes:
        axes[0].legend(handles=axes[0].get_lines()[-1:], fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)


def write_csv(rows: list[dict], path: str) -> None:
    from psal.utils.atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _fmt(v: float | None, digits: int = 3) -> str:
    return "" if v is None else f"{v:.{digits}g}"


def parse_args(argv=None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """The command line, parsed (defaults that depend on the device are filled later)."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=None,
        help="square map sides (default 32..512 on CPU, 32..2048 on CUDA)",
    )
    ap.add_argument("--layers", nargs="+", default=list(LAYERS), choices=list(LAYERS))
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--temperature", type=float, default=0.5)
    ap.add_argument(
        "--repeats", type=int, default=3, help="timed runs per case (fast cases: more unless 1)"
    )
    ap.add_argument(
        "--slow",
        type=float,
        default=5.0,
        help="cases whose first fwd+bwd takes longer are timed once",
    )
    ap.add_argument(
        "--mem-limit",
        type=float,
        default=None,
        help="GiB; skip score-materialising layers above this estimated peak "
        "(default 8 on CPU, the GPU's memory on CUDA)",
    )
    ap.add_argument(
        "--dense-max",
        type=int,
        default=None,
        help="largest matching-resolution side for the dense layers "
        "(default 128 on CPU, 512 on CUDA)",
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch and numba threads in each case (default: theirs)",
    )
    ap.add_argument("--out", default=None, help="write PREFIX.csv, PREFIX.json and PREFIX.png")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="sanity check in about a minute: --sizes 32 64 --repeats 1",
    )
    ap.add_argument(
        "--from-json",
        default=None,
        help="measure nothing: print (and with --out, write) the results of an earlier run",
    )
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.repeats = args.sizes or [32, 64], 1
    return ap, args


def resolve_settings(ap: argparse.ArgumentParser, args: argparse.Namespace) -> torch.device:
    """Check the options and fill the device-dependent defaults in ``args``."""
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device is available")
    if args.sizes is None:
        args.sizes = [32, 64, 128, 256, 512] + ([1024, 2048] if device.type == "cuda" else [])
    if min(args.sizes) < 16:
        ap.error(f"--sizes must be >= 16, got {min(args.sizes)}")
    for name in ("repeats", "batch"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if not args.temperature > 0:
        ap.error(f"--temperature must be > 0, got {args.temperature}")
    if not args.slow >= 0:
        ap.error(f"--slow must be >= 0, got {args.slow}")
    if args.mem_limit is not None and not args.mem_limit > 0:
        ap.error(f"--mem-limit must be > 0, got {args.mem_limit}")
    if args.dense_max is not None and args.dense_max < 1:
        ap.error(f"--dense-max must be >= 1, got {args.dense_max}")
    if args.mem_limit is None:
        args.mem_limit = 8.0
        if device.type == "cuda":
            args.mem_limit = torch.cuda.get_device_properties(device).total_memory / GiB
    if args.dense_max is None:
        args.dense_max = 512 if device.type == "cuda" else 128
    if args.threads is not None and args.threads < 1:
        ap.error(f"--threads must be >= 1, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)  # so that environment() reports it
    return device


def describe_run(device: torch.device, args: argparse.Namespace) -> dict:
    """Print the environment and the settings; returns the environment record."""
    env = environment(device)
    if args.threads:
        env["numba_threads"] = str(args.threads)
    env["loadavg_start"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print("environment: " + ", ".join(f"{k}={v}" for k, v in env.items()), flush=True)
    print(
        f"self-attention on (B={args.batch}, C={CHANNELS}, S, S) CNN features; PSAttention "
        f"k={K} patch={PATCH} iters={ITERS} T={args.temperature:g}; contextual rate={RATE}, "
        f"no mask; dense-max={args.dense_max}, mem-limit={args.mem_limit:g} GiB",
        flush=True,
    )
    return env


def new_row(layer: str, size: int, device: torch.device, args: argparse.Namespace) -> dict:
    """An empty result row of one (layer, size) case."""
    return {
        "layer": layer,
        "size": size,
        "pixels": size * size,
        "batch": args.batch,
        "channels": CHANNELS,
        "device": str(device),
        "status": "ok",
        "note": "",
        "fwd_s": None,
        "fwd_bwd_s": None,
        "peak_mb": None,
        "score_mb": score_bytes(layer, size, args.batch) / 2**20,
        "est_fwd_bwd_s": None,
        "est_peak_mb": None,
        "loadavg": None,
    }


def measure_case(
    layer: str,
    size: int,
    device: torch.device,
    args: argparse.Namespace,
    measured: dict[str, tuple[int, float]],
) -> dict:
    """Run (or skip, saying why) one case; records its fwd+bwd time in ``measured``."""
    row = new_row(layer, size, device, args)
    reason, est_time = skip_reason(layer, size, args.batch, device, args, measured)
    if reason is not None:
        row.update(status="skipped", note=reason, est_fwd_bwd_s=est_time)
        if layer in PEAK_PER_SCORE_BYTE:
            row["est_peak_mb"] = PEAK_PER_SCORE_BYTE[layer] * row["score_mb"]
        return row
    t0 = time.perf_counter()
    r = run_case(
        layer,
        size,
        args.batch,
        args.device,
        args.temperature,
        args.repeats,
        args.slow,
        args.threads,
    )
    if "error" in r:
        row.update(status="failed", note=r["error"])
    else:
        row.update(
            fwd_s=r["fwd"],
            fwd_bwd_s=r["fwd_bwd"],
            peak_mb=r["peak"] / 2**20,
            loadavg=r["load"],
        )
        measured[layer] = (size * size, r["fwd_bwd"])
    print(
        f"  {layer} {size}²: {row['status']} {row['note']} "
        f"fwd={_fmt(row['fwd_s'])} fwd+bwd={_fmt(row['fwd_bwd_s'])} "
        f"peak={_fmt(row['peak_mb'])} MB ({time.perf_counter() - t0:.0f} s in all)",
        flush=True,
    )
    return row


def main(argv=None) -> int:
    """Run (or, with --from-json, re-print) the benchmark; 1 if a case's process died."""
    ap, args = parse_args(argv)
    if args.from_json:
        with open(args.from_json) as fh:
            saved = json.load(fh)
        report(saved["rows"], saved["environment"], saved["args"], args.out)
        return 0
    device = resolve_settings(ap, args)
    env = describe_run(device, args)
    rows = []
    measured: dict[str, tuple[int, float]] = {}  # layer -> (pixels, fwd+bwd s), largest run
    for size in sorted(args.sizes):
        for layer in args.layers:
            rows.append(measure_case(layer, size, device, args, measured))
    env["loadavg_end"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print()
    print(f"environment: loadavg_start={env['loadavg_start']}, loadavg_end={env['loadavg_end']}")
    report(rows, env, vars(args), args.out)
    died = [r for r in rows if r["status"] == "failed" and r["note"].startswith("process died")]
    if died:
        print(f"\n{len(died)} case(s) died: " + ", ".join(
            f"{r['layer']} {r['size']}²" for r in died), file=sys.stderr)  # fmt: skip
    return 1 if died else 0


def ratio_rows(rows: list[dict]) -> list[dict]:
    """PSAttention's fwd+bwd time and peak memory ratios to each dense layer, same size."""
    ratios = []
    by = {(r["layer"], r["size"]): r for r in rows if r["status"] == "ok"}
    for size in sorted({r["size"] for r in rows}):
        for ps in ("psal-center", "psal-patch"):
            if (ps, size) not in by:
                continue
            p = by[(ps, size)]
            rr = {}
            for d in DENSE:
                if (d, size) in by:
                    q = by[(d, size)]
                    rr[f"{d} time x"] = f"{q['fwd_bwd_s'] / p['fwd_bwd_s']:.2g}"
                    rr[f"{d} memory x"] = f"{q['peak_mb'] / max(p['peak_mb'], 1e-3):.2g}"
                else:
                    rr[f"{d} time x"] = rr[f"{d} memory x"] = "-"
            if ("conv3x3", size) in by:  # PSAttention over a 3x3 conv (target: <= 5)
                rr["x conv3x3"] = f"{p['fwd_bwd_s'] / by[('conv3x3', size)]['fwd_bwd_s']:.2g}"
            if any(v != "-" for v in rr.values()):
                ratios.append({"size": f"{size}²", "PSAttention": ps.split("-")[1], **rr})
    return ratios


def report(rows: list[dict], env: dict, settings: dict, out: str | None) -> None:
    """Print the tables; with ``out``, write ``out.csv``, ``out.json`` and ``out.png``."""
    table = []
    for r in rows:
        ok = r["status"] == "ok"
        table.append(
            {
                "size": f"{r['size']}²",
                "layer": LAYERS[r["layer"]],
                "fwd (s)": _fmt(r["fwd_s"]) if ok else "",
                "fwd+bwd (s)": _fmt(r["fwd_bwd_s"]) if ok else "",
                "peak MB": f"{r['peak_mb']:.0f}" if ok else "",
                "score matrix": human_bytes(r["score_mb"] * 2**20) if r["layer"] in DENSE else "",
                "note": r["note"],
            }
        )
    print()
    print_table(table, list(table[0]))
    ratios = ratio_rows(rows)
    if ratios:
        print()
        print(
            "PSAttention vs each dense layer, fwd+bwd at the same size "
            "(dense / PSAttention: > 1 means PSAttention is faster / leaner):"
        )
        print_table(ratios, list(ratios[0]))
    if out:
        write_csv(rows, out + ".csv")
        payload = {"environment": env, "args": settings, "rows": rows, "ratios": ratios}
        write_json(out + ".json", payload)
        title = (
            f"self-attention, {CHANNELS}-channel features, batch {rows[0]['batch']}, "
            f"{env['device']} ({env['cores']} cores, {env['torch_threads']} torch threads), "
            f"torch {env['torch']}"
        )
        plot(rows, out + ".png", title)
        print(f"\nwrote {out}.csv, {out}.json, {out}.png")


if __name__ == "__main__":
    sys.exit(main())
