"""What the image guide's search brings that a trained network without it still misses.

For a pair of networks saved by ``train_upscale.py --save DIR --guide image``
(``DIR/upscale_x{s}_none.safetensors`` and ``..._psal.safetensors``), on the benchmark's
images: ``r = HR - none(LR)``, the error the network without search still makes, and
``d`` the detail the psal network's search brings back (``guide_blocks`` of its whole
LR image, enlarged to the HR grid at x4). The printed figure is the fraction of the
error's energy the best multiple of ``d`` explains, ``(r.d)^2 / (|r|^2 |d|^2)`` (RGB,
``scale`` pixels shaved), beside the same fraction of bicubic's error (what the search
could add to bicubic), of the none network's own unsearched detail (the control: what
a pixel's own position gives), and of an **in-scale** estimate: for every LR pixel, the
none network's output block at its 4 most similar LR patches elsewhere in the image
(exact search, 5x5 mean-free patches, its own 5x5 neighbourhood excluded) minus its
own block, i.e. what attention over repetitions at the same scale (several views of a
repeated structure at other sub-pixel phases) could correct. Seconds on an idle
machine; no training.

    PYTHONPATH=src python benchmarks/upscale_guide_info.py --nets /tmp/sr/x2 --scale 2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_upscale import (
    HELD_OUT_PHOTOS,
    HELD_OUT_SELF_SIMILAR,
    TUNE_PHOTOS,
    TUNE_SELF_SIMILAR,
    _image,
    _t,
)

#: More held-out self-similar crops (chosen before any result on them): the three other
#: 256x256 quadrants of ``brick`` and the right part of ``text`` (the benchmark scores
#: the top-left 256x256 of each).
EXTRA_SELF_SIMILAR = {
    "brick_top_right": lambda: _image("brick")[:256, 256:],
    "brick_bottom_left": lambda: _image("brick")[256:, :256],
    "brick_bottom_right": lambda: _image("brick")[256:, 256:],
    "text_right": lambda: _image("text")[:, 256:],
}


def explained(r: torch.Tensor, d: torch.Tensor, shave: int) -> float:
    """Fraction of ``r``'s energy the best multiple of ``d`` explains (borders shaved)."""
    r = r[..., shave:-shave, shave:-shave].reshape(-1).double()
    d = d[..., shave:-shave, shave:-shave].reshape(-1).double()
    return float((r @ d) ** 2 / ((r @ r) * (d @ d) + 1e-30))


