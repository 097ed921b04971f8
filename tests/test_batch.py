"""qidicom batch: a collection of generated SEG, PM and SR cases, some broken, run on a local
process pool and on a real 2-worker Dask LocalCluster, against one-by-one CLI runs; killed
and resumed; a Dask worker killed mid-case; bad manifests refused whole."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pydicom
import pytest

from qidicom import cli, samples

distributed = pytest.importorskip("distributed", reason="the batch extra (pip install 'qidicom[batch]') is not installed")
psutil = pytest.importorskip("psutil")

from qidicom.batch import ManifestError, load_cases, run_batch  # noqa: E402

STUDIES = 3
PER_STUDY = 8  # conversions per study
SIDECAR = ".qidicom-batch.json"
COLUMNS = [
    "case", "conversion", "inputImageList", "inputImage", "inputDICOMDirectory", "inputMetadata", "inputDICOM",
    "inputImageLibraryDirectory", "inputCompositeContextDirectory", "outputDICOM", "outputDirectory",
    "outputMetadata", "segmentationType", "compress", "outputType", "usePalette",
]


def write_csv(path: Path, rows: list[dict]) -> Path:
    columns = [c for c in COLUMNS if any(c in row for row in rows)] + sorted({k for r in rows for k in r} - set(COLUMNS))
    with open(path, "w", newline="") as stream:
        writer = csv.DictWriter(stream, columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def normalised(path: Path) -> list:
    """A DICOM file's elements with UIDs, dates and times blanked: what must match between
    two runs of the same conversion (which mint new UIDs and stamp the time)."""
    dataset = pydicom.dcmread(path)
    elements = [("TransferSyntaxUID", str(dataset.file_meta.TransferSyntaxUID))]
    for element in dataset.iterall():
        if element.VR in ("DA", "TM", "DT") or (element.VR == "UI" and not element.keyword.endswith("ClassUID")):
            value = None
        elif element.VR == "SQ":
            value = len(element.value)
        else:
            value = element.value if isinstance(element.value, bytes) else repr(element.value)
        elements.append((str(element.tag), element.VR, value))
    return elements


def output_contents(path: Path):
    """Comparable contents of an output file or folder."""
    if path.is_dir():
        return {p.name: output_contents(p) for p in sorted(path.iterdir())}
    if path.suffix == ".dcm":
        return normalised(path)
    if path.suffix == ".nrrd":  # pynrrd stamps the time in a header comment
        return re.sub(rb"\n# on [^\n]*\n", b"\n", path.read_bytes(), count=1)
    return path.read_bytes()


def partial_files(directory: Path) -> list[Path]:
    """Anything an atomic writer leaves mid-write (hidden temporaries)."""
    return [p for p in directory.rglob(".*")]


# --------------------------------------------------------------------------- the collection


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> dict:
    """STUDIES phantom studies (each with SEG, PM and SR already made, for the readers) and a
    manifest of PER_STUDY conversions per study plus 4 broken cases."""
    root = tmp_path_factory.mktemp("collection")
    from qidicom.pm import parametric_map_from_files
    from qidicom.sr import report_from_files

    rows = []
    for index in range(STUDIES):
        name = f"study{index}"
        study = samples.make_sample_study(rows=32, columns=32, slices=8, seed=index, patient_id=f"BATCH-{index:03d}")
        paths = samples.write_sample_study(root / name, study)
        (root / name / "pm.dcm").write_bytes(parametric_map_from_files(paths["adc_map"], paths["pm_metadata"], paths["mr"]).data)
        (root / name / "sr.dcm").write_bytes(report_from_files(paths["sr_metadata"], paths["ct"], root / name).data)
        rows += [
            dict(case=f"{name}-seg", conversion="seg", inputImageList=f"{name}/ct-labels.nii.gz",
                 inputDICOMDirectory=f"{name}/ct", inputMetadata=f"{name}/seg.json", outputDICOM=f"{name}/seg.dcm"),
            dict(case=f"{name}-seg-labelmap", conversion="itkimage2segimage", inputImageList=f"{name}/ct-labels.nii.gz",
                 inputDICOMDirectory=f"{name}/ct", inputMetadata=f"{name}/seg.json", segmentationType="labelmap",
                 compress="deflate", outputDICOM=f"{name}/seg-labelmap.dcm"),
            dict(case=f"{name}-pm", conversion="pm", inputImage=f"{name}/adc.nrrd",
                 inputDICOMDirectory=f"{name}/mr", inputMetadata=f"{name}/pm.json", outputDICOM=f"{name}/pm.dcm"),
            dict(case=f"{name}-sr", conversion="tid1500writer", inputMetadata=f"{name}/sr.json",
                 inputImageLibraryDirectory=f"{name}/ct", inputCompositeContextDirectory=name, outputDICOM=f"{name}/sr.dcm"),
            dict(case=f"{name}-seg-read", conversion="seg-read", inputDICOM=f"{name}/seg.dcm",
                 outputDirectory=f"{name}/seg-read", outputType="nifti"),
            dict(case=f"{name}-pm-read", conversion="paramap2itkimage", inputDICOM=f"{name}/pm.dcm",
                 outputDirectory=f"{name}/pm-read"),
            dict(case=f"{name}-sr-read", conversion="sr-read", inputDICOM=f"{name}/sr.dcm",
                 outputMetadata=f"{name}/sr.json"),
            dict(case=f"{name}-bin2label", conversion="bin2labelsegimage", inputDICOM=f"{name}/seg.dcm",
                 usePalette="1", outputDICOM=f"{name}/seg-from-binary.dcm"),
        ]
    # A file:// URL takes the same road as a plain path.
    rows[0]["inputMetadata"] = (root / "study0" / "seg.json").as_uri()

    broken = root / "broken"
    broken.mkdir()
    seg_json = json.loads((root / "study0" / "seg.json").read_text())
    seg_json["segmentAttributes"][0][0]["SegmentedPropertyCategoryCodeSequence"] = "tissue"
    (broken / "seg.json").write_text(json.dumps(seg_json))
    data = (root / "study0" / "seg.dcm").read_bytes()
    (broken / "seg-truncated.dcm").write_bytes(data[: len(data) // 2])
    (broken / "adc.nrrd").write_bytes(b"NRRD0004\ntype: float\ndimension: 3\n\ngarbage")
    rows += [
        dict(case="broken-seg-metadata", conversion="seg", inputImageList="study0/ct-labels.nii.gz",
             inputDICOMDirectory="study0/ct", inputMetadata="broken/seg.json", outputDICOM="broken/seg.dcm"),
        dict(case="broken-seg-truncated", conversion="seg-read", inputDICOM="broken/seg-truncated.dcm",
             outputDirectory="broken/seg-read"),
        dict(case="broken-pm-image", conversion="pm", inputImage="broken/adc.nrrd",
             inputDICOMDirectory="study0/mr", inputMetadata="study0/pm.json", outputDICOM="broken/pm.dcm"),
        dict(case="broken-sr-context", conversion="sr", inputMetadata="study0/sr.json",
             inputImageLibraryDirectory="study0/ct", inputCompositeContextDirectory="study0/ct", outputDICOM="broken/sr.dcm"),
    ]
    manifest = write_csv(root / "manifest.csv", rows)
    return {"root": root, "manifest": manifest, "rows": rows}


CLI_NAMES = {"seg": "itkimage2segimage", "pm": "itkimage2paramap", "sr": "tid1500writer",
             "seg-read": "segimage2itkimage", "sr-read": "tid1500reader"}


@pytest.fixture(scope="module")
def cli_runs(collection, tmp_path_factory) -> dict:
    """Every row run by the CLI, one at a time: {case: (output path, exit status, error line)}."""
    out = tmp_path_factory.mktemp("cli")
    root = collection["root"]
    runs = {}
    for row in collection["rows"]:
        command = CLI_NAMES.get(row["conversion"], row["conversion"])
        argv = [command]
        for key, value in row.items():
            if key in ("case", "conversion"):
                continue
            if key.startswith("input"):
                value = value if value.startswith("file://") else str(root / value)
                value = value.removeprefix("file://")
            elif key in ("outputDICOM", "outputDirectory", "outputMetadata"):
                value = str(out / value)
                Path(value).parent.mkdir(parents=True, exist_ok=True)
                output = Path(value)
            if key == "usePalette":  # a switch on the command line, 1/0 in a manifest
                argv += ["--usePalette"] if value == "1" else []
                continue
            argv += [f"--{key}", value]
        import contextlib
        import io

        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            status = cli.main(argv)
        text = stderr.getvalue()
        error = text[text.index("error: ") + len("error: "):] if "error: " in text else ""
        runs[row["case"]] = (output, status, " ".join(part.strip() for part in error.splitlines() if part.strip()))
    return runs


def check_against_cli(report, out: Path, cli_runs: dict) -> None:
    results = {result.case: result for result in report.results}
    assert set(results) == set(cli_runs)
    for case, (cli_output, status, error) in cli_runs.items():
        result = results[case]
        if status == 0:
            assert result.status == "ok", (case, result.error)
            batch_output = Path(result.output)
            assert batch_output.exists() and Path(result.output + SIDECAR).exists()
            assert result.output_bytes == (
                sum(p.stat().st_size for p in batch_output.iterdir()) if batch_output.is_dir() else batch_output.stat().st_size
            )
            assert output_contents(batch_output) == output_contents(cli_output), case
        else:
            # The same one-line message the CLI prints, and nothing written.
            assert result.status == "failed", case
            assert result.error == error, case
            assert not Path(result.output).exists()
    assert partial_files(out) == []


def test_local_pool_gives_the_cli_outputs_and_reports_every_case(collection, cli_runs, tmp_path):
    # The broken cases are the four the CLI itself refuses; their messages name the problem.
    failed = {case: error for case, (_, status, error) in cli_runs.items() if status}
    assert sorted(failed) == ["broken-pm-image", "broken-seg-metadata", "broken-seg-truncated", "broken-sr-context"]
    assert "SegmentedPropertyCategoryCodeSequence" in failed["broken-seg-metadata"]
    assert "truncated or corrupt" in failed["broken-seg-truncated"]
    assert "seg.dcm" in failed["broken-sr-context"]

    out = tmp_path / "out"
    report = run_batch(collection["manifest"], out, workers=2, progress=False)
    check_against_cli(report, out, cli_runs)
    assert report.counts["ok"] == PER_STUDY * STUDIES and report.counts["failed"] == 4 and not report.ok

    # The report, as CSV and JSON, one line per case in manifest order.
    with open(out / "qidicom-batch-report.csv") as stream:
        lines = list(csv.DictReader(stream))
    assert [line["case"] for line in lines] == [row["case"] for row in collection["rows"]]
    assert {line["status"] for line in lines} == {"ok", "failed"}
    document = json.loads((out / "qidicom-batch-report.json").read_text())
    assert document["counts"]["failed"] == 4
    assert all(case["seconds"] > 0 for case in document["cases"])

    # Rerun: every finished case is skipped (hash unchanged), the broken ones are tried again.
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*" + SIDECAR)}
    again = run_batch(collection["manifest"], out, workers=2, progress=False)
    assert again.counts["skipped"] == PER_STUDY * STUDIES and again.counts["failed"] == 4
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*" + SIDECAR)} == stamps

    # An input changes: only the cases reading it are redone; --force redoes everything.
    changed = collection["root"] / "study2" / "pm.json"
    document = json.loads(changed.read_text())
    document["SeriesDescription"] = "ADC, edited"
    original = changed.read_text()
    changed.write_text(json.dumps(document))
    try:
        third = run_batch(collection["manifest"], out, workers=1, progress=False)
        redone = sorted(r.case for r in third.results if r.status == "ok")
        assert redone == ["study2-pm", "study2-sr"]  # the SR's composite context folder holds pm.json too
        forced = run_batch(collection["manifest"], out, workers=2, force=True, progress=False)
        assert forced.counts["ok"] == PER_STUDY * STUDIES
    finally:
        changed.write_text(original)


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as local:
        with distributed.Client(local) as client:
            yield client


def test_dask_local_cluster_gives_the_cli_outputs(collection, cli_runs, cluster, tmp_path):
    out = tmp_path / "out"
    report = run_batch(collection["manifest"], out, cluster, progress=False)
    check_against_cli(report, out, cli_runs)
    assert report.scheduler.startswith("Dask scheduler") and report.dashboard
    # The cases ran in the cluster's two worker processes, not here.
    worker_pids = set(cluster.run(os.getpid).values())
    assert len(worker_pids) == 2 and os.getpid() not in worker_pids
    assert {int(result.worker.rsplit(":", 1)[1]) for result in report.results} <= worker_pids


def test_cli_runs_a_local_cluster_and_exits_1_when_cases_fail(collection, tmp_path):
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, "-m", "qidicom", "batch", str(collection["manifest"]), "--output-directory", str(out),
         "--scheduler", "local:2"],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 1, run.stderr
    assert "Dask dashboard: http://" in run.stderr
    assert "failed: broken-seg-truncated: " in run.stderr
    assert f"{PER_STUDY * STUDIES + 4} case(s): {PER_STUDY * STUDIES} ok, 4 failed" in run.stderr
    assert "Traceback" not in run.stderr


# --------------------------------------------------------------------------- interruptions


@pytest.fixture(scope="module")
def slow_cases(tmp_path_factory) -> Path:
    """A dozen SEG cases that take a moment each (128x128x32), to interrupt midway."""
    root = tmp_path_factory.mktemp("slow")
    samples.write_sample_study(root / "study", samples.make_sample_study(rows=128, columns=128, slices=32, seed=7), with_seg=False)
    rows = [
        dict(case=f"seg{n:02d}", conversion="seg", inputImageList="study/ct-labels.nii.gz", inputDICOMDirectory="study/ct",
             inputMetadata="study/seg.json", compress="deflate" if n % 2 else "none")
        for n in range(12)
    ]
    return write_csv(root / "manifest.csv", rows)


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_killed_batch_resumes_without_losing_or_redoing_work(slow_cases, tmp_path, how):
    out = tmp_path / "out"
    driver = subprocess.Popen(
        [sys.executable, "-m", "qidicom", "batch", str(slow_cases), "--output-directory", str(out), "--workers", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while len(list(out.glob("*" + SIDECAR))) < 3:
            assert driver.poll() is None, driver.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        workers = psutil.Process(driver.pid).children(recursive=True)
        driver.send_signal(how)
        _, stderr = driver.communicate(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
    if how == signal.SIGINT:
        # The running cases finish, the report says what was not run, exit status 130.
        assert driver.returncode == 130, stderr
        assert "interrupted" in stderr and "Traceback" not in stderr
        statuses = {line["status"] for line in csv.DictReader(open(out / "qidicom-batch-report.csv"))}
        assert "not run" in statuses and "ok" in statuses
    else:
        assert driver.returncode == -signal.SIGKILL
    # Orphaned workers finish their case (whole) and go.
    gone, alive = psutil.wait_procs(workers, timeout=60)
    for process in alive:
        process.kill()
    assert not alive

    outputs = sorted(p.name for p in out.glob("*.dcm"))
    finished = {p.name[: -len(SIDECAR)]: p.stat().st_mtime_ns for p in out.glob("*" + SIDECAR)}
    assert 3 <= len(finished) < 12
    assert partial_files(out) == []
    for name in outputs:  # every output there is whole
        pydicom.dcmread(out / name)
    assert set(finished) <= set(outputs)

    report = run_batch(slow_cases, out, workers=2, progress=False)
    statuses = {result.case + ".dcm": result.status for result in report.results}
    assert report.ok and len(list(out.glob("*.dcm"))) == 12
    assert {name for name, status in statuses.items() if status == "skipped"} == set(finished)
    assert {p.name[: -len(SIDECAR)]: p.stat().st_mtime_ns for p in out.glob("*" + SIDECAR) if p.name[: -len(SIDECAR)] in finished} == finished
    assert partial_files(out) == []


def test_worker_killed_mid_case_is_retried_by_dask(slow_cases, cluster, tmp_path):
    out = tmp_path / "out"
    rows = list(csv.DictReader(open(slow_cases)))[:4]
    for row in rows:
        for key in ("inputImageList", "inputDICOMDirectory", "inputMetadata"):
            row[key] = str(slow_cases.parent / row[key])
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(report=run_batch(rows, out, cluster, progress=False)), daemon=True)
    thread.start()

    def executing(dask_worker):
        return [str(task.key) for task in dask_worker.state.executing]

    killed = None
    deadline = time.monotonic() + 60
    while killed is None and time.monotonic() < deadline and thread.is_alive():
        for address, keys in cluster.run(executing).items():
            if any("qidicom-" in key for key in keys):
                pid = cluster.run(os.getpid, workers=[address])[address]
                os.kill(pid, signal.SIGKILL)
                killed = (pid, [key for key in keys if "qidicom-" in key][0])
                break
        time.sleep(0.05)
    thread.join(timeout=240)
    assert killed is not None, "no case was seen running"
    assert not thread.is_alive(), "the batch did not end within 240 s of its worker being killed"
    report = outcome["report"]
    assert report.ok and report.counts["ok"] == 4
    victim = next(result for result in report.results if f"-{result.case}-" in killed[1])
    # It ran again, elsewhere, to the end: output whole and recorded once.
    assert not victim.worker.endswith(f":{killed[0]}")
    assert pydicom.dcmread(victim.output).NumberOfFrames > 0
    assert json.loads(Path(victim.output + SIDECAR).read_text())["case"] == victim.case
    assert partial_files(out) == []
    cluster.wait_for_workers(2, timeout=60)


def test_local_pool_worker_killed_mid_case_is_retried(slow_cases, tmp_path):
    out = tmp_path / "out"
    rows = list(csv.DictReader(open(slow_cases)))[:6]
    outcome = {}
    thread = threading.Thread(
        target=lambda: outcome.update(report=run_batch(rows, out, workers=2, base=slow_cases.parent, progress=False)),
        daemon=True,
    )
    thread.start()
    deadline = time.monotonic() + 120
    while not list(out.glob("*" + SIDECAR)) and time.monotonic() < deadline:
        time.sleep(0.05)
    # The pool's workers are the forkserver's children (the forkserver is ours). Other
    # children may be exiting (the Dask cluster's killed worker): they are not it.
    def command_line(process: psutil.Process) -> str:
        try:
            return " ".join(process.cmdline())
        except psutil.Error:
            return ""

    servers = [p for p in psutil.Process().children() if "forkserver" in command_line(p)]
    workers = [child for server in servers for child in server.children()]
    assert workers, "no pool worker found"
    workers[0].kill()
    thread.join(timeout=240)
    assert not thread.is_alive(), "the batch did not end within 240 s of its worker being killed"
    report = outcome["report"]
    assert report.ok and report.counts["ok"] == 6, [r.error for r in report.results]
    assert sorted(p.name for p in out.glob("*.dcm")) == [f"seg{n:02d}.dcm" for n in range(6)]
    for path in out.glob("*.dcm"):
        pydicom.dcmread(path)
    assert partial_files(out) == []


# --------------------------------------------------------------------------- refusals and odds


def test_bad_manifest_is_refused_whole_listing_every_bad_row(collection, tmp_path):
    good = dict(conversion="seg", inputImageList="study0/ct-labels.nii.gz", inputDICOMDirectory="study0/ct",
                inputMetadata="study0/seg.json")
    rows = [
        dict(good, case="fine", outputDICOM="a.dcm"),
        dict(good, case="typo", outputDICOM="b.dcm", inputMetdata="study0/seg.json"),
        dict(good, case="missing", outputDICOM="c.dcm", inputImageList="study0/no-such.nii.gz"),
        dict(good, case="same-output", outputDICOM="a.dcm"),
        dict(good, case="unknown", conversion="segmentify"),
        dict(good, case="bad-type", outputDICOM="d.dcm", segmentationType="sparse"),
        dict(good, case="wrong-option", outputDICOM="e.dcm", outputType="nrrd"),
        dict(conversion="pm", case="incomplete", inputImage="study0/adc.nrrd", inputDICOMDirectory="study0/mr"),
    ]
    manifest = write_csv(collection["root"] / "bad-manifest.csv", rows)
    out = tmp_path / "out"
    with pytest.raises(ManifestError) as refused:
        run_batch(manifest, out, workers=1, progress=False)
    problems = refused.value.problems
    text = str(refused.value)
    assert "nothing was run" in text
    assert any(p.startswith("column 'inputMetdata'") and "did you mean 'inputMetadata'" in p and "rows 2" in p for p in problems)
    assert any(p.startswith("row 3 (missing): inputImageList:") and "no-such.nii.gz: not found" in p for p in problems)
    assert any(p.startswith("row 4 (same-output): writes") and "row 1 (fine)" in p for p in problems)
    assert any(p.startswith("row 5 (unknown): unknown conversion 'segmentify'") for p in problems)
    assert any(p.startswith("row 6 (bad-type):") and "invalid choice: 'sparse'" in p for p in problems)
    assert any(p.startswith("row 7 (wrong-option): outputType is not an option of itkimage2segimage") for p in problems)
    assert any(p.startswith("row 8 (incomplete):") and "--inputMetadata" in p for p in problems)
    assert not any(p.startswith("row 1 ") for p in problems)
    assert not out.exists()

    # The CLI says the same, with --check too, and exits 1 having run nothing.
    run = subprocess.run([sys.executable, "-m", "qidicom", "batch", str(manifest), "--output-directory", str(out), "--check"],
                         capture_output=True, text=True)
    assert run.returncode == 1 and "row 6 (bad-type)" in run.stderr and "row 3 (missing)" in run.stderr
    assert not out.exists()


def test_output_inside_an_input_folder_is_not_an_input(collection, tmp_path):
    # As in the CLI's own example: the SR is written into the folder it takes the SEG from.
    study = tmp_path / "study"
    shutil.copytree(collection["root"] / "study1", study)
    rows = [dict(case="sr", conversion="sr", inputMetadata=str(study / "sr.json"), inputImageLibraryDirectory=str(study / "ct"),
                 inputCompositeContextDirectory=str(study), outputDICOM="sr-again.dcm")]
    first = run_batch(rows, study, workers=0, progress=False)
    assert first.counts["ok"] == 1
    again = run_batch(rows, study, workers=0, progress=False)
    assert again.counts["skipped"] == 1
    (study / "pm.json").write_text((study / "pm.json").read_text() + "\n")  # another file of the folder changes
    third = run_batch(rows, study, workers=0, progress=False)
    assert third.counts["ok"] == 1


def test_defaults_from_the_command_line_and_manifest_formats(collection, tmp_path):
    rows = [row for row in collection["rows"] if not row["case"].startswith("broken")]
    base = collection["root"]
    csv_cases = load_cases(collection["manifest"], tmp_path, defaults={"segmentationType": "fractional", "outputType": "nrrd"})
    by_case = {case.id: case for case in csv_cases}
    # Rows without a value take the default; a row's own value wins.
    assert by_case["study0-seg"].options["segmentationType"] == "fractional"
    assert by_case["study0-seg-labelmap"].options["segmentationType"] == "labelmap"
    assert by_case["study0-seg-read"].options["outputType"] == "nifti"
    assert by_case["study0-pm-read"].options["outputType"] == "nrrd"
    with pytest.raises(ManifestError, match="default 'segmentationTyp': not an option of any conversion"):
        load_cases(collection["manifest"], tmp_path, defaults={"segmentationTyp": "labelmap"})
    assert by_case["study0-seg"].inputs["inputMetadata"] == str(base / "study0" / "seg.json")

    jsonl = base / "manifest.jsonl"
    jsonl.write_text("".join(json.dumps(row) + "\n" for row in rows))
    import pyarrow
    import pyarrow.parquet

    parquet = base / "manifest.parquet"
    pyarrow.parquet.write_table(pyarrow.Table.from_pylist([dict(r, **{c: r.get(c) for c in COLUMNS}) for r in rows]), parquet)
    expected = [case for case in load_cases(collection["manifest"], tmp_path) if not case.id.startswith("broken")]
    assert load_cases(jsonl, tmp_path) == expected
    assert load_cases(parquet, tmp_path) == expected
    assert load_cases(rows, tmp_path, base=base) == expected
    table = pyarrow.Table.from_pylist([dict(r, **{c: r.get(c) for c in COLUMNS}) for r in rows])
    assert load_cases(table, tmp_path, base=base) == expected  # a table, from Python
    pandas = pytest.importorskip("pandas")  # in the notebooks extra
    frame = pandas.DataFrame(rows)  # missing cells become NaN: not given
    assert load_cases(frame, tmp_path, base=base) == expected
    report = run_batch(frame.iloc[:2], tmp_path / "out", workers=0, base=base, progress=False)
    assert list(report.to_dataframe()["status"]) == ["ok", "ok"]


def test_fsspec_memory_urls_for_inputs_and_outputs(collection, cli_runs, tmp_path):
    fsspec = pytest.importorskip("fsspec")
    memory = fsspec.filesystem("memory")
    study = collection["root"] / "study1"
    for path in study.rglob("*"):
        if path.is_file():
            memory.pipe_file(f"/collection/study1/{path.relative_to(study)}", path.read_bytes())
    rows = [
        dict(case="study1-seg", conversion="seg", inputImageList="memory://collection/study1/ct-labels.nii.gz",
             inputDICOMDirectory="memory://collection/study1/ct", inputMetadata="memory://collection/study1/seg.json"),
        dict(case="study1-seg-read", conversion="seg-read", inputDICOM="memory://collection/study1/seg.dcm",
             outputType="nifti"),
    ]
    # memory:// lives in this process, so the cases run here (workers=0).
    # A manifest at a URL: its relative paths start from its folder there.
    memory.pipe_file("/collection/manifest.jsonl", b'{"conversion": "seg-read", "inputDICOM": "study1/seg.dcm"}\n')
    [case] = load_cases("memory://collection/manifest.jsonl", "memory://results")
    assert case.inputs["inputDICOM"] == "memory://collection/study1/seg.dcm"
    assert case.output == "memory://results/row-0001"

    report = run_batch(rows, "memory://results", workers=0, progress=False)
    assert report.ok, [r.error for r in report.results]
    local = tmp_path / "seg.dcm"
    local.write_bytes(memory.cat_file("/results/study1-seg.dcm"))
    assert normalised(local) == normalised(cli_runs["study1-seg"][0])
    for path in cli_runs["study1-seg-read"][0].iterdir():
        assert memory.cat_file(f"/results/study1-seg-read/{path.name}") == path.read_bytes()
    assert memory.exists("/results/qidicom-batch-report.csv")
    again = run_batch(rows, "memory://results", workers=0, progress=False)
    assert again.counts["skipped"] == 2


@pytest.mark.parametrize("workers", [0, 1], ids=["in-process", "pool"])
def test_case_timeout_leaves_nothing_behind(slow_cases, tmp_path, workers):
    rows = list(csv.DictReader(open(slow_cases)))[:1]
    report = run_batch(rows, tmp_path / "out", workers=workers, case_timeout=0.05, base=slow_cases.parent, progress=False)
    [result] = report.results
    assert result.status == "timeout" and "--case-timeout" in result.error
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["qidicom-batch-report.csv", "qidicom-batch-report.json"]


def test_case_stuck_in_a_system_call_is_stopped_from_outside(slow_cases, tmp_path, monkeypatch):
    # Reading a FIFO nobody writes blocks inside open(): no Python-level time limit can end
    # it (as with a hung network file system). The driver stops such a worker itself, after
    # the limit plus a grace, here shortened; the other cases still run.
    monkeypatch.setattr("qidicom.batch.run.TIMEOUT_GRACE", 3.0)
    stuck = tmp_path / "stuck.json"
    os.mkfifo(stuck)
    rows = list(csv.DictReader(open(slow_cases)))[:5]
    rows[0]["inputMetadata"] = str(stuck)
    started = time.monotonic()
    report = run_batch(rows, tmp_path / "out", workers=2, case_timeout=2.0, base=slow_cases.parent, progress=False)
    assert time.monotonic() - started < 60
    statuses = {result.case: result.status for result in report.results}
    assert statuses == {"seg00": "timeout", **{f"seg0{n}": "ok" for n in range(1, 5)}}, [r.error for r in report.results]
    assert report.results[0].seconds >= 5.0
    assert "stopped from outside" in report.results[0].error
    assert partial_files(tmp_path / "out") == []


def test_help_documents_every_column_of_every_conversion():
    parser = cli.build_parser()
    subcommands = next(a for a in parser._actions if hasattr(a, "choices") and isinstance(a.choices, dict)).choices
    text = subcommands["batch"].format_help()
    for name, sub in subcommands.items():
        if name == "batch":
            continue
        assert name in text
        for action in sub._actions:
            if action.option_strings and action.dest not in ("help", "verbose"):
                assert f"    {action.dest} " in text, (name, action.dest)


def test_every_input_and_option_reaches_the_library_function_the_description_names():
    # A case calls the conversion's library function with every input and every option
    # that has an effect, by the names its description gives: they must all be parameters
    # of that function, and every column the CLI takes must be one of them or marked as
    # changing nothing.
    import inspect

    from qidicom import conversions
    from qidicom.batch.columns import conversions as batch_conversions

    for name, described in batch_conversions().items():
        conversion = conversions.get(name)
        parameters = inspect.signature(conversion.resolve("function")).parameters
        for item in conversion.inputs:
            assert item.parameter in parameters, (name, item.role)
        for option in conversion.options:
            assert option.parameter is None or option.parameter in parameters, (name, option.dest)
        known = {form.dest for item in conversion.inputs for form in item.cli}
        known |= {option.dest for option in conversion.options} | {output.dest for output in conversion.outputs}
        assert {column.name for column in described.columns.values()} <= known, name


def test_core_library_and_cli_do_not_import_dask():
    # (tqdm is left out: pydicom imports it when it is installed.)
    code = (
        "import sys, qidicom, qidicom.seg, qidicom.pm, qidicom.sr, qidicom.cli, qidicom.batch;"
        "qidicom.cli.build_parser();"
        "heavy = sorted(m for m in ('dask', 'distributed', 'fsspec', 'pyarrow', 'pandas') if m in sys.modules);"
        "print(heavy)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"
