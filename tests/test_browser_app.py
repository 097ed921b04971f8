"""SEG mode end to end in Debian's chromium: the built site, served locally under a subpath,
used the way a person uses it (the page's own file inputs, one or several label maps,
Convert, the download link), then again with the server gone to prove the offline mode.
Every request is recorded: none may leave the local server. Runs on the generated phantom
(qidicom.samples) everywhere; dcmqi's own files are compared too when ../shared is there."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from conftest import UNKNOWN_IOD, dciodvfy_errors
from site_browser import (SiteServer, browser_context, check_no_foreign_requests, choose_files, chromium_missing_reason,
                          comparable, convert_and_download, select_mode, shows, wait_ready, watch_page)

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "build" / "cache" / "screenshots"
TITLE = "DICOM SEG"

pytestmark = pytest.mark.browser


@pytest.fixture(scope="session")
def dist() -> Path:
    """dist/, built (or found up to date) by build/site.py."""
    result = subprocess.run([sys.executable, str(ROOT / "build" / "site.py"), "build", "--if-needed"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return ROOT / "dist"


@pytest.fixture(scope="module")
def browser(dist):
    reason = chromium_missing_reason()
    if reason:
        pytest.skip(reason)
    with SiteServer(dist) as server, browser_context(server) as (context, log):
        page = context.new_page()
        watch_page(page, log)
        page.goto(server.url)
        timing = wait_ready(page)
        select_mode(page, "seg")
        yield {"server": server, "context": context, "page": page, "log": log, "timing": timing}


def cli_segmentation(tmp_path: Path, labelmaps: list[Path], metadata: Path, series: list[Path], **options) -> Path:
    """The same conversion by the command line, for comparison."""
    out = tmp_path / "cli-seg.dcm"
    command = [sys.executable, "-m", "qidicom", "itkimage2segimage", "--inputImageList", ",".join(map(str, labelmaps)),
               "--inputMetadata", str(metadata), "--inputDICOMList", ",".join(map(str, series)), "--outputDICOM", str(out)]
    for option, value in options.items():
        command += [f"--{option}", value]
    subprocess.run(command, check=True, capture_output=True)
    return out


def check_segmentation(made: Path, expected: Path) -> None:
    import highdicom

    made_ds, expected_ds = pydicom.dcmread(made), pydicom.dcmread(expected)
    assert comparable(made_ds) == comparable(expected_ds)
    assert highdicom.seg.segread(made).segment_numbers == highdicom.seg.segread(expected).segment_numbers
    # This dciodvfy predates the Label Map Segmentation IOD: it knows the object, not its IOD.
    known = [UNKNOWN_IOD] if made_ds.SegmentationType == "LABELMAP" else []
    assert dciodvfy_errors(made) == known


def choose_seg_inputs(page, labelmaps: list[Path], metadata: Path, series: list[Path]) -> None:
    choose_files(page, "seg", "series", series)
    choose_files(page, "seg", "labelmaps", labelmaps)
    choose_files(page, "seg", "metadata", metadata)
    page.get_by_text(f"Series found ({len(series)} file{'s' if len(series) != 1 else ''})").wait_for(timeout=120_000)
    page.get_by_text(f"Metadata JSON: {metadata.name}").first.wait_for(timeout=120_000)
    for path in labelmaps:
        page.get_by_text(path.name, exact=True).first.wait_for(timeout=60_000)


def test_app_is_ready_and_names_no_other_origin(browser):
    timing, log = browser["timing"], browser["log"]
    assert 0 < timing["rendered"] <= timing["ready"]
    assert log.foreign == []
    assert log.errors == []
    # The worker's own fetches (Pyodide, wheels) are seen too, so "no other origin" covers it.
    assert any(r.endswith("/pyodide/pyodide.asm.wasm") for r in log.requests)
    assert any(r.endswith(".whl") for r in log.requests)


def test_pickers_are_made_from_the_conversions_description(browser):
    from qidicom import conversions

    page = browser["page"]
    for mode in ("pm", "sr", "seg"):
        select_mode(page, mode)
        for picker in conversions.as_json(conversions.get(mode))["inputs"]:
            element = page.locator(f"#{mode}-{picker['role']}")
            assert element.get_attribute("accept") == (picker["accept"] or None)
            assert (element.get_attribute("multiple") is not None) == picker["multiple"]
            assert page.locator(f"label[for={mode}-{picker['role']}]").inner_text().startswith(picker["label"])


def test_bad_inputs_give_readable_messages_and_leave_the_app_usable(browser, sample_files, tmp_path):
    page = browser["page"]
    document = json.loads(sample_files["seg_metadata"].read_text())
    document["segmentAttributes"][0][0]["labelID"] = "one"
    broken_metadata = tmp_path / "broken-metadata.json"
    broken_metadata.write_text(json.dumps(document))
    choose_files(page, "seg", "metadata", broken_metadata)
    problem = page.get_by_text("segmentAttributes[0][0].labelID").first
    problem.wait_for(timeout=120_000)
    assert "is not of type 'integer'" in problem.inner_text()

    not_nrrd = tmp_path / "labels.nrrd"
    not_nrrd.write_bytes(b"NRRD0004\nthis is not a label map\n")
    choose_files(page, "seg", "series", sorted(sample_files["ct"].glob("*.dcm")))
    choose_files(page, "seg", "labelmaps", not_nrrd)
    choose_files(page, "seg", "metadata", sample_files["seg_metadata"])
    page.get_by_text("Metadata JSON: seg.json").first.wait_for(timeout=60_000)
    # Read when chosen: the message comes at once, and Convert says why it cannot run.
    page.get_by_text("labels.nrrd: not a readable NRRD header").wait_for(timeout=60_000)
    assert page.get_by_role("button", name=f"Convert to {TITLE}").is_disabled()
    assert shows(page, "Convert is not possible yet: a label map could not be read.")
    assert not shows(page, "Traceback") and not shows(page, 'File "')


def one_segment_inputs(sample_files, directory: Path) -> tuple[Path, Path]:
    """The phantom's first organ alone (a fractional SEG takes one segment per file)."""
    document = json.loads(sample_files["seg_metadata"].read_text())
    segment = document["segmentAttributes"][0][0]
    document["segmentAttributes"] = [[segment]]
    metadata = directory / "seg-one.json"
    metadata.write_text(json.dumps(document, indent=2))
    return split_label_map(sample_files["ct_labels"], directory, [[segment["labelID"]]])[0], metadata


