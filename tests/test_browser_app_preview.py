"""The slice preview, the measurements and the "Open a DICOM object" mode in the built site,
in Debian's chromium, used as a person uses them (the page's own buttons and file inputs).

One site and one page serve every test here (the app starts once). The phantom study
(qidicom.samples) is made on every machine; dcmqi's liver SEG is opened too when ../shared
is there. Rendered pixels are read from screenshots of the axial plane and compared with
the colours a plain numpy computation of the same voxels gives: the window's grey, and the
segment's colour at the overlay's opacity over it. The preview opens by itself once its
inputs are there; window, opacity and visibility are changed by the page itself (seen
while the worker is busy converting). Measurements (from the label map before any
conversion, from a written SEG, from an opened SEG with a parametric map) are compared
with numpy on the same voxels. Downloads are compared with what the command line's
readers write from the same files, and their blob: URLs are revoked once replaced; no
request may leave the local server.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import nibabel
import numpy as np
import pydicom
import pytest
from PIL import Image

from site_browser import (SiteServer, browser_context, build_site, check_no_foreign_requests, choose_files,
                          chromium_missing_reason, convert_and_download, select_mode, shows, wait_for, wait_ready,
                          watch_page)

ROOT = Path(__file__).resolve().parents[1]
SHOTS = Path("/tmp/shots")

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(chromium_missing_reason() is not None, reason=chromium_missing_reason() or "")]


@pytest.fixture(scope="module")
def app():
    """The built site, open and ready in one chromium page for the whole module."""
    dist = build_site()
    with SiteServer(dist) as server, browser_context(server, viewport=(1280, 1400)) as (context, log):
        page = context.new_page()
        watch_page(page, log)
        page.goto(server.url)
        wait_ready(page)
        SHOTS.mkdir(parents=True, exist_ok=True)
        yield page, log


def cli(*arguments) -> None:
    subprocess.run([sys.executable, "-m", "qidicom", *map(str, arguments)], check=True, capture_output=True)


def load_sample(page, mode: str) -> None:
    select_mode(page, mode)
    page.evaluate(f"delete document.body.dataset.sample{mode.capitalize()}")  # set again once this sample is in
    page.get_by_role("button", name="Load sample data").click()
    page.wait_for_selector(f"body[data-sample-{mode}=loaded]", state="attached", timeout=180_000)


def readout(page) -> str:
    return page.locator(".qi-readout-text").first.inner_text()


def wait_for_preview(page, scope: str = ".qi-preview-card") -> None:
    """The preview opens by itself once its inputs are there: no button to press."""
    page.locator(f"{scope} .qi-readout-text").first.wait_for(timeout=180_000)
    page.locator(f"{scope} .qi-preview .bk-Plot").first.wait_for(timeout=60_000)


def page_side_changes(page) -> int:
    """Changes page.js made to the preview's models itself (window, opacity, visibility)."""
    return page.evaluate("window.qidicomPageSide.applied")


def numbers_equal_numpy(rows: list[dict], values: np.ndarray, labels: np.ndarray, voxel_ml: float,
                        prefix: str = "") -> None:
    """Each row of a measurements CSV against numpy on the same voxels."""
    assert [int(r["segment"]) for r in rows] == sorted(int(v) for v in np.unique(labels) if v)
    for row in rows:
        inside = values[labels == int(row["segment"])]
        assert int(row["voxels"]) == inside.size
        assert float(row["volume_ml"]) == pytest.approx(inside.size * voxel_ml, rel=1e-12)
        for column, expected in (("mean", inside.mean()), ("std", inside.std()), ("min", inside.min()),
                                 ("max", inside.max()), ("median", np.median(inside))):
            assert float(row[prefix + column]) == pytest.approx(expected, rel=1e-9, abs=1e-9), (row["label"], column)


def measured_with_map(page, scope: str, shot: str, tmp_path: Path, values: np.ndarray, labels: np.ndarray,
                      affine: np.ndarray, adc: np.ndarray, units: str) -> str:
    """Press Measurements in ``scope``, check the CSV's image and map statistics against numpy
    on the same voxels, and return the table's header text."""
    page.get_by_role("button", name="Measurements").click()
    page.locator(f"{scope} .qi-measurements").first.wait_for(timeout=120_000)
    page.wait_for_timeout(800)
    page.locator(scope).first.screenshot(path=str(SHOTS / shot))
    rows = list(csv.DictReader(io.StringIO(download(page, "measurements.csv", tmp_path / "made.csv").read_text())))
    voxel_ml = abs(np.linalg.det(affine[:3, :3])) / 1000
    numbers_equal_numpy(rows, values, labels, voxel_ml)
    numbers_equal_numpy(rows, adc.astype(np.float64), labels, voxel_ml, prefix="map_")
    assert {row["units"] for row in rows} == {"HU"} and {row["map_units"] for row in rows} == {units}
    return page.locator(f"{scope} .qi-measurements thead").first.inner_text()


def download(page, link_text: str, target: Path) -> Path:
    link = page.locator("a.qi-file-download", has_text=link_text).last
    link.wait_for(timeout=120_000)
    with page.expect_download() as event:
        link.click()
    event.value.save_as(target)
    return target


# --------------------------------------------------------------------------- numpy's view of the phantom


def ct_volume(study) -> tuple[np.ndarray, np.ndarray]:
    """The phantom CT as real values [i, j, k] (k along the slice normal) and its LPS affine."""
    datasets = [pydicom.dcmread(io.BytesIO(data)) for _, data in study.ct_series]
    datasets.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
    assert [float(v) for v in datasets[0].ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]  # axial, unflipped
    values = np.stack([ds.pixel_array.T * float(ds.RescaleSlope) + float(ds.RescaleIntercept) for ds in datasets], axis=2)
    spacing = [float(v) for v in datasets[0].PixelSpacing]
    thickness = float(datasets[1].ImagePositionPatient[2]) - float(datasets[0].ImagePositionPatient[2])
    affine = np.diag([spacing[1], spacing[0], thickness, 1.0])
    affine[:3, 3] = [float(v) for v in datasets[0].ImagePositionPatient]
    return values, affine


