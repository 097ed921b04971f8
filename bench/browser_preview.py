#!/usr/bin/env python3
"""The slice preview in the built site (dist/, Pyodide in Debian's chromium): a 300-slice
512x512 CT series and a label map of ten spheres chosen in SEG mode's pickers; the
preview opens by itself once both are there.

    .venv/bin/python bench/browser_preview.py [--slices 300] [--size 512] [-n 40]

Figures (nothing asserted), in bench/results/browser-preview-*.json:
- files chosen -> "Series found" (the worker reads and parses the files);
- label map chosen -> first slices drawn (the label map read, the preview's packages
  loaded on first use, the pixels decoded, the overlay placed, three planes sent), and
  series chosen -> first slices drawn;
- chromium's memory (summed RSS of its processes, sampled every 0.2 s): at rest (median of
  3 s of samples once the DICOM libraries are loaded and a garbage collection has run in the
  page and the worker: chromium runs with --js-flags=--expose-gc), its peak from choosing the files
  until 2 s after the preview is drawn, and the growth (peak - rest) over the series' pixel
  data; the same of the summed USS (memory no other process shares: steadier than RSS,
  which counts shared libraries once per process); the worker's WebAssembly heap at the
  end (Python's memory: it never shrinks); in --runs fresh browsers (median, min, max),
  the repaints in the last;
- repaint, median and 95th percentile, per kind of change:
  slice (arrow key on the focused axial slider) and plane (a click in the axial plane,
  which moves the other two planes' slices): from the key press or click until the page
  shows the readout the worker sends in the same patch as the pixels, plus two animation
  frames for the paint; and in the page ("..._in_page"), from sending the change to the
  worker until two frames after its answer was applied (window.qidicomAnswers);
  window (a preset), overlay opacity (arrow key on its slider) and visibility (a segment's
  checkbox): made by the page itself (webapp/page.js), timed twice: from Playwright's
  action until the page has changed the models (window.qidicomPageSide) plus two animation
  frames, and in the page, from the widget's change to two frames after page.js's change
  ("..._in_page": without Playwright's input and polling latency).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "pylib"), str(REPO / "tests"), str(REPO / "bench")]

import site_browser  # noqa: E402
import synthetic  # noqa: E402  (the tests' generators)
from site_browser import (SiteServer, browser_context, build_site, choose_files, select_mode, wait_ready,  # noqa: E402
                          watch_page)

# gc() in the page and the worker: the garbage left by loading the packages is collected
# before the rest baseline (collected or not, it made the baseline jump by ~140 MB).
site_browser.CHROMIUM_ARGS.append("--js-flags=--expose-gc")

TIMEOUT_MS = 300_000
TWO_FRAMES = "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"


def write_series(folder: Path, slices: int, size: int) -> tuple[list[Path], Path]:
    """The series' files and a label map of ten spheres on its grid (a NIfTI beside it)."""
    datasets = synthetic.make_ct_series(rows=size, columns=size, slices=slices, pixel_spacing=(0.7, 0.7),
                                        slice_spacing=1.0)
    synthetic.write_series(datasets, folder)
    labels = synthetic.ten_sphere_labels(synthetic.grid_shape(datasets)).astype(np.uint8)
    label_map = synthetic.save_nifti(labels, synthetic.series_affine(datasets), folder.parent / "spheres.nii.gz")
    return sorted(folder.iterdir()), label_map


class MemoryWatch:
    """The summed RSS of this process' chromium processes, sampled every 0.2 s (shared pages
    are counted once per process, so this overstates a little). ``mark()`` starts a new
    window of samples; ``median()`` and ``peak()`` are over the current window, so that the
    idle baseline and the peak are taken by the same sampler in the same way."""

    def __init__(self):
        import threading

        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def current(private: bool = False) -> int:
        """Summed RSS, or with ``private`` the summed USS (pages no other process shares:
        what the page itself holds, without the shared libraries counted per process)."""
        import psutil

        total = 0
        for child in psutil.Process().children(recursive=True):
            try:
                if "chrom" in child.name():
                    total += child.memory_full_info().uss if private else child.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.samples.append((self.current(), self.current(private=True)))

    def mark(self) -> None:
        self.samples = []

    def median(self, private: bool = False) -> int:
        return int(statistics.median(sample[private] for sample in self.samples))

    def peak(self, private: bool = False) -> int:
        return max(sample[private] for sample in self.samples)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def timed_until(page, locator, before: str, limit_s: float = 60.0) -> tuple[float, float]:
    """(seconds until ``locator``'s text differs from ``before``, plus two frames; seconds in
    the page from sending the change to the worker until two frames after its answer)."""
    started = time.perf_counter()
    deadline = started + limit_s
    while locator.inner_text() == before:
        if time.perf_counter() > deadline:
            raise TimeoutError("no update reached the page")
        time.sleep(0.005)
    page.evaluate(TWO_FRAMES)
    outside = time.perf_counter() - started
    while (last := page.evaluate("window.qidicomAnswers.last")) is None or last["painted"] is None:
        time.sleep(0.002)
    return outside, (last["painted"] - last["sent"]) / 1000


