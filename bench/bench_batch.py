#!/usr/bin/env python3
"""Batch benchmark: qidicom batch on a collection of scaled-down SEG cases.

    .venv/bin/python bench/bench_batch.py [--cases 200] [--shape 256x256x50] [--studies 10]

The cases are itkimage2segimage runs (binary SEG, six organs) on phantom CT studies from
qidicom.samples, --studies distinct studies shared round-robin by --cases cases. Measured:

* the bare library call in a loop (segmentation_from_files + an atomic write), and the same
  cases through the batch machinery in this process (workers=0): the overhead per case of
  manifests, hashing, skip checks and reports (wall and CPU time);
* cases per minute on a local pool of 1 and 2 workers and on a 2-worker Dask LocalCluster
  (wall time from the call to the report, start-up included);
* a simulated many-worker run: a LocalCluster of --sim-workers worker processes on small
  cases, one worker killed outright (and not restarted) a third of the way in; shows where its
  cases went and that every case still has its output, once.

The load average is recorded beside every figure: other work on the machine slows them.
Results: bench/results/batch-<date>.json (+ batch-latest.json/.md). Figures only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as h  # noqa: E402

from qidicom import samples  # noqa: E402
from qidicom.batch import run_batch  # noqa: E402

SIDECAR = ".qidicom-batch.json"


def load() -> float:
    return round(os.getloadavg()[0], 2)


def make_collection(work: Path, shape: tuple[int, int, int], studies: int, cases: int) -> list[dict]:
    """``studies`` phantom studies on disk (cached by shape), and ``cases`` manifest rows."""
    columns, rows, slices = shape
    root = work / f"studies-{columns}x{rows}x{slices}"
    for index in range(studies):
        folder = root / f"study{index:02d}"
        if not (folder / "seg.json").exists():
            study = samples.make_sample_study(rows=rows, columns=columns, slices=slices, seed=index,
                                              patient_id=f"BENCH-{index:03d}")
            samples.write_sample_study(folder, study, with_seg=False)
    return [
        dict(case=f"case{n:04d}", conversion="seg",
             inputImageList=str(root / f"study{n % studies:02d}" / "ct-labels.nii.gz"),
             inputDICOMDirectory=str(root / f"study{n % studies:02d}" / "ct"),
             inputMetadata=str(root / f"study{n % studies:02d}" / "seg.json"))
        for n in range(cases)
    ]


def timed(label: str, function) -> dict:
    start_load = load()
    wall, cpu = time.perf_counter(), time.process_time()
    value = function()
    figures = {"label": label, "wall_s": round(time.perf_counter() - wall, 2),
               "cpu_s_this_process": round(time.process_time() - cpu, 2),
               "load_start": start_load, "load_end": load()}
    return figures | ({"value": value} if value is not None else {})


def bare_loop(rows: list[dict], out: Path) -> None:
    """What a shell loop around the library does, minus process start-up: convert, write."""
    from qidicom.seg import segmentation_from_files
    from qidicom.writers import write_file_atomically

    out.mkdir(parents=True, exist_ok=True)
    for row in rows:
        result = segmentation_from_files([Path(row["inputImageList"])], Path(row["inputMetadata"]),
                                         row["inputDICOMDirectory"])
        write_file_atomically(out / f"{row['case']}.dcm", result.data)


def batch(rows: list[dict], out: Path, **options) -> dict:
    report = run_batch(rows, out, progress=False, **options)
    assert report.ok, [r.error for r in report.failed][:3]
    seconds = [r.seconds for r in report.results]
    return {"ok": report.counts["ok"], "median_case_s": round(statistics.median(seconds), 3),
            # CPU of the threads that ran the cases: their own cost, which the load does not inflate
            "case_cpu_ms_mean": round(statistics.mean(r.cpu_seconds for r in report.results) * 1000, 1),
            "scheduler": report.scheduler}


def simulated_cluster(rows: list[dict], out: Path, workers: int) -> dict:
    """Many workers, one killed a third of the way in and not replaced."""
    import distributed

    with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                  dashboard_address=":0", silence_logs=40) as cluster, distributed.Client(cluster) as client:
        pids = client.run(os.getpid)
        outcome: dict = {}
        thread = threading.Thread(target=lambda: outcome.update(report=run_batch(rows, out, client, progress=False)))
        started = time.perf_counter()
        thread.start()
        while len(list(out.glob("*" + SIDECAR))) < len(rows) // 3 and thread.is_alive():
            time.sleep(0.02)
        processing = client.processing()
        victim = max(processing, key=lambda address: len(processing[address]))
        victim_keys = [str(key) for key in processing[victim]]
        from distributed.core import Status

        for nanny in cluster.workers.values():
            if nanny.worker_address == victim:
                # Its nanny takes the death for a planned shutdown and does not restart it:
                # the worker is gone, as a preempted machine would be.
                nanny.status = Status.closing_gracefully
        os.kill(pids[victim], signal.SIGKILL)
        killed_at = round(time.perf_counter() - started, 2)
        done_before = len(list(out.glob("*" + SIDECAR)))
        thread.join()
        remaining_workers = len(client.scheduler_info()["workers"])
    report = outcome["report"]
    results = {r.case: r for r in report.results}
    moved = [case for case in results if any(f"-{case}-" in key for key in victim_keys)]
    ran_on_victim = sum(1 for r in report.results if r.worker.endswith(f":{pids[victim]}"))
    outputs = sorted(out.glob("*.dcm"))
    return {
        "workers": workers, "cases": len(rows), "killed_after_s": killed_at, "cases_done_when_killed": done_before,
        "victim_cases_in_flight_or_queued": len(moved),
        # A case the victim had finished but whose result it still held is run again by Dask
        # and finds its output up to date: "skipped", not redone.
        "those_cases_done_elsewhere": sum(1 for c in moved if results[c].status in ("ok", "skipped")
                                          and not results[c].worker.endswith(f":{pids[victim]}")),
        "cases_finished_by_victim_before_kill": ran_on_victim, "workers_left": remaining_workers,
        "ok": report.counts["ok"], "skipped": report.counts["skipped"], "failed": report.counts["failed"],
        "not_run": report.counts["not run"], "outputs": len(outputs),
        "sidecars": len(list(out.glob("*" + SIDECAR))), "wall_s": round(report.seconds, 2),
        "workers_that_ran_cases": len({r.worker for r in report.results}),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--shape", default="256x256x50", help="columns x rows x slices of each CT")
    parser.add_argument("--studies", type=int, default=10)
    parser.add_argument("--sim-workers", type=int, default=8)
    parser.add_argument("--sim-shape", default="64x64x16")
    parser.add_argument("--work", type=Path, default=h.BENCH / "work" / "batch")
    parser.add_argument("--only", help="comma-separated: bare,inline,rerun,bare_again,local1,local2,cluster2,sim")
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.lower().split("x"))
    only = set(args.only.split(",")) if args.only else {"bare", "inline", "rerun", "bare_again", "local1", "local2", "cluster2", "sim"}
    args.work.mkdir(parents=True, exist_ok=True)
    machine = h.machine_info()
    rows = make_collection(args.work, shape, args.studies, args.cases)
    figures: dict[str, dict] = {}

    def out(name: str) -> Path:
        path = args.work / f"out-{name}"
        shutil.rmtree(path, ignore_errors=True)
        return path

    def run(name: str, label: str, function, keep: bool = False) -> None:
        if name in only:
            figures[name] = timed(label, function)
            figures[name]["cases_per_min"] = round(args.cases / figures[name]["wall_s"] * 60, 1)
            print(f"{label}: {figures[name]}", flush=True)
            if not keep:
                shutil.rmtree(args.work / f"out-{name}", ignore_errors=True)

    bare_loop(rows[:2], out("warm-up"))  # imports and first-call costs, counted by neither
    shutil.rmtree(args.work / "out-warm-up", ignore_errors=True)
    run("bare", "bare library loop, this process", lambda: bare_loop(rows, out("bare")))
    run("inline", "qidicom batch, workers=0 (this process)", lambda: batch(rows, out("inline"), workers=0), keep=True)
    # Everything up to date: what is left is the machinery alone (manifest check, reading and
    # hashing every input, the skip check, the report), a bound on its cost per case.
    run("rerun", "qidicom batch rerun, all up to date, workers=0",
        lambda: batch(rows, args.work / "out-inline", workers=0))
    shutil.rmtree(args.work / "out-inline", ignore_errors=True)
    # The bare loop again: the machine's load drifts, so the overhead is taken against the mean.
    run("bare_again", "bare library loop again", lambda: bare_loop(rows, out("bare_again")))
    run("local1", "qidicom batch, local pool of 1", lambda: batch(rows, out("local1"), workers=1))
    run("local2", "qidicom batch, local pool of 2", lambda: batch(rows, out("local2"), workers=2))
    run("cluster2", "qidicom batch, Dask LocalCluster of 2", lambda: batch(rows, out("cluster2"), scheduler="local:2"))
    if "sim" in only:
        sim_shape = tuple(int(v) for v in args.sim_shape.lower().split("x"))
        sim_rows = make_collection(args.work, sim_shape, args.studies, args.cases)
        figures["sim"] = simulated_cluster(sim_rows, out("sim"), args.sim_workers) | {"load_end": load()}
        print(f"simulated cluster: {figures['sim']}", flush=True)
        shutil.rmtree(args.work / "out-sim", ignore_errors=True)

    lines = [f"Batch benchmark: {args.cases} binary SEG cases, CT {args.shape} ({args.studies} studies), "
             f"{machine['nproc']} cores, {machine['cpu_model']}", "",
             "| run | wall s | cases/min | CPU ms per case | load avg (start-end) |", "|---|---:|---:|---:|---|"]
    for name, f in figures.items():
        if name != "sim":
            cpu = f.get("value", {}).get("case_cpu_ms_mean", round(f["cpu_s_this_process"] / args.cases * 1000, 1))
            lines.append(f"| {f['label']} | {f['wall_s']} | {f['cases_per_min']} | {cpu} | {f['load_start']}-{f['load_end']} |")
    if "bare" in figures and "inline" in figures:
        bares = [figures[k] for k in ("bare", "bare_again") if k in figures]
        bare_wall = statistics.mean(f["wall_s"] for f in bares)
        bare_cpu = statistics.mean(f["cpu_s_this_process"] for f in bares)
        inline = figures["inline"]
        wall = (inline["wall_s"] - bare_wall) / bare_wall * 100
        cpu = (inline["cpu_s_this_process"] - bare_cpu) / bare_cpu * 100
        per_case_ms = (inline["cpu_s_this_process"] - bare_cpu) / args.cases * 1000
        figures["overhead"] = {"wall_percent": round(wall, 1), "cpu_percent": round(cpu, 1), "cpu_ms_per_case": round(per_case_ms, 1)}
        lines += ["", f"Batch machinery overhead per case against the bare library call: {cpu:+.1f}% CPU "
                  f"({per_case_ms:+.1f} ms/case), {wall:+.1f}% wall (bare: {bare_cpu / args.cases * 1000:.0f} ms CPU/case)."]
        if "rerun" in figures:
            rerun = figures["rerun"]
            rerun_ms = rerun["cpu_s_this_process"] / args.cases * 1000
            figures["overhead"]["rerun_cpu_ms_per_case"] = round(rerun_ms, 1)
            figures["overhead"]["rerun_percent_of_bare"] = round(rerun_ms / (bare_cpu / args.cases * 1000) * 100, 1)
            lines.append(f"An up-to-date rerun (the machinery alone: check, hash every input, skip) costs "
                         f"{rerun_ms:.1f} ms CPU/case, {figures['overhead']['rerun_percent_of_bare']}% of a bare conversion.")
    if "sim" in figures:
        s = figures["sim"]
        lines += ["", f"Simulated cluster: {s['workers']} workers, {s['cases']} cases ({args.sim_shape}); one worker killed "
                  f"after {s['killed_after_s']} s ({s['cases_done_when_killed']} cases done), not replaced: "
                  f"{s['victim_cases_in_flight_or_queued']} cases were on it, {s['those_cases_done_elsewhere']} of them "
                  f"finished elsewhere; {s['ok']} ok, {s['skipped']} skipped (done, result lost with the worker, found up to "
                  f"date on the retry), {s['failed']} failed, {s['not_run']} not run, {s['outputs']} outputs, "
                  f"{s['sidecars']} records; {s['workers_left']} workers left."]
    markdown = "\n".join(lines) + "\n"
    print("\n" + markdown)
    path = h.save_results("batch", {"machine": machine, "args": vars(args) | {"work": str(args.work)},
                                    "figures": figures}, markdown)
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