def labels_on_ct(study, ct_affine: np.ndarray, shape) -> np.ndarray:
    """The label map (a NIfTI, RAS+) sampled at the CT's voxel centres."""
    name, data = study.ct_labels
    image = nibabel.Nifti1Image.from_bytes(gzip.decompress(data))
    i, j, k = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    lps = ct_affine @ np.stack([i.ravel(), j.ravel(), k.ravel(), np.ones(i.size)])
    ras = lps * np.array([[-1], [-1], [1], [1]])
    index = np.rint(np.linalg.inv(image.affine) @ ras)[:3].astype(int)
    labels = np.asarray(image.dataobj)
    inside = ((index >= 0) & (index < np.array(labels.shape)[:, None])).all(axis=0)
    result = np.zeros(i.size, labels.dtype)
    result[inside] = labels[tuple(index[:, inside])]
    return result.reshape(shape)


def window_grey(values: np.ndarray, centre: float, width: float) -> np.ndarray:
    """A 256-entry black-to-white linear colour mapper, as the preview's window."""
    low = centre - width / 2
    return np.clip(np.floor((values - low) * 256 / width), 0, 255)


def axial_frame(page, path: Path) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A screenshot of the first axial plane on the page and its image frame (top, bottom,
    left, right): the frame is where the pure black around the body is; the figure's border
    is dark grey (#111)."""
    page.locator(".qi-preview .bk-Plot").first.screenshot(path=str(path))
    image = np.asarray(Image.open(path).convert("RGB")).astype(int)
    black = (image < 6).all(axis=2)
    rows = np.nonzero(black.sum(axis=1) > 0.25 * image.shape[1])[0]
    columns = np.nonzero(black.sum(axis=0) > 0.25 * image.shape[0])[0]
    return image, (rows.min(), rows.max(), columns.min(), columns.max())


# --------------------------------------------------------------------------- the SEG mode's preview


def test_seg_preview_draws_the_series_and_its_segments_on_their_voxels(app, sample_study):
    page, log = app
    assert page.evaluate("document.body.dataset.stagePreview") is None  # not loaded at start-up
    load_sample(page, "seg")
    wait_for_preview(page)  # opened by itself: series, label map and metadata are there
    assert page.evaluate("document.body.dataset.stagePreview") == "loaded"  # loaded on demand, not at start
    assert page.get_by_role("button", name="Show the preview").count() == 0  # no button left showing
    page.wait_for_timeout(1000)
    page.locator(".qi-preview-card").first.screenshot(path=str(SHOTS / "app-seg-preview.png"))

    values, affine = ct_volume(sample_study)
    labels = labels_on_ct(sample_study, affine, values.shape)
    k = values.shape[2] // 2  # the preview opens on the middle slices
    colours = {a["labelID"]: a["recommendedDisplayRGBValue"] for group in sample_study.seg_metadata["segmentAttributes"]
               for a in group}
    image, (top, bottom, left, right) = axial_frame(page, SHOTS / "app-seg-axial.png")
    columns, rows = values.shape[:2]  # axial, unflipped: i to the screen's right (patient's left), j down
    pixel_w, pixel_h = (right - left + 1) / columns, (bottom - top + 1) / rows
    assert pixel_w == pytest.approx(pixel_h, rel=0.05) and pixel_w >= 3
    grey = window_grey(values[:, :, k], 40, 400)  # the series' own window (40/400)
    expected = np.repeat(grey[..., None], 3, axis=2)
    segment = labels[:, :, k]
    for number, rgb in colours.items():
        expected[segment == number] = 0.5 * np.array(rgb) + 0.5 * expected[segment == number]  # opacity 0.5
    centre = (columns // 2, rows // 2)  # the crosshair
    checked = labelled = 0
    wrong = []
    for i in range(columns):
        for j in range(rows):
            near_crosshair = abs(i - centre[0]) <= 1 or abs(j - centre[1]) <= 1
            near_letter = (abs(i - centre[0]) <= 4 and (j < 4 or j >= rows - 4)) or (abs(j - centre[1]) <= 4 and (i < 4 or i >= columns - 4))
            if near_crosshair or near_letter:
                continue
            y, x = int(top + (j + 0.5) * pixel_h), int(left + (i + 0.5) * pixel_w)
            checked += 1
            labelled += segment[i, j] > 0
            if np.abs(image[y, x] - expected[i, j]).max() > 6:
                wrong.append(((i, j), image[y, x].tolist(), expected[i, j].tolist()))
    assert checked > 0.8 * columns * rows and labelled > 100
    assert len(wrong) <= 0.005 * checked, wrong[:10]

    # The hover readout at the liver's centre voxel: its value and segment.
    i, j = (int(round(v)) for v in np.argwhere(segment == 1).mean(axis=0))
    assert segment[i, j] == 1
    box = page.locator(".qi-preview .bk-Plot").first.bounding_box()
    page.mouse.move(box["x"] + left + (i + 0.5) * pixel_w, box["y"] + top + (j + 0.5) * pixel_h)
    wait_for(lambda: f"voxel ({i}, {j}, {k})" in readout(page), 30)
    text = readout(page)
    assert f"value {values[i, j, k]:.6g} HU" in text and "segment 1 Liver" in text, text
    check_no_foreign_requests(log)


MARKER = {"segmentAttributes": [[{"labelID": 1, "SegmentLabel": "Marker", "recommendedDisplayRGBValue": [255, 0, 0]}]]}


def marked_case(folder: Path, orientation) -> tuple[list[Path], Path, Path]:
    """A 24 x 20 x 3 CT (-1000 HU) with a 1000 HU square in slice 1 at voxels i 18..21,
    j 14..17, and a label map marking it, saved as a NIfTI (RAS+) stored with i and j
    reversed; with a metadata document colouring the label red."""
    import synthetic

    datasets = synthetic.make_ct_series(rows=20, columns=24, slices=3, orientation=orientation,
                                        origin=(100.0, 80.0, 0.0), pixel_spacing=(2.0, 2.0), slice_spacing=4.0)
    square = np.zeros((24, 20, 3), bool)
    square[18:22, 14:18, 1] = True
    for k, ds in enumerate(datasets):
        pixels = np.full((20, 24), -1000, np.int16)
        pixels[square[:, :, k].T] = 1000
        ds.PixelData = pixels.tobytes()
    series = synthetic.write_series(datasets, folder / "ct")
    flip = np.eye(4)
    flip[0, 0], flip[1, 1], flip[0, 3], flip[1, 3] = -1, -1, 23, 19
    labels = synthetic.save_nifti(np.ascontiguousarray(square.astype(np.uint8)[::-1, ::-1]),
                                  synthetic.series_affine(datasets) @ flip, folder / "marker.nii.gz")
    metadata = folder / "marker.json"
    metadata.write_text(json.dumps(MARKER))
    return sorted(series), labels, metadata


def show_marked_case(page, folder: Path, orientation, shot: str):
    """SEG mode with the marked case chosen, its preview on slice 1: the axial screenshot
    and frame, the pink (red at opacity 0.5 over white) and the white pixels in it."""
    series, labels, metadata = marked_case(folder, orientation)
    select_mode(page, "seg")
    choose_files(page, "seg", "series", series)
    choose_files(page, "seg", "labelmaps", [labels])
    choose_files(page, "seg", "metadata", [metadata])
    page.get_by_text("Series found (3 files)").first.wait_for(timeout=60_000)
    page.get_by_text("marker.nii.gz", exact=True).first.wait_for(timeout=60_000)
    page.get_by_text("Metadata JSON: marker.json").first.wait_for(timeout=60_000)
    wait_for(lambda: page.get_by_text("1 Marker").count() > 0, 120)  # the preview, opened by itself
    page.wait_for_timeout(1000)
    page.locator(".qi-preview-card").first.screenshot(path=str(SHOTS / shot))
    image, frame = axial_frame(page, folder / "axial.png")
    top, bottom, left, right = frame
    # Only the image's frame counts: not the toolbar above it, nor a row or column of page
    # background that a fractional element box can add at the screenshot's edge.
    inside = np.zeros(image.shape[:2], dtype=bool)
    inside[top:bottom + 1, left:right + 1] = True
    pink = (np.abs(image - [255, 128, 128]) < 12).all(axis=2) & inside
    white = (image > 243).all(axis=2) & inside
    return image, frame, pink, white


def test_flipped_series_and_flipped_nifti_overlay_lands_on_the_marked_voxels(app, tmp_path):
    """Stored flipped (rows to the patient's right, columns to anterior), the square at the
    patient's right-anterior corner is drawn at the screen's top left, under its marker."""
    page, log = app
    image, (top, bottom, left, right), pink, white = show_marked_case(page, tmp_path, (-1, 0, 0, 0, -1, 0),
                                                                     "app-flipped-overlay.png")
    rows, columns = np.nonzero(pink)
    assert rows.size > 100 and white.sum() == 0  # all of the bright square is under the marker
    pixel_w, pixel_h = (right - left + 1) / 24, (bottom - top + 1) / 20
    # Voxels i 18..21, j 14..17 of the flipped series: screen columns 2..5, rows 2..5.
    assert (columns.min() - left) / pixel_w == pytest.approx(2, abs=0.3)
    assert (columns.max() + 1 - left) / pixel_w == pytest.approx(6, abs=0.3)
    assert (rows.min() - top) / pixel_h == pytest.approx(2, abs=0.3)
    assert (rows.max() + 1 - top) / pixel_h == pytest.approx(6, abs=0.3)
    box = page.locator(".qi-preview .bk-Plot").first.bounding_box()
    page.mouse.move(box["x"] + columns.mean(), box["y"] + rows.mean())
    wait_for(lambda: "Marker" in readout(page), 30)
    assert "segment 1 Marker" in readout(page) and "value 1000 HU" in readout(page), readout(page)
    check_no_foreign_requests(log)


def test_oblique_series_overlay_covers_exactly_the_marked_voxels(app, tmp_path):
    """Rotated 30 degrees about the patient's S axis: the label map (a NIfTI stored flipped)
    still covers the bright square and nothing else."""
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    page, log = app
    image, frame, pink, white = show_marked_case(page, tmp_path, (c, s, 0, -s, c, 0), "app-oblique-overlay.png")
    assert pink.sum() > 100 and white.sum() == 0
    check_no_foreign_requests(log)


@pytest.fixture(scope="module")
def measured(app, sample_study, tmp_path_factory):
    """SEG mode with the sample: Convert, the written SEG shown, its Measurements (CSV), the
    SR mode pre-filled with them, and that report converted."""
    page, log = app
    work = tmp_path_factory.mktemp("measured")
    load_sample(page, "seg")
    wait_for_preview(page)
    page.get_by_role("button", name="Measurements").click()  # the label map's, before any conversion
    page.locator(".qi-measurements").first.wait_for(timeout=120_000)
    page.get_by_text("convert to a SEG below").first.wait_for(timeout=30_000)  # the SR needs the SEG: said
    page.wait_for_timeout(500)
    page.locator(".qi-preview-card").first.screenshot(path=str(SHOTS / "app-seg-measurements-before-convert.png"))
    csv_before = download(page, "measurements.csv", work / "measurements-before.csv")
    shown = [[cell.strip() for cell in row.split("\t")]
             for row in page.locator(".qi-measurements tbody tr").all_inner_texts()]
    seg_path = work / "seg.dcm"
    convert_and_download(page, "DICOM SEG", seg_path)
    if not shows(page, "What was written:"):
        page.get_by_role("button", name="Show what was written").click()
    page.get_by_text("What was written:").first.wait_for(timeout=120_000)
    page.wait_for_timeout(800)
    page.locator(".qi-preview-card").first.screenshot(path=str(SHOTS / "app-seg-what-was-written.png"))
    page.get_by_role("button", name="Measurements").click()
    page.locator(".qi-measurements").first.wait_for(timeout=120_000)
    csv_path = download(page, "measurements.csv", work / "measurements.csv")
    page.get_by_text("The SR form is pre-filled").first.wait_for(timeout=60_000)
    page.locator(".qi-preview-card").first.screenshot(path=str(SHOTS / "app-seg-measurements.png"))
    select_mode(page, "sr")
    page.get_by_text("all loaded").first.wait_for(timeout=60_000)
    page.get_by_text("ready to convert").first.wait_for(timeout=60_000)  # the form shows the pre-filled report
    sr_path = work / "sr.dcm"
    convert_and_download(page, "DICOM SR (TID 1500)", sr_path)
    page.screenshot(path=str(SHOTS / "app-sr-prefilled.png"), full_page=True)
    return {"seg": seg_path, "csv": csv_path, "sr": sr_path, "log": log, "csv_before": csv_before, "shown": shown}


def test_measurements_table_shows_numbers_readably_and_the_csv_keeps_every_digit(measured):
    rows = list(csv.DictReader(io.StringIO(measured["csv_before"].read_text())))
    assert len(measured["shown"]) == len(rows)
    for cells, row in zip(measured["shown"], rows):
        assert cells[0] == row["segment"] and cells[1] == row["label"]
        voxels = int(row["voxels"])
        assert cells[2] == f"{voxels:,}"  # grouped, never 1.2e+04
        assert "e+" not in "".join(cells)
        # Six significant digits on the page; the CSV's equal numpy to 1e-9 (see above).
        assert float(cells[4].replace(",", "")) == pytest.approx(float(row["mean"]), rel=1e-5, abs=1e-4)


def test_measurements_of_the_written_seg_equal_numpy_on_the_same_voxels(measured, sample_study):
    values, affine = ct_volume(sample_study)
    labels = labels_on_ct(sample_study, affine, values.shape)
    rows = list(csv.DictReader(io.StringIO(measured["csv"].read_text())))
    numbers_equal_numpy(rows, values, labels, abs(np.linalg.det(affine[:3, :3])) / 1000)
    assert {row["units"] for row in rows} == {"HU"}
    # The label map measured before the conversion gave the same numbers, segment for
    # segment: the preview numbers segments as the SEG writer does.
    assert rows == list(csv.DictReader(io.StringIO(measured["csv_before"].read_text())))
    check_no_foreign_requests(measured["log"])


def test_the_prefilled_report_references_the_seg_just_made_and_holds_the_measurements(measured):
    import highdicom

    seg = pydicom.dcmread(measured["seg"])
    report = highdicom.sr.srread(measured["sr"])
    rows = list(csv.DictReader(io.StringIO(measured["csv"].read_text())))
    groups = report.content.get_volumetric_roi_measurement_groups()
    assert len(groups) == len(rows)
    for group, row in zip(groups, rows):
        segment = group.referenced_segment
        assert segment.referenced_sop_instance_uid == seg.SOPInstanceUID
        assert segment.referenced_segment_numbers == [int(row["segment"])]
        volume = next(m for m in group.get_measurements() if m.name.meaning == "Volume")
        assert float(volume.value) == pytest.approx(float(row["volume_ml"]), rel=1e-6)


def test_dcmqi_reads_the_report_made_from_the_measurements(measured, tmp_path):
    tool = ROOT / "bench" / ".dcmqi-venv" / "bin" / "tid1500reader"
    if not tool.is_file():
        pytest.skip("dcmqi's tools are not installed (bench/setup_dcmqi.sh)")
    out = tmp_path / "read.json"
    subprocess.run([str(tool), "--inputDICOM", str(measured["sr"]), "--outputMetadata", str(out)], check=True,
                   capture_output=True, timeout=120)
    document = json.loads(out.read_text())
    rows = list(csv.DictReader(io.StringIO(measured["csv"].read_text())))
    assert [int(g["ReferencedSegment"]) for g in document["Measurements"]] == [int(r["segment"]) for r in rows]
    volumes = [float(g["measurementItems"][0]["value"]) for g in document["Measurements"]]
    assert volumes == pytest.approx([float(r["volume_ml"]) for r in rows], rel=1e-6)


def test_seg_mode_measures_a_parametric_map_in_the_segments_as_numpy_does(app, sample_study, sample_files, tmp_path):
    """SEG mode's optional map for the measurements: a DICOM Parametric Map on the series'
    grid is shown over it and measured in each segment, in the PM's own coded units; the
    numbers equal numpy's on the same voxels."""
    import synthetic

    page, log = app
    values, affine = ct_volume(sample_study)
    labels = labels_on_ct(sample_study, affine, values.shape)
    adc = ct_map(values)
    pm_path = tmp_path / "seg-mode-map.dcm"
    cli("itkimage2paramap", "--inputImage", synthetic.save_nifti(adc, affine, tmp_path / "ct-map.nii.gz"),
        "--inputDICOMDirectory", sample_files["ct"], "--inputMetadata", sample_files["pm_metadata"], "--outputDICOM", pm_path)
    units = json.loads(sample_files["pm_metadata"].read_text())["MeasurementUnitsCode"]["CodeValue"]
    load_sample(page, "seg")
    wait_for_preview(page)
    choose_files(page, "seg", "map", [pm_path])
    page.get_by_text(f"Map to measure: {pm_path.name}").first.wait_for(timeout=60_000)
    assert shows(page, f"in {units}")
    wait_for_preview(page)
    page.get_by_text(f"Map threshold ({units})").first.wait_for(timeout=60_000)  # shown over the series too
    header = measured_with_map(page, ".qi-preview-card", "app-seg-map-measurements.png", tmp_path,
                               values, labels, affine, adc, units)
    assert "Map mean" in header and "Map units" in header
    check_no_foreign_requests(log)
    load_sample(page, "seg")  # the sample again, without the map, for the tests after this one


def pixels_unlike(image: np.ndarray, frame, expected: np.ndarray) -> tuple[int, list]:
    """Voxel centres of an axial screenshot (``frame`` from axial_frame) whose colour is more
    than 6 per channel off ``expected`` [i, j, rgb]; the crosshair's rows and columns and the
    edges are left out. Returns how many were checked and the wrong ones."""
    top, bottom, left, right = frame
    columns, rows = expected.shape[:2]
    pixel_w, pixel_h = (right - left + 1) / columns, (bottom - top + 1) / rows
    checked, wrong = 0, []
    for i in range(2, columns - 2):
        for j in range(2, rows - 2):
            if abs(i - columns // 2) <= 2 or abs(j - rows // 2) <= 2:
                continue
            checked += 1
            y, x = int(top + (j + 0.5) * pixel_h), int(left + (i + 0.5) * pixel_w)
            if np.abs(image[y, x] - expected[i, j]).max() > 6:
                wrong.append(((i, j), image[y, x].tolist(), expected[i, j].tolist()))
    return checked, wrong


# Keeps the worker's thread (Python's) busy for a while, as a long conversion does; returns at once.
HOLD_THE_WORKER = "ms => { setTimeout(() => { const end = Date.now() + ms; while (Date.now() < end); }, 0); }"


def test_window_opacity_and_visibility_repaint_in_the_page_while_the_worker_is_busy(app, sample_study):
    """A window preset, the overlay's opacity and a segment's visibility are changes of
    colour-mapper ranges, palette and alpha made by the page itself: they show while the
    worker cannot answer (so no round trip is waited for), and reach the worker once it can
    (its window text and state follow)."""
    page, log = app
    load_sample(page, "seg")
    wait_for_preview(page)
    page.wait_for_timeout(1000)
    values, affine = ct_volume(sample_study)
    labels = labels_on_ct(sample_study, affine, values.shape)
    k = values.shape[2] // 2
    window_text = page.locator(".qi-preview-card .qi-window-text").first
    assert window_text.inner_text().startswith("Level 40, width 400")
    _, (top, bottom, left, right) = axial_frame(page, SHOTS / "app-seg-window-before.png")  # air is black here
    before = page_side_changes(page)
    page.workers[0].evaluate(HOLD_THE_WORKER, 6000)
    page.locator(".qi-preview-card select").first.select_option(label="CT lung (1500/-600)")
    page.locator(".qi-preview-card input[type=checkbox]").first.uncheck()  # segment 1, the liver
    page.locator(".qi-preview-card .noUi-handle").nth(3).focus()  # the overlay's opacity (after three slice sliders)
    for _ in range(2):
        page.keyboard.press("ArrowLeft")  # 0.5 -> 0.4
    page.wait_for_timeout(300)
    shot = SHOTS / "app-seg-window-while-the-worker-is-busy.png"
    page.locator(".qi-preview .bk-Plot").first.screenshot(path=str(shot))
    image = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    worker_answered = window_text.inner_text()
    assert page_side_changes(page) == before + 4
    assert worker_answered.startswith("Level 40, width 400"), worker_answered  # the worker has not answered yet
    # The rendered pixels are the lung window's greys, the liver no longer coloured, the
    # other segments at opacity 0.4 over the grey.
    colours = {a["labelID"]: a["recommendedDisplayRGBValue"] for group in sample_study.seg_metadata["segmentAttributes"]
               for a in group}
    columns, rows = values.shape[:2]
    grey = window_grey(values[:, :, k], -600, 1500)
    segment = labels[:, :, k]
    expected = np.repeat(grey[..., None], 3, axis=2)
    for number, rgb in colours.items():
        if number != 1:
            expected[segment == number] = 0.4 * np.array(rgb) + 0.6 * expected[segment == number]
    checked, wrong = pixels_unlike(image, (top, bottom, left, right), expected)
    assert checked > 0.5 * columns * rows and (segment == 1).sum() > 100 and (segment > 1).sum() > 20
    assert len(wrong) <= 0.005 * checked, wrong[:10]
    # Once free, the worker takes the same changes: its window text follows, and a window
    # drag starts from the lung window (the worker's mapper has the page's range).
    wait_for(lambda: window_text.inner_text().startswith("Level -600, width 1500"), 60)
    box = page.locator(".qi-preview .bk-Plot").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 + 40, box["y"] + box["height"] / 2, steps=4)
    page.mouse.up()
    wait_for(lambda: not window_text.inner_text().startswith("Level -600, width 1500"), 30)
    level, width = (float(part.split()[-1]) for part in window_text.inner_text().removesuffix(" HU").split(","))
    assert level == pytest.approx(-600, abs=1) and width > 1500, (level, width)
    page.locator(".qi-preview-card").first.screenshot(path=str(SHOTS / "app-seg-lung-window-liver-hidden.png"))
    page.locator(".qi-preview-card input[type=checkbox]").first.check()
    check_no_foreign_requests(log)


def test_a_window_drag_repaints_in_the_page_while_the_worker_is_busy(app, sample_study):
    """Dragging on a plane changes the window in the page itself (no round trip per mouse
    move): the drawn greys are the dragged window's while the worker cannot answer, and the
    worker's window text follows the page's range once it can."""
    page, log = app
    load_sample(page, "seg")
    wait_for_preview(page)
    page.wait_for_timeout(1000)
    values, affine = ct_volume(sample_study)
    k = values.shape[2] // 2
    page.locator(".qi-preview-card input[type=checkbox]").first.wait_for()
    for box in page.locator(".qi-preview-card input[type=checkbox]").all():
        box.uncheck()  # the series alone: its greys are the window's
    window_text = page.locator(".qi-preview-card .qi-window-text").first
    wait_for(lambda: window_text.inner_text().startswith("Level 40, width 400"), 60)
    _, frame = axial_frame(page, SHOTS / "app-seg-drag-before.png")
    page.wait_for_timeout(500)
    before = page_side_changes(page)
    page.workers[0].evaluate(HOLD_THE_WORKER, 6000)
    plot = page.locator(".qi-preview .bk-Plot").first.bounding_box()
    x, y = plot["x"] + plot["width"] * 0.3, plot["y"] + plot["height"] * 0.3
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 60, y - 40, steps=6)  # wider and higher
    page.mouse.up()
    page.wait_for_timeout(300)
    dragged = page.evaluate("window.qidicomPageSide.last")
    assert dragged["control"] == "drag" and page_side_changes(page) > before
    low, high = dragged["window"]
    centre, width = (low + high) / 2, high - low
    assert centre > 40 and width > 400, (centre, width)
    shot = SHOTS / "app-seg-window-dragged-while-the-worker-is-busy.png"
    page.locator(".qi-preview .bk-Plot").first.screenshot(path=str(shot))
    assert window_text.inner_text().startswith("Level 40, width 400")  # the worker has not answered yet
    image = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    expected = np.repeat(window_grey(values[:, :, k], centre, width)[..., None], 3, axis=2)
    checked, wrong = pixels_unlike(image, frame, expected)
    assert checked > 0.5 * values.shape[0] * values.shape[1]
    assert len(wrong) <= 0.005 * checked, wrong[:10]
    wait_for(lambda: not window_text.inner_text().startswith("Level 40, width 400"), 60)
    level, shown_width = (float(part.split()[-1]) for part in window_text.inner_text().removesuffix(" HU").split(","))
    assert level == pytest.approx(centre, rel=1e-3) and shown_width == pytest.approx(width, rel=1e-3)
    for box in page.locator(".qi-preview-card input[type=checkbox]").all():
        box.check()
    check_no_foreign_requests(log)


# --------------------------------------------------------------------------- the PM mode's preview


def test_pm_preview_shows_the_map_in_colour_and_reads_out_its_value(app, sample_study):
    from qidicom.readers import read_image  # the map as the conversions read it

    page, log = app
    load_sample(page, "pm")
    wait_for_preview(page, ".qi-mode-pm")  # series + map: opened by itself
    page.wait_for_timeout(1000)
    page.locator(".qi-preview-card").first.screenshot(path=str(SHOTS / "app-pm-preview.png"))
    units = sample_study.pm_metadata["MeasurementUnitsCode"]["CodeValue"]
    assert shows(page, f"Map threshold ({units})")
    assert page.locator(".qi-preview .qi-window-text").first.inner_text().startswith("Level")
    box = page.locator(".qi-preview .bk-Plot").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.55)
    wait_for(lambda: " · map " in readout(page), 30)
    text = readout(page)
    voxel = tuple(int(v) for v in text.split("voxel (")[1].split(")")[0].split(","))
    name, data = sample_study.adc_map
    adc = read_image((name, data))
    mr = pydicom.dcmread(io.BytesIO(sample_study.mr_series[0][1]))
    assert adc.array.shape[:2] == (mr.Columns, mr.Rows)  # the map is on the series' grid
    value = float(np.asarray(adc.array)[voxel])
    assert f"map {value:.6g} {units}" in text, (voxel, text)
    check_no_foreign_requests(log)