def timed_page_side(page, action, limit_s: float = 30.0) -> tuple[float, float]:
    """(seconds from ``action()`` until page.js has changed the models itself, plus two
    frames; seconds in the page from the widget's change to two frames after page.js's change)."""
    before = page.evaluate("window.qidicomPageSide.applied")
    started = time.perf_counter()
    action()
    deadline = started + limit_s
    while page.evaluate("window.qidicomPageSide.applied") == before:
        if time.perf_counter() > deadline:
            raise TimeoutError("the page made no change itself")
        time.sleep(0.002)
    page.evaluate(TWO_FRAMES)
    outside = time.perf_counter() - started
    while (last := page.evaluate("window.qidicomPageSide.last"))["painted"] is None:
        time.sleep(0.002)
    return outside, (last["painted"] - last["started"]) / 1000


def summary(values_ms: list[float]) -> dict:
    return {"median": round(statistics.median(values_ms), 1), "p95": round(float(np.percentile(values_ms, 95)), 1),
            "n": len(values_ms)}


def measure_memory(page, url: str, paths, label_map, pixel_data_mb: float) -> dict:
    """One fresh page: chromium's memory at rest (the DICOM libraries loaded, nothing
    chosen), its peak from choosing the files until 2 s after the preview is drawn, and the
    times to "Series found" and to the first slices."""
    with MemoryWatch() as watch:
        page.goto(url)
        wait_ready(page)
        page.wait_for_selector("body[data-stack=ready]", state="attached", timeout=TIMEOUT_MS)
        select_mode(page, "seg")
        page.wait_for_timeout(2000)
        page.evaluate("gc()")
        page.workers[0].evaluate("gc()")
        page.wait_for_timeout(2000)  # settle, then 3 s of samples at rest
        watch.mark()
        page.wait_for_timeout(3000)
        idle, idle_private = watch.median(), watch.median(private=True)
        watch.mark()
        figures: dict = {}
        started = time.perf_counter()
        choose_files(page, "seg", "series", paths)
        page.get_by_text(f"Series found ({len(paths)} files)").wait_for(timeout=TIMEOUT_MS)
        figures["files_chosen_to_series_found_s"] = round(time.perf_counter() - started, 2)
        chosen = time.perf_counter()
        choose_files(page, "seg", "labelmaps", [label_map])
        page.locator(".qi-preview-card .qi-readout-text").first.wait_for(timeout=TIMEOUT_MS)  # opened by itself
        page.evaluate(TWO_FRAMES)
        figures["label_map_chosen_to_first_slices_s"] = round(time.perf_counter() - chosen, 2)
        figures["files_chosen_to_first_slices_s"] = round(time.perf_counter() - started, 2)
        page.wait_for_timeout(2000)
        peak, peak_private = watch.peak(), watch.peak(private=True)
        figures["wasm_heap_mb"] = round(page.workers[0].evaluate("pyodide._module.HEAP8.length") / 1e6)
    figures.update(idle_mb=round(idle / 1e6), peak_mb=round(peak / 1e6),
                   growth_over_pixel_data=round((peak - idle) / (pixel_data_mb * 1e6), 2),
                   private_idle_mb=round(idle_private / 1e6), private_peak_mb=round(peak_private / 1e6),
                   private_growth_over_pixel_data=round((peak_private - idle_private) / (pixel_data_mb * 1e6), 2))
    return figures


