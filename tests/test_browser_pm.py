"""Parametric Map mode, end to end in Debian's chromium: a map, its reference series and pm
metadata chosen through the page (or "Load sample data"), converted with the data type
and compression chosen on the page, downloaded, then checked in CPython: dciodvfy finds no
error, highdicom reads it, and it equals what the command line makes of the same files
apart from UIDs and times. No request may leave the local server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from conftest import dciodvfy_errors
from site_browser import (app_in_mode, build_site, check_no_foreign_requests, choose_files, chromium_missing_reason,
                          comparable, convert_and_download, shows)

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "build" / "cache" / "screenshots"
TITLE = "DICOM Parametric Map"

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def dist() -> Path:
    return build_site()


@pytest.fixture(scope="module")
def page_and_log(dist):
    reason = chromium_missing_reason()
    if reason:
        pytest.skip(reason)
    with app_in_mode(dist, "pm") as (page, log):
        yield page, log


def cli_parametric_map(tmp_path: Path, image: Path, metadata: Path, references: list[Path], **options) -> Path:
    """The same conversion by the command line, for comparison."""
    out = tmp_path / "cli-pm.dcm"
    command = [sys.executable, "-m", "qidicom", "itkimage2paramap", "--inputImage", str(image),
               "--inputMetadata", str(metadata), "--inputDICOMList", ",".join(map(str, references)),
               "--outputDICOM", str(out)]
    for option, value in options.items():
        command += [f"--{option}", value]
    subprocess.run(command, check=True, capture_output=True)
    return out


def check_parametric_map(made: Path, expected: Path) -> None:
    import highdicom

    assert dciodvfy_errors(made) == []
    parametric_map = highdicom.pm.ParametricMap.from_dataset(pydicom.dcmread(made))
    assert parametric_map.SOPClassUID == "1.2.840.10008.5.1.4.1.1.30"
    made_ds, expected_ds = pydicom.dcmread(made), pydicom.dcmread(expected)
    assert comparable(made_ds) == comparable(expected_ds)


def choose_pm_inputs(page, image: Path, metadata: Path, references: list[Path]) -> None:
    choose_files(page, "pm", "series", references)
    choose_files(page, "pm", "map", image)
    choose_files(page, "pm", "metadata", metadata)
    page.get_by_text(f"Metadata JSON: {metadata.name}").first.wait_for(timeout=120_000)
    page.get_by_text(image.name).first.wait_for(timeout=120_000)


@pytest.mark.parametrize("choices, options", [
    ([], {}),
    (["float64", "Deflate"], {"dataType": "float64", "compress": "deflate"}),
])
def test_sample_map_converts_as_the_command_line_converts_it(page_and_log, sample_files, tmp_path, choices, options):
    page, log = page_and_log
    references = sorted(sample_files["mr"].glob("*.dcm"))
    choose_pm_inputs(page, sample_files["adc_map"], sample_files["pm_metadata"], references)
    page.get_by_text(f"Series found ({len(references)} files)").wait_for(timeout=120_000)
    for choice in choices:
        page.get_by_role("button", name=choice, exact=True).click()
    made = tmp_path / "browser-pm.dcm"
    name = convert_and_download(page, TITLE, made)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"pm-converted{'-' + '-'.join(choices) if choices else ''}.png", full_page=True)
    expected = cli_parametric_map(tmp_path, sample_files["adc_map"], sample_files["pm_metadata"], references, **options)
    assert name.endswith("_PM.dcm")
    check_parametric_map(made, expected)
    stored = pydicom.dcmread(made)
    assert ("DoubleFloatPixelData" in stored) == (options.get("dataType") == "float64")
    check_no_foreign_requests(log)
    for choice in ("Keep the map's type", "None"):  # back to the defaults for the next test
        page.get_by_role("button", name=choice, exact=True).click()


def test_load_sample_data_fills_the_mode_and_converts(page_and_log, sample_study, tmp_path):
    page, log = page_and_log
    page.get_by_role("button", name="Load sample data").click()
    page.wait_for_selector("body[data-sample-pm=loaded]", state="attached", timeout=120_000)
    page.get_by_text("Metadata JSON: pm.json").first.wait_for(timeout=60_000)
    assert shows(page, f"Series found ({len(sample_study.mr_series)} files)")
    assert shows(page, sample_study.adc_map[0])
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "pm-sample-loaded.png", full_page=True)
    made = tmp_path / "sample-pm.dcm"
    convert_and_download(page, TITLE, made)
    import highdicom

    parametric_map = highdicom.pm.ParametricMap.from_dataset(pydicom.dcmread(made))
    mr = pydicom.dcmread(pydicom.filebase.DicomBytesIO(sample_study.mr_series[0][1]))
    assert parametric_map.PatientID == mr.PatientID and parametric_map.StudyInstanceUID == mr.StudyInstanceUID
    mapping = parametric_map.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
    assert mapping.MeasurementUnitsCodeSequence[0].CodeValue == sample_study.pm_metadata["MeasurementUnitsCode"]["CodeValue"]
    assert dciodvfy_errors(made) == []
    check_no_foreign_requests(log)


def test_copy_json_puts_the_editors_document_on_the_clipboard(page_and_log, sample_files):
    # The page copies (a worker has no clipboard, the page's policy runs no CustomJS): what
    # lands on the clipboard is the document the editor shows, here the loaded pm JSON.
    page, log = page_and_log
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    choose_files(page, "pm", "metadata", sample_files["pm_metadata"])
    page.get_by_text(f"Metadata JSON: {sample_files['pm_metadata'].name}").first.wait_for(timeout=120_000)
    page.evaluate("navigator.clipboard.writeText('')")
    errors = len(log.errors), sum(line.startswith("error") for line in log.console)
    page.get_by_role("button", name="Copy JSON").first.click()
    page.wait_for_selector("body[data-copied]", state="attached", timeout=30_000)
    copied = page.evaluate("navigator.clipboard.readText()")
    assert json.loads(copied) == json.loads(sample_files["pm_metadata"].read_text())
    assert copied == page.locator(".qi-json-text textarea").first.input_value()
    assert shows(page, "The JSON is on the clipboard.")
    assert (len(log.errors), sum(line.startswith("error") for line in log.console)) == errors, log.console[-5:]


def test_a_map_off_the_series_grid_is_refused_with_the_reason(page_and_log, sample_files, tmp_path):
    page, _ = page_and_log
    # The CT series is another grid: the map does not lie on it.
    choose_files(page, "pm", "series", sorted(sample_files["ct"].glob("*.dcm")))
    choose_files(page, "pm", "map", sample_files["adc_map"])
    page.get_by_text("Series found (24 files)").wait_for(timeout=120_000)
    page.get_by_role("button", name=f"Convert to {TITLE}").click()
    page.get_by_text("Conversion failed.").wait_for(timeout=120_000)
    assert not shows(page, "Traceback") and not shows(page, 'File "')


def test_dcmqi_example_converts_as_the_command_line_converts_it(page_and_log, shared, tmp_path):
    page, log = page_and_log
    baseline = shared / "data" / "dcmqi" / "paramaps"
    image, reference = baseline / "pm-example.nrrd", baseline / "pm-example-slice.dcm"
    metadata = shared / "reference" / "dcmqi" / "examples" / "pm-example.json"
    choose_pm_inputs(page, image, metadata, [reference])
    page.get_by_text("Series found (1 file)").wait_for(timeout=120_000)
    made = tmp_path / "browser-dcmqi-pm.dcm"
    convert_and_download(page, TITLE, made)
    page.screenshot(path=SCREENSHOTS / "pm-dcmqi-example.png", full_page=True)
    check_parametric_map(made, cli_parametric_map(tmp_path, image, metadata, [reference]))
    check_no_foreign_requests(log)
