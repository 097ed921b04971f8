"""In-browser SEG write of the 512x512x200, 10-label benchmark, through the app's own inputs.

    python3 bench/make_data.py --only seg     # once (bench/work/seg/)
    python3 bench/browser_seg.py [--runs 2] [--types binary,labelmap] [--no-native]

Chromium opens the built site; the 200-slice series, the label map and the metadata are
chosen with the page's file inputs; then Convert is pressed. Reported per run: "read" (files
chosen -> series summary shown: the worker reads the File objects and parses the series),
"convert" (Convert pressed -> download link shown: the whole library conversion, which reads
everything again, as the CLI does) and the peak resident memory of the browser process that
runs the Python worker. Unless --no-native is given, bench_seg.py first measures the CPython
command line and dcmqi on the same inputs, so one run prints all three side by side.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import browser_session  # noqa: E402

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
        start = time.perf_counter()
        page.get_by_role("button", name="Convert to DICOM SEG").click()
        link = page.locator("a.qi-download, .alert-danger")
        link.first.wait_for(timeout=600_000)
        convert = time.perf_counter() - start
        if page.locator("a.qi-download").count() == 0:
            raise RuntimeError("conversion failed in the browser")
        size = page.locator("a.qi-download").evaluate("a => a.parentElement.textContent")
        assert not log.foreign
        inside = [line for line in log.console if "qidicom: seg written in" in line.lower()]  # the worker's own timing
        return {"read_s": round(read, 2), "convert_s": round(convert, 2),
                "in_worker_s": float(inside[-1].split(" written in ")[1].split(" s")[0]) if inside else None,
                "renderer_peak_rss_mib": round(renderer_peak_rss_mib()), "result": size.strip()}


def print_table(report: dict) -> None:
    """Markdown: uncompressed SEG write, browser vs CPython CLI vs dcmqi, median wall seconds."""
    native = {(row["tool"], row["type"]): row for row in report["native"] if row["compress"] == "none" and row["ok"]}
    print("\n| type | browser: page (library call) | qidicom CLI (CPython) | dcmqi | browser / dcmqi | browser peak RSS |")
    print("|---|---|---|---|---|---|")
    for kind, rows in report["runs"].items():
        page = statistics.median(r["convert_s"] for r in rows)
        call = statistics.median(r["in_worker_s"] for r in rows)
        cli, dcmqi = native.get(("qidicom", kind)), native.get(("dcmqi", kind))
        ratio = f"{page / dcmqi['wall_s_median']:.1f}x ({call / dcmqi['wall_s_median']:.1f}x)" if dcmqi else "-"
        print(f"| {kind} | {page:.2f} s ({call:.2f} s) | {cli['wall_s_median']:.2f} s | "
              f"{dcmqi['wall_s_median']:.2f} s | {ratio} | "
              f"{statistics.median(r['renderer_peak_rss_mib'] for r in rows):.0f} MiB |" if cli and dcmqi else
              f"| {kind} | {page:.2f} s ({call:.2f} s) | - | - | - | - |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--types", default="binary,labelmap")
    parser.add_argument("--no-native", action="store_true", help="skip the CPython CLI and dcmqi runs")
    args = parser.parse_args()
    reason = browser_session.chromium_missing_reason()
    if reason:
        print(f"skipped: {reason}")
        return 0
    if not (WORK / "stamp.json").is_file():
        subprocess.run([sys.executable, str(HERE / "make_data.py"), "--only", "seg"], check=True)
    subprocess.run([sys.executable, str(HERE.parent / "build" / "site.py"), "build", "--if-needed"], check=True)
    report = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "runs": {}}
    with browser_session.SiteServer() as server:
        for segmentation_type in args.types.split(","):
            rows = [run_once(server, segmentation_type) for _ in range(args.runs)]
            report["runs"][segmentation_type] = rows
            median = {k: statistics.median(r[k] for r in rows)
                      for k in ("read_s", "convert_s", "in_worker_s", "renderer_peak_rss_mib")}
            print(f"{segmentation_type:9} read {median['read_s']:.2f} s, convert {median['convert_s']:.2f} s "
                  f"(library call in the worker {median['in_worker_s']:.2f} s), "
                  f"renderer peak RSS {median['renderer_peak_rss_mib']:.0f} MiB  ({rows[0]['result']})")
    if not args.no_native:
        native = subprocess.run([sys.executable, str(HERE / "bench_seg.py"), "-n", str(args.runs), "--only", "write",
                                 "--types", args.types], capture_output=True, text=True)
        reference = HERE / "results" / "seg-latest.json"
        if native.returncode == 0 and reference.is_file():
            report["native"] = json.loads(reference.read_text())["write"]
            print_table(report)
        else:
            print(f"native runs failed (bench_seg.py exit {native.returncode}): {native.stderr[-500:]}")
    out = HERE / "results" / "browser_seg.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
