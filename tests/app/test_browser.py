"""A real browser (Debian's Chromium, driven by Playwright) uses the page as a person would.

It opens the page, opens a photo larger than the editor's canvas, paints a stroke with
the mouse, runs inpainting, waits for the result and downloads it: the result differs
from the photo inside the stroke and equals it everywhere else, at full resolution.
A screenshot of the page with the result goes to the test's temporary folder (and to
``$PSAL_APP_SCREENSHOT`` when set: ``PSAL_APP_SCREENSHOT=docs/app.png`` makes the one
in the docs).

Nothing downloads a browser: Playwright drives ``/usr/bin/chromium`` (``.ci/run``
installs it). Without it the test skips locally and fails in CI.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from app_helpers import IN_CI, header, need, photo, wait_until
from PIL import Image

CHROMIUM = os.environ.get("PSAL_CHROMIUM", "/usr/bin/chromium")
W, H = 1000, 700  # larger than the editor's 800x600 canvas


def _need_chromium() -> None:
    if not Path(CHROMIUM).exists():
        msg = f"no Chromium at {CHROMIUM} (apt-get install chromium; PSAL_CHROMIUM=path)"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)


def _shows_a_photo(canvas) -> bool:
    """True once the editor's canvas shows more than an empty background."""
    shot = np.asarray(Image.open(io.BytesIO(canvas.screenshot())).convert("L"), dtype=float)
    return shot.std() > 20


def _browser(playwright):
    return playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
    )