# --------------------------------------------------------------------------- "Open a DICOM object"


def without_write_time(name: str, data: bytes) -> bytes:
    """The file as written, less the time of writing pynrrd puts in a NRRD header comment."""
    if not name.endswith(".nrrd"):
        return data
    header, separator, body = data.partition(b"\n\n")
    return b"\n".join(line for line in header.split(b"\n") if not line.startswith(b"# on ")) + separator + body


def zip_files(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: without_write_time(name, archive.read(name)) for name in archive.namelist()}


def directory_files(path: Path) -> dict[str, bytes]:
    return {p.name: without_write_time(p.name, p.read_bytes()) for p in sorted(path.iterdir())}


def open_object(page, obj: Path, series: list[Path] | None) -> None:
    select_open_mode(page)
    if series:
        choose_files(page, "open", "series", series)
        page.get_by_text(f"Source series: {len(series)} file").first.wait_for(timeout=60_000)
    choose_files(page, "open", "object", [obj])
    page.get_by_text(f"{obj.name} (").first.wait_for(timeout=120_000)


def test_open_a_seg_with_its_series_shows_it_and_downloads_what_the_cli_writes(app, sample_files, tmp_path):
    page, log = app
    series = sorted(sample_files["ct"].iterdir())
    open_object(page, sample_files["seg"], series)
    page.get_by_text(f"{sample_files['seg'].name}: 6 segment(s)").first.wait_for(timeout=120_000)
    page.locator(".qi-mode-open .qi-readout-text").first.wait_for(timeout=60_000)
    page.wait_for_timeout(800)
    page.locator(".qi-mode-open").first.screenshot(path=str(SHOTS / "app-open-seg.png"))
    page.get_by_role("button", name="Make the files (one zip)").click()
    made = zip_files(download(page, f"{sample_files['seg'].stem}.zip", tmp_path / "made.zip"))
    cli("segimage2itkimage", "--inputDICOM", sample_files["seg"], "--outputDirectory", tmp_path / "cli")
    assert made == directory_files(tmp_path / "cli")
    check_no_foreign_requests(log)