def repaints(page, n: int, figures: dict) -> None:
    """Repaint times of the shown preview, into ``figures["repaint_ms"]``."""
    page.wait_for_timeout(2000)  # layout settles
    readout = page.locator(".qi-readout-text").first
    repaint: dict = {}

    def round_trip(kind: str, action_of_step) -> None:
        outside, inside = [], []
        for step in range(n):
            before = readout.inner_text()
            action_of_step(step)
            total, in_page = timed_until(page, readout, before)
            outside.append(total * 1000)
            inside.append(in_page * 1000)
        repaint[kind], repaint[f"{kind}_in_page"] = summary(outside), summary(inside)

    page.locator(".qi-slider-axial .noUi-handle").first.focus()
    round_trip("slice", lambda step: page.keyboard.press("ArrowRight" if step % 2 == 0 else "ArrowLeft"))
    box = page.locator(".qi-preview .bk-Plot").first.bounding_box()
    # Clicks at points on a diagonal of the axial plane: new sagittal and coronal slices each time.
    round_trip("plane", lambda step: page.mouse.click(box["x"] + box["width"] * (0.3 + 0.4 * (step % 10) / 9),
                                                      box["y"] + 40 + (box["height"] - 50) * (0.3 + 0.4 * (step % 10) / 9)))

    select = page.locator(".qi-preview select").first  # the Window presets
    options = [o for o in select.locator("option").all_inner_texts() if "(" in o]
    def page_side(kind: str, action_of_step) -> None:
        outside, inside = [], []
        for step in range(n):
            total, in_page = timed_page_side(page, action_of_step(step))
            outside.append(total * 1000)
            inside.append(in_page * 1000)
        repaint[kind], repaint[f"{kind}_in_page"] = summary(outside), summary(inside)

    page_side("window", lambda step: lambda: select.select_option(label=options[step % len(options)]))

    opacity = page.locator(".qi-preview .noUi-handle").nth(3)  # after the three slice sliders
    opacity.focus()
    page_side("overlay_opacity", lambda step: lambda: page.keyboard.press("ArrowLeft" if step % 2 == 0 else "ArrowRight"))
    boxes = page.locator(".qi-preview input[type=checkbox]")
    page_side("overlay_visibility", lambda step: boxes.nth(step % 3).click)

    figures["repaint_ms"] = repaint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("-n", type=int, default=40, help="repaints timed per kind")
    parser.add_argument("--runs", type=int, default=3, help="fresh browsers whose memory is measured")
    parser.add_argument("--memory-only", action="store_true", help="no repaint timing")
    parser.add_argument("--dist", type=Path, default=None, help="a built site to serve (default: build dist/)")
    args = parser.parse_args()

    load_before = [round(v, 2) for v in os.getloadavg()]
    dist = args.dist or build_site()
    folder = Path(tempfile.mkdtemp(prefix="qidicom-bench-browser-preview-"))
    paths, label_map = write_series(folder / "ct", args.slices, args.size)
    figures: dict = {"series": f"{args.slices} slices of {args.size}x{args.size} int16, label map of ten spheres",
                     "pixel_data_mb": round(args.slices * args.size * args.size * 2 / 1e6, 1)}
    memory_runs = []
    with SiteServer(dist) as server:
        for run in range(args.runs):
            with browser_context(server, viewport=(1280, 1400)) as (context, log):
                page = context.new_page()
                watch_page(page, log)
                figures_of_run = measure_memory(page, server.url, paths, label_map, figures["pixel_data_mb"])
                memory_runs.append(figures_of_run)
                print(f"run {run + 1}: {json.dumps(figures_of_run)}", flush=True)
                if run == args.runs - 1 and not args.memory_only:
                    repaints(page, args.n, figures)
                figures["foreign_requests"] = figures.get("foreign_requests", 0) + len(log.foreign)
                figures["page_errors"] = figures.get("page_errors", []) + log.errors[:5]
    figures["chromium_memory"] = {"runs": memory_runs}
    for key in ("growth_over_pixel_data", "private_growth_over_pixel_data"):
        growth = [r[key] for r in memory_runs]
        figures["chromium_memory"][key] = {"median": round(statistics.median(growth), 2), "min": min(growth),
                                           "max": max(growth), "n": len(growth)}
    figures["how"] = ("built site served locally, chromium headless on this machine; times include Playwright's "
                      "polling and protocol latency")
    figures["load_average"] = {"before": load_before, "after": [round(v, 2) for v in os.getloadavg()]}
    shutil.rmtree(folder, ignore_errors=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = REPO / "bench" / "results" / f"browser-preview-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=1) + "\n")
    print(json.dumps(figures, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
