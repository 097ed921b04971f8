#!/usr/bin/env python3
"""Parametric Map benchmark: qidicom vs dcmqi, side by side in one run.

    bash bench/setup_dcmqi.sh            # once: dcmqi in bench/.dcmqi-venv
    python3 bench/make_data.py           # once: inputs in bench/work/ (cached)
    python3 bench/bench_pm.py [-n 3] [--tools qidicom,dcmqi] [--only write|read]

Cases: a synthetic 256x256x200 float32 map on a 256x256x200 MR-like series, and dcmqi's
20-slice example (int16 ADC map pm-example.nrrd + pm-example.json + the MR series of
../shared/data/dcmqi/paramaps). For each tool: PM write (itkimage2paramap; qidicom also with
every --compress value its --help offers, if any) and PM read (paramap2itkimage of the
uncompressed PM written by either tool, so each reader reads the other's output too): wall
time (median of N), CPU time, peak RSS of the child, output size; the read maps are compared
with the input map (shape and max |difference|). Results in bench/results/pm-*.json; figures
only, nothing asserted.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as h  # noqa: E402


def datasets(work: Path, input_format: str) -> dict[str, dict]:
    pm, ex = work / "pm", work / "pm-example"
    return {
        "float-256x256x200": {"image": pm / ("map.nii.gz" if input_format == "nii" else "map.nrrd"),
                              "meta": pm / "pm-meta.json", "dicom": pm / "mr",
                              "about": "synthetic float32 ADC-like map, 256x256x200", "integer": False},
        "example-20-slices": {"image": ex / "pm-example.nrrd", "meta": ex / "pm-example.json", "dicom": ex / "dcm",
                              "about": "dcmqi pm-example: int16 ADC map 256x256x20", "integer": True},
    }


def compress_choices(tool: h.Tool) -> list[str]:
    text = h.tool_help(tool, "itkimage2paramap")
    m = re.search(r"--compress[ =]*[<{]([a-z|,]+)[>}]", text)
    if m:
        return [c for c in re.split(r"[|,]", m.group(1)) if c]
    if "--compress" in text:
        return ["none", "deflate"]
    return [None]  # the tool has no such option: run without it


def load_image(path: Path):
    import nibabel
    import nrrd

    if path.name.endswith(".nrrd") or path.name.endswith(".nhdr"):
        return nrrd.read(str(path))[0]
    return np.asanyarray(nibabel.load(str(path)).dataobj)


def verify_read(outdir: Path, reference: np.ndarray) -> dict:
    images = [p for p in sorted(outdir.iterdir()) if re.search(r"\.(nrrd|nhdr|nii|nii\.gz)$", p.name)]
    if len(images) != 1:
        return {"image_files": len(images), "error": "expected one map"}
    data = load_image(images[0])
    result = {"image_files": 1, "file": images[0].name, "dtype": str(data.dtype), "shape": list(data.shape),
              "shape_match": list(data.shape) == list(reference.shape)}
    if result["shape_match"]:
        diff = np.abs(data.astype(np.float64) - reference.astype(np.float64))
        scale = float(np.abs(reference).max()) or 1.0
        result["max_abs_diff"] = float(diff.max())
        result["max_rel_diff"] = float(diff.max() / scale)
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", "--runs", type=int, default=3, help="runs per case (median reported), default 3")
    p.add_argument("--tools", default="qidicom,dcmqi")
    p.add_argument("--only", choices=["write", "read"])
    p.add_argument("--cases", default="float-256x256x200,example-20-slices")
    p.add_argument("--input-format", choices=["nii", "nrrd"], default="nii", help="synthetic map as NIfTI or NRRD")
    p.add_argument("--output-type", choices=["nrrd", "nii"], default="nrrd")
    p.add_argument("--qidicom", help="qidicom command line (default: repo .venv, PATH, python -m qidicom.cli)")
    p.add_argument("--qidicom-ref", default="HEAD",
                   help="benchmark qidicom as committed at this git ref (default HEAD: a snapshot, safe from "
                        "concurrent edits); 'worktree' runs the live tree / installed command instead")
    p.add_argument("--dcmqi-venv", type=Path)
    p.add_argument("--dcmqi-wrapper", action="store_true")
    p.add_argument("--work", type=Path, default=h.BENCH / "work")
    p.add_argument("--timeout", type=float, default=900.0)
    p.add_argument("--no-verify", action="store_true")
    args = p.parse_args(argv)

    all_cases = datasets(args.work, args.input_format)
    cases = {k: all_cases[k] for k in args.cases.split(",") if k}
    for name, c in cases.items():
        for key in ("image", "meta", "dicom"):
            if not c[key].exists():
                raise SystemExit(f"{name}: {c[key]} missing: run python3 bench/make_data.py")
    out = args.work / "out" / "pm"
    if out.exists():
        shutil.rmtree(out)
    for sub in ("write", "read", "logs"):
        (out / sub).mkdir(parents=True)

    wanted = [t.strip() for t in args.tools.split(",") if t.strip()]
    tools: dict[str, h.Tool] = {}
    if "qidicom" in wanted:
        tools["qidicom"] = h.qidicom_from_args(args.qidicom, args.qidicom_ref)
    if "dcmqi" in wanted:
        tools["dcmqi"] = h.find_dcmqi(args.dcmqi_venv, args.dcmqi_wrapper)

    payload = {
        "benchmark": "pm", "date": h.utc_now(), "runs": args.runs, "machine": h.machine_info(),
        "python_versions": h.python_versions(),
        "tools": {n: {"version": t.version, "how": t.how, "compress_choices": compress_choices(t)} for n, t in tools.items()},
        "cases": {n: {"image": str(c["image"].relative_to(h.BENCH)), "about": c["about"]} for n, c in cases.items()},
        "write": [], "read": [],
    }
    for name in ("qidicom", "dcmqi"):
        payload["tools"].setdefault(name, {"version": "not run", "how": "-"})
    for n, t in tools.items():
        print(f"{n}: {t.version} via {t.how}; --compress {payload['tools'][n]['compress_choices']}", flush=True)
    for c in cases.values():
        h.prime_cache(c["image"], c["dicom"])

    # A write variant is the --compress value (None: the tool has no such option), optionally
    # "+float32": qidicom keeps integer maps as integers by default; with --dataType float32 it
    # writes float like dcmqi (which dcmqi's paramap2itkimage needs), so integer inputs get both.
    data_type_option = {n: "--dataType" in h.tool_help(t, "itkimage2paramap") for n, t in tools.items()}

    def variants(tool_name, case_name):
        result = list(payload["tools"][tool_name]["compress_choices"])
        if data_type_option[tool_name] and cases[case_name]["integer"]:
            result.append(f"{result[0]}+float32")
        return result

    def write_argv(tool_name, case_name, variant, target):
        c = cases[case_name]
        options = ["--inputImage", str(c["image"]), "--inputMetadata", str(c["meta"]),
                   "--inputDICOMDirectory", str(c["dicom"]), "--outputDICOM", str(target)]
        comp, _, data_type = (variant or "").partition("+")
        if comp and comp != "None":
            options += ["--compress", comp]
        if data_type:
            options += ["--dataType", data_type]
        return tools[tool_name].argv("itkimage2paramap", options)

    def writer_label(tool_name, variant):
        return f"{tool_name} ({variant.partition('+')[2]})" if variant and "+" in variant else tool_name

    write_cases = [(t, c, v) for c in cases for t in tools for v in variants(t, c)]
    sources: dict[tuple[str, str], Path] = {}  # (writer label, case) -> uncompressed PM
    if args.only != "read":
        runs = {k: [] for k in write_cases}
        for r in range(args.runs):
            for k in write_cases:
                tool_name, case_name, comp = k
                target = out / "write" / f"{tool_name}-{case_name}-{comp or 'default'}.dcm"
                target.unlink(missing_ok=True)
                run = h.run_once(write_argv(tool_name, case_name, comp, target), tools[tool_name].env,
                                 out / "logs" / f"write-{tool_name}-{case_name}-{comp}-{r}.log", args.timeout)
                if run.returncode == 0 and not target.exists():
                    run.returncode = -999
                    run.log += "\n<no output file>"
                runs[k].append(run)
                print(f"  write {tool_name:7s} {case_name:18s} {comp or '-':7s} run {r + 1}: rc={run.returncode} "
                      f"{run.wall_s:.2f}s cpu {run.cpu_s:.2f}s rss {run.maxrss_mb:.0f}MiB", flush=True)
        for k in write_cases:
            tool_name, case_name, comp = k
            target = out / "write" / f"{tool_name}-{case_name}-{comp or 'default'}.dcm"
            entry = {"tool": tool_name, "case": case_name, "compress": comp, **h.summarize(runs[k])}
            if entry["ok"]:
                entry["size_bytes"] = target.stat().st_size
                entry["dicom"] = h.dicom_summary(target)
                if comp is None or comp.partition("+")[0] in ("none", "None"):
                    sources[(writer_label(tool_name, comp), case_name)] = target
            payload["write"].append(entry)

    if args.only != "write":
        if not sources:  # --only read: write the uncompressed PMs to read, untimed
            for t in tools:
                for c in cases:
                    for v in variants(t, c):
                        if v is not None and v.partition("+")[0] not in ("none", "None"):
                            continue
                        target = out / "write" / f"{t}-{c}-{v}-source.dcm"
                        run = h.run_once(write_argv(t, c, v, target), tools[t].env,
                                         out / "logs" / f"prep-{t}-{c}-{v}.log", args.timeout)
                        if run.returncode == 0 and target.exists():
                            sources[(writer_label(t, v), c)] = target
                        else:
                            print(f"  could not write {t} {c} {v} PM to read: {run.log[-500:]}", flush=True)
        read_cases = [(reader, writer, c) for (writer, c) in sources for reader in tools]
        safe = lambda text: text.replace(" ", "").replace("(", "-").replace(")", "")  # noqa: E731
        runs = {k: [] for k in read_cases}
        for r in range(args.runs):
            for k in read_cases:
                reader, writer, c = k
                outdir = out / "read" / f"{reader}-reads-{safe(writer)}-{c}"
                shutil.rmtree(outdir, ignore_errors=True)
                outdir.mkdir(parents=True)
                options = ["--inputDICOM", str(sources[(writer, c)]), "--outputDirectory", str(outdir),
                           "--prefix", "pm", "--outputType", args.output_type]
                run = h.run_once(tools[reader].argv("paramap2itkimage", options), tools[reader].env,
                                 out / "logs" / f"read-{reader}-{safe(writer)}-{c}-{r}.log", args.timeout)
                runs[k].append(run)
                print(f"  read  {reader:7s} <- {writer:17s} {c:18s} run {r + 1}: rc={run.returncode} "
                      f"{run.wall_s:.2f}s cpu {run.cpu_s:.2f}s rss {run.maxrss_mb:.0f}MiB", flush=True)
        references = {}
        for k in read_cases:
            reader, writer, c = k
            outdir = out / "read" / f"{reader}-reads-{safe(writer)}-{c}"
            entry = {"tool": reader, "source_writer": writer, "case": c,
                     "source_size_bytes": sources[(writer, c)].stat().st_size, **h.summarize(runs[k])}
            if entry["ok"]:
                entry["output_bytes"] = h.dir_size(outdir)
                entry["output_files"] = sorted(p.name for p in outdir.iterdir())
                if not args.no_verify:
                    try:
                        if c not in references:
                            references[c] = load_image(cases[c]["image"])
                        entry["verify"] = verify_read(outdir, references[c])
                    except Exception as exc:
                        entry["verify"] = {"error": f"{type(exc).__name__}: {exc}"}
            payload["read"].append(entry)

    payload["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    markdown = render(payload)
    path = h.save_results("pm", payload, markdown)
    print()
    print(markdown)
    print(f"\nresults: {path}")
    return 0


def _variant(variant) -> str:
    if not variant:
        return "-"
    comp, _, data_type = variant.partition("+")
    return f"{comp}, --dataType {data_type}" if data_type else comp


def render(payload: dict) -> str:
    lines = ["### Parametric Map benchmark", "", h.context_lines(payload), "",
             "Cases: " + "; ".join(f"`{n}` = {c['about']} ({c['image']})" for n, c in payload["cases"].items()), ""]

    def peer(e):
        for d in payload["write"]:
            if d["tool"] == "dcmqi" and d["case"] == e["case"] and d.get("ok"):
                return d
        return None

    if payload["write"]:
        rows = []
        for e in payload["write"]:
            d = e.get("dicom", {})
            if e["ok"]:
                pe = peer(e) if e["tool"] != "dcmqi" else None
                rows.append([e["case"], e["tool"], _variant(e["compress"]), d.get("transfer_syntax", "?"),
                             d.get("bits_allocated", "?"), h.fmt_size(e["size_bytes"]), h.fmt_s(e["wall_s_median"]),
                             h.fmt_s(e["cpu_s_median"]), f"{e['maxrss_mb_max']:.0f}",
                             f"{e['wall_s_median'] / pe['wall_s_median']:.2f}x" if pe else "-",
                             f"{e['size_bytes'] / pe['size_bytes']:.2f}x" if pe else "-"])
            else:
                rows.append([e["case"], e["tool"], _variant(e["compress"]), "FAILED"] + ["-"] * 7)
        lines += ["**PM write** (`itkimage2paramap`)", "",
                  h.md_table(["case", "tool", "--compress (options)", "transfer syntax", "bits", "size", "wall (s)", "CPU (s)",
                              "peak RSS (MiB)", "time vs dcmqi", "size vs dcmqi"], rows), ""]
    if payload["read"]:
        rows = []
        for e in payload["read"]:
            v = e.get("verify", {})
            if "max_abs_diff" in v:
                check = f"{v['dtype']}, max abs diff {v['max_abs_diff']:.3g}"
            else:
                check = v.get("error") or (f"shape {v.get('shape')}" if v else "-")
            if e["ok"]:
                rows.append([e["case"], e["tool"], e["source_writer"], h.fmt_s(e["wall_s_median"]),
                             h.fmt_s(e["cpu_s_median"]), f"{e['maxrss_mb_max']:.0f}", h.fmt_size(e["output_bytes"]), check])
            else:
                rows.append([e["case"], e["tool"], e["source_writer"], "FAILED"] + ["-"] * 4)
        lines += ["**PM read** (`paramap2itkimage`, NRRD out, compared with the input map)", "",
                  h.md_table(["case", "reader", "PM written by", "wall (s)", "CPU (s)", "peak RSS (MiB)", "bytes out",
                              "vs input map"], rows), ""]
    failures = [e for e in payload["write"] + payload["read"] if not e.get("ok")]
    if failures:
        lines += ["Failures:"]
        for e in failures:
            err = (e.get("error") or "").strip().splitlines()
            what = f"{e['tool']} write {e['case']}" if "compress" in e else f"{e['tool']} reading {e['source_writer']} {e['case']}"
            lines.append(f"- {what}: {h.rc_text(e['returncodes'])}: {err[-1] if err else ''}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