BIG_VALUE = "1432810.123456"  # a volume in mm3, say: shown grouped, never as 1.43281e+06


def test_open_a_report_shows_its_table_and_downloads_what_the_reader_writes(app, sample_files, tmp_path):
    page, log = app
    sr_path = tmp_path / "report.dcm"
    given = json.loads(sample_files["sr_metadata"].read_text())
    given["Measurements"][0]["measurementItems"][0]["value"] = BIG_VALUE
    metadata = tmp_path / "sr.json"
    metadata.write_text(json.dumps(given))
    cli("tid1500writer", "--inputMetadata", metadata, "--outputDICOM", sr_path,
        "--inputImageLibraryDirectory", sample_files["ct"], "--inputCompositeContextDirectory", sample_files["seg"].parent)
    cli("tid1500reader", "--inputDICOM", sr_path, "--outputMetadata", tmp_path / "meta.json")
    document = json.loads((tmp_path / "meta.json").read_text())
    open_object(page, sr_path, None)
    table = page.locator(".qi-sr-table table").first
    table.wait_for(timeout=60_000)
    page.wait_for_timeout(500)
    page.locator(".qi-mode-open").first.screenshot(path=str(SHOTS / "app-open-sr-table.png"))
    cells = [[cell.strip() for cell in row.split("\t")] for row in table.locator("tbody tr").all_inner_texts()]
    expected = [(group["TrackingIdentifier"], item["quantity"]["CodeMeaning"], item["value"], item["units"]["CodeValue"])
                for group in document["Measurements"] for item in group["measurementItems"]]
    assert [(row[1], row[5], row[8]) for row in cells] == [(t, q, u) for t, q, _, u in expected]
    # Values as a person reads them: six significant digits, thousands grouped, no exponent.
    assert expected[0][2] == BIG_VALUE and cells[0][7] == "1,432,810"
    for row, (_, _, value, _) in zip(cells, expected):
        assert "e+" not in row[7] and float(row[7].replace(",", "")) == pytest.approx(float(value), rel=1e-5, abs=1e-9)
    assert download(page, "meta.json", tmp_path / "made-meta.json").read_bytes() == (tmp_path / "meta.json").read_bytes()
    rows = list(csv.DictReader(io.StringIO(download(page, "measurements.csv", tmp_path / "made.csv").read_text())))
    assert [(r["tracking_identifier"], r["quantity"], r["value"], r["units"]) for r in rows] == expected  # every digit
    check_no_foreign_requests(log)


