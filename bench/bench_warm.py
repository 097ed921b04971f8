#!/usr/bin/env python3
"""SEG write in a warm process: qidicom's CLI entry point called twice in one interpreter
(the second call timed) vs dcmqi's native command, side by side in one run.

    python bench/bench_warm.py [-n 3] [--cases binary/none,binary/deflate,labelmap/none]

This is what a lab converting a collection from one Python process pays per case (imports,
highdicom's standard tables and first-call costs are paid once). Rounds alternate the tools
(round r: dcmqi once, then one fresh interpreter calling qidicom twice), so a change of
machine load falls on both. qidicom is run as committed (see harness.snapshot_qidicom).
Reported per case: median wall and CPU time of the second call, and dcmqi's; their ratio; and
the geometric mean of the ratios. Figures only: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as h  # noqa: E402

#: Run in the child interpreter: main(argv) twice; wall and CPU (all threads) of each call.
_CHILD = r"""
import json, sys, time
from qidicom.cli import main
argv = json.loads(sys.argv[1])
times = []
for _ in range(2):
    wall, cpu = time.perf_counter(), time.process_time()
    status = main(argv)
    times.append([status, time.perf_counter() - wall, time.process_time() - cpu])
print(json.dumps(times))
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", "--runs", type=int, default=3, help="rounds (median reported), default 3")
    p.add_argument("--cases", default="binary/none,binary/deflate,labelmap/none", help="type/compress list")
    p.add_argument("--input-format", choices=["nii", "nrrd"], default="nii")
    p.add_argument("--qidicom-ref", default="HEAD", help="git ref to snapshot (default HEAD)")
    p.add_argument("--dcmqi-venv", type=Path)
    p.add_argument("--work", type=Path, default=h.BENCH / "work")
    args = p.parse_args(argv)

    data = args.work / "seg"
    labels = data / ("labels.nii.gz" if args.input_format == "nii" else "labels.nrrd")
    out = args.work / "out" / "warm"
    out.mkdir(parents=True, exist_ok=True)
    qidicom = h.snapshot_qidicom(args.qidicom_ref)
    dcmqi = h.find_dcmqi(args.dcmqi_venv)
    cases = [tuple(case.split("/")) for case in args.cases.split(",") if case]
    h.prime_cache(data / "ct", labels)
    payload = {"benchmark": "warm", "date": h.utc_now(), "runs": args.runs, "machine": h.machine_info(),
               "python_versions": h.python_versions(),
               "tools": {name: {"version": t.version, "how": t.how} for name, t in (("qidicom", qidicom), ("dcmqi", dcmqi))},
               "cases": []}
    results = {case: {"qidicom": [], "dcmqi": []} for case in cases}
    for round_ in range(args.runs):
        for seg_type, compress in cases:
            options = ["--inputImageList", str(labels), "--inputDICOMDirectory", str(data / "ct"),
                       "--inputMetadata", str(data / "seg-meta.json"), "--segmentationType", seg_type]
            target = out / f"dcmqi-{seg_type}-{compress}.dcm"
            run = h.run_once(dcmqi.argv("itkimage2segimage", [*options, "--outputDICOM", str(target), "--compress", compress]))
            results[(seg_type, compress)]["dcmqi"].append([run.returncode, run.wall_s, run.cpu_s])
            target = out / f"qidicom-{seg_type}-{compress}.dcm"
            cli = ["itkimage2segimage", *options, "--outputDICOM", str(target), "--compress", compress]
            child = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(cli)], capture_output=True, text=True,
                                   env={**os.environ, **qidicom.env})
            times = json.loads(child.stdout.strip().splitlines()[-1]) if child.returncode == 0 else [[child.returncode, 0, 0]] * 2
            results[(seg_type, compress)]["qidicom"].append(times[1])
            print(f"  round {round_ + 1} {seg_type}/{compress}: dcmqi {run.wall_s:.2f}s (cpu {run.cpu_s:.2f}), "
                  f"qidicom second call {times[1][1]:.2f}s (cpu {times[1][2]:.2f}; first {times[0][1]:.2f}s)",
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
    rows, ratios, cpu_ratios = [], [], []
    for case, by_tool in results.items():
        ok = all(r[0] == 0 for tool in by_tool.values() for r in tool)
        q_wall = statistics.median(r[1] for r in by_tool["qidicom"])
        q_cpu = statistics.median(r[2] for r in by_tool["qidicom"])
        d_wall = statistics.median(r[1] for r in by_tool["dcmqi"])
        d_cpu = statistics.median(r[2] for r in by_tool["dcmqi"])
        ratios.append(q_wall / d_wall)
        cpu_ratios.append(q_cpu / d_cpu)
        payload["cases"].append({"case": "/".join(case), "ok": ok, "qidicom": by_tool["qidicom"], "dcmqi": by_tool["dcmqi"]})
        rows.append(["/".join(case), h.fmt_s(q_wall), h.fmt_s(q_cpu), h.fmt_s(d_wall), h.fmt_s(d_cpu),
                     f"{q_wall / d_wall:.2f}x", f"{q_cpu / d_cpu:.2f}x", "ok" if ok else "FAILED"])
    geo = math.exp(statistics.fmean(math.log(r) for r in ratios))
    geo_cpu = math.exp(statistics.fmean(math.log(r) for r in cpu_ratios))
    payload["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    table = h.md_table(["case", "qidicom 2nd call wall (s)", "CPU (s)", "dcmqi wall (s)", "CPU (s)", "wall ratio",
                        "CPU ratio", "status"], rows)
    markdown = (f"{h.context_lines(payload)}\n\n{table}\n\nGeometric mean of the ratios: wall {geo:.2f}x, CPU {geo_cpu:.2f}x "
                f"(load average {payload['machine']['loadavg_start']} at start, {payload['machine']['loadavg_end']} at end)\n")
    print(markdown)
    h.save_results("warm", payload, markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
