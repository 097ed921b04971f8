"""The app's conversion states under CPython (webapp/seg_mode, pm_mode, sr_mode): each parses
its inputs when they arrive, says why Convert is not possible yet, and converts from what it
parsed, without reading any file again, to what the library makes from the files."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pydicom
import pytest

pytest.importorskip("panel", reason="the app needs Panel (pip install panel==1.7.5)")

WEBAPP = Path(__file__).resolve().parents[1] / "webapp"
sys.path.insert(0, str(WEBAPP))

import base  # noqa: E402
import pm_mode  # noqa: E402
import seg_mode  # noqa: E402
import sr_mode  # noqa: E402


@pytest.fixture(autouse=True)
def no_browser(monkeypatch):
    """Download links are blob: URLs made with the browser's API; here a stand-in name."""
    monkeypatch.setattr(base, "make_download_url", lambda data, mime="": f"blob:{len(data)}")
    monkeypatch.setattr(base, "revoke_download_url", lambda url: None)


def pairs(paths) -> list[tuple[str, bytes]]:
    return [(path.name, path.read_bytes()) for path in paths]


def convert(state):
    """Run Convert; fails the test with the page's message if the conversion failed."""
    asyncio.run(state.convert())
    assert state.error == ""
    return state


@pytest.fixture
def count_reads(monkeypatch):
    """Counts every file parse the library does from here on."""
    import importlib

    import qidicom.readers as readers

    calls = {"image": 0, "dicom": 0}
    for name, key in (("read_image", "image"), ("parse_dicom", "dicom")):
        original = getattr(readers, name)

        def counted(*args, _original=original, _key=key, **kwargs):
            calls[_key] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(readers, name, counted)
        for module in ("qidicom.seg.write", "qidicom.seg.read", "qidicom.pm", "qidicom.sr.references", "qidicom.sr.read"):
            if hasattr(importlib.import_module(module), name):
                monkeypatch.setattr(sys.modules[module], name, counted)
    return calls


def test_seg_state_converts_what_it_parsed_as_the_library_converts_the_files(sample_files, count_reads):
    from qidicom.seg import segmentation_from_files

    state = seg_mode.SegState(stack_ready=True)
    assert state.blocked_reason == ("Convert is not possible yet: the reference series is not chosen yet; "
                                    "no label map yet; no metadata yet: load a metadata JSON"
                                    + (" or fill in the form" if state.editor else "") + ".")
    series = pairs(sorted(sample_files["ct"].glob("*.dcm")))
    state.take_files("series", series)
    state.take_files("labelmaps", pairs([sample_files["ct_labels"]]))
    state.take_files("metadata", pairs([sample_files["seg_metadata"]]))
    assert state.can_convert and state.blocked_reason == ""
    assert state.label_rows[0]["counts"] and all(v > 0 for v in state.label_rows[0]["counts"].values())
    before = dict(count_reads)
    assert before["image"] == 1 and before["dicom"] == len(series)  # each file parsed once, when chosen
    state.param.update(segmentationType="labelmap", compress="rle")
    convert(state)
    assert count_reads == before, "Convert read files again"
    expected = segmentation_from_files([sample_files["ct_labels"]], sample_files["seg_metadata"], sample_files["ct"],
                                       segmentation_type="labelmap", compress="rle")
    made = pydicom.dcmread(pydicom.filebase.DicomBytesIO(base_result_bytes(state)))
    assert made.SegmentationType == "LABELMAP"
    assert [s.SegmentLabel for s in made.SegmentSequence] == [s.SegmentLabel for s in expected.dataset.SegmentSequence]
    assert (made.pixel_array == expected.dataset.pixel_array).all()
    assert state.result_name == expected.filename


def base_result_bytes(state) -> bytes:
    """The bytes the download link offers: the result the state made."""
    return state.last_result.data


def test_seg_state_names_a_bad_label_map_when_it_is_chosen(sample_files):
    state = seg_mode.SegState(stack_ready=True)
    state.take_files("labelmaps", [("labels.nrrd", b"NRRD0004\nthis is not a label map\n")])
    assert "labels.nrrd: not a readable NRRD header" in state.labels_message
    assert not state.can_convert and "a label map could not be read" in state.blocked_reason


def test_pm_state_converts_what_it_parsed_as_the_library_converts_the_files(sample_files, count_reads):
    from qidicom.pm import parametric_map_from_files

    state = pm_mode.PmState(stack_ready=True)
    state.take_files("map", pairs([sample_files["adc_map"]]))
    state.take_files("series", pairs(sorted(sample_files["mr"].glob("*.dcm"))))
    state.take_files("metadata", pairs([sample_files["pm_metadata"]]))
    assert state.can_convert, state.blocked_reason
    before = dict(count_reads)
    assert before["image"] == 1 and before["dicom"] > 0
    state.param.update(dataType="float64", compress="deflate")
    convert(state)
    assert count_reads == before, "Convert read files again"
    expected = parametric_map_from_files(sample_files["adc_map"], sample_files["pm_metadata"], sample_files["mr"],
                                         data_type="float64", compress="deflate")
    made = pydicom.dcmread(pydicom.filebase.DicomBytesIO(base_result_bytes(state)))
    assert "DoubleFloatPixelData" in made and made.file_meta.TransferSyntaxUID == expected.dataset.file_meta.TransferSyntaxUID
    assert (made.pixel_array == expected.dataset.pixel_array).all()


