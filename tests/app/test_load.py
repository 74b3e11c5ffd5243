"""A bounded load test on 127.0.0.1: 20 inpainting requests from 4 clients at once.

All are answered (queued, one job at a time, none dropped), each with the right image,
and the server's memory (RSS) comes back near where it started.
"""

from __future__ import annotations

import gc
import threading

import numpy as np
import pytest
from app_helpers import need, photo, wait_until
from PIL import Image

import psal

CLIENTS, PER_CLIENT = 4, 5


def _rss(pid: int) -> int:
    psutil = need("psutil")
    return psutil.Process(pid).memory_info().rss


@pytest.mark.slow
def test_twenty_requests_from_four_clients(server, tmp_path):
    gradio_client = need("gradio_client")
    assert server.url.startswith("http://127.0.0.1:")
    im = photo(48, 64)
    im.save(tmp_path / "photo.png")
    layer = np.zeros((48, 64, 4), np.uint8)
    layer[15:30, 20:40] = (255, 0, 255, 153)
    Image.fromarray(layer, "RGBA").save(tmp_path / "stroke.png")
    hole = layer[..., 3] > 0
    want = np.asarray(psal.inpaint(im, hole, patch_size=5, seed=7))

    def request(client):
        f = gradio_client.handle_file
        editor = {"background": f(str(tmp_path / "photo.png")), "composite": None, "id": None,
                  "layers": [f(str(tmp_path / "stroke.png"))]}  # fmt: skip
        return client.submit(f(str(tmp_path / "photo.png")), editor, "patch-based", 5, 0, 7,
                             "PNG", api_name="/inpaint")  # fmt: skip

    clients = [gradio_client.Client(server.url, verbose=False) for _ in range(CLIENTS)]
    request(clients[0]).result(timeout=120)  # warm-up: compiled kernels, caches
    gc.collect()
    before = _rss(server.pid)

    results: list = []
    errors: list = []
    jobs: list = []
    seen: set[str] = set()

    def run(client):
        try:
            mine = [request(client) for _ in range(PER_CLIENT)]
            jobs.extend(mine)
            results.extend(job.result(timeout=300) for job in mine)
        except Exception as err:  # reported below, with the others
            errors.append(repr(err))

    threads = [threading.Thread(target=run, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):  # what the clients are told meanwhile
        seen.update(job.status().code.name for job in list(jobs))
        threads[0].join(0.05)
    for t in threads:
        t.join(400)
    assert not errors, errors
    assert len(results) == CLIENTS * PER_CLIENT  # all answered, none dropped
    for _, download in results:
        assert np.array_equal(np.asarray(Image.open(download)), want)

    # memory comes back near where it started (results are files, not kept in memory)
    def settled():
        return _rss(server.pid) < before + max(80e6, 0.15 * before)

    wait_until(settled, 30, f"the server's RSS to settle (was {before / 1e6:.0f} MB)")
    assert "IN_QUEUE" in seen, seen  # they waited in line (one job at a time)
    print(f"server RSS: {before / 1e6:.0f} MB before, {_rss(server.pid) / 1e6:.0f} MB after")