@pytest.mark.parametrize("choices, options", [
    ([], {}),
    (["Label map", "RLE"], {"segmentationType": "labelmap", "compress": "rle"}),
    (["Fractional", "Occupancy", "Deflate"], {"segmentationType": "fractional", "fractionalType": "OCCUPANCY",
                                               "compress": "deflate"}),
])
def test_sample_converts_with_the_chosen_options_as_the_command_line(browser, sample_files, tmp_path, choices, options):
    page, log = browser["page"], browser["log"]
    series = sorted(sample_files["ct"].glob("*.dcm"))
    labels, metadata = sample_files["ct_labels"], sample_files["seg_metadata"]
    if options.get("segmentationType") == "fractional":
        labels, metadata = one_segment_inputs(sample_files, tmp_path)
    choose_seg_inputs(page, [labels], metadata, series)
    for choice in ["Binary", "None"] + choices:  # from the defaults
        page.get_by_role("button", name=choice, exact=True).click()
    made = tmp_path / "browser.dcm"
    name = convert_and_download(page, TITLE, made)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"seg-converted{'-' + '-'.join(choices) if choices else ''}.png", full_page=True)
    assert name.endswith("_SEG.dcm")
    expected = cli_segmentation(tmp_path, [labels], metadata, series, **options)
    check_segmentation(made, expected)
    assert pydicom.dcmread(made).SegmentationType == options.get("segmentationType", "binary").upper()
    check_no_foreign_requests(log)
    if options.get("segmentationType") == "fractional":
        page.get_by_role("button", name="Probability", exact=True).click()
    for choice in ("Binary", "None"):  # back to the defaults
        page.get_by_role("button", name=choice, exact=True).click()