def test_sr_state_finds_the_named_files_among_those_loaded_in_several_picks(sample_files, count_reads):
    from qidicom import conversions

    state = sr_mode.SrState(stack_ready=True)
    state.take_files("metadata", pairs([sample_files["sr_metadata"]]))
    state.take_files(conversions.POOL_ROLE, pairs(sorted(sample_files["ct"].glob("*.dcm"))))
    missing = [name for _key, name, found in state.references if not found]
    assert missing == ["seg.dcm"]
    assert not state.can_convert and "(seg.dcm)" in state.blocked_reason
    state.take_files(conversions.POOL_ROLE, pairs([sample_files["seg"]]))
    assert all(found for _key, _name, found in state.references) and state.can_convert
    before = dict(count_reads)
    assert before["dicom"] >= 25
    convert(state)
    assert count_reads == before, "Convert read files again"
    made = pydicom.dcmread(pydicom.filebase.DicomBytesIO(base_result_bytes(state)))
    document = json.loads(sample_files["sr_metadata"].read_text())
    assert made.Modality == "SR" and len(made.ContentSequence[-1].ContentSequence) == len(document["Measurements"])
    state.clear_pool()
    assert state.pool_count == 0 and not state.can_convert


def test_a_seg_opened_with_its_series_prefills_the_sr_mode_as_seg_mode_does(sample_files):
    """Open mode: the Measurements of a SEG opened with its series pre-fill a report
    referencing that SEG's SOPInstanceUID and segment numbers; the SR mode, given the files
    the hook passes, finds every one it names and converts it."""
    import open_mode
    from qidicom import conversions, metadata

    report = sr_mode.SrState(stack_ready=True)

    def prefill(document, files):  # what the app's hook does (qidicom_app._prefill_report)
        report.clear_pool()
        report.take_files(conversions.POOL_ROLE, files)
        report.set_document(document)

    state = open_mode.OpenState()
    open_mode.view(state, prefill_report=prefill)
    state.take_files(open_mode.SERIES_ROLE, pairs(sorted(sample_files["ct"].glob("*.dcm"))))
    state.take_files(open_mode.OBJECT_ROLE, pairs([sample_files["seg"]]))
    measured = state.viewer.measurements
    measured.measure()
    document = measured.document
    seg = pydicom.dcmread(sample_files["seg"], stop_before_pixels=True)
    assert metadata.validate(document, "sr") == []
    assert [g["ReferencedSegment"] for g in document["Measurements"]] == [m.number for m in measured.results]
    assert sorted(g["ReferencedSegment"] for g in document["Measurements"]) == sorted(
        item.SegmentNumber for item in seg.SegmentSequence)
    assert {g["segmentationSOPInstanceUID"] for g in document["Measurements"]} == {str(seg.SOPInstanceUID)}
    assert document["compositeContext"][0] == sample_files["seg"].name
    assert "pre-filled" in "".join(str(getattr(item, "object", "")) for item in measured.area.objects)
    assert all(found for _key, _name, found in report.references) and report.can_convert, report.blocked_reason
    convert(report)
    made = pydicom.dcmread(pydicom.filebase.DicomBytesIO(base_result_bytes(report)))
    assert made.Modality == "SR"
    assert len(made.ContentSequence[-1].ContentSequence) == len(document["Measurements"])


def test_the_forms_edits_in_place_reach_the_preview_without_rebuilding_it(sample_files, monkeypatch):
    """The form edits its document in place (the state's copy is shallow): an edit of an
    attribute the preview does not show leaves it alone; a new label is shown in place, on
    the same label maps; neither places the label maps on the grid again."""
    from preview.area import PreviewArea

    from qidicom import preview as qp

    made = []
    placing = qp.overlay_from_label_maps
    monkeypatch.setattr(qp, "overlay_from_label_maps", lambda *a, **k: made.append(1) or placing(*a, **k))
    state = seg_mode.SegState(stack_ready=True)
    if state.editor is None:
        pytest.skip("this build has no form editor")
    state.schedule = None  # no event loop here: the preview follows its inputs at once
    area = PreviewArea(state)
    state.take_files("series", pairs(sorted(sample_files["ct"].glob("*.dcm"))))
    state.take_files("labelmaps", pairs([sample_files["ct_labels"]]))
    view = area.inputs_view
    assert view is not None and len(made) == 1
    state.start_form_from_labels()  # the same numbering as the label map's own: shown in place
    assert area.inputs_view is view and len(made) == 1
    state.editor.write(["segmentAttributes", 0, 0, "SegmentAlgorithmName"], "Region growing")
    assert area.inputs_view is view and len(made) == 1
    state.editor.write(["segmentAttributes", 0, 0, "SegmentLabel"], "Renamed")
    assert area.inputs_view is view and len(made) == 1
    assert view.overlay.segments[1].label == "Renamed" and "1 Renamed" in view.visible.options
    state.editor.write(["segmentAttributes", 0, 0, "labelID"], 99)  # another numbering: made again
    assert len(made) == 2 and area.inputs_view is not view


