"""TID 1500 SR mode, end to end in Debian's chromium: the measurement metadata and the DICOM
files it references (source series, SEG), loaded through the page in several picks or
with "Load sample data"; the page lists which named files were found, keeps Convert
disabled (saying why) while one is missing, and the downloaded SR is checked in CPython:
dciodvfy finds no error, highdicom reads it, and it equals what the command line makes
of the same files apart from UIDs and times. No request may leave the local server."""

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
TITLE = "DICOM SR (TID 1500)"

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def dist() -> Path:
    return build_site()


@pytest.fixture(scope="module")
def page_and_log(dist):
    reason = chromium_missing_reason()
    if reason:
        pytest.skip(reason)
    with app_in_mode(dist, "sr") as (page, log):
        yield page, log


def forget_loaded_files(page) -> None:
    button = page.get_by_role("button", name="Forget the loaded DICOM files")
    if button.count() and button.is_visible():
        button.click()
        page.get_by_text("none loaded yet").first.wait_for(timeout=60_000)


def cli_report(tmp_path: Path, metadata: Path, library: Path, context: Path) -> Path:
    out = tmp_path / "cli-sr.dcm"
    subprocess.run([sys.executable, "-m", "qidicom", "tid1500writer", "--inputMetadata", str(metadata),
                    "--inputImageLibraryDirectory", str(library), "--inputCompositeContextDirectory", str(context),
                    "--outputDICOM", str(out)], check=True, capture_output=True)
    return out


def check_report(made: Path, expected: Path, metadata: dict) -> None:
    import highdicom

    assert dciodvfy_errors(made) == []
    report = highdicom.sr.srread(made)
    groups = report.content.get_planar_roi_measurement_groups() + report.content.get_volumetric_roi_measurement_groups()
    assert len(groups) == len(metadata["Measurements"])
    made_ds, expected_ds = pydicom.dcmread(made), pydicom.dcmread(expected)
    # A group without a TrackingUniqueIdentifier gets one made at each writing.
    made_afresh = ("UID",) if any("TrackingUniqueIdentifier" not in g for g in metadata["Measurements"]) else ()
    assert comparable(made_ds, made_afresh) == comparable(expected_ds, made_afresh)


def test_files_loaded_in_several_picks_convert_as_the_command_line_converts_them(page_and_log, sample_files, tmp_path):
    page, log = page_and_log
    forget_loaded_files(page)
    metadata = sample_files["sr_metadata"]
    choose_files(page, "sr", "metadata", metadata)
    page.get_by_text("Metadata JSON: sr.json").first.wait_for(timeout=120_000)
    # First the source series alone: the SEG the report measures is still missing.
    choose_files(page, "sr", "dicom", sorted(sample_files["ct"].glob("*.dcm")))
    page.get_by_text("1 not loaded yet").wait_for(timeout=120_000)
    assert shows(page, "missing: seg.dcm")
    assert page.get_by_role("button", name=f"Convert to {TITLE}").is_disabled()
    assert shows(page, "Convert is not possible yet: 1 file(s) the metadata names are not among the loaded files (seg.dcm)")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "sr-missing-seg.png", full_page=True)
    # Then the SEG, in a second pick.
    choose_files(page, "sr", "dicom", sample_files["seg"])
    page.get_by_text("all loaded").wait_for(timeout=120_000)
    made = tmp_path / "browser-sr.dcm"
    name = convert_and_download(page, TITLE, made)
    page.screenshot(path=SCREENSHOTS / "sr-converted.png", full_page=True)
    assert name.endswith("_SR.dcm")
    expected = cli_report(tmp_path, metadata, sample_files["ct"], sample_files["seg"].parent)
    check_report(made, expected, json.loads(metadata.read_text()))
    check_no_foreign_requests(log)


def test_load_sample_data_fills_the_mode_and_converts(page_and_log, sample_study, tmp_path):
    page, log = page_and_log
    page.get_by_role("button", name="Load sample data").click()
    page.wait_for_selector("body[data-sample-sr=loaded]", state="attached", timeout=180_000)
    page.get_by_text("all loaded").wait_for(timeout=60_000)
    assert shows(page, f"DICOM files loaded ({len(sample_study.ct_series) + 1})")
    page.screenshot(path=SCREENSHOTS / "sr-sample-loaded.png", full_page=True)
    made = tmp_path / "sample-sr.dcm"
    convert_and_download(page, TITLE, made)
    import highdicom

    report = highdicom.sr.srread(made)
    ct = pydicom.dcmread(pydicom.filebase.DicomBytesIO(sample_study.ct_series[0][1]))
    assert report.PatientID == ct.PatientID and report.StudyInstanceUID == ct.StudyInstanceUID
    assert len(report.content.get_volumetric_roi_measurement_groups()) == len(sample_study.sr_metadata["Measurements"])
    assert dciodvfy_errors(made) == []
    check_no_foreign_requests(log)


def test_dcmqi_example_converts_as_the_command_line_converts_it(page_and_log, shared, tmp_path):
    page, log = page_and_log
    forget_loaded_files(page)
    segmentations = shared / "data" / "dcmqi" / "segmentations"
    metadata = shared / "reference" / "dcmqi" / "examples" / "sr-tid1500-ct-liver-example.json"
    choose_files(page, "sr", "metadata", metadata)
    choose_files(page, "sr", "dicom", sorted((segmentations / "ct-3slice").glob("*.dcm")) + [segmentations / "liver.dcm"])
    page.get_by_text("all loaded").wait_for(timeout=120_000)
    made = tmp_path / "browser-dcmqi-sr.dcm"
    convert_and_download(page, TITLE, made)
    page.screenshot(path=SCREENSHOTS / "sr-dcmqi-example.png", full_page=True)
    context = tmp_path / "context"
    context.mkdir()
    (context / "liver.dcm").symlink_to(segmentations / "liver.dcm")
    check_report(made, cli_report(tmp_path, metadata, segmentations / "ct-3slice", context), json.loads(metadata.read_text()))
    check_no_foreign_requests(log)
