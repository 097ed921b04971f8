#!/usr/bin/env python3
"""The slice preview in the built site (dist/, Pyodide in Debian's chromium): a 300-slice
512x512 CT series chosen in SEG mode's picker, then "Show the preview".

    .venv/bin/python bench/browser_preview.py [--slices 300] [--size 512] [-n 40]

Figures (nothing asserted), in bench/results/browser-preview-*.json:
- files chosen -> "Series found" (the worker reads and parses the files);
- "Show the preview" clicked -> first slices drawn (the preview's packages loaded on
  first use, the pixels decoded, three planes sent), and the same once more (packages
  loaded already);
- chromium's memory (summed RSS of its processes) when ready and its peak until the
  preview is shown, and the growth over the series' pixel data;
- repaint on changing slice (arrow key on the focused axial slider) and on a window
  preset, median and 95th percentile: from the key press or choice until the page shows
  the update the worker sends in the same patch as the pixels or mapper range (the
  readout or window text), plus two animation frames for the paint.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "pylib"), str(REPO / "tests"), str(REPO / "bench")]

import synthetic  # noqa: E402  (the tests' generators)
from site_browser import (SiteServer, browser_context, build_site, choose_files, select_mode, wait_ready,  # noqa: E402
                          watch_page)

TIMEOUT_MS = 300_000
TWO_FRAMES = "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"


def write_series(folder: Path, slices: int, size: int) -> list[Path]:
    datasets = synthetic.make_ct_series(rows=size, columns=size, slices=slices, pixel_spacing=(0.7, 0.7),
                                        slice_spacing=1.0)
    synthetic.write_series(datasets, folder)
    return sorted(folder.iterdir())


class MemoryWatch:
    """Peak of the summed RSS of this process' chromium processes, sampled every 0.2 s
    (shared pages are counted once per process, so this overstates a little)."""

    def __init__(self):
        import threading

        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def current() -> int:
        import psutil

        total = 0
        for child in psutil.Process().children(recursive=True):
            try:
                if "chrom" in child.name():
                    total += child.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, self.current())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def timed_until(page, locator, before: str, limit_s: float = 60.0) -> float:
    """Seconds until ``locator``'s text differs from ``before``, plus two frames."""
    started = time.perf_counter()
    deadline = started + limit_s
    while locator.inner_text() == before:
        if time.perf_counter() > deadline:
            raise TimeoutError("no update reached the page")
        time.sleep(0.005)
    page.evaluate(TWO_FRAMES)
    return time.perf_counter() - started


def summary(values_ms: list[float]) -> dict:
    return {"median": round(statistics.median(values_ms), 1), "p95": round(float(np.percentile(values_ms, 95)), 1),
            "n": len(values_ms)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("-n", type=int, default=40, help="repaints timed per kind")
    args = parser.parse_args()

    dist = build_site()
    folder = Path(tempfile.mkdtemp(prefix="qidicom-bench-browser-preview-"))
    paths = write_series(folder / "ct", args.slices, args.size)
    figures: dict = {"series": f"{args.slices} slices of {args.size}x{args.size} int16",
                     "pixel_data_mb": round(args.slices * args.size * args.size * 2 / 1e6, 1)}
    with SiteServer(dist) as server, browser_context(server, viewport=(1280, 1400)) as (context, log):
        page = context.new_page()
        watch_page(page, log)
        page.goto(server.url)
        wait_ready(page)
        select_mode(page, "seg")
        page.wait_for_timeout(2000)
        idle_rss = MemoryWatch.current()
        watch = MemoryWatch().__enter__()
        started = time.perf_counter()
        choose_files(page, "seg", "series", paths)
        page.get_by_text(f"Series found ({len(paths)} files)").wait_for(timeout=TIMEOUT_MS)
        figures["files_chosen_to_series_found_s"] = round(time.perf_counter() - started, 2)
        for key in ("first_preview_s", "second_preview_s"):
            old = page.locator(".qi-readout-text").first.element_handle() if page.locator(".qi-readout-text").count() else None
            clicked = time.perf_counter()
            page.get_by_role("button", name="Show the preview").click()
            while old is not None and old.evaluate("e => e.isConnected"):  # the second time: until replaced
                if time.perf_counter() - clicked > TIMEOUT_MS / 1000:
                    raise TimeoutError("the preview was not replaced")
                time.sleep(0.01)
            page.locator(".qi-readout-text").first.wait_for(timeout=TIMEOUT_MS)
            page.evaluate(TWO_FRAMES)
            figures[key] = round(time.perf_counter() - clicked, 2)
        figures["files_chosen_to_first_slices_s"] = round(figures["files_chosen_to_series_found_s"]
                                                          + figures["first_preview_s"], 2)
        page.wait_for_timeout(2000)
        watch.__exit__()
        figures["chromium_rss_mb"] = {"ready": round(idle_rss / 1e6), "peak_until_preview_shown": round(watch.peak / 1e6),
                                      "growth_over_pixel_data": round((watch.peak - idle_rss) / (figures["pixel_data_mb"] * 1e6), 2)}
        page.wait_for_timeout(2000)  # layout settles
        readout = page.locator(".qi-readout-text").first
        handle = page.locator(".qi-slider-axial .noUi-handle").first
        handle.focus()
        slice_ms = []
        for step in range(args.n):
            before = readout.inner_text()
            page.keyboard.press("ArrowRight" if step % 2 == 0 else "ArrowLeft")
            slice_ms.append(timed_until(page, readout, before) * 1000)
        figures["slice_key_to_repaint_ms"] = summary(slice_ms)
        window_text = page.locator(".qi-window-text").first
        select = page.locator(".qi-preview select").first  # the Window presets
        # Presets, each a window other than the one before (soft tissue is the default's 400/40).
        options = [o for o in select.locator("option").all_inner_texts() if "(" in o and "(400/40)" not in o]
        window_ms = []
        for step in range(args.n):
            before = window_text.inner_text()
            select.select_option(label=options[step % len(options)])
            window_ms.append(timed_until(page, window_text, before) * 1000)
        figures["window_preset_to_repaint_ms"] = summary(window_ms)
        figures["foreign_requests"] = len(log.foreign)
        figures["page_errors"] = log.errors[:5]
    figures["how"] = ("built site served locally, chromium headless on this machine; times include Playwright's "
                      "5 ms polling and protocol latency")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = REPO / "bench" / "results" / f"browser-preview-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=1) + "\n")
    print(json.dumps(figures, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