def split_label_map(source: Path, directory: Path, groups: list[list[int]]) -> list[Path]:
    """One label map per group of label values, on the same grid (as dcmqi's multi-file cases)."""
    import nibabel

    image = nibabel.load(source)
    labels = np.asarray(image.dataobj)
    paths = []
    for index, values in enumerate(groups):
        part = np.where(np.isin(labels, values), labels, 0).astype(labels.dtype)
        path = directory / f"labels-part{index + 1}.nii.gz"
        nibabel.save(nibabel.Nifti1Image(part, image.affine, image.header), path)
        paths.append(path)
    return paths


def test_several_label_maps_matched_by_file_name(browser, sample_files, tmp_path):
    """Two label maps chosen at once; segmentAttributesFileMapping names them in the other
    order than they were chosen, so each group must find its file by name."""
    page, log = browser["page"], browser["log"]
    document = json.loads(sample_files["seg_metadata"].read_text())
    segments = [a for group in document["segmentAttributes"] for a in group]
    first, second = [s["labelID"] for s in segments[:3]], [s["labelID"] for s in segments[3:]]
    parts = split_label_map(sample_files["ct_labels"], tmp_path, [first, second])
    document["segmentAttributes"] = [segments[3:], segments[:3]]
    document["segmentAttributesFileMapping"] = [parts[1].name, parts[0].name]
    metadata = tmp_path / "seg-two-files.json"
    metadata.write_text(json.dumps(document, indent=2))
    series = sorted(sample_files["ct"].glob("*.dcm"))
    choose_seg_inputs(page, parts, metadata, series)
    page.screenshot(path=SCREENSHOTS / "seg-two-label-maps.png", full_page=True)
    made = tmp_path / "browser-two.dcm"
    convert_and_download(page, TITLE, made)
    check_segmentation(made, cli_segmentation(tmp_path, parts, metadata, series))
    labels = [item.SegmentLabel for item in pydicom.dcmread(made).SegmentSequence]
    assert labels == [s["SegmentLabel"] for s in segments[3:] + segments[:3]]
    check_no_foreign_requests(log)


@pytest.mark.parametrize("example, order", [
    ("seg-example_multiple_segments.json", ["liver_seg.nrrd", "spine_seg.nrrd", "heart_seg.nrrd"]),
    ("seg-example_multiple_segments_reordered.json", ["heart_seg.nrrd", "liver_seg.nrrd", "spine_seg.nrrd"]),
])
def test_dcmqi_multiple_segment_files_convert_as_the_command_line(browser, shared, tmp_path, example, order):
    page, log = browser["page"], browser["log"]
    segmentations = shared / "data" / "dcmqi" / "segmentations"
    labelmaps = [segmentations / name for name in order]
    metadata = shared / "reference" / "dcmqi" / "examples" / example
    series = sorted((segmentations / "ct-3slice").glob("*.dcm"))
    choose_seg_inputs(page, labelmaps, metadata, series)
    made = tmp_path / "browser-multiple.dcm"
    convert_and_download(page, TITLE, made)
    check_segmentation(made, cli_segmentation(tmp_path, labelmaps, metadata, series))
    check_no_foreign_requests(log)


def test_dcmqi_liver_sample_converts_as_the_command_line(browser, liver_sample, tmp_path):
    page = browser["page"]
    series = sorted(liver_sample["series"].glob("*.dcm"))
    choose_seg_inputs(page, [liver_sample["labels"]], liver_sample["metadata"], series)
    assert shows(page, "512 × 512 pixels, 3 slices") and shows(page, "JANCT000")
    made = tmp_path / "browser-liver.dcm"
    convert_and_download(page, TITLE, made)
    page.screenshot(path=SCREENSHOTS / "after-conversion.png", full_page=True)
    check_segmentation(made, cli_segmentation(tmp_path, [liver_sample["labels"]], liver_sample["metadata"], series))


