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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import browser_session  # noqa: E402

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


def shows(page, text: str) -> bool:
    # Text locators pierce Bokeh's shadow roots (innerText of the page does not).
    return page.get_by_text(text).count() > 0


def convert_and_download(page, target: Path, timeout_s: float = 120) -> None:
    button = page.get_by_role("button", name="Convert to DICOM SEG")
    page.wait_for_selector(".bk-btn-primary:not([disabled])", timeout=timeout_s * 1000)
    button.click()
    link = page.locator("a.qi-download")
    link.wait_for(timeout=timeout_s * 1000)
    with page.expect_download() as download:
        link.click()
    download.value.save_as(target)


# Made afresh by every writing of a SEG (new UIDs, the time of writing): everything else must match.
WRITE_TIME_KEYWORDS = {
    "SOPInstanceUID", "MediaStorageSOPInstanceUID", "SeriesInstanceUID", "DimensionOrganizationUID",
    "InstanceCreationDate", "InstanceCreationTime", "ContentDate", "ContentTime", "SeriesDate", "SeriesTime",
    "ContributionDateTime",
}


def comparable(dataset: pydicom.Dataset) -> dict:
    """A dataset as JSON without what each writing makes afresh, and with pixels decoded."""
    def strip(items: dict) -> dict:  # DICOM JSON: {tag: {"vr": ..., "Value": [...]}}
        kept = {}
        for tag, element in items.items():
            if pydicom.datadict.keyword_for_tag(int(tag, 16)) in WRITE_TIME_KEYWORDS:
                continue
            if element["vr"] == "SQ":
                element = dict(element, Value=[strip(item) for item in element.get("Value", [])])
            kept[tag] = element
        return kept

    as_json = dataset.to_json_dict()
    del as_json["7FE00010"]  # Pixel Data: compared decoded, below
    return {"dataset": strip(as_json),
            "transfer_syntax": str(dataset.file_meta.TransferSyntaxUID),
            "pixels": dataset.pixel_array.tolist()}


class TestLoadSampleData:
    """"Load sample data" on the fresh build: the browser makes the study and converts it."""

    def test_is_offered_and_loads_the_generated_study(self, fresh_browser, fresh_dist):
        from qidicom.samples import make_sample_study

        page, _ = fresh_browser
        study = make_sample_study()
        first_ct = pydicom.dcmread(pydicom.filebase.DicomBytesIO(study.ct_series[0][1]))
        assert json.loads((fresh_dist / "sample" / "manifest.json").read_text())["series"] == []
        assert page.locator("#load-dcmqi-sample").is_hidden()

        button = page.get_by_role("button", name="Load sample data")
        assert button.is_visible()
        button.click()
        page.get_by_text(f"Series found ({len(study.ct_series)} files)").wait_for(timeout=120_000)
        page.get_by_text("seg.json is valid").wait_for(timeout=60_000)
        page.wait_for_selector("body[data-sample=loaded]", state="attached", timeout=60_000)
        assert shows(page, study.ct_labels[0])
        assert shows(page, str(first_ct.PatientID))
        assert shows(page, f"{first_ct.Columns} × {first_ct.Rows} pixels, {len(study.ct_series)} slices")
        dataset = page.evaluate("({...document.body.dataset})")
        assert (dataset["seriesFiles"], dataset["labelmapFiles"], dataset["metadataFiles"]) == (
            str(len(study.ct_series)), "1", "1")
        page.wait_for_selector(".bk-btn-primary:not([disabled])", timeout=60_000)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SCREENSHOTS / "sample-loaded.png", full_page=True)


    def test_converts_exactly_as_the_command_line_converts_it(self, fresh_browser, tmp_path):
        from qidicom.samples import write_sample_study

        page, log = fresh_browser
        if page.evaluate("document.body.dataset.sample") != "loaded":
            page.get_by_role("button", name="Load sample data").click()
            page.wait_for_selector("body[data-sample=loaded]", state="attached", timeout=120_000)
        made_path = tmp_path / "browser.dcm"
        convert_and_download(page, made_path)
        page.screenshot(path=SCREENSHOTS / "sample-converted.png", full_page=True)

        files = write_sample_study(tmp_path / "sample", with_seg=False)
        cli_path = tmp_path / "cli.dcm"
        subprocess.run(
            [sys.executable, "-m", "qidicom", "itkimage2segimage", "--inputImageList", str(files["ct_labels"]),
             "--inputDICOMDirectory", str(files["ct"]), "--inputMetadata", str(files["seg_metadata"]),
             "--outputDICOM", str(cli_path)],
            check=True, capture_output=True)
        made, expected = pydicom.dcmread(made_path), pydicom.dcmread(cli_path)
        assert comparable(made) == comparable(expected)
        import highdicom

        segmentation = highdicom.seg.segread(made_path)
        metadata = json.loads(files["seg_metadata"].read_text())
        assert [segmentation.get_segment_description(n).SegmentDescription
                for n in segmentation.segment_numbers] == [
            attributes["SegmentDescription"] for group in metadata["segmentAttributes"] for attributes in group]
        assert dciodvfy_errors(made_path) == []

        assert log.foreign == [], f"requests to other origins: {log.foreign}"
        assert not [line for line in log.console if "Content Security Policy" in line], log.console
        assert log.failed == [], f"failed requests: {log.failed}"
        assert log.errors == []
        assert [r for r in log.requests if not r.startswith("GET ")] == []


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
