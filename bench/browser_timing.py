"""Time to interactive of the built web app in headless chromium, cold and warm.

    python3 bench/browser_timing.py [--runs 3]

Cold: a fresh browser profile each run (no HTTP cache, no service worker, no compiled-code
cache), served from localhost. Warm: the same profile reloaded after the service worker has
cached the site. Times are milliseconds from navigation start, read from the page's own
marks: "rendered" (the Panel document is on screen), "ready" (it is interactive) and
"stack" (the DICOM libraries are imported too). Results go to bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import browser_session  # noqa: E402


def measure(page) -> dict:
    timing = browser_session.wait_ready(page)
    page.wait_for_selector("body[data-stack=ready]", state="attached", timeout=120_000)
    timing = page.evaluate("({...window.qidicomTiming})")
    return {
        "rendered": timing["rendered"], "ready": timing["ready"], "stack": timing["stackReady"],
        # inside the worker, from its start: Python up, interface packages loaded, document built
        "w_python": timing["worker_python"], "w_packages": timing["worker_packages"],
        "w_document": timing["worker_rendered"],
    }


def cold_run(server) -> dict:
    with browser_session.browser_context(server) as (context, log):
        page = context.new_page()
        page.goto(server.url)
        result = measure(page)
        assert not log.foreign, log.foreign
        return result


def warm_runs(server, runs: int) -> list[dict]:
    with browser_session.browser_context(server) as (context, _log):
        page = context.new_page()
        page.goto(server.url)
        measure(page)
        page.wait_for_selector("body[data-offline=ready]", state="attached", timeout=120_000)
        results = []
        for _ in range(runs):
            page.reload()
            results.append(measure(page))
        return results


def summarise(rows: list[dict]) -> dict:
    return {key: round(statistics.median(row[key] for row in rows)) for key in rows[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dist", type=Path, default=None,
                        help="a site built elsewhere (e.g. build/site.py build --no-bytecode --out DIR)")
    args = parser.parse_args()
    reason = browser_session.chromium_missing_reason()
    if reason:
        print(f"skipped: {reason}")
        return 0
    if args.dist is None:
        subprocess.run([sys.executable, str(HERE.parent / "build" / "site.py"), "build", "--if-needed"], check=True)
    with browser_session.SiteServer(args.dist or browser_session.DIST) as server:
        cold = [cold_run(server) for _ in range(args.runs)]
        warm = warm_runs(server, args.runs)
    report = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "site": str(args.dist or browser_session.DIST), "load_average": list(os.getloadavg()),
        "cold_ms": cold, "warm_ms": warm,
        "cold_median_ms": summarise(cold), "warm_median_ms": summarise(warm),
    }
    out = HERE / "results" / ("browser_timing.json" if args.dist is None else f"browser_timing-{args.dist.name}.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    keys = list(report["cold_median_ms"])
    print(f"median ms over {args.runs} runs (w_*: inside the worker, from its start)")
    print(f"{'':6}" + "".join(f"{key:>11}" for key in keys))
    for name in ("cold", "warm"):
        row = report[f"{name}_median_ms"]
        print(f"{name:6}" + "".join(f"{row[key]:11}" for key in keys))
    return 0


if __name__ == "__main__":
    sys.exit(main())
