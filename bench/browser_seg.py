"""In-browser SEG write of the 512x512x200, 10-label benchmark, through the app's own inputs.

    python3 bench/make_data.py --only seg     # once (bench/work/seg/)
    python3 bench/browser_seg.py [--runs 3] [--types binary,labelmap] [--no-native]
                                 [--dist NAME=DIR ...]

Chromium opens the built site; the 200-slice series, the label map and the metadata are
chosen with the page's file inputs; then Convert is pressed. Reported per run: "read" (files
chosen -> series summary shown: the worker reads the File objects and parses the series),
"convert" (Convert clicked -> the first animation frame with the download link, timed in the
page; Playwright's own wait, which polls from outside, is reported beside it), of which the
library call in the worker and the time from its end until the link was offered (the worker's
own 'written in' line), and the peak resident memory of the browser process that runs the Python worker. Unless
--no-native is given, dcmqi's itkimage2segimage writes the same SEG after each browser run
of a type, so browser and native runs alternate and share the machine's load. --dist
(repeatable) compares built sites (e.g. before=/tmp/old-dist after=dist) in the same
alternation; the default is dist/, built when needed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import browser_session  # noqa: E402
import harness  # noqa: E402

WORK = HERE / "work" / "seg"


def renderer_peak_rss_mib() -> float:
    """Largest peak RSS (VmHWM) among chromium renderer processes: the worker lives in one."""
    peak = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            cmdline = (status.parent / "cmdline").read_bytes()
            if b"chromium" not in cmdline or b"--type=renderer" not in cmdline:
                continue
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except OSError:
            continue
    return peak / 1024


# What a person sees, timed in the page: from the click on Convert (a capture listener on the
# window: the button's click is composed out of Bokeh's shadow roots) to the first animation
# frame (the one the browser paints next) in which the download link is in the document.
# Playwright's own wait polls from outside and comes up to ~0.5 s late while the page lays out
# the preview of what was written; both are reported.
SEEN_IN_PAGE = """() => {
  const bench = (window.qidicomBench = { click: null, link: null });
  window.addEventListener("click", () => { if (bench.click === null) bench.click = performance.now(); }, true);
  const hasLink = (root) => {
    if (root.querySelector("a.qi-download")) return true;
    for (const element of root.querySelectorAll("*")) if (element.shadowRoot && hasLink(element.shadowRoot)) return true;
    return false;
  };
  const frame = () => {
    if (bench.click !== null && hasLink(document)) { bench.link = performance.now(); return; }
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
}"""


def run_once(server, segmentation_type: str) -> dict:
    series = sorted(str(p) for p in (WORK / "ct").iterdir())
    with browser_session.browser_context(server) as (context, log):
        page = context.new_page()
        browser_session.watch_page(page, log)
        page.goto(server.url)
        browser_session.wait_ready(page)
        page.wait_for_selector("body[data-stack=ready]", state="attached", timeout=120_000)
        start = time.perf_counter()
        page.set_input_files("#seg-series", series)
        page.get_by_text(f"Series found ({len(series)} files)").wait_for(timeout=300_000)
        read = time.perf_counter() - start
        page.set_input_files("#seg-labelmaps", str(WORK / "labels.nrrd"))
        page.set_input_files("#seg-metadata", str(WORK / "seg-meta.json"))
        page.get_by_text("seg-meta.json is valid").wait_for(timeout=120_000)
        # The preview opens by itself once series and label map are there; a person sees it
        # drawn, then converts (timed alone, not queued behind the preview's reading).
        page.locator(".qi-preview-card .qi-readout-text").first.wait_for(timeout=300_000)
        if segmentation_type != "binary":
            page.get_by_role("button", name={"labelmap": "Label map"}[segmentation_type], exact=True).click()
        page.wait_for_selector(".bk-btn-primary:not([disabled])", timeout=60_000)
        page.evaluate(SEEN_IN_PAGE)
        start = time.perf_counter()
        page.get_by_role("button", name="Convert to DICOM SEG").click()
        link = page.locator("a.qi-download, .alert-danger")
        link.first.wait_for(timeout=600_000)
        convert = time.perf_counter() - start
        if page.locator("a.qi-download").count() == 0:
            raise RuntimeError("conversion failed in the browser")
        page.wait_for_function("window.qidicomBench.link !== null", timeout=60_000)
        in_page = page.evaluate("(window.qidicomBench.link - window.qidicomBench.click) / 1000")
        size = page.locator("a.qi-download").evaluate("a => a.parentElement.textContent")
        assert not log.foreign
        page.wait_for_timeout(500)  # the worker's line, printed after the link's update, reaches the log
        inside = [line for line in log.console if "qidicom: seg written in" in line.lower()]  # the worker's own timing
        call = link = None
        if inside:
            call = float(inside[-1].split(" written in ")[1].split(" s")[0])
            if " link offered " in inside[-1]:
                link = float(inside[-1].split(" link offered ")[1].split(" s")[0])
        return {"read_s": round(read, 2), "convert_s": round(convert, 2), "in_page_s": round(in_page, 2),
                "in_worker_s": call, "link_after_call_s": link,
                "renderer_peak_rss_mib": round(renderer_peak_rss_mib()), "result": size.strip()}


def dcmqi_once(tool, segmentation_type: str, target: Path) -> float:
    """Wall seconds of dcmqi's itkimage2segimage on the same inputs (uncompressed)."""
    target.unlink(missing_ok=True)
    options = ["--inputImageList", str(WORK / "labels.nrrd"), "--inputDICOMDirectory", str(WORK / "ct"),
               "--inputMetadata", str(WORK / "seg-meta.json"), "--outputDICOM", str(target),
               "--segmentationType", segmentation_type]
    run = harness.run_once(tool.argv("itkimage2segimage", options), tool.env, target.with_suffix(".log"))
    if run.returncode != 0 or not target.exists():
        raise RuntimeError(f"dcmqi failed ({run.returncode}): {run.log[-500:]}")
    return round(run.wall_s, 2)


def median_of(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return round(statistics.median(values), 2) if values else None


def print_table(report: dict) -> None:
    """Markdown: uncompressed SEG write, each site in the browser vs dcmqi, median wall seconds."""
    print("\n| type | site | browser: Convert -> link painted (Playwright saw it) | library call | call end -> link "
          "| dcmqi | browser / dcmqi | renderer peak RSS |")
    print("|---|---|---|---|---|---|---|---|")
    for kind, by_site in report["runs"].items():
        dcmqi = median_of(report["dcmqi"].get(kind, []), "wall_s")
        for site, rows in by_site.items():
            page, outside = median_of(rows, "in_page_s"), median_of(rows, "convert_s")
            ratio = f"{page / dcmqi:.2f}x ({outside / dcmqi:.2f}x)" if dcmqi else "-"
            seconds = lambda value: "-" if value is None else f"{value:.2f} s"  # noqa: E731
            print(f"| {kind} | {site} | {page:.2f} s ({outside:.2f} s) | {seconds(median_of(rows, 'in_worker_s'))} | "
                  f"{seconds(median_of(rows, 'link_after_call_s'))} | {seconds(dcmqi)} | {ratio} | "
                  f"{median_of(rows, 'renderer_peak_rss_mib'):.0f} MiB |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--types", default="binary,labelmap")
    parser.add_argument("--no-native", action="store_true", help="skip the dcmqi runs")
    parser.add_argument("--dist", action="append", default=[], metavar="NAME=DIR", help="a built site to compare")
    args = parser.parse_args()
    reason = browser_session.chromium_missing_reason()
    if reason:
        print(f"skipped: {reason}")
        return 0
    if not (WORK / "stamp.json").is_file():
        subprocess.run([sys.executable, str(HERE / "make_data.py"), "--only", "seg"], check=True)
    if not args.dist:
        subprocess.run([sys.executable, str(HERE.parent / "build" / "site.py"), "build", "--if-needed"], check=True)
    sites = dict(item.split("=", 1) for item in args.dist) if args.dist else {"dist": str(browser_session.DIST)}
    tool = None if args.no_native else harness.find_dcmqi()
    types = args.types.split(",")
    report = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "load_average_before": os.getloadavg(),
              "runs": {kind: {site: [] for site in sites} for kind in types}, "dcmqi": {kind: [] for kind in types}}
    out_dir = Path(tempfile.mkdtemp(prefix="qidicom-browser-seg-"))
    servers = {site: browser_session.SiteServer(Path(folder)) for site, folder in sites.items()}
    try:
        for server in servers.values():
            server.__enter__()
        for run in range(args.runs):
            for kind in types:
                for site, server in servers.items():
                    row = run_once(server, kind)
                    report["runs"][kind][site].append(row)
                    print(f"run {run + 1} {kind:9} {site:8} read {row['read_s']:.2f} s, convert {row['in_page_s']:.2f} s "
                          f"(Playwright saw it after {row['convert_s']:.2f} s) "
                          f"(library call {row['in_worker_s']} s, then link after {row['link_after_call_s']} s), "
                          f"renderer peak RSS {row['renderer_peak_rss_mib']} MiB  ({row['result']})", flush=True)
                if tool is not None:
                    wall = dcmqi_once(tool, kind, out_dir / f"dcmqi-{kind}.dcm")
                    report["dcmqi"][kind].append({"wall_s": wall})
                    print(f"run {run + 1} {kind:9} dcmqi    {wall:.2f} s", flush=True)
    finally:
        for server in servers.values():
            server.__exit__(None, None, None)
        shutil.rmtree(out_dir, ignore_errors=True)
    report["load_average_after"] = os.getloadavg()
    print_table(report)
    print(f"load average before {report['load_average_before']}, after {report['load_average_after']}")
    out = HERE / "results" / "browser_seg.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
