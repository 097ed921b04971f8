#!/usr/bin/env python3
"""SEG benchmark: qidicom vs dcmqi, side by side in one run.

    bash bench/setup_dcmqi.sh            # once: dcmqi in bench/.dcmqi-venv
    python3 bench/make_data.py           # once: inputs in bench/work/ (cached)
    python3 bench/bench_seg.py [-n 3] [--tools qidicom,dcmqi] [--only write|read]

Measures, for each tool, SEG write (itkimage2segimage: binary and labelmap, each with every
--compress value the tool offers) and SEG read (segimage2itkimage of binary and labelmap SEGs
written by either tool, so each reader also reads the other tool's output): wall time (median
of N runs), CPU time (user+sys), peak RSS of the child process (wait4 rusage) and output size.
Results go to bench/results/seg-<date>.json (+ seg-latest.json/.md); a markdown table is
printed. Figures only: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as h  # noqa: E402

TYPES = ["binary", "labelmap"]


def compress_choices(tool: h.Tool) -> list[str]:
    """The --compress values a tool's itkimage2segimage --help offers (dcmqi: <none|deflate>)."""
    text = h.tool_help(tool, "itkimage2segimage")
    m = re.search(r"--compress[ =]*[<{]([a-z|,]+)[>}]", text)
    if m:
        return [c for c in re.split(r"[|,]", m.group(1)) if c]
    if "--compress" in text:
        return ["none", "deflate", "rle"]
    return ["none"]