def test_open_dcmqis_liver_seg_downloads_what_the_cli_writes(app, liver_sample, tmp_path):
    page, log = app
    series = sorted(liver_sample["series"].iterdir())
    open_object(page, liver_sample["dcmqi_seg"], series)
    page.locator(".qi-mode-open .qi-readout-text").first.wait_for(timeout=60_000)
    page.get_by_role("button", name="Make the files (one zip)").click()
    made = zip_files(download(page, "liver.zip", tmp_path / "made.zip"))
    cli("segimage2itkimage", "--inputDICOM", liver_sample["dcmqi_seg"], "--outputDirectory", tmp_path / "cli")
    assert made == directory_files(tmp_path / "cli")
    check_no_foreign_requests(log)


def test_open_a_parametric_map_alone_shows_it_on_its_grid_and_downloads_what_the_cli_writes(app, sample_files, tmp_path):
    page, log = app
    pm_path = tmp_path / "adc.dcm"
    cli("itkimage2paramap", "--inputImage", sample_files["adc_map"], "--inputDICOMDirectory", sample_files["mr"],
        "--inputMetadata", sample_files["pm_metadata"], "--outputDICOM", pm_path)
    select_open_mode(page)
    if not shows(page, "Source series: none"):  # a previous test's series
        page.get_by_role("button", name="Forget the series").click()
        page.get_by_text("Source series: none").first.wait_for(timeout=60_000)
    open_object(page, pm_path, None)
    page.locator(".qi-mode-open .qi-readout-text").first.wait_for(timeout=60_000)
    text = page.locator(".qi-mode-open .qi-readout-text").first.inner_text()
    assert " · map " in text and "stored" not in text, text  # no series: no image value to read out
    assert page.locator(".qi-mode-open .qi-window-text").count() == 0
    page.wait_for_timeout(800)
    page.locator(".qi-mode-open").first.screenshot(path=str(SHOTS / "app-open-pm.png"))
    page.locator(".qi-mode-open select").last.select_option(label="NIfTI (.nii.gz)")
    page.get_by_role("button", name="Make the files (one zip)").click()
    made = zip_files(download(page, "adc.zip", tmp_path / "made.zip"))
    cli("paramap2itkimage", "--inputDICOM", pm_path, "--outputDirectory", tmp_path / "cli", "--outputType", "nii")
    assert made == directory_files(tmp_path / "cli")
    check_no_foreign_requests(log)