def test_seg_modes_map_goes_into_the_report_of_the_seg_written_and_the_sr_mode_converts_it(sample_files, tmp_path):
    """SEG mode with a DICOM Parametric Map chosen to measure: after Convert, the written SEG's
    Measurements pre-fill a report whose groups hold the map's statistics in the PM's own
    coded quantity and units and refer to the PM (rwvmMapUsedForMeasurement); the SR mode,
    given the files the hook passes (series, SEG, PM), converts it."""
    import nibabel
    import numpy as np

    from preview.area import PreviewArea

    from qidicom import conversions, metadata
    from qidicom.pm import parametric_map_from_files

    grid = nibabel.load(str(sample_files["ct_labels"]))
    values = np.random.default_rng(3).uniform(500, 1500, grid.shape).astype(np.float32)
    nibabel.save(nibabel.Nifti1Image(values, grid.affine), str(tmp_path / "map.nii.gz"))
    series = sorted(sample_files["ct"].glob("*.dcm"))
    pm = parametric_map_from_files(tmp_path / "map.nii.gz", sample_files["pm_metadata"], series)
    report = sr_mode.SrState(stack_ready=True)

    def prefill(document, files):  # what the app's hook does (qidicom_app._prefill_report)
        report.clear_pool()
        report.take_files(conversions.POOL_ROLE, files)
        report.set_document(document)

    state = seg_mode.SegState(stack_ready=True)
    state.schedule = None  # no event loop here: the preview follows its inputs at once
    area = PreviewArea(state, prefill_report=prefill)
    state.take_files("series", pairs(series))
    state.take_files("labelmaps", pairs([sample_files["ct_labels"]]))
    state.take_files("metadata", pairs([sample_files["seg_metadata"]]))
    state.take_files(seg_mode.MAP_ROLE, [("map.dcm", pm.data)])
    units = json.loads(sample_files["pm_metadata"].read_text())["MeasurementUnitsCode"]["CodeValue"]  # the PM's
    assert state.map_source["units"] == units and f"in {units}" in state.map_text
    convert(state)
    area.show_written()
    area.written_measurements.measure()
    document = area.written_measurements.document
    assert metadata.validate(document, "sr") == []
    assert {g["rwvmMapUsedForMeasurement"] for g in document["Measurements"]} == {str(pm.dataset.SOPInstanceUID)}
    assert "map.dcm" in document["compositeContext"]
    in_units = [item for g in document["Measurements"] for item in g["measurementItems"]
                if item["units"]["CodeValue"] == units]
    assert len(in_units) == 5 * len(document["Measurements"])  # mean, SD, min, max, median of the map
    assert all(found for _key, _name, found in report.references) and report.can_convert, report.blocked_reason
    convert(report)
    made = pydicom.dcmread(pydicom.filebase.DicomBytesIO(base_result_bytes(report)))
    assert made.Modality == "SR"


def test_from_convert_to_the_link_the_page_gets_text_changes_only(sample_files):
    """Every view shown, hidden or replaced makes BokehJS lay out the whole document again
    (0.3-0.4 s beside a preview, measured in Chromium), so a conversion's progress and its
    download link reach the page as changes of text (and of the button's disabled state)."""
    from bokeh.document import Document
    from bokeh.document.events import ModelChangedEvent

    state = seg_mode.SegState(stack_ready=True)
    state.take_files("series", pairs(sorted(sample_files["ct"].glob("*.dcm"))))
    state.take_files("labelmaps", pairs([sample_files["ct_labels"]]))
    state.take_files("metadata", pairs([sample_files["seg_metadata"]]))
    document = Document()
    document.add_root(seg_mode.view(state).get_root(document))
    changes = []
    document.on_change(lambda event: changes.append(
        (type(event.model).__name__, event.attr) if isinstance(event, ModelChangedEvent) else type(event).__name__))
    convert(state)
    assert state.result_url and state.busy is False
    assert changes and set(changes) <= {("HTML", "text"), ("Button", "disabled")}, changes
    texts = [getattr(model, "text", None) or "" for model in document.models]
    assert any("qi-download" in text and state.result_name in text for text in texts)  # the link is in a text
