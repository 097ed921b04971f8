"""The slice preview in Debian's chromium (Playwright), standalone on a minimal page served
by ``panel serve`` (the app's page mounts the same ``SlicePreview``).

The series is made so that the rendered pixels can be checked: a bright square at the
patient's right-anterior corner of slice 1, a label map marking it; the series is stored
flipped (rows right-to-left, columns posterior-to-anterior), and the label map is a NIfTI
in RAS+ order. The square must be drawn at the screen's top-left in the axial view (the
patient's right on the left, anterior up), with the overlay colour on it; hovering it
must read out the segment and its value; no request may leave the origin.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import synthetic
from site_browser import CHROMIUM, CHROMIUM_ARGS, chromium_missing_reason, free_port

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "build" / "cache" / "screenshots"

pytestmark = pytest.mark.skipif(chromium_missing_reason() is not None, reason=chromium_missing_reason() or "")

APP = '''
import sys
sys.path.insert(0, {webapp!r})
import numpy as np
import panel as pn
from qidicom import preview, readers
from preview import SlicePreview

volume = preview.read_series_volume({series!r})
overlay = preview.overlay_from_label_maps([readers.read_image({labels!r})], volume,
    {{"segmentAttributes": [[{{"labelID": 1, "SegmentLabel": "Marker", "recommendedDisplayRGBValue": [255, 0, 0]}}]]}})
view = SlicePreview(volume, overlay=overlay, title="Flipped series")
view.set_window(0, 2000)
view.set_position((2, 2, 1))
view.panel().servable()
'''


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    directory = tmp_path_factory.mktemp("preview-page")
    # Stored flipped: the row direction points to the patient's right, columns to anterior.
    datasets = synthetic.make_ct_series(rows=20, columns=24, slices=3, orientation=(-1, 0, 0, 0, -1, 0),
                                        origin=(100.0, 80.0, 0.0), pixel_spacing=(2.0, 2.0), slice_spacing=4.0)
    affine = synthetic.series_affine(datasets)
    square = np.zeros((24, 20, 3), bool)
    # Voxel i runs towards the patient's right, j towards anterior: high i, j = right-anterior.
    square[18:22, 14:18, 1] = True
    for k, ds in enumerate(datasets):
        pixels = np.full((20, 24), -1000, np.int16)
        pixels[square[:, :, k].T] = 1000
        ds.PixelData = pixels.tobytes()
    synthetic.write_series(datasets, directory / "ct")
    labels = square.astype(np.uint8)
    flip = np.eye(4)
    flip[0, 0], flip[1, 1], flip[0, 3], flip[1, 3] = -1, -1, 23, 19
    synthetic.save_nifti(np.ascontiguousarray(labels[::-1, ::-1]), affine @ flip, directory / "labels.nii.gz")
    script = directory / "app.py"
    script.write_text(APP.format(webapp=str(ROOT / "webapp"), series=str(directory / "ct"), labels=str(directory / "labels.nii.gz")))
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT / "pylib"))
    process = subprocess.Popen([sys.executable, "-m", "panel", "serve", str(script), "--port", str(port),
                                "--address", "127.0.0.1", "--allow-websocket-origin", f"127.0.0.1:{port}"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/app"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            time.sleep(0.3)
    else:
        process.kill()
        pytest.fail("panel serve did not start: " + process.stderr.read().decode()[-2000:])
    yield url
    process.terminate()
    process.wait(timeout=10)


def test_flipped_series_and_nifti_overlay_drawn_in_the_patient_frame(served, tmp_path):
    from playwright.sync_api import sync_playwright

    foreign: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 900})

        def on_route(route):
            if route.request.url.startswith("http://127.0.0.1") or route.request.url.startswith("ws://127.0.0.1"):
                route.continue_()
            else:
                foreign.append(route.request.url)
                route.abort()

        page.route("**/*", on_route)
        page.goto(served)
        page.wait_for_selector("text=Flipped series", timeout=60_000)
        page.wait_for_timeout(1500)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "preview-flipped-series.png"))
        axial = page.locator(".bk-Plot").first
        box = axial.bounding_box()
        shot = tmp_path / "axial.png"
        axial.screenshot(path=str(shot))
        image = np.asarray(Image.open(shot).convert("RGB")).astype(int)
        # The frame is black (-1000 HU at level 0, width 2000); the square is white (1000 HU)
        # under the marker's red at opacity 0.5: (255, 128, 128).
        height, width = image.shape[:2]
        black = (image < 12).all(axis=2)
        frame_rows = np.nonzero(black.sum(axis=1) > 0.5 * width)[0]  # the title bar is not black
        frame_columns = np.nonzero(black.sum(axis=0) > 0.5 * height)[0]
        top, bottom, left, right = frame_rows.min(), frame_rows.max(), frame_columns.min(), frame_columns.max()
        pink = (np.abs(image - [255, 128, 128]) < 12).all(axis=2)
        pink[:top] = False  # the toolbar's logo
        rows, columns = np.nonzero(pink)
        assert rows.size > 100, "the overlay over the bright square is not drawn"
        # 24 x 20 pixels of 2 mm: the square covers columns 2..5 and rows 2..5 on screen
        # (voxels i 18..21 and j 14..17 of the flipped series).
        pixel_w, pixel_h = (right - left + 1) / 24, (bottom - top + 1) / 20
        assert (columns.min() - left) / pixel_w == pytest.approx(2, abs=0.3)
        assert (columns.max() + 1 - left) / pixel_w == pytest.approx(6, abs=0.3)
        assert (rows.min() - top) / pixel_h == pytest.approx(2, abs=0.3)
        assert (rows.max() + 1 - top) / pixel_h == pytest.approx(6, abs=0.3)
        # The hover readout of the square's voxel (a Python callback on Bokeh's MouseMove).
        page.mouse.move(box["x"] + columns.mean(), box["y"] + rows.mean())
        page.wait_for_timeout(800)
        readout = page.locator(".qi-readout-text").inner_text()
        # Dragging right widens the window (a Python callback on Bokeh's Pan events).
        before = page.locator(".qi-window-text").inner_text()
        page.mouse.down()
        page.mouse.move(box["x"] + columns.mean() + 120, box["y"] + rows.mean(), steps=8)
        page.mouse.up()
        page.wait_for_timeout(800)
        after = page.locator(".qi-window-text").inner_text()
        browser.close()
    assert "segment 1 Marker" in readout and "value 1000 HU" in readout, readout
    assert foreign == [], foreign
    assert before.strip() == "Level 0, width 2000 HU" and after != before, (before, after)
    width = float(after.split("width")[1].split()[0])
    assert width > 2000