def ct_map(values: np.ndarray) -> np.ndarray:
    """A map on the phantom CT's grid (float32, as a PM stores it): a smooth ramp plus the CT."""
    i, j, k = np.meshgrid(*[np.arange(n) for n in values.shape], indexing="ij")
    return (800 + 2.5 * i + 1.25 * j - 3.0 * k + 0.01 * values).astype(np.float32)


def test_open_a_seg_with_its_series_and_a_map_measures_both_as_numpy_does(app, sample_study, sample_files, tmp_path):
    import synthetic

    page, log = app
    values, affine = ct_volume(sample_study)
    labels = labels_on_ct(sample_study, affine, values.shape)
    adc = ct_map(values)
    pm_path = tmp_path / "ct-map.dcm"
    cli("itkimage2paramap", "--inputImage", synthetic.save_nifti(adc, affine, tmp_path / "ct-map.nii.gz"),
        "--inputDICOMDirectory", sample_files["ct"], "--inputMetadata", sample_files["pm_metadata"], "--outputDICOM", pm_path)
    units = json.loads(sample_files["pm_metadata"].read_text())["MeasurementUnitsCode"]["CodeValue"]
    select_open_mode(page)
    if not shows(page, "Source series: none"):  # a previous test's series
        page.get_by_role("button", name="Forget the series").click()
        page.get_by_text("Source series: none").first.wait_for(timeout=60_000)
    series = sorted(sample_files["ct"].iterdir())
    choose_files(page, "open", "series", series)
    page.get_by_text(f"Source series: {len(series)} file").first.wait_for(timeout=60_000)
    choose_files(page, "open", "map", [pm_path])
    page.get_by_text("Map to measure: ct-map.dcm").first.wait_for(timeout=60_000)
    choose_files(page, "open", "object", [sample_files["seg"]])
    page.get_by_text(f"{sample_files['seg'].name}: 6 segment(s)").first.wait_for(timeout=120_000)
    page.locator(".qi-mode-open .qi-readout-text").first.wait_for(timeout=60_000)
    assert shows(page, f"Map threshold ({units})")  # the map over the series, in its units
    header = measured_with_map(page, ".qi-mode-open", "app-open-seg-map-measurements.png", tmp_path,
                               values, labels, affine, adc, units)
    assert "Map mean" in header and "Map SD" in header
    check_no_foreign_requests(log)


