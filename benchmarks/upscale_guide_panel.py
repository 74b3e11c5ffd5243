"""Panel of the held-out self-similar images: bicubic | psal.upscale | net none | net psal |
original, for networks saved by ``benchmarks/train_upscale.py --save DIR``.

One row per image (brick, tiled brick checkerboard, text; the benchmark's 256x256
held-out crops, 8-bit LR by antialiased bicubic downscaling), a ``--crop`` x ``--crop``
HR window shown ``--zoom`` times (nearest). Takes seconds (no training: ``--quick`` is
accepted and changes nothing).

    PYTHONPATH=src python benchmarks/train_upscale.py --budget 100 --scales 4 \\
        --guide image --no-in-scale --save /tmp/sr/x4
    PYTHONPATH=src python benchmarks/upscale_guide_panel.py --nets /tmp/sr/x4 --scale 4 \\
        -o docs/upscale_guide_x4_panel.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).parent))
import train_upscale as tu


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--nets", required=True, help="folder of upscale_x{S}_{attention}.safetensors")
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--crop", type=int, default=96, help="HR window side")
    p.add_argument("--zoom", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="(no effect: the panel takes seconds)")
    p.add_argument("-o", "--out", required=True)
    args = p.parse_args(argv)
    import psal
    from psal.data import degrade
    from psal.models import Upscaler

    torch.set_num_threads(1)
    nets = {a: Upscaler.from_checkpoint(Path(args.nets) / f"upscale_x{args.scale}_{a}.safetensors")
            for a in ("none", "psal")}  # fmt: skip
    labels = ["bicubic", "psal.upscale", "net, none", "net, psal", "original"]
    rows = []
    for name, (y, x) in (("brick", (64, 64)), ("checkerboard_texture", (80, 80)),
                         ("text", (40, 100))):  # fmt: skip
        im = tu._image(name)[:256, :256]
        hr = tu._t(im)
        low = (degrade(hr, args.scale).clamp(0, 1) * 255).round() / 255
        torch.manual_seed(0)
        with torch.no_grad():
            outs = [
                F.interpolate(low, scale_factor=args.scale, mode="bicubic", align_corners=False),
                psal.upscale(low, args.scale, seed=0),
                nets["none"].network.enlarge(low),
                nets["psal"].network.enlarge(low),
                hr,
            ]
        c = args.crop
        tiles = []
        for o in outs:
            t = (o[0, :, y : y + c, x : x + c].clamp(0, 1) * 255).round().byte()
            a = t.permute(1, 2, 0).numpy()
            tiles.append(np.kron(a, np.ones((args.zoom, args.zoom, 1), np.uint8)))
        gap = np.full((tiles[0].shape[0], 4, 3), 255, np.uint8)
        parts = [tiles[0]]
        for t in tiles[1:]:
            parts += [gap, t]
        rows.append(np.concatenate(parts, 1))
    head = 16
    width = rows[0].shape[1]
    panel = np.full((head + sum(r.shape[0] + 4 for r in rows), width, 3), 255, np.uint8)
    yy = head
    for r in rows:
        panel[yy : yy + r.shape[0]] = r
        yy += r.shape[0] + 4
    img = Image.fromarray(panel)
    draw = ImageDraw.Draw(img)
    step = args.crop * args.zoom + 4
    for i, label in enumerate(labels):
        draw.text((i * step + 4, 2), label, fill=(0, 0, 0))
    img.save(args.out)
    print(f"wrote {args.out} ({img.size[0]}x{img.size[1]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
