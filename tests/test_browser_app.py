"""End to end in Debian's chromium: the built site, served locally under a subpath, used the
way a person uses it (real file inputs, Convert, the download link), then again with the
server gone to prove the offline mode. Every request is recorded: none may leave the local
server."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from conftest import dciodvfy_errors

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import browser_session  # noqa: E402

SCREENSHOTS = ROOT / "build" / "cache" / "screenshots"

pytestmark = pytest.mark.browser


@pytest.fixture(scope="session")
def dist() -> Path:
    """dist/, built (or found up to date) by build/site.py."""
    result = subprocess.run([sys.executable, str(ROOT / "build" / "site.py"), "build", "--if-needed"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return ROOT / "dist"


@pytest.fixture(scope="module")
def browser(dist, liver_sample):
    reason = browser_session.chromium_missing_reason()
    if reason:
        pytest.skip(reason)
    with browser_session.SiteServer(dist) as server, browser_session.browser_context(server) as (context, log):
        page = context.new_page()
        browser_session.watch_page(page, log)
        page.goto(server.url)
        timing = browser_session.wait_ready(page)
        yield {"server": server, "context": context, "page": page, "log": log, "timing": timing}


def cpython_segmentation(labelmap: Path, metadata: Path, series: list[Path], **options):
    """The same conversion by the library under CPython, for comparison."""
    from qidicom.seg import segmentation_from_files

    pair = lambda path: (path.name, path.read_bytes())  # noqa: E731
    return segmentation_from_files([pair(labelmap)], pair(metadata), [pair(p) for p in series], **options)


def frame_references(dataset) -> list[str]:
    return [
        str(frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
        for frame in dataset.PerFrameFunctionalGroupsSequence
    ]


def assert_same_segmentation(made: pydicom.Dataset, expected: pydicom.Dataset) -> None:
    """Same segments, same frames on the same source images, same pixels (UIDs and times differ)."""
    assert made.SOPClassUID == expected.SOPClassUID
    assert made.SegmentationType == expected.SegmentationType
    assert made.get("SegmentationFractionalType") == expected.get("SegmentationFractionalType")
    assert made.file_meta.TransferSyntaxUID == expected.file_meta.TransferSyntaxUID
    for made_segment, expected_segment in zip(made.SegmentSequence, expected.SegmentSequence, strict=True):
        assert made_segment.to_json_dict() == expected_segment.to_json_dict()
    assert frame_references(made) == frame_references(expected)
    assert np.array_equal(made.pixel_array, expected.pixel_array)
    assert made.PatientID == expected.PatientID
    assert made.StudyInstanceUID == expected.StudyInstanceUID


def choose_inputs(page, series=(), labelmap=None, metadata=None):
    """Use the page's own file inputs, as a person would."""
    if series:
        page.set_input_files("#series-files", [str(p) for p in series])
    if labelmap:
        page.set_input_files("#labelmap-file", str(labelmap))
    if metadata:
        page.set_input_files("#metadata-file", str(metadata))


def convert_and_download(page, target: Path, timeout_s: float = 120) -> str:
    button = page.get_by_role("button", name="Convert to DICOM SEG")
    button.wait_for(state="visible")
    page.wait_for_selector(".bk-btn-primary:not([disabled])", timeout=timeout_s * 1000)
    link = page.locator("a.qi-download")
    previous = link.get_attribute("href") if link.count() else None
    button.click()
    # Wait for this conversion's link, not the one a previous conversion left on the page.
    browser_session.wait_for(lambda: link.count() and link.get_attribute("href") != previous, timeout_s)
    with page.expect_download() as download:
        link.click()
    download.value.save_as(target)
    return download.value.suggested_filename


def shows(page, text: str) -> bool:
    # Text locators pierce Bokeh's shadow roots (innerText of the page does not).
    return page.get_by_text(text).count() > 0


def test_app_is_ready_and_names_no_other_origin(browser):
    timing, log = browser["timing"], browser["log"]
    assert 0 < timing["rendered"] <= timing["ready"]
    assert log.foreign == []
    assert log.errors == []
    # The worker's own fetches (Pyodide, wheels) are seen too, so "no other origin" covers it.
    assert any(r.endswith("/pyodide/pyodide.asm.wasm") for r in log.requests)
    assert any(r.endswith(".whl") for r in log.requests)


def test_bad_inputs_give_readable_messages_and_leave_the_app_usable(browser, liver_sample, tmp_path):
    page = browser["page"]
    document = json.loads(liver_sample["metadata"].read_text())
    document["segmentAttributes"][0][0]["labelID"] = "one"
    broken_metadata = tmp_path / "broken-metadata.json"
    broken_metadata.write_text(json.dumps(document))
    choose_inputs(page, metadata=broken_metadata)
    problem = page.get_by_text("segmentAttributes[0][0].labelID")
    problem.wait_for(timeout=120_000)
    assert "is not of type 'integer'" in problem.inner_text()

    not_nrrd = tmp_path / "labels.nrrd"
    not_nrrd.write_bytes(b"NRRD0004\nthis is not a label map\n")
    choose_inputs(page, series=sorted(liver_sample["series"].glob("*.dcm")), labelmap=not_nrrd,
                  metadata=liver_sample["metadata"])
    page.get_by_text("seg-example.json is valid").wait_for(timeout=60_000)
    page.get_by_role("button", name="Convert to DICOM SEG").click()
    failure = page.get_by_text("Conversion failed.")
    failure.wait_for(timeout=60_000)
    assert shows(page, "labels.nrrd: not a readable NRRD header")
    assert not shows(page, "Traceback") and not shows(page, 'File "')


