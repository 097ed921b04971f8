"""The site as a fresh machine builds it, in Debian's chromium: no ../shared beside the
checkout and no numpy or pydicom in the build's Python. "Load sample data" must still be
there (the browser makes the sample itself, with qidicom.samples) and convert exactly as the
command line converts the same files; and the page opened as a file must say how to open it.
Every request is recorded: none may leave the local server (or, for the file, the folder)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pydicom
import pytest

from conftest import dciodvfy_errors

import site_browser as browser_session
from site_browser import check_no_foreign_requests, comparable, convert_and_download, select_mode, shows

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "build" / "cache" / "screenshots"

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def fresh_dist(tmp_path_factory) -> Path:
    """The site as a fresh machine builds it: no ../shared (so neither dcmqi's sample nor a
    Pyodide mirror), and a build Python in which numpy and pydicom cannot be imported."""
    work = tmp_path_factory.mktemp("fresh-site")
    (work / "no-mirror").mkdir()
    without_numpy = ("import runpy, sys; sys.modules.update(numpy=None, pydicom=None); "
                     "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")
    result = subprocess.run(
        [sys.executable, "-c", without_numpy, str(ROOT / "build" / "site.py"), "build",
         "--out", str(work / "dist"), "--pyodide-mirror", str(work / "no-mirror")],
        env=dict(os.environ, QIDICOM_HIDE_SHARED="1"), capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return work / "dist"


@contextlib.contextmanager
def open_site(dist: Path):
    """The built site served locally, open and ready in a fresh chromium profile."""
    reason = browser_session.chromium_missing_reason()
    if reason:
        pytest.skip(reason)
    with browser_session.SiteServer(dist) as server, browser_session.browser_context(server) as (context, log):
        page = context.new_page()
        browser_session.watch_page(page, log)
        page.goto(server.url)
        browser_session.wait_ready(page)
        yield page, log


@pytest.fixture(scope="class")
def fresh_browser(fresh_dist):
    # Class scope: closed before the file:// test starts its own browser (Playwright's sync
    # API runs one at a time).
    with open_site(fresh_dist) as session:
        yield session


def load_sample(page, mode: str) -> None:
    select_mode(page, mode)
    if page.evaluate(f"document.body.dataset.sample{mode.capitalize()}") != "loaded":
        page.get_by_role("button", name="Load sample data").click()
        page.wait_for_selector(f"body[data-sample-{mode}=loaded]", state="attached", timeout=180_000)


def cli(*arguments) -> None:
    subprocess.run([sys.executable, "-m", "qidicom", *map(str, arguments)], check=True, capture_output=True)


class TestLoadSampleData:
    """"Load sample data" on the fresh build: the browser makes the study and converts it."""

    def test_is_offered_and_loads_the_generated_study(self, fresh_browser, fresh_dist):
        from qidicom.samples import make_sample_study

        page, _ = fresh_browser
        study = make_sample_study()
        first_ct = pydicom.dcmread(pydicom.filebase.DicomBytesIO(study.ct_series[0][1]))
        assert json.loads((fresh_dist / "sample" / "manifest.json").read_text())["series"] == []
        assert page.locator("#load-dcmqi-sample").is_hidden()

        select_mode(page, "seg")
        button = page.get_by_role("button", name="Load sample data")
        assert button.is_visible()
        button.click()
        page.get_by_text(f"Series found ({len(study.ct_series)} files)").wait_for(timeout=120_000)
        page.get_by_text("seg.json is valid").wait_for(timeout=60_000)
        page.wait_for_selector("body[data-sample-seg=loaded]", state="attached", timeout=60_000)
        assert shows(page, study.ct_labels[0])
        assert shows(page, str(first_ct.PatientID))
        assert shows(page, f"{first_ct.Columns} × {first_ct.Rows} pixels, {len(study.ct_series)} slices")
        dataset = page.evaluate("({...document.body.dataset})")
        assert (dataset["segSeriesFiles"], dataset["segLabelmapsFiles"], dataset["segMetadataFiles"]) == (
            str(len(study.ct_series)), "1", "1")
        page.wait_for_selector(".bk-btn-primary:not([disabled])", timeout=60_000)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SCREENSHOTS / "sample-loaded.png", full_page=True)


    def test_converts_exactly_as_the_command_line_converts_it(self, fresh_browser, tmp_path):
        from qidicom.samples import write_sample_study

        page, log = fresh_browser
        load_sample(page, "seg")
        made_path = tmp_path / "browser.dcm"
        convert_and_download(page, "DICOM SEG", made_path)
        page.screenshot(path=SCREENSHOTS / "sample-converted.png", full_page=True)

        files = write_sample_study(tmp_path / "sample", with_seg=False)
        cli_path = tmp_path / "cli.dcm"
        cli("itkimage2segimage", "--inputImageList", files["ct_labels"], "--inputDICOMDirectory", files["ct"],
            "--inputMetadata", files["seg_metadata"], "--outputDICOM", cli_path)
        made, expected = pydicom.dcmread(made_path), pydicom.dcmread(cli_path)
        assert comparable(made) == comparable(expected)
        import highdicom

        segmentation = highdicom.seg.segread(made_path)
        metadata = json.loads(files["seg_metadata"].read_text())
        assert [segmentation.get_segment_description(n).SegmentDescription
                for n in segmentation.segment_numbers] == [
            attributes["SegmentDescription"] for group in metadata["segmentAttributes"] for attributes in group]
        assert dciodvfy_errors(made_path) == []
        check_no_foreign_requests(log)

    def test_parametric_map_sample_converts_as_the_command_line_converts_it(self, fresh_browser, tmp_path):
        from qidicom.samples import write_sample_study

        page, log = fresh_browser
        load_sample(page, "pm")
        page.screenshot(path=SCREENSHOTS / "sample-pm-loaded.png", full_page=True)
        made_path = tmp_path / "browser-pm.dcm"
        convert_and_download(page, "DICOM Parametric Map", made_path)
        files = write_sample_study(tmp_path / "sample", with_seg=False)
        cli_path = tmp_path / "cli-pm.dcm"
        cli("itkimage2paramap", "--inputImage", files["adc_map"], "--inputDICOMDirectory", files["mr"],
            "--inputMetadata", files["pm_metadata"], "--outputDICOM", cli_path)
        assert comparable(pydicom.dcmread(made_path)) == comparable(pydicom.dcmread(cli_path))
        assert dciodvfy_errors(made_path) == []
        check_no_foreign_requests(log)

    def test_report_sample_is_found_and_converts(self, fresh_browser, sample_study, tmp_path):
        """The sample SR measures a SEG the browser makes itself (new UIDs), so the report is
        checked for what it must say rather than against a CLI run."""
        import highdicom

        page, log = fresh_browser
        load_sample(page, "sr")
        page.get_by_text("all loaded").wait_for(timeout=60_000)
        page.screenshot(path=SCREENSHOTS / "sample-sr-loaded.png", full_page=True)
        made_path = tmp_path / "browser-sr.dcm"
        convert_and_download(page, "DICOM SR (TID 1500)", made_path)
        report = highdicom.sr.srread(made_path)
        groups = report.content.get_volumetric_roi_measurement_groups()
        assert [g.finding_type.meaning for g in groups] == [
            m["Finding"]["CodeMeaning"] for m in sample_study.sr_metadata["Measurements"]]
        assert dciodvfy_errors(made_path) == []
        check_no_foreign_requests(log)


def test_opened_as_a_file_the_page_says_how_to_open_it(fresh_dist):
    """Double-clicking index.html (a file:// page): browsers will not run the app from a file,
    so the page must say how to open it rather than show "Loading..." forever."""
    reason = browser_session.chromium_missing_reason()
    if reason:
        pytest.skip(reason)
    # Anything not under file:/// is refused and recorded, as for the served site.
    file_origin = types.SimpleNamespace(origin="file://")
    with browser_session.browser_context(file_origin) as (context, log):
        page = context.new_page()
        browser_session.watch_page(page, log)
        page.goto((fresh_dist / "index.html").as_uri())
        instructions = page.locator("#open-from-file")
        instructions.wait_for(state="visible", timeout=30_000)
        text = instructions.inner_text()
        assert "python3 serve.py" in text and "any web server" in text
        assert str(fresh_dist) in text  # the folder to run it in
        assert page.locator("#loading-status").is_hidden() and page.locator("#inputs").is_hidden()
        assert page.evaluate("document.body.dataset.appState") == "file-url"
        assert page.workers == []
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SCREENSHOTS / "opened-as-file.png", full_page=True)
    assert log.foreign == []
    assert log.errors == []
    assert all(request.startswith(f"GET {fresh_dist.as_uri()}/") for request in log.requests), log.requests