def test_dcmqi_sample_is_a_second_choice_when_the_build_has_it(browser, liver_sample, tmp_path):
    page = browser["page"]
    broken = tmp_path / "other.json"
    broken.write_text("{not json")
    choose_files(page, "seg", "metadata", broken)
    page.get_by_text("other.json").first.wait_for(timeout=60_000)
    page.get_by_role("button", name="Load dcmqi's sample").click()
    page.get_by_text("seg-example.json is valid").wait_for(timeout=60_000)
    page.get_by_text("Series found (3 files)").wait_for(timeout=60_000)
    assert shows(page, "liver_seg.nrrd")
    assert page.get_by_role("button", name="Load sample data").is_visible()


def test_dropped_files_are_sorted_into_series_label_map_and_metadata(browser, sample_files):
    page = browser["page"]
    files = [(p.name, p.read_bytes()) for p in sorted(sample_files["ct"].glob("*.dcm"))]
    files += [(sample_files["ct_labels"].name, sample_files["ct_labels"].read_bytes()),
              ("dropped-metadata.json", sample_files["seg_metadata"].read_bytes())]
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
    page.get_by_text(f"Series found ({len(files) - 2} files)").wait_for(timeout=60_000)
    assert shows(page, sample_files["ct_labels"].name)


def test_a_series_is_parsed_without_copying_its_pixels_into_python(browser, tmp_path):
    """The chosen files are read where they lie (mounted in the worker), so choosing a
    series costs Python its headers, not its pixels: at most half the pixel data is ever
    allocated by Python while 40 slices of 512x512 are parsed (copying each file's bytes,
    as the worker did, allocated all of it). In the PM mode, where no map is chosen, so
    that no preview decodes the pixels meanwhile."""
    import synthetic

    page = browser["page"]
    datasets = synthetic.make_ct_series(rows=512, columns=512, slices=40)
    series = synthetic.write_series(datasets, tmp_path / "ct")
    pixel_bytes = 40 * 512 * 512 * 2
    page.wait_for_selector("body[data-pickers=ready]", state="attached", timeout=120_000)
    select_mode(page, "pm")
    worker = page.workers[0]
    page.evaluate("delete document.body.dataset.pmSeriesFiles")  # set again once these files are taken
    worker.evaluate("pyodide.runPython('import tracemalloc; tracemalloc.start()')")
    try:
        choose_files(page, "pm", "series", series)
        page.wait_for_selector("body[data-pm-series-files='40']", state="attached", timeout=120_000)
        page.get_by_text("Series found (40 files)").wait_for(timeout=60_000)  # parsed, not refused
        peak = worker.evaluate("pyodide.runPython('tracemalloc.get_traced_memory()[1]')")
    finally:
        worker.evaluate("pyodide.runPython('tracemalloc.stop()')")
        select_mode(page, "seg")
    assert 0 < peak < pixel_bytes / 2


def test_second_visit_works_with_the_network_cut(browser, sample_files, tmp_path):
    page, context, server = browser["page"], browser["context"], browser["server"]
    page.wait_for_selector("body[data-offline=ready]", state="attached", timeout=120_000)
    server.stop()
    context.set_offline(True)
    page.reload()
    wait_ready(page)
    select_mode(page, "seg")
    choose_seg_inputs(page, [sample_files["ct_labels"]], sample_files["seg_metadata"], sorted(sample_files["ct"].glob("*.dcm")))
    target = tmp_path / "offline.dcm"
    convert_and_download(page, TITLE, target)
    assert pydicom.dcmread(target).Modality == "SEG"
    page.screenshot(path=SCREENSHOTS / "offline-after-conversion.png", full_page=True)