def test_sample_converts_in_the_browser_like_the_library(browser, liver_sample, tmp_path):
    page, log = browser["page"], browser["log"]
    series = sorted(liver_sample["series"].glob("*.dcm"))
    choose_inputs(page, series=series, labelmap=liver_sample["labels"], metadata=liver_sample["metadata"])
    page.get_by_text("Series found (3 files)").wait_for(timeout=60_000)
    assert shows(page, "512 × 512 pixels, 3 slices") and shows(page, "JANCT000")

    target = tmp_path / "browser.dcm"
    name = convert_and_download(page, target)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "after-conversion.png", full_page=True)

    expected = cpython_segmentation(liver_sample["labels"], liver_sample["metadata"], series)
    assert name == expected.filename
    made = pydicom.dcmread(target)
    assert_same_segmentation(made, expected.dataset)
    import highdicom

    assert highdicom.seg.segread(target).number_of_segments == len(expected.dataset.SegmentSequence)
    assert dciodvfy_errors(target) == []

    assert log.foreign == [], f"requests to other origins: {log.foreign}"
    # A request the page's CSP blocks never reaches the network (nor Playwright's request
    # log), but the browser reports it on the console.
    assert not [line for line in log.console if "Content Security Policy" in line], log.console
    assert log.failed == [], f"failed requests: {log.failed}"
    assert log.errors == []
    # Files go to the worker as File objects: nothing is ever sent anywhere.
    assert [r for r in log.requests if not r.startswith("GET ")] == []


@pytest.mark.parametrize("choices, options", [
    (["Label map", "RLE"], {"segmentation_type": "labelmap", "compress": "rle"}),
    (["Fractional", "Occupancy", "Deflate"], {"segmentation_type": "fractional", "fractional_type": "OCCUPANCY",
                                               "compress": "deflate"}),
])
def test_options_reach_the_conversion(browser, liver_sample, tmp_path, choices, options):
    page = browser["page"]
    for choice in choices:
        page.get_by_role("button", name=choice, exact=True).click()
    target = tmp_path / "with-options.dcm"
    convert_and_download(page, target)
    made = pydicom.dcmread(target)
    series = sorted(liver_sample["series"].glob("*.dcm"))
    expected = cpython_segmentation(liver_sample["labels"], liver_sample["metadata"], series, **options)
    assert made.SegmentationType == options["segmentation_type"].upper()
    assert_same_segmentation(made, expected.dataset)


def test_dcmqi_sample_is_a_second_choice_when_the_build_has_it(browser, tmp_path):
    page = browser["page"]
    broken = tmp_path / "other.json"
    broken.write_text("{not json")
    choose_inputs(page, metadata=broken)
    page.get_by_text("other.json").first.wait_for(timeout=60_000)
    page.get_by_role("button", name="Load dcmqi's sample").click()
    page.get_by_text("seg-example.json is valid").wait_for(timeout=60_000)
    page.get_by_text("Series found (3 files)").wait_for(timeout=60_000)
    assert shows(page, "liver_seg.nrrd")
    assert page.get_by_role("button", name="Load sample data").is_visible()


def test_dropped_files_are_sorted_into_series_label_map_and_metadata(browser, liver_sample):
    page = browser["page"]
    files = [(p.name, p.read_bytes()) for p in sorted(liver_sample["series"].glob("*.dcm"))]
    files += [(liver_sample["labels"].name, liver_sample["labels"].read_bytes()),
              ("dropped-metadata.json", liver_sample["metadata"].read_bytes())]
    payload = [{"name": name, "base64": base64.b64encode(data).decode()} for name, data in files]
    page.evaluate(
        """(files) => {
            const transfer = new DataTransfer();
            for (const {name, base64} of files) {
                const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
                transfer.items.add(new File([bytes], name));
            }
            document.dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
        }""",
        payload,
    )
    page.get_by_text("dropped-metadata.json is valid").wait_for(timeout=60_000)
    page.get_by_text("Series found (3 files)").wait_for(timeout=60_000)
    assert shows(page, "liver_seg.nrrd")


def test_second_visit_works_with_the_network_cut(browser, liver_sample, tmp_path):
    page, context, server = browser["page"], browser["context"], browser["server"]
    page.wait_for_selector("body[data-offline=ready]", state="attached", timeout=120_000)
    server.stop()
    context.set_offline(True)
    page.reload()
    browser_session.wait_ready(page)
    choose_inputs(page, series=sorted(liver_sample["series"].glob("*.dcm")), labelmap=liver_sample["labels"],
                  metadata=liver_sample["metadata"])
    page.get_by_text("Series found (3 files)").wait_for(timeout=60_000)
    target = tmp_path / "offline.dcm"
    convert_and_download(page, target)
    assert pydicom.dcmread(target).Modality == "SEG"
    page.screenshot(path=SCREENSHOTS / "offline-after-conversion.png", full_page=True)