def test_a_seg_opened_with_its_series_prefills_a_report_that_dcmqi_reads(app, sample_files, tmp_path):
    """Open mode, as SEG mode after Convert: the Measurements of a SEG opened with its series
    pre-fill the SR mode (its pool gets the series and the SEG); the report converts there,
    references that SEG's SOPInstanceUID and segment numbers, and dcmqi's tid1500reader reads it."""
    tool = ROOT / "bench" / ".dcmqi-venv" / "bin" / "tid1500reader"
    page, log = app
    select_open_mode(page)
    if not shows(page, "Source series: none"):  # a previous test's series (and map)
        page.get_by_role("button", name="Forget the series").click()
        page.get_by_text("Source series: none").first.wait_for(timeout=60_000)
    series = sorted(sample_files["ct"].iterdir())
    choose_files(page, "open", "series", series)
    page.get_by_text(f"Source series: {len(series)} file").first.wait_for(timeout=60_000)
    opened = tmp_path / "opened-seg.dcm"  # a name of its own: the report's compositeContext names it
    opened.write_bytes(sample_files["seg"].read_bytes())
    reopen(page, opened)
    page.locator(".qi-mode-open .qi-readout-text").first.wait_for(timeout=60_000)
    page.get_by_role("button", name="Measurements").click()
    page.get_by_text("The SR form is pre-filled").first.wait_for(timeout=120_000)
    page.wait_for_timeout(500)
    page.locator(".qi-mode-open").first.screenshot(path=str(SHOTS / "app-open-seg-prefilled-report.png"))
    rows = list(csv.DictReader(io.StringIO(download(page, "measurements.csv", tmp_path / "made.csv").read_text())))
    select_mode(page, "sr")
    page.get_by_text("all loaded").first.wait_for(timeout=60_000)
    page.get_by_text("ready to convert").first.wait_for(timeout=60_000)
    sr_path = tmp_path / "sr.dcm"
    convert_and_download(page, "DICOM SR (TID 1500)", sr_path)
    page.screenshot(path=str(SHOTS / "app-sr-prefilled-from-open.png"), full_page=True)
    check_no_foreign_requests(log)
    import highdicom

    seg = pydicom.dcmread(opened, stop_before_pixels=True)
    groups = highdicom.sr.srread(sr_path).content.get_volumetric_roi_measurement_groups()
    assert [g.referenced_segment.referenced_segment_numbers for g in groups] == [[int(r["segment"])] for r in rows]
    assert {g.referenced_segment.referenced_sop_instance_uid for g in groups} == {seg.SOPInstanceUID}
    if not tool.is_file():
        pytest.skip("dcmqi's tools are not installed (bench/setup_dcmqi.sh)")
    out = tmp_path / "read.json"
    subprocess.run([str(tool), "--inputDICOM", str(sr_path), "--outputMetadata", str(out)], check=True,
                   capture_output=True, timeout=120)
    document = json.loads(out.read_text())
    assert [int(g["ReferencedSegment"]) for g in document["Measurements"]] == [int(r["segment"]) for r in rows]
    assert {g["segmentationSOPInstanceUID"] for g in document["Measurements"]} == {seg.SOPInstanceUID}
    volumes = [float(g["measurementItems"][0]["value"]) for g in document["Measurements"]]
    assert volumes == pytest.approx([float(r["volume_ml"]) for r in rows], rel=1e-6)