def verify_read(outdir: Path, expected_counts: list[int]) -> dict:
    """Count voxels of every non-zero value in every image the reader wrote and compare the
    sorted counts with the label map's (one count per segment, whatever the file layout)."""
    import nibabel
    import nrrd

    counts, files = [], 0
    for path in sorted(outdir.iterdir()):
        name = path.name
        if name.endswith(".nrrd") or name.endswith(".nhdr"):
            data, _ = nrrd.read(str(path))
        elif name.endswith(".nii") or name.endswith(".nii.gz"):
            data = np.asanyarray(nibabel.load(str(path)).dataobj)
        else:
            continue
        files += 1
        values, n = np.unique(data[data != 0], return_counts=True)
        counts += [int(c) for c in n]
    ok = sorted(counts) == sorted(expected_counts)
    return {"image_files": files, "segment_voxel_counts_match": ok,
            **({} if ok else {"counts": sorted(counts), "expected": sorted(expected_counts)})}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", "--runs", type=int, default=3, help="runs per case (median reported), default 3")
    p.add_argument("--tools", default="qidicom,dcmqi", help="comma list of tools to run")
    p.add_argument("--only", choices=["write", "read"], help="only the write or the read cases")
    p.add_argument("--types", default=",".join(TYPES), help="segmentation types, default binary,labelmap")
    p.add_argument("--input-format", choices=["nii", "nrrd"], default="nii",
                   help="label map given to both tools: labels.nii.gz (default) or labels.nrrd")
    p.add_argument("--output-type", choices=["nrrd", "nii"], default="nrrd", help="reader --outputType")
    p.add_argument("--qidicom", help="qidicom command line (default: repo .venv, PATH, python -m qidicom.cli)")
    p.add_argument("--qidicom-ref", default="HEAD",
                   help="benchmark qidicom as committed at this git ref (default HEAD: a snapshot, safe from "
                        "concurrent edits); 'worktree' runs the live tree / installed command instead")
    p.add_argument("--dcmqi-venv", type=Path, help="dcmqi venv (default bench/.dcmqi-venv)")
    p.add_argument("--dcmqi-wrapper", action="store_true", help="use the venv's Python entry points, not the binaries")
    p.add_argument("--work", type=Path, default=h.BENCH / "work")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per command")
    p.add_argument("--no-verify", action="store_true", help="skip the voxel-count check of read outputs")
    args = p.parse_args(argv)

    data = args.work / "seg"
    if not (data / "stamp.json").exists():
        raise SystemExit(f"no benchmark data in {data}: run python3 bench/make_data.py")
    labels = data / ("labels.nii.gz" if args.input_format == "nii" else "labels.nrrd")
    info = json.loads((data / "labels-info.json").read_text())
    expected_counts = list(info["voxels_per_label"].values())
    out = args.work / "out" / "seg"
    if out.exists():
        shutil.rmtree(out)
    (out / "write").mkdir(parents=True)
    (out / "read").mkdir(parents=True)
    (out / "logs").mkdir(parents=True)

    wanted = [t.strip() for t in args.tools.split(",") if t.strip()]
    tools: dict[str, h.Tool] = {}
    if "qidicom" in wanted:
        tools["qidicom"] = h.qidicom_from_args(args.qidicom, args.qidicom_ref)
    if "dcmqi" in wanted:
        tools["dcmqi"] = h.find_dcmqi(args.dcmqi_venv, args.dcmqi_wrapper)
    types = [t for t in args.types.split(",") if t]

    payload = {
        "benchmark": "seg",
        "date": h.utc_now(),
        "runs": args.runs,
        "machine": h.machine_info(),
        "python_versions": h.python_versions(),
        "tools": {name: {"version": t.version, "how": t.how} for name, t in tools.items()},
        "input": {"label_map": str(labels.relative_to(h.BENCH)), "shape": info["shape"], "dtype": info["dtype"],
                  "labels": len(expected_counts), "series": "synthetic CT, 200 single-frame slices 512x512"},
        "write": [],
        "read": [],
    }
    for name, t in tools.items():
        payload["tools"][name]["compress_choices"] = compress_choices(t)
    for name in ("qidicom", "dcmqi"):
        payload["tools"].setdefault(name, {"version": "not run", "how": "-"})
    print(f"machine: {payload['machine']}", flush=True)
    for name, t in tools.items():
        print(f"{name}: {t.version} via {t.how}; --compress {payload['tools'][name]['compress_choices']}", flush=True)
    h.prime_cache(data / "ct", labels)

    # ---------------------------------------------------------------- write
    write_cases = []
    for name, t in tools.items():
        for seg_type in types:
            for comp in payload["tools"][name]["compress_choices"]:
                if seg_type == "binary" and comp == "rle":
                    continue  # RLE Lossless is not defined for 1-bit frames: no tool offers it
                write_cases.append((name, seg_type, comp))
    sources: dict[tuple[str, str], Path] = {}  # (writer, type) -> uncompressed SEG kept for the read cases
    if args.only != "read":
        runs = {c: [] for c in write_cases}
        for r in range(args.runs):
            for case in write_cases:
                name, seg_type, comp = case
                target = out / "write" / f"{name}-{seg_type}-{comp}.dcm"
                target.unlink(missing_ok=True)
                options = ["--inputImageList", str(labels), "--inputDICOMDirectory", str(data / "ct"),
                           "--inputMetadata", str(data / "seg-meta.json"), "--outputDICOM", str(target),
                           "--segmentationType", seg_type, "--compress", comp]
                run = h.run_once(tools[name].argv("itkimage2segimage", options), tools[name].env,
                                 out / "logs" / f"write-{name}-{seg_type}-{comp}-{r}.log", args.timeout)
                if run.returncode == 0 and not target.exists():
                    run.returncode = -999
                    run.log += "\n<no output file>"
                runs[case].append(run)
                print(f"  write {name:7s} {seg_type:8s} {comp:7s} run {r + 1}: rc={run.returncode} "
                      f"{run.wall_s:.2f}s cpu {run.cpu_s:.2f}s rss {run.maxrss_mb:.0f}MiB", flush=True)
        for case in write_cases:
            name, seg_type, comp = case
            target = out / "write" / f"{name}-{seg_type}-{comp}.dcm"
            entry = {"tool": name, "type": seg_type, "compress": comp, "command": " ".join(
                tools[name].argv("itkimage2segimage", ["..."])), **h.summarize(runs[case])}
            if entry["ok"] and target.exists():
                entry["size_bytes"] = target.stat().st_size
                entry["dicom"] = h.dicom_summary(target)
                if comp == "none":
                    sources[(name, seg_type)] = target
            payload["write"].append(entry)

    # ---------------------------------------------------------------- read
    if args.only != "write":
        if not sources:  # --only read: write one uncompressed SEG per tool and type, untimed
            for name, t in tools.items():
                for seg_type in types:
                    target = out / "write" / f"{name}-{seg_type}-none.dcm"
                    options = ["--inputImageList", str(labels), "--inputDICOMDirectory", str(data / "ct"),
                               "--inputMetadata", str(data / "seg-meta.json"), "--outputDICOM", str(target),
                               "--segmentationType", seg_type, "--compress", "none"]
                    run = h.run_once(t.argv("itkimage2segimage", options), t.env, out / "logs" / f"prep-{name}-{seg_type}.log",
                                     args.timeout)
                    if run.returncode == 0 and target.exists():
                        sources[(name, seg_type)] = target
                    else:
                        print(f"  could not write {name} {seg_type} SEG to read: {run.log[-500:]}", flush=True)
        read_cases = [(reader, writer, seg_type) for (writer, seg_type) in sources for reader in tools]
        runs = {c: [] for c in read_cases}
        for r in range(args.runs):
            for case in read_cases:
                reader, writer, seg_type = case
                outdir = out / "read" / f"{reader}-reads-{writer}-{seg_type}"
                shutil.rmtree(outdir, ignore_errors=True)
                outdir.mkdir(parents=True)
                options = ["--inputDICOM", str(sources[(writer, seg_type)]), "--outputDirectory", str(outdir),
                           "--prefix", "seg", "--outputType", args.output_type]
                run = h.run_once(tools[reader].argv("segimage2itkimage", options), tools[reader].env,
                                 out / "logs" / f"read-{reader}-{writer}-{seg_type}-{r}.log", args.timeout)
                runs[case].append(run)
                print(f"  read  {reader:7s} <- {writer:7s} {seg_type:8s} run {r + 1}: rc={run.returncode} "
                      f"{run.wall_s:.2f}s cpu {run.cpu_s:.2f}s rss {run.maxrss_mb:.0f}MiB", flush=True)
        for case in read_cases:
            reader, writer, seg_type = case
            outdir = out / "read" / f"{reader}-reads-{writer}-{seg_type}"
            entry = {"tool": reader, "source_writer": writer, "source_type": seg_type,
                     "source_size_bytes": sources[(writer, seg_type)].stat().st_size, **h.summarize(runs[case])}
            if entry["ok"]:
                entry["output_bytes"] = h.dir_size(outdir)
                entry["output_files"] = sorted(p.name for p in outdir.iterdir())
                if not args.no_verify:
                    try:
                        entry["verify"] = verify_read(outdir, expected_counts)
                    except Exception as exc:
                        entry["verify"] = {"error": f"{type(exc).__name__}: {exc}"}
            payload["read"].append(entry)

    payload["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    markdown = render(payload)
    path = h.save_results("seg", payload, markdown)
    print()
    print(markdown)
    print(f"\nresults: {path}")
    return 0


def _find(entries, **keys):
    for e in entries:
        if all(e.get(k) == v for k, v in keys.items()):
            return e
    return None


def render(payload: dict) -> str:
    lines = [f"### SEG benchmark: 512x512x200 CT series, 10 sphere labels ({payload['input']['label_map']})", "",
             h.context_lines(payload), ""]
    if payload["write"]:
        rows = []
        for e in payload["write"]:
            d = e.get("dicom", {})
            peer = _find(payload["write"], tool="dcmqi", type=e["type"], compress=e["compress"])
            ratio = "-"
            if e["tool"] == "qidicom" and e.get("ok") and peer and peer.get("ok"):
                ratio = f"{e['wall_s_median'] / peer['wall_s_median']:.2f}x"
            if e["ok"]:
                rows.append([e["tool"], e["type"], e["compress"], d.get("transfer_syntax", "?"), d.get("frames", "?"),
                             h.fmt_size(e.get("size_bytes")), h.fmt_s(e["wall_s_median"]), h.fmt_s(e["cpu_s_median"]),
                             f"{e['maxrss_mb_max']:.0f}", ratio])
            else:
                rows.append([e["tool"], e["type"], e["compress"], "FAILED", "-", "-", "-", "-", "-", "-"])
        lines += ["**SEG write** (`itkimage2segimage`)", "",
                  h.md_table(["tool", "type", "--compress", "transfer syntax", "frames", "size", "wall (s)", "CPU (s)",
                              "peak RSS (MiB)", "time vs dcmqi"], rows), ""]
    if payload["read"]:
        rows = []
        for e in payload["read"]:
            v = e.get("verify", {})
            check = ("ok" if v.get("segment_voxel_counts_match") else ("MISMATCH" if "segment_voxel_counts_match" in v
                     else v.get("error", "-")))
            if e["ok"]:
                rows.append([e["tool"], f"{e['source_writer']} {e['source_type']}", h.fmt_s(e["wall_s_median"]),
                             h.fmt_s(e["cpu_s_median"]), f"{e['maxrss_mb_max']:.0f}",
                             f"{v.get('image_files', len(e.get('output_files', [])))} / {h.fmt_size(e.get('output_bytes'))}",
                             check])
            else:
                rows.append([e["tool"], f"{e['source_writer']} {e['source_type']}", "FAILED", "-", "-", "-", "-"])
        lines += ["**SEG read** (`segimage2itkimage`, uncompressed SEGs, NRRD out)", "",
                  h.md_table(["reader", "SEG read (writer, type)", "wall (s)", "CPU (s)", "peak RSS (MiB)",
                              "images / bytes out", "voxel counts"], rows), ""]
    lines += targets(payload)
    failures = [e for e in payload["write"] + payload["read"] if not e.get("ok")]
    if failures:
        lines += ["", "Failures:"]
        for e in failures:
            what = f"{e['tool']} {e.get('type', '')} {e.get('compress', '')}".strip() if "type" in e else \
                f"{e['tool']} reading {e['source_writer']} {e['source_type']}"
            err = (e.get("error") or "").strip().splitlines()
            lines.append(f"- {what}: {h.rc_text(e['returncodes'])}: {err[-1] if err else ''}")
    return "\n".join(lines) + "\n"


def targets(payload: dict) -> list[str]:
    out = ["**Targets** (issue 2)", ""]
    w = payload["write"]
    pairs = []
    for e in w:
        if e["tool"] != "qidicom":
            continue
        peer = _find(w, tool="dcmqi", type=e["type"], compress=e["compress"])
        if peer and e.get("ok") and peer.get("ok"):
            ratio = e["wall_s_median"] / peer["wall_s_median"]
            pairs.append(f"{e['type']}/{e['compress']}: {e['wall_s_median']:.2f} s vs {peer['wall_s_median']:.2f} s = "
                         f"{ratio:.2f}x ({'met' if ratio <= 0.5 else 'NOT met'})")
    out.append("- Write time no more than half of dcmqi's (same type and compression): "
               + ("; ".join(pairs) if pairs else "not measured (both tools needed)") + ".")
    q = _find(w, tool="qidicom", type="binary", compress="deflate")
    d = _find(w, tool="dcmqi", type="binary", compress="deflate")
    if q and d and q.get("ok") and d.get("ok"):
        met = q["size_bytes"] <= d["size_bytes"]
        out.append(f"- Deflated binary SEG no larger than dcmqi's deflated output: {q['size_bytes']:,} B vs "
                   f"{d['size_bytes']:,} B ({q['size_bytes'] / d['size_bytes']:.2f}x, {'met' if met else 'NOT met'}).")
    else:
        out.append("- Deflated binary SEG no larger than dcmqi's deflated output: not measured.")
    return out


if __name__ == "__main__":
    sys.exit(main())
