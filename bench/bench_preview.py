#!/usr/bin/env python3
"""Slice preview benchmark: a 300-slice 512x512 CT series with a 10-segment label map.

    .venv/bin/python bench/bench_preview.py [--slices 300] [--size 512] [-n 40] [--browser]

In this process (CPython): the series read and decoded (qidicom.preview.read_series_volume)
and the preview's first slices made (SlicePreview: three planes, overlays); then the
Python-side cost of each change (slice, plane click, window, opacity, visibility),
median and 95th percentile; peak memory (tracemalloc, and RSS growth) against the
series' pixel data. With --browser, the same page served by ``panel serve`` in Debian's
chromium: time from a key press on the axial slider to the new slice drawn (canvas
pixels changed), and from a window preset change to the repaint. Figures only, in
bench/results/preview-*.json; nothing asserted.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import resource
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "pylib"), str(REPO / "webapp"), str(REPO / "tests")]

import synthetic  # noqa: E402  (the tests' generators: the same kind of series)


def series_files(slices: int, size: int) -> list[tuple[str, bytes]]:
    datasets = synthetic.make_ct_series(rows=size, columns=size, slices=slices, pixel_spacing=(0.7, 0.7),
                                        slice_spacing=1.0)
    files = []
    for n, ds in enumerate(datasets):
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        files.append((f"ct/{n:04d}.dcm", buffer.getvalue()))
    return files


def percentile(values, q) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("-n", type=int, default=40, help="changes of each kind")
    parser.add_argument("--browser", action="store_true")
    args = parser.parse_args()

    from qidicom import preview as qp
    from qidicom.geometry import Volume

    files = series_files(args.slices, args.size)
    input_mb = sum(len(d) for _, d in files) / 1e6
    from preview import SlicePreview  # Panel and Bokeh imported first: the app has them loaded

    # Timed pass (no tracing: tracemalloc slows pydicom's many small allocations).
    started = time.perf_counter()
    volume = qp.read_series_volume(files)
    read_s = time.perf_counter() - started
    labels = synthetic.ten_sphere_labels(volume.shape).astype(np.uint8)
    started = time.perf_counter()
    overlay = qp.overlay_from_label_maps([Volume(labels, volume.affine)], volume)
    overlay_s = time.perf_counter() - started
    started_view = time.perf_counter()
    timings: dict[str, list[float]] = {}
    view = SlicePreview(volume, overlay=overlay, title="bench",
                        timing=lambda what, seconds: timings.setdefault(what, []).append(seconds * 1000))
    view.panel()
    first_view_s = time.perf_counter() - started_view
    timings.clear()
    rng = np.random.default_rng(0)
    for _ in range(args.n):
        view.set_slice("axial", int(rng.integers(0, volume.shape[2])))
        view.set_slice("sagittal", int(rng.integers(0, volume.shape[0])))
        view.set_position(tuple(int(rng.integers(0, n)) for n in volume.shape))
        view.set_window(float(rng.uniform(-200, 200)), float(rng.uniform(100, 2000)))
        view.set_opacity(float(rng.uniform(0, 1)))
        view.set_visible([n for n in overlay.segments if rng.random() > 0.3])
    del view, overlay, volume
    # Memory pass: what the preview allocates beyond the files' bytes (held by the page anyway).
    tracemalloc.start()
    volume = qp.read_series_volume(files)
    overlay = qp.overlay_from_label_maps([Volume(labels, volume.affine)], volume)
    view = SlicePreview(volume, overlay=overlay, title="bench")
    for _ in range(5):
        view.set_position(tuple(int(rng.integers(0, n)) for n in volume.shape))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    pixel_mb = volume.stored.nbytes / 1e6
    result = {
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "series": f"{args.size}x{args.size}x{args.slices} int16 CT, {len(files)} files, {input_mb:.0f} MB",
        "pixel_data_mb": round(pixel_mb, 1),
        "read_and_decode_s": round(read_s, 2),
        "preview_built_s": round(first_view_s, 2),
        "overlay_on_grid_s": round(overlay_s, 2),
        "read_to_first_slices_s": round(read_s + overlay_s + first_view_s, 2),
        "python_change_ms": {what: {"median": round(statistics.median(v), 2), "p95": round(percentile(v, 95), 2), "n": len(v)}
                             for what, v in sorted(timings.items())},
        "peak_allocated_by_preview_mb": round(peak / 1e6, 1),
        "peak_allocated_vs_pixels": round(peak / 1e6 / pixel_mb, 2),
        "peak_with_input_files_vs_pixels": round((peak / 1e6 + input_mb) / pixel_mb, 2),
        "note": "peak: series volume + overlay + view while reading, traced; the input files' bytes and the "
                "label map as read are extra (the page holds them anyway)",
        "input_files_mb": round(input_mb, 1),
        "load_average_1min": round(os.getloadavg()[0], 1),
        "cpus": os.cpu_count(),
    }
    if args.browser:
        result["browser"] = browser_figures(files, args.n)
    results = REPO / "bench" / "results"
    results.mkdir(exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    for name in (f"preview-{stamp}.json", "preview-latest.json"):
        (results / name).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


PAGE = '''
import sys
sys.path[:0] = [{pylib!r}, {webapp!r}]
from pathlib import Path
import numpy as np
import panel as pn
from qidicom import preview as qp
from qidicom.geometry import Volume
from preview import SlicePreview
sys.path.insert(0, {tests!r})
import synthetic
import time
started = time.perf_counter()
files = [(p.name, p.read_bytes()) for p in sorted(Path({folder!r}).iterdir())]
volume = qp.read_series_volume(files)
del files
overlay = qp.overlay_from_label_maps([Volume(synthetic.ten_sphere_labels(volume.shape).astype(np.uint8), volume.affine)], volume)
view = SlicePreview(volume, overlay=overlay, title="bench")
Path({timing!r}).write_text(str(time.perf_counter() - started))
view.panel().servable()
'''


def browser_figures(files, n: int) -> dict:
    """Key presses on the axial slider and window presets in chromium, timed to the repaint."""
    import subprocess
    import tempfile
    import urllib.request

    from playwright.sync_api import sync_playwright
    from site_browser import CHROMIUM, CHROMIUM_ARGS, free_port

    folder = Path(tempfile.mkdtemp(prefix="qidicom-bench-preview-"))
    for name, data in files:
        (folder / Path(name).name).write_bytes(data)
    script = folder.parent / (folder.name + "-page.py")
    script.write_text(PAGE.format(pylib=str(REPO / "pylib"), webapp=str(REPO / "webapp"), tests=str(REPO / "tests"),
                                  folder=str(folder), timing=str(folder.parent / (folder.name + "-timing.txt"))))
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "panel", "serve", str(script), "--port", str(port), "--address",
                               "127.0.0.1", "--allow-websocket-origin", f"127.0.0.1:{port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/{script.stem}"
    figures: dict = {}
    try:
        import socket

        for _ in range(240):  # the port only: a request would build a session
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1500, "height": 900})
            started = time.perf_counter()
            page.goto(url, timeout=600_000)
            page.wait_for_selector(".bk-Plot canvas", timeout=600_000)
            canvas = page.locator(".bk-Plot canvas").first.element_handle()
            page.wait_for_function(PAINTED, arg=canvas, timeout=600_000)
            figures["page_open_to_first_slices_s"] = round(time.perf_counter() - started, 2)
            figures["server_read_and_build_s"] = round(float((folder.parent / (folder.name + "-timing.txt")).read_text()), 2)
            page.wait_for_timeout(3000)  # layout settles
            readout = page.locator(".qi-readout-text")
            window_text = page.locator(".qi-window-text")

            def until_changed(locator, before: str, limit_s: float = 30.0) -> None:
                deadline = time.perf_counter() + limit_s
                while locator.inner_text() == before:
                    if time.perf_counter() > deadline:
                        raise TimeoutError("no update reached the page")
                    time.sleep(0.005)
                page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")

            handle = page.locator(".qi-slider-axial .noUi-handle").first
            handle.focus()
            slice_ms = []
            for step in range(n):
                before = readout.inner_text()
                t0 = time.perf_counter()
                page.keyboard.press("ArrowRight" if step % 2 == 0 else "ArrowLeft")
                until_changed(readout, before)
                slice_ms.append((time.perf_counter() - t0) * 1000)
            figures["slice_key_to_repaint_ms"] = {"median": round(statistics.median(slice_ms), 1),
                                                   "p95": round(percentile(slice_ms, 95), 1), "n": len(slice_ms)}
            window_ms = []
            select = page.locator("select").first  # the Window presets
            options = [o for o in select.locator("option").all_inner_texts() if o.startswith("CT")]
            for step in range(n):
                before = window_text.inner_text()
                t0 = time.perf_counter()
                select.select_option(label=options[(step + 1) % len(options)])  # [0] is the default
                until_changed(window_text, before)
                window_ms.append((time.perf_counter() - t0) * 1000)
            figures["window_preset_to_repaint_ms"] = {"median": round(statistics.median(window_ms), 1),
                                                       "p95": round(percentile(window_ms, 95), 1), "n": len(window_ms)}
            figures["how"] = ("key press / preset choice until the page shows the Python side's update (readout or "
                              "window text, sent in the same patch as the pixels or mapper range), plus two animation "
                              "frames for the paint; includes Playwright's polling (5 ms) and protocol latency")
            browser.close()
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    return figures


# The axial canvas' pixels, hashed: "changed" once they differ from when the probe was armed
# (Panel renders inside shadow roots, so the canvas is handed in by Playwright).
PAINTED = """(c) => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  for (let i = 0; i < d.length; i += 4) if (d[i] > 0 && d[i] < 250) return true; return false; }"""
INSTALL_PROBE = """(element) => {
  const canvas = () => element;
  const hash = () => { const c = canvas(); const ctx = c.getContext('2d');
    const d = ctx.getImageData(0, 0, c.width, c.height).data; let h = 0;
    for (let i = 0; i < d.length; i += 97) h = (h * 31 + d[i]) | 0; return h; };
  window.qiProbe = { base: null, arm() { this.base = hash(); }, changed() { return hash() !== this.base; } };
}"""


if __name__ == "__main__":
    main()