# In the worker, where the app makes its downloads' blob: URLs: which it makes and which it revokes.
BLOB_SPY = """() => {
  if (self.qidicomBlobs) return;
  const blobs = (self.qidicomBlobs = { created: [], revoked: [] });
  const create = URL.createObjectURL.bind(URL);
  const revoke = URL.revokeObjectURL.bind(URL);
  URL.createObjectURL = (blob) => { const url = create(blob); blobs.created.push(url); return url; };
  URL.revokeObjectURL = (url) => { blobs.revoked.push(url); revoke(url); };
}"""


def select_open_mode(page) -> None:
    """The Open mode, its view shown (the worker may show it a moment after the tab's pickers)."""
    select_mode(page, "open")
    page.get_by_text("Source series:").first.wait_for(timeout=60_000)


def reopen(page, obj: Path) -> None:
    """Choose the object in the Open mode and wait until the worker has read it (page.js marks
    that after the worker's changes to the view, which arrive first)."""
    page.evaluate("delete document.body.dataset.openObjectFiles")
    choose_files(page, "open", "object", [obj])
    page.wait_for_selector("body[data-open-object-files]", state="attached", timeout=120_000)
    page.get_by_text(f"{obj.name}: 6 segment(s)").first.wait_for(timeout=120_000)


def test_download_urls_are_revoked_once_replaced(app, sample_files, tmp_path):
    page, log = app
    worker = page.workers[0]
    worker.evaluate(BLOB_SPY)
    blobs = lambda: worker.evaluate("() => self.qidicomBlobs")  # noqa: E731
    shown = lambda: set(page.locator("a.qi-file-download").evaluate_all("links => links.map(a => a.href)"))  # noqa: E731
    select_open_mode(page)
    if shows(page, "Source series: none"):
        series = sorted(sample_files["ct"].iterdir())
        choose_files(page, "open", "series", series)
        page.get_by_text(f"Source series: {len(series)} file").first.wait_for(timeout=60_000)
    first = tmp_path / "first.dcm"  # a name of its own: a file input fires no change for the same file again
    first.write_bytes(sample_files["seg"].read_bytes())
    reopen(page, first)
    assert blobs()["created"] == []
    start = len(blobs()["revoked"])  # (what the previous view offered, made before the spy)
    revoked = lambda: blobs()["revoked"][start:]  # noqa: E731
    zip_name = "first.zip"
    urls = []
    for attempt in range(2):  # the same files made twice: the second link replaces the first
        page.get_by_role("button", name="Make the files (one zip)").click()
        wait_for(lambda: len(blobs()["created"]) == attempt + 1, 60)
        urls.append(blobs()["created"][-1])
        wait_for(lambda: urls[-1] in shown(), 60)
    page.get_by_role("button", name="Measurements").click()
    wait_for(lambda: len(blobs()["created"]) == 3, 60)
    csv_url = blobs()["created"][-1]
    wait_for(lambda: csv_url in shown(), 60)
    assert revoked() == [urls[0]] and shown() >= {urls[1], csv_url}
    assert page.locator("a.qi-file-download", has_text=zip_name).count() == 1
    # Opening another object replaces the whole view: every URL it offered goes.
    again = tmp_path / "again.dcm"
    again.write_bytes(sample_files["seg"].read_bytes())
    reopen(page, again)
    assert sorted(revoked()) == sorted(urls + [csv_url])
    live = set(blobs()["created"]) - set(revoked())
    assert live == set() and not (shown() & set(blobs()["created"]))
    check_no_foreign_requests(log)
