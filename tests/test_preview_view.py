"""webapp/preview's SlicePreview in CPython: what its Bokeh models hold (the data the page
draws), and that window, opacity, visibility and threshold change mappers and alpha only,
while a new slice changes only that plane's pixels."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("panel")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "webapp"))

from preview import SlicePreview  # noqa: E402

from qidicom import preview as qp  # noqa: E402
from qidicom import readers  # noqa: E402
from qidicom.seg import read_segmentation  # noqa: E402


@pytest.fixture(scope="module")
def ct_view(sample_study, sample_files):
    volume = qp.read_series_volume(sample_study.ct_series)
    overlay = qp.overlay_from_segmentation(read_segmentation(sample_files["seg"]), volume)
    return SlicePreview(volume, overlay=overlay, title="CT")


def shown(plane) -> np.ndarray:
    """The image as the page draws it, top row first (Bokeh's row 0 is at the bottom)."""
    return np.flipud(plane.base_source.data["image"][0])


def test_each_plane_shows_the_real_values_of_its_slice(ct_view):
    volume = ct_view.volume
    for name, plane in ct_view.planes.items():
        g = plane.geometry
        image = shown(plane)
        assert image.shape == (g.rows, g.columns)
        for row, column in ((0, 0), (g.rows // 2, g.columns // 3), (g.rows - 1, g.columns - 1)):
            assert image[row, column] == volume.real_at(g.voxel(plane.index, row, column)), name
        labels = np.flipud(plane.segment_sources[0].data["image"][0])
        assert np.array_equal(labels, g.take(ct_view.overlay.arrays()[0], plane.index))


def test_a_click_moves_the_crosshair_and_the_other_planes(ct_view):
    axial = ct_view.planes["axial"]
    g = axial.geometry
    row, column = 20, 17
    x, y = column * g.column_spacing, (g.rows - 1 - row) * g.row_spacing
    voxel = axial.voxel_at(x + 0.4 * g.column_spacing, y - 0.4 * g.row_spacing)  # anywhere inside the pixel
    assert voxel == g.voxel(axial.index, row, column)
    before = axial.base_source.data["image"][0]
    ct_view.set_position(voxel)
    assert axial.base_source.data["image"][0] is before  # same axial slice: no new pixels
    for name, plane in ct_view.planes.items():
        assert plane.index == plane.geometry.locate(voxel)[0] and ct_view.sliders[name].value == plane.index
    assert ct_view.planes["coronal"].vertical.location == pytest.approx(x)
    assert ct_view.last_readout["voxel"] == voxel


def test_window_opacity_visibility_and_threshold_leave_the_pixels_alone(ct_view, sample_study):
    images = {name: plane.base_source.data["image"][0] for name, plane in ct_view.planes.items()}
    ct_view.set_preset([name for name in ct_view.presets if name.startswith("CT lung")][0])
    assert (ct_view.base_mapper.low, ct_view.base_mapper.high) == (-1350, 150)
    ct_view.drag_window(40, 0)
    assert ct_view.window[1] > 1500
    ct_view.set_opacity(0.25)
    assert all(r.glyph.global_alpha == 0.25 for p in ct_view.planes.values() for r in p.segment_renderers)
    liver = next(n for n, s in ct_view.overlay.segments.items() if s.label == "Liver")
    ct_view.set_visible([n for n in ct_view.overlay.segments if n != liver])
    assert ct_view.segment_mapper.palette[liver] == "#00000000"
    assert ct_view.segment_mapper.palette[0] == "#00000000"
    ct_view.set_visible(list(ct_view.overlay.segments))
    assert ct_view.segment_mapper.palette[liver] == "#{:02x}{:02x}{:02x}".format(*ct_view.overlay.segments[liver].colour)
    assert {name: plane.base_source.data["image"][0] for name, plane in ct_view.planes.items()} == images


def test_slider_changes_one_plane_and_jump_centres_a_segment(ct_view):
    others = {name: ct_view.planes[name].base_source.data["image"][0] for name in ("coronal", "sagittal")}
    axial = ct_view.planes["axial"]
    ct_view.sliders["axial"].value = 3
    assert axial.index == 3 and ct_view.position[axial.geometry.slice_axis] == 3
    assert {name: ct_view.planes[name].base_source.data["image"][0] for name in others} == others
    spine = next(n for n, s in ct_view.overlay.segments.items() if s.label == "Spine")
    ct_view.jump_to(spine)
    assert ct_view.last_readout["segments"] == [(spine, "Spine")]


def test_outline_and_a_map_with_threshold(sample_study):
    mr = qp.read_series_volume(sample_study.mr_series)
    adc = readers.read_image(sample_study.adc_map)
    pmap = qp.map_overlay(adc, mr, sample_study.pm_metadata)
    view = SlicePreview(mr, pmap=pmap, title="ADC")
    axial = view.planes["axial"]
    assert np.allclose(np.flipud(axial.map_source.data["image"][0]), axial.geometry.take(adc.array, axial.index))
    view.set_threshold(1000.0)
    assert view.map_mapper.low == 1000.0 and view.map_mapper.low_color == "#00000000"
    assert "um2/s" in view.readout.object
    layout = view.panel()
    assert layout is not None


# --------------------------------------------------------------------------- opening a DICOM object


def test_open_a_seg_with_and_without_its_series(sample_study, sample_files):
    from preview.objects import ObjectViewer

    data = sample_files["seg"].read_bytes()
    offered = []

    def offer(name, payload, mime):
        offered.append((name, payload, mime))
        return name

    with_series = ObjectViewer("seg.dcm", data, list(sample_study.ct_series), offer=offer)
    without = ObjectViewer("seg.dcm", data, offer=lambda *args: args)
    assert with_series.kind == without.kind == "seg"
    assert with_series.view.volume.modality == "CT" and without.view.volume.modality == ""
    # The SEG's frames cover the organs' slices only: on its own grid the overlay is that part.
    full, own = with_series.overlay.arrays()[0], without.overlay.arrays()[0]
    assert sorted(np.unique(full)) == sorted(np.unique(own))
    assert (full > 0).sum() == (own > 0).sum()
    with_series.panel()
    with_series._download_zip("nrrd", False)
    name, zipped, mime = offered[-1]
    from qidicom import reverse

    files, _ = reverse.reader_files(data)
    assert name == "seg.zip" and mime == "application/zip"
    import io
    import zipfile

    assert sorted(zipfile.ZipFile(io.BytesIO(zipped)).namelist()) == sorted(f.name for f in files)


def test_open_dcmqis_seg_over_its_series(liver_sample):
    from preview.objects import ObjectViewer

    series = [(p.name, p.read_bytes()) for p in sorted(liver_sample["series"].iterdir())]
    viewer = ObjectViewer("liver.dcm", liver_sample["dcmqi_seg"].read_bytes(), series, offer=lambda *args: args)
    labels = readers.read_image(liver_sample["labels"])
    expected = qp.overlay_from_label_maps([labels], viewer.view.volume).arrays()[0] > 0
    assert np.array_equal(viewer.overlay.arrays()[0] > 0, expected)


def test_open_an_sr_as_a_table(sample_files, tmp_path):
    from preview.objects import ObjectViewer

    from qidicom.sr import report_from_files

    data = report_from_files(sample_files["sr_metadata"], sample_files["ct"], [sample_files["seg"]]).data
    viewer = ObjectViewer("sr.dcm", data, offer=lambda *args: args)
    assert viewer.kind == "sr" and viewer.view is None
    assert viewer.rows[0]["quantity"] == "Volume" and viewer.rows[1]["derivation"] == "Mean"
    layout = viewer.panel()
    html = layout.objects[1].object
    assert "<th>Finding site</th>" in html and html.count("<tr>") == len(viewer.rows) + 1


def test_monochrome1_is_shown_inverted():
    import io

    import synthetic

    datasets = synthetic.make_ct_series(rows=6, columns=6, slices=2)
    files = []
    for n, ds in enumerate(datasets):
        ds.PhotometricInterpretation = "MONOCHROME1"
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        files.append((f"{n}.dcm", buffer.getvalue()))
    volume = qp.read_series_volume(files)
    assert volume.inverted
    view = SlicePreview(volume)
    assert view.base_mapper.palette[0] == "#ffffff" and view.base_mapper.palette[-1] == "#000000"


def test_measurements_button_fills_the_table_and_prefills_the_report(sample_study, sample_files):
    import pydicom

    from preview.measure import MeasurementsPanel

    from qidicom import metadata

    volume = qp.read_series_volume(sample_study.ct_series)
    overlay = qp.overlay_from_segmentation(read_segmentation(sample_files["seg"]), volume)
    received = []
    seg = pydicom.dcmread(sample_files["seg"], stop_before_pixels=True)
    panel = MeasurementsPanel(volume, overlay, report_arguments={
        "segmentation_file": "seg.dcm", "segmentation_uid": str(seg.SOPInstanceUID),
        "source_series_uid": volume.series.series_uid, "image_library": [n for n in volume.series.names]},
        prefill=received.append, offer=lambda name, data, mime: name)
    panel.measure()
    assert len(received) == 1 and metadata.validate(received[0], "sr") == []
    assert [g["ReferencedSegment"] for g in received[0]["Measurements"]] == [m.number for m in panel.results]
    table = panel.area.objects[0].object
    assert table.count("<tr>") == len(panel.results) + 1 and "Volume (mL)" in table


def test_jump_menu_can_be_used_twice(ct_view):
    name = next(n for n in ct_view._segment_names if n.endswith("Liver"))
    number = ct_view._segment_names[name]
    ct_view.jump.value = name
    assert ct_view.position == ct_view.overlay.centre(number) and ct_view.jump.value == "(choose)"
    ct_view.set_position((0, 0, 0))
    ct_view.jump.value = name
    assert ct_view.position == ct_view.overlay.centre(number)


def test_preview_area_from_a_modes_parsed_inputs_and_its_output(sample_study, sample_files):
    import param

    from preview.area import PreviewArea

    from qidicom.readers import read_dicom_series

    class ModeState(param.Parameterized):  # the attributes a mode's state keeps (webapp/seg_mode.py)
        series = param.Parameter()
        label_maps = param.List()
        document = param.Dict()

    pairs = list(sample_study.ct_series)
    state = ModeState(series=read_dicom_series(pairs), label_maps=[readers.read_image(sample_study.ct_labels)],
                      document=sample_study.seg_metadata)
    state._series_pairs = pairs
    area = PreviewArea(state)
    area.show_inputs()
    shown = area.area.objects[0]
    assert "Preview of the inputs" in shown.objects[0].object
    area.show_output(sample_files["seg"].read_bytes(), "seg.dcm")
    assert "What was written: seg.dcm" in area.area.objects[0].objects[0].object
    empty = PreviewArea(ModeState())
    empty.show_inputs()
    assert "Choose the reference series first" in empty.area.objects[0].object


def test_the_page_side_description_gives_what_python_sets(ct_view):
    """webapp/page.js applies window presets, opacity and visibility from the description in
    the base mapper's tags: each must give exactly what the Python side sets for the same
    choice, so that the page's change and the worker's agree (no second repaint)."""
    import json

    tag = ct_view.base_mapper.tags.index("qi-page-side")
    side = json.loads(ct_view.base_mapper.tags[tag + 1])
    assert side["key"] == ct_view.key and side["window"]["mapper"] == ct_view.base_mapper.name
    assert ct_view.preset.css_classes == [f"qi-ctl-{ct_view.key}-window"]
    for name in ct_view.presets:
        ct_view.set_preset(name)
        assert [ct_view.base_mapper.low, ct_view.base_mapper.high] == side["window"]["presets"][name], name
    segments = side["segments"]
    glyphs = [r.glyph for p in ct_view.planes.values() for r in p.segment_renderers]
    assert glyphs and all(segments["glyphs"] in g.tags for g in glyphs)
    shown = segments["numbers"][1::2]  # what page.js does for these checkboxes ticked
    palette = [segments["transparent"] if n in segments["numbers"] and n not in shown else colour
               for n, colour in enumerate(segments["palette"])]
    ct_view.set_visible(shown)
    assert ct_view.segment_mapper.palette == palette
    ct_view.set_visible(segments["numbers"])
    assert ct_view.segment_mapper.palette == segments["palette"]
    # A drag: page.js changes the mapper's range with drag_window's formula (drag_scale); the
    # window text follows the range it is given, as it follows Python's own drag.
    assert side["window"]["drag"] and ct_view.drag.css_classes == [f"qi-ctl-{ct_view.key}-drag"]
    ct_view.set_window(40, 400)
    factor = 400 / side["window"]["drag_scale"]
    ct_view.base_mapper.update(low=40 + 10 * factor - (400 + 30 * factor) / 2, high=40 + 10 * factor + (400 + 30 * factor) / 2)
    assert "Level 60, width 460" in ct_view.window_text.object
    ct_view.set_window(40, 400)
    ct_view.drag_window(30, -10)
    assert ct_view.window == pytest.approx((60, 460))


def test_a_slice_larger_than_its_figure_is_sent_at_the_figures_size():
    """A 400 x 400 slice in a 320-pixel figure is sent as 320 x 320: each pixel the voxel
    under that screen pixel's centre, so the page colour-maps and draws only what it shows."""
    import io

    import synthetic

    datasets = synthetic.make_ct_series(rows=400, columns=400, slices=3, pixel_spacing=(0.5, 0.5), slice_spacing=2.0)
    files = []
    for n, ds in enumerate(datasets):
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        files.append((f"{n}.dcm", buffer.getvalue()))
    volume = qp.read_series_volume(files)
    view = SlicePreview(volume)
    axial = view.planes["axial"]
    g = axial.geometry
    image = shown(axial)
    assert image.shape == (axial.figure.frame_height, axial.figure.frame_width) == (320, 320)
    for row, column in ((0, 0), (100, 250), (319, 319)):
        voxel = g.voxel(axial.index, int((row + 0.5) * 400 / 320), int((column + 0.5) * 400 / 320))
        assert image[row, column] == volume.real_at(voxel)
    assert axial.voxel_at(399 * g.column_spacing, 0) == g.voxel(axial.index, 399, 399)  # the readout: every voxel
    coronal = view.planes["coronal"]  # 400 x 3 voxels: only the long side is reduced
    assert shown(coronal).shape == (3, coronal.figure.frame_width)


def test_preview_area_opens_by_itself_once_series_and_label_map_are_there(sample_study):
    import param

    from preview.area import REPORT_NEEDS_SEG, PreviewArea

    from qidicom.readers import read_dicom_series

    class ModeState(param.Parameterized):
        series = param.Parameter()
        label_maps = param.List()
        document = param.Dict()

    pairs = list(sample_study.ct_series)
    state = ModeState()
    state._series_pairs = pairs
    area = PreviewArea(state, prefill_report=lambda document, files: None)
    state.series = read_dicom_series(pairs)
    assert area.area.objects == [] and area.button.visible  # the series alone: on request only
    state.param.update(label_maps=[readers.read_image(sample_study.ct_labels)], document=sample_study.seg_metadata)
    preview, measurements = area.area.objects
    assert "Preview of the inputs" in preview.objects[0].object and not area.button.visible
    button = measurements.objects[0]
    button.clicks += 1  # "Measurements", before any conversion
    table, csv_link, note = measurements.objects[1].objects
    assert table.object.count("<tr>") == 7 and REPORT_NEEDS_SEG in note.object
    shown = area.shown
    state.document = {**sample_study.seg_metadata, "ContentCreatorName": "Someone"}  # not what the preview shows
    assert area.shown == shown and area.area.objects[0] is preview


def test_an_edit_the_preview_does_not_show_changes_nothing_and_a_label_or_colour_is_shown_in_place(
        sample_study, monkeypatch):
    """The form changes the document on every key typed. An edit of an attribute the preview
    never shows (SegmentAlgorithmName) leaves the preview as it is; a new label or colour of
    the same segments updates the shown preview (palette, segment lists, readout, the
    page-side description, the measurements' table) without placing the label maps on the
    grid again; a new numbering makes the preview again."""
    import copy
    import json

    import param

    from preview.area import PreviewArea

    from qidicom.readers import read_dicom_series

    class ModeState(param.Parameterized):
        series = param.Parameter()
        label_maps = param.List()
        document = param.Dict(allow_None=True)

    made = []
    placing = qp.overlay_from_label_maps
    monkeypatch.setattr(qp, "overlay_from_label_maps", lambda *a, **k: made.append(1) or placing(*a, **k))
    pairs = list(sample_study.ct_series)
    state = ModeState()
    state._series_pairs = pairs
    area = PreviewArea(state)
    document = copy.deepcopy(sample_study.seg_metadata)
    state.param.update(series=read_dicom_series(pairs), label_maps=[readers.read_image(sample_study.ct_labels)],
                       document=document)
    assert len(made) == 1
    preview, measured = area.area.objects
    view, label_maps = area.inputs_view, area.inputs_view.overlay.label_maps
    measured.objects[0].clicks += 1  # "Measurements"
    first = document["segmentAttributes"][0][0]
    number = next(n for n, s in view.overlay.segments.items() if s.label == first["SegmentLabel"])

    edited = copy.deepcopy(document)
    edited["segmentAttributes"][0][0]["SegmentAlgorithmName"] = "Region growing"
    state.document = edited
    assert len(made) == 1 and area.inputs_view is view and area.area.objects[0] is preview

    edited = copy.deepcopy(edited)
    edited["segmentAttributes"][0][0].update(SegmentLabel="Renamed", recommendedDisplayRGBValue=[10, 20, 30])
    state.document = edited
    assert len(made) == 1 and area.inputs_view is view and area.area.objects[0] is preview
    assert view.overlay.label_maps is label_maps and view.overlay.segments[number].label == "Renamed"
    assert view.segment_mapper.palette[number] == "#0a141e"
    assert f"{number} Renamed" in view.visible.options and f"{number} Renamed" in view.visible.value
    assert f"{number} Renamed" in view.jump.options
    side = json.loads(view.base_mapper.tags[view.base_mapper.tags.index("qi-page-side") + 1])
    assert side["segments"]["palette"][number] == "#0a141e"
    table = measured.objects[1].objects[0].object
    assert "Renamed" in table and first["SegmentLabel"] not in table.split("Renamed")[0][-40:]
    view.set_position(view.overlay.centre(number))
    assert (number, "Renamed") in view.last_readout["segments"]
    view.visible.value = [name for name in view.visible.value if not name.startswith(f"{number} ")]
    assert view.segment_mapper.palette[number] == "#00000000"  # the renamed checkbox still works

    edited = copy.deepcopy(edited)
    groups = edited["segmentAttributes"][0]
    groups[0]["labelID"] = 99  # a label value the file does not hold: other segments
    state.document = edited
    assert len(made) == 2 and area.inputs_view is not view


def test_seg_mode_measures_a_chosen_map_in_its_units_or_says_they_are_unknown(sample_study, sample_files, tmp_path):
    """SEG mode's optional map for the measurements: a NIfTI on the series' grid with a pm
    metadata JSON is measured in each segment in the JSON's units (numpy on the same voxels);
    without the JSON its units are said to be unknown."""
    import csv
    import io
    import json

    import nibabel
    import param

    import seg_mode
    from preview.area import PreviewArea

    from qidicom import metadata
    from qidicom.readers import read_dicom_series

    class ModeState(param.Parameterized):
        series = param.Parameter()
        label_maps = param.List()
        document = param.Dict(allow_None=True)
        map_source = param.Dict(allow_None=True)

    grid = nibabel.load(str(sample_files["ct_labels"]))
    values = np.random.default_rng(7).normal(1000, 50, grid.shape).astype(np.float32)
    nibabel.save(nibabel.Nifti1Image(values, grid.affine), str(tmp_path / "map.nii.gz"))
    labels = np.asarray(grid.dataobj)
    pm_json = sample_files["pm_metadata"]
    units = json.loads(pm_json.read_text())["MeasurementUnitsCode"]["CodeValue"]
    pairs = list(sample_study.ct_series)
    for chosen, expected_units in (([tmp_path / "map.nii.gz", pm_json], units), ([tmp_path / "map.nii.gz"], "")):
        state = ModeState()
        state._series_pairs = pairs
        area = PreviewArea(state)
        state.param.update(series=read_dicom_series(pairs), label_maps=[readers.read_image(sample_study.ct_labels)],
                           map_source=seg_mode.read_measure_map([(p.name, p.read_bytes()) for p in chosen]))
        assert area.inputs_view.pmap is not None  # shown over the series too
        area.measurements.measure()
        rows = list(csv.DictReader(io.StringIO(measurements_csv(area.measurements.results))))
        for row in rows:
            inside = values[labels == int(row["segment"])].astype(np.float64)
            assert int(row["voxels"]) == inside.size
            for column, expected in (("map_mean", inside.mean()), ("map_std", inside.std()), ("map_min", inside.min()),
                                     ("map_max", inside.max()), ("map_median", np.median(inside))):
                assert float(row[column]) == pytest.approx(expected, rel=1e-9), column
            assert row["map_units"] == expected_units
        said = "".join(str(getattr(item, "object", "")) for item in area.measurements.area.objects)
        assert ("units are unknown" in said) == (not expected_units)
        # Under the SEG written from these inputs: its report holds the map's statistics in
        # the JSON's codes (a NIfTI: no map object to refer to); unknown units stay out of it.
        area.show_output(sample_files["seg"].read_bytes(), "seg.dcm")
        area.written_measurements.measure()
        report = area.written_measurements.document
        quantities = {item["quantity"]["CodeMeaning"] for g in report["Measurements"] for item in g["measurementItems"]}
        pm_quantity = json.loads(pm_json.read_text())["QuantityValueCode"]["CodeMeaning"]
        assert (pm_quantity in quantities) == bool(expected_units)
        assert all("rwvmMapUsedForMeasurement" not in g for g in report["Measurements"])
        assert metadata.validate(report, "sr") == []


def measurements_csv(results) -> str:
    from qidicom import measurements

    return measurements.measurements_csv(results).decode()