def in_scale_estimate(lr: torch.Tensor, out: torch.Tensor, s: int, k: int = 4) -> torch.Tensor:
    """Mean of ``out``'s s x s blocks at the k nearest other LR patches, minus the own block.

    lr: (1, 3, h, w); out: (1, 3, s*h, s*w) -> (1, 3, s*h, s*w). Exact search over
    5x5 mean-free patches (zero-padded), excluding the pixel's own 5x5 neighbourhood.
    """
    from psal.models.edsr import mean_free

    h, w = lr.shape[-2:]
    q = F.unfold(mean_free(lr), 5, padding=2)[0].t().contiguous()  # (N, 75)
    ys, xs = torch.div(torch.arange(h * w), w, rounding_mode="floor"), torch.arange(h * w) % w
    blocks = F.pixel_unshuffle(out, s)[0].reshape(3 * s * s, -1)  # (3 s s, N)
    est = torch.empty_like(blocks)
    for i in range(0, h * w, 1024):
        j = slice(i, min(i + 1024, h * w))
        d = torch.cdist(q[j], q)
        near = ((ys[j, None] - ys[None]).abs() <= 2) & ((xs[j, None] - xs[None]).abs() <= 2)
        idx = d.masked_fill(near, float("inf")).topk(k, largest=False).indices  # (n, k)
        est[:, j] = blocks[:, idx].mean(-1) - blocks[:, j]
    return F.pixel_shuffle(est.reshape(1, 3 * s * s, h, w), s)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--nets", required=True, help="folder of train_upscale.py --save")
    p.add_argument("--scale", type=int, default=2)
    p.add_argument(
        "--guide-options",
        default=None,
        metavar="JSON",
        help="search the psal guide with these options instead, e.g. '{\"patch_size\": 5}' "
        "(what another search would bring, without training)",
    )
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    from psal.data import degrade
    from psal.models import Upscaler
    from psal.training.tasks.upscale import sr_metrics

    torch.set_num_threads(1)
    s = args.scale
    nets = {
        a: Upscaler.from_checkpoint(
            Path(args.nets) / f"upscale_x{s}_{a}.safetensors", "cpu"
        ).network.eval()
        for a in ("none", "psal")
    }
    if nets["psal"].guide is None:
        raise SystemExit("--nets: the networks have no image guide (train with --guide image)")
    if args.guide_options:
        from psal.layers import build_attention
        from psal.models.edsr import _GUIDE_DEFAULTS

        opts = {**_GUIDE_DEFAULTS["psal"], **json.loads(args.guide_options)}
        nets["psal"].guide.block = build_attention("psal", **opts)
        print(f"guide search options: {opts}")
    report = {}
    groups = (
        ("held-out photos", HELD_OUT_PHOTOS),
        ("held-out self-similar", HELD_OUT_SELF_SIMILAR),
        ("tune photos", TUNE_PHOTOS),
        ("tune self-similar", TUNE_SELF_SIMILAR),
        ("more held-out self-similar", tuple(EXTRA_SELF_SIMILAR)),
    )
    print(f"x{s}, {args.nets}: fraction of the error's energy explained by the best multiple of")
    print(f"{'image':22s} {'search|none err':>15s} {'search|bic err':>15s} "
          f"{'own pos|none err':>17s} {'in-scale|none err':>17s} "
          f"{'Y-PSNR psal-none':>16s}")  # fmt: skip
    for group, names in groups:
        for name in names:
            im = EXTRA_SELF_SIMILAR[name]() if name in EXTRA_SELF_SIMILAR else _image(name)
            im = im[:256, :256]
            h, w = im.shape[0] - im.shape[0] % s, im.shape[1] - im.shape[1] % s
            hr = _t(im[:h, :w])
            lr = (degrade(hr, s).clamp(0, 1) * 255).round() / 255
            with torch.no_grad():
                torch.manual_seed(0)
                out_none = nets["none"].enlarge(lr)
                r_none = hr - out_none
                nlm = in_scale_estimate(lr[..., : h // s, : w // s], out_none, s)
                torch.manual_seed(0)
                gap = (
                    sr_metrics(nets["psal"].enlarge(lr), hr, s)["y_psnr"]
                    - sr_metrics(out_none, hr, s)["y_psnr"]
                )
                r_bic = hr - F.interpolate(lr, scale_factor=s, mode="bicubic", align_corners=False)
                xp = nets["psal"]._pad(lr)
                d, own = nets["psal"].guide_blocks(xp), nets["none"].guide_blocks(xp)
                if d.shape[-2:] != hr.shape[-2:]:
                    size = (xp.shape[-2] * s, xp.shape[-1] * s)
                    d, own = (F.interpolate(t, size=size, mode="bicubic", align_corners=False)
                              for t in (d, own))  # fmt: skip
                d, own = d[..., :h, :w], own[..., :h, :w]
            row = {
                "search_vs_none_error": explained(r_none, d, s),
                "search_vs_bicubic_error": explained(r_bic, d, s),
                "own_position_vs_none_error": explained(r_none, own, s),
                "in_scale_vs_none_error": explained(r_none, nlm, s),
                "y_psnr_psal_minus_none": gap,
            }
            report[f"{group}/{name}"] = row
            print(f"{name:22s} {row['search_vs_none_error']:15.4f} "
                  f"{row['search_vs_bicubic_error']:15.4f} "
                  f"{row['own_position_vs_none_error']:17.4f} "
                  f"{row['in_scale_vs_none_error']:17.4f} {gap:+16.2f}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