@pytest.mark.slow
def test_paint_a_stroke_and_inpaint_in_a_browser(request, tmp_path):
    sync_api = need("playwright.sync_api")
    _need_chromium()
    server = request.getfixturevalue("server")  # started only when the browser is there
    src = photo(H, W)
    src.save(tmp_path / "photo.png")
    with sync_api.sync_playwright() as pw:
        browser = _browser(pw)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1440})
            page.set_default_timeout(60_000)
            page.goto(server.url)
            page.locator("#inpaint-photo input[type=file]").set_input_files(tmp_path / "photo.png")
            # the editor gets the photo from the server: wait until its canvas shows it
            canvas = page.locator("#inpaint-editor canvas").first
            canvas.wait_for(state="visible")
            wait_until(lambda: _shows_a_photo(canvas), 90, "the photo in the editor")
            box = canvas.bounding_box()
            cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
            page.mouse.move(cx - 60, cy)
            page.mouse.down()
            for i in range(1, 9):  # few events: each one redraws the canvas (slow on CPU)
                page.mouse.move(cx - 60 + 15 * i, cy)
            page.mouse.up()
            page.wait_for_timeout(500)
            page.locator("#inpaint-run").click()
            link = page.locator("#inpaint-download a[href]").first
            toast = page.locator(".toast-body")
            wait_until(lambda: link.count() > 0 or toast.count() > 0, 180, "the result")
            assert toast.count() == 0, f"the page shows an error: {toast.first.inner_text()}"
            href = link.get_attribute("href")
            data = page.request.get(href if "://" in href else server.url + href.lstrip("/")).body()
            wait_until(lambda: page.locator("#inpaint-result img").count() > 0, 30, "the result")
            page.wait_for_timeout(1000)
            shot = tmp_path / "app.png"
            page.screenshot(path=str(shot))  # the viewport holds the whole page
        finally:
            browser.close()
    out = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    ref = np.asarray(src)
    assert out.shape == ref.shape  # full resolution, not the canvas's
    changed = (out != ref).any(-1)
    ys, xs = np.nonzero(changed)
    assert len(ys) > 200, "the stroke changed (almost) nothing"
    # the stroke was painted across the middle of the canvas, which shows the photo centred
    assert abs(ys.mean() - H / 2) < 0.1 * H and abs(xs.mean() - W / 2) < 0.1 * W
    along = changed[H // 2 - 2 : H // 2 + 3, W // 2 - 40 : W // 2 + 40]
    assert along.mean() > 0.5, "inside the stroke the result should differ from the photo"
    around = np.ones_like(changed)
    around[H // 2 - 120 : H // 2 + 120, W // 2 - 250 : W // 2 + 250] = False
    assert not changed[around].any(), "pixels away from the stroke changed"
    assert header(shot).size[0] >= 1000
    dest = os.environ.get("PSAL_APP_SCREENSHOT")
    if dest:  # a smaller copy for the docs
        im = Image.open(shot).convert("RGB")
        im = im.resize((im.width * 3 // 4, im.height * 3 // 4), Image.Resampling.LANCZOS)
        im.quantize(192, method=Image.Quantize.MEDIANCUT).save(dest, optimize=True)


@pytest.mark.slow
def test_paint_a_source_region_in_a_browser(request, tmp_path):
    """Tick "Copy only from a region", paint it in the second editor: the fill comes from it."""
    sync_api = need("playwright.sync_api")
    _need_chromium()
    server = request.getfixturevalue("server")
    w, h = 400, 300
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 60, (h, w, 3))
    arr = np.zeros((h, w, 3), int)
    arr[:, : w // 2] = (190, 30, 30)  # left half red, right half green: the hole is in
    arr[:, w // 2 :] = (30, 170, 30)  # the green half, the source region in the red one
    Image.fromarray((arr + noise).astype(np.uint8)).save(tmp_path / "photo.png")

    def stroke(page, canvas, x0, x1, y):  # canvas fractions
        box = canvas.bounding_box()
        page.mouse.move(box["x"] + box["width"] * x0, box["y"] + box["height"] * y)
        page.mouse.down()
        for i in range(1, 7):
            page.mouse.move(box["x"] + box["width"] * (x0 + (x1 - x0) * i / 6),
                            box["y"] + box["height"] * y)  # fmt: skip
        page.mouse.up()
        page.wait_for_timeout(300)

    with sync_api.sync_playwright() as pw:
        browser = _browser(pw)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 2200})
            page.set_default_timeout(60_000)
            page.goto(server.url)
            assert not page.locator("#inpaint-source canvas").first.is_visible()
            page.locator("#inpaint-photo input[type=file]").set_input_files(tmp_path / "photo.png")
            canvas = page.locator("#inpaint-editor canvas").first
            canvas.wait_for(state="visible")
            wait_until(lambda: _shows_a_photo(canvas), 90, "the photo in the editor")
            stroke(page, canvas, 0.70, 0.80, 0.5)  # the hole: in the green half
            page.locator("#inpaint-use-source input").check()
            source = page.locator("#inpaint-source canvas").first
            source.wait_for(state="visible")
            wait_until(lambda: _shows_a_photo(source), 90, "the photo in the source editor")
            for y in (0.35, 0.45, 0.55, 0.65):  # the source: a patch of the red half
                stroke(page, source, 0.15, 0.35, y)
            page.locator("#inpaint-run").click()
            link = page.locator("#inpaint-download a[href]").first
            toast = page.locator(".toast-body")
            wait_until(lambda: link.count() > 0 or toast.count() > 0, 180, "the result")
            assert toast.count() == 0, f"the page shows an error: {toast.first.inner_text()}"
            href = link.get_attribute("href")
            data = page.request.get(href if "://" in href else server.url + href.lstrip("/")).body()
        finally:
            browser.close()
    out = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)
    ref = np.asarray(Image.open(tmp_path / "photo.png")).astype(int)
    changed = (out != ref).any(-1)
    assert changed.sum() > 100 and not changed[:, : w // 2].any()  # only the hole changed
    fill = out[changed]
    # filled from the red source region, not from the green around the hole
    assert (fill[:, 0] > fill[:, 1]).mean() > 0.95, fill.mean(0)


@pytest.mark.slow
def test_edit_the_result_and_paint_again_in_a_browser(request, tmp_path):
    """Paint, Run, "Edit the result", paint again a few seconds later, Run: both are removed.

    With Gradio 6.31 the editor kept the "processing" cover of the event that gave it the
    result (once its strokes were a few seconds old): the cover took the pointer, the second
    stroke never reached the canvas and Run said "nothing is painted". Those events now
    show no progress (``new_photo`` in ``psal.app.ui``).
    """
    sync_api = need("playwright.sync_api")
    _need_chromium()
    server = request.getfixturevalue("server")
    h, w = 300, 400
    src = photo(h, w)
    src.save(tmp_path / "photo.png")

    def stroke(page, canvas, y):  # across the middle third, at a fraction y of the height
        box = canvas.bounding_box()
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] * y
        page.mouse.move(cx - 60, cy)
        page.mouse.down()
        for i in range(1, 9):
            page.mouse.move(cx - 60 + 15 * i, cy)
        page.mouse.up()

    def run(page, previous: str | None) -> bytes:
        page.locator("#inpaint-run").click()
        link = page.locator("#inpaint-download a[href]")
        toast = page.locator(".toast-body")

        def done() -> bool:
            new = link.count() > 0 and link.first.get_attribute("href") != previous
            return new or toast.count() > 0

        wait_until(done, 180, "the result")
        assert toast.count() == 0, f"the page shows an error: {toast.first.inner_text()}"
        href = link.first.get_attribute("href")
        url = href if "://" in href else server.url + href.lstrip("/")
        return href, page.request.get(url).body()

    with sync_api.sync_playwright() as pw:
        browser = _browser(pw)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1440})
            page.set_default_timeout(60_000)
            page.goto(server.url)
            page.locator("#inpaint-photo input[type=file]").set_input_files(tmp_path / "photo.png")
            canvas = page.locator("#inpaint-editor canvas").first
            canvas.wait_for(state="visible")
            wait_until(lambda: _shows_a_photo(canvas), 90, "the photo in the editor")
            stroke(page, canvas, 0.5)
            page.wait_for_timeout(500)
            href, first = run(page, None)
            page.wait_for_timeout(4000)  # the failure needed strokes a few seconds old
            page.locator("#inpaint-again").click()
            cover = page.locator("#inpaint-editor .wrap.full")
            wait_until(lambda: cover.count() == 0 or not cover.first.is_visible(), 30,
                       "the editor without a progress cover")  # fmt: skip
            wait_until(lambda: _shows_a_photo(canvas), 90, "the result in the editor")
            page.wait_for_timeout(1000)
            stroke(page, canvas, 0.25)
            page.wait_for_timeout(500)
            _, second = run(page, href)
        finally:
            browser.close()
    one = np.asarray(Image.open(io.BytesIO(first)).convert("RGB"))
    two = np.asarray(Image.open(io.BytesIO(second)).convert("RGB"))
    assert one.shape == two.shape == (h, w, 3)
    changed = (two != one).any(-1)  # the second edit starts from the first result
    ys, xs = np.nonzero(changed)
    assert len(ys) > 100, "the second stroke changed (almost) nothing"
    # the second stroke was painted a quarter down the canvas, which shows the photo whole
    assert abs(ys.mean() - h / 4) < 0.1 * h and abs(xs.mean() - w / 2) < 0.15 * w
    assert not changed[h // 2 :].any(), "the second run changed the first stroke's half"
    assert (one != np.asarray(src)).any(-1)[h // 2 - 3 : h // 2 + 3].any()  # the first worked
