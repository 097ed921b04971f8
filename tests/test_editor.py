"""The metadata form editor's model in CPython: the form comes from the schemas, documents
load and save unchanged, edits through the widgets write the JSON a conversion needs, every
problem shows next to its field with its JSON path, and 100 segments stay quick.

The widgets are driven the way the browser drives them (setting ``value_input`` of a text
box, ``value`` of a select); the browser itself is tests/test_browser_editor.py.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("panel", reason="the editor needs Panel (pip install panel==1.7.5)")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "webapp"))

from editor import MetadataEditor  # noqa: E402
from qidicom import codes, metadata  # noqa: E402


def rows_of(form) -> dict:
    return {row.field.name: row for row in form.rows}


def type_text(row, text: str) -> None:
    """What typing in a text box does: value_input follows each key."""
    row.widget.value_input = text


def pick(code_row, value: str, query: str | None = None) -> None:
    """Search a code picker (by default for the code value) and choose the entry with it."""
    code_row.search.value_input = query or value
    label = next(label for label, code in code_row.by_label.items() if code.value == value)
    code_row.matches.value = label


# --------------------------------------------------------------------------- from the schemas


@pytest.mark.parametrize("kind", ["seg", "pm", "sr"])
def test_form_has_a_control_for_every_schema_field(kind):
    editor = MetadataEditor(kind)
    editor.panel()
    schema = metadata.load_schema(kind)
    shown = set(rows_of(editor.form))
    if kind == "seg":
        shown |= {"segmentAttributes", "segmentAttributesFileMapping"}
        segment = metadata.load_schema("seg")["definitions"]["segment"]
        editor.segments._add()
        assert set(rows_of(editor.segments.form)) == set(segment["properties"])
    assert shown == set(schema["properties"]) - {"@schema"}
    for name, row in rows_of(editor.form).items():
        label = row.widget.name if hasattr(row, "widget") else None
        if label:
            assert label.startswith(name)
            assert label.split(" (")[0].endswith(" *") == (name in schema.get("required", [])), label


def test_plain_fields_carry_the_schema_rules():
    editor = MetadataEditor("pm")
    rows = rows_of(editor.form)
    laterality = rows["FrameLaterality"]
    assert laterality.widget.name == "FrameLaterality *"
    assert set(laterality.widget.options) - {"(not set)"} == {"R", "L", "B", "U"}
    assert "R (right), L (left)" in laterality.widget.description
    assert rows["SeriesNumber"].widget.placeholder == "e.g. 300"  # the schema's default
    assert "integer" in rows["SeriesNumber"].widget.description
    assert rows["QuantityValueCode"].picker == "pm-quantity"
    quantity = rows["QuantityValueCode"]
    quantity.search.value_input = "113041"  # a code value comes first
    assert quantity.matches.options[1] == "Apparent Diffusion Coefficient (DCM 113041)"  # after the heading
    quantity.search.value_input = "coefficient diffusion"  # every word, any order
    assert "Apparent Diffusion Coefficient (DCM 113041)" in quantity.matches.options


# --------------------------------------------------------------------------- three ways to start


def test_every_dcmqi_example_loads_and_saves_unchanged(shared):
    examples = sorted((shared / "reference" / "dcmqi" / "examples").glob("*.json"))
    assert len(examples) >= 15
    editors = {kind: MetadataEditor(kind) for kind in ("seg", "pm", "sr")}
    for path in examples:
        text = path.read_text(encoding="utf-8")
        expected = json.loads(text)
        kind = metadata.kind_of(expected) or ("pm" if path.name.startswith("pm") else "seg")
        editor = editors[kind]
        editor.load_json(text)
        assert editor.document == expected, path.name
        assert json.loads(editor.text_of()) == expected
        assert list(editor.document) == list(expected)  # key order kept too
        assert editor.problems == [] and editor.valid, (path.name, editor.problems)


@pytest.mark.parametrize("kind", ["seg", "pm", "sr"])
def test_generated_documents_load_and_save_unchanged(kind, sample_study):
    expected = getattr(sample_study, f"{kind}_metadata")
    editor = MetadataEditor(kind)
    editor.panel()
    editor.load_json(json.dumps(expected, indent=3))
    assert editor.document == expected and editor.valid
    # Showing every item in the form and "retyping" what is shown changes nothing.
    lists = [editor.segments] if kind == "seg" else [r for r in editor.form.rows if hasattr(r, "items")]
    for editor_list in lists:
        for index in range(len(editor_list.entries())):
            editor_list.items.value = str(index)
            for row in editor_list.form.rows:
                if hasattr(row, "widget") and hasattr(row.widget, "value_input"):
                    row.widget.value_input = row.widget.value_input
    for row in editor.form.rows:
        if hasattr(row, "widget") and hasattr(row.widget, "value_input"):
            row.widget.value_input = row.widget.value_input
    assert editor.document == expected


def test_from_label_values_one_segment_per_value_with_distinct_colours():
    editor = MetadataEditor("seg")
    editor.panel()
    editor.from_label_values({1: 5230, 3: 811, 7: 2})
    segments = editor.document["segmentAttributes"][0]
    assert [s["labelID"] for s in segments] == [1, 3, 7]
    colours = [tuple(s["recommendedDisplayRGBValue"]) for s in segments]
    assert len(set(colours)) == 3
    assert list(editor.segments.items.options)[0].endswith("5,230 voxels")
    # SEMIAUTOMATIC by default: the algorithm name is asked for, under its field.
    assert editor.problems == [
        f"segmentAttributes[0][{i}].SegmentAlgorithmName: required unless SegmentAlgorithmType is MANUAL "
        "(this segment is SEMIAUTOMATIC)" for i in range(3)]
    name_row = rows_of(editor.segments.form)["SegmentAlgorithmName"]
    assert name_row.message.visible and "required unless" in name_row.message.object
    rows_of(editor.segments.form)["SegmentAlgorithmType"].widget.value = "MANUAL"
    assert not name_row.message.visible
    assert len(editor.problems) == 2


def test_several_label_map_files():
    editor = MetadataEditor("seg")
    editor.panel()
    editor.from_label_values([{1: 10, 2: 20}, {1: 5}], file_names=["organs.nii.gz", "tumour.nii.gz"])
    assert editor.document["segmentAttributesFileMapping"] == ["organs.nii.gz", "tumour.nii.gz"]
    assert [len(g) for g in editor.document["segmentAttributes"]] == [2, 1]
    assert editor.group_choice.visible
    editor.group_choice.value = "1"
    assert editor.segments.path == ["segmentAttributes", 1]
    type_text(rows_of(editor.segments.form)["SegmentLabel"], "Tumour")
    assert editor.document["segmentAttributes"][1][0]["SegmentLabel"] == "Tumour"
    assert editor.document["segmentAttributes"][0][0]["SegmentLabel"] == "Segment 1"


def test_empty_document_and_bad_json():
    editor = MetadataEditor("sr")
    assert editor.document["Measurements"] == [] and not editor.valid
    before = copy.deepcopy(editor.document)
    editor.load_json('{"Measurements": [}')
    assert "line 1, column 19" in editor.load_error
    assert editor.document == before
    editor.load_json('{"observerContext": {"ObserverType": "PERSON", "PersonObserverName": "R"}, "Measurements": []}')
    assert editor.load_error == ""
    assert editor.problems == ["Measurements: must not be empty (at least 1 item needed)"]


# --------------------------------------------------------------------------- editing


def test_seg_built_from_scratch_through_the_widgets():
    editor = MetadataEditor("seg")
    editor.panel()
    editor.segments.add.clicks += 1
    segment = rows_of(editor.segments.form)
    category, kind = segment["SegmentedPropertyCategoryCodeSequence"], segment["SegmentedPropertyTypeCodeSequence"]
    pick(category, "91723000", "anatomical")  # Anatomical Structure
    kind.search.value_input = "liver"
    assert "Liver (SCT 10200004)" in kind.matches.options  # Liver is an anatomical structure...
    pick(category, "85756007", "tissue")
    assert "Liver (SCT 10200004)" not in kind.matches.options  # ...not a tissue (the list followed)
    pick(category, "91723000")
    pick(kind, "10200004", "liver")
    type_text(segment["SegmentAlgorithmName"], "Region growing")
    type_text(rows_of(editor.form)["SeriesNumber"], "12")
    assert editor.valid, editor.problems
    written = editor.document["segmentAttributes"][0][0]
    assert written["SegmentedPropertyTypeCodeSequence"] == {
        "CodeValue": "10200004", "CodingSchemeDesignator": "SCT", "CodeMeaning": "Liver"}
    assert written["SegmentLabel"] == "Liver"
    assert written["recommendedDisplayRGBValue"] == list(codes.recommended_colour({"CodingSchemeDesignator": "SCT", "CodeValue": "10200004"}))
    segment["recommendedDisplayRGBValue"].widget.value = "#102030"
    assert editor.document["segmentAttributes"][0][0]["recommendedDisplayRGBValue"] == [16, 32, 48]
    assert metadata.validate(json.loads(editor.text_of()), "seg") == []
    assert editor.document["SeriesNumber"] == "12"
    type_text(rows_of(editor.form)["SeriesNumber"], "")
    assert "SeriesNumber" not in editor.document  # an emptied field leaves the document


def test_problems_next_to_their_fields_and_listed_with_paths():
    editor = MetadataEditor("seg")
    editor.panel()
    editor.from_label_values({1: 1, 2: 1})
    series = rows_of(editor.form)["SeriesNumber"]
    type_text(series, "three")
    assert series.message.visible and "&#x27;three&#x27; is not a valid IS (integer string)" in series.message.object
    assert "SeriesNumber: 'three' is not a valid IS (integer string)" in editor.problems
    assert "<code>SeriesNumber</code>" in editor.problem_list.object
    editor.segments.items.value = "1"
    label = rows_of(editor.segments.form)["labelID"]
    label.widget.value = 1  # the same label as the first segment
    assert "label 1 is already described by segmentAttributes[0][0]" in label.message.object
    assert list(editor.segments.items.options)[1].startswith("⚠ ")
    code = rows_of(editor.segments.form)["SegmentedPropertyTypeCodeSequence"]
    code.scheme.value_input = "SCT-LOCAL-EXTENDED"
    code.meaning.value_input = ""
    assert code.message.visible
    assert "CodingSchemeDesignator: 18 characters, at most 16 allowed" in code.message.object
    assert "segmentAttributes[0][1].SegmentedPropertyTypeCodeSequence.CodeMeaning: must not be empty" in editor.problems
    assert not editor.valid and "problems" in editor.status.object


def test_custom_code_is_kept_with_a_note():
    editor = MetadataEditor("pm")
    region = rows_of(editor.form)["AnatomicRegionSequence"]
    region.value.value_input = "T-9200B"
    region.scheme.value_input = "99LOCAL"
    region.meaning.value_input = "Prostate zone"
    assert editor.document["AnatomicRegionSequence"] == {
        "CodeValue": "T-9200B", "CodingSchemeDesignator": "99LOCAL", "CodeMeaning": "Prostate zone"}
    assert "Custom code" in region.note.object
    region.value.value_input = "41216001"
    region.scheme.value_input = "SCT"
    assert "calls SCT 41216001" in region.note.object  # a known code under another meaning
    for box in (region.value, region.scheme, region.meaning):
        box.value_input = ""
    assert "AnatomicRegionSequence" not in editor.document


def test_pm_every_field():
    editor = MetadataEditor("pm")
    rows = rows_of(editor.form)
    pick(rows["QuantityValueCode"], "113041")
    pick(rows["MeasurementUnitsCode"], "um2/s")
    pick(rows["DerivationCode"], "113041")
    pick(rows["MeasurementMethodCode"], "113250")
    pick(rows["AnatomicRegionSequence"], "41216001")
    rows["FrameLaterality"].widget.value = "U"
    type_text(rows["RealWorldValueSlope"], "0.001")
    rows["SourceImageDiffusionBValues"].widget.value_input = "0\n 1400 \n"
    type_text(rows["DerivedPixelContrast"], "ADC")
    assert editor.valid, editor.problems
    assert editor.document["SourceImageDiffusionBValues"] == ["0", "1400"]
    assert editor.document["MeasurementMethodCode"]["CodeMeaning"] == "Mono-exponential diffusion model"
    type_text(rows["RealWorldValueSlope"], "one")
    assert rows["RealWorldValueSlope"].message.visible
    assert "is not a valid FD (floating point number as text)" in rows["RealWorldValueSlope"].message.object
    assert editor.problems == ["RealWorldValueSlope: 'one' is not a valid FD (floating point number as text)"]


def test_sr_groups_and_items_added_removed_and_reordered(sample_study):
    segments = sample_study.seg_metadata["segmentAttributes"][0]
    context = {"segments": [{"SegmentNumber": n, "SegmentLabel": s["SegmentLabel"], "SOPInstanceUID": "1.2.3.4",
                             "SourceSeriesInstanceUID": "1.2.3.5",
                             "SegmentedPropertyTypeCodeSequence": s["SegmentedPropertyTypeCodeSequence"]}
                            for n, s in enumerate(segments, start=1)],
               "series": [{"SeriesInstanceUID": "1.2.3.5", "Modality": "CT", "SeriesDescription": "Phantom CT"}], "files": ["seg.dcm", "ct-001.dcm", "ct-002.dcm"]}
    editor = MetadataEditor("sr", context=context)
    editor.panel()
    top = rows_of(editor.form)
    observer = rows_of(top["observerContext"].form)
    type_text(observer["PersonObserverName"], "Reader^One")
    top["imageLibrary"].widget.value = ["ct-001.dcm", "ct-002.dcm"]
    top["compositeContext"].widget.value = ["seg.dcm"]
    groups = top["Measurements"]
    for _ in range(3):
        groups.add.clicks += 1
    assert len(editor.document["Measurements"]) == 3 and groups.index == 2
    group = rows_of(groups.form)
    type_text(group["TrackingIdentifier"], "third")
    groups.up.clicks += 1
    assert [g["TrackingIdentifier"] for g in editor.document["Measurements"]] == [
        "Measurement group 1", "third", "Measurement group 2"]
    groups.delete.clicks += 1
    assert [g["TrackingIdentifier"] for g in editor.document["Measurements"]] == ["Measurement group 1", "Measurement group 2"]
    groups.items.value = "0"
    group["ReferencedSegment"].choice.value = list(group["ReferencedSegment"].segments)[1]
    first = editor.document["Measurements"][0]
    assert first["ReferencedSegment"] == 2 and first["segmentationSOPInstanceUID"] == "1.2.3.4"
    assert first["SourceSeriesForImageSegmentation"] == "1.2.3.5"
    assert "CT · Phantom CT (1.2.3.5)" in group["SourceSeriesForImageSegmentation"].widget.options
    assert first["Finding"] == segments[1]["SegmentedPropertyTypeCodeSequence"]
    items = group["measurementItems"]
    items.add.clicks += 1
    item = rows_of(items.form)
    type_text(item["value"], "12.5")
    pick(item["quantity"], "118565006")
    pick(item["units"], "mm3")
    pick(item["derivationModifier"], "373098007")
    evaluations = group["qualitativeEvaluations"]
    evaluations.add.clicks += 1
    evaluation = rows_of(evaluations.form)
    concept = evaluation["conceptCode"]
    concept.value.value_input, concept.scheme.value_input, concept.meaning.value_input = "1", "99X", "Margin"
    evaluation["conceptValue"].mode.value = "Text"
    type_text(evaluation["conceptValue"].text, "smooth")
    editor.write(["Measurements", 1, "measurementItems"], copy.deepcopy(first["measurementItems"]))
    assert editor.valid, editor.problems
    document = json.loads(editor.text_of())
    assert metadata.validate(document, "sr") == []
    assert document["Measurements"][0]["measurementItems"][0] == {
        "value": "12.5",
        "quantity": {"CodeValue": "118565006", "CodingSchemeDesignator": "SCT", "CodeMeaning": "Volume"},
        "units": {"CodeValue": "mm3", "CodingSchemeDesignator": "UCUM", "CodeMeaning": "cubic millimeter"},
        "derivationModifier": codes.find("sr-derivation", "373098007").as_json()}
    assert document["Measurements"][0]["qualitativeEvaluations"] == [
        {"conceptCode": {"CodeValue": "1", "CodingSchemeDesignator": "99X", "CodeMeaning": "Margin"},
         "conceptValue": "smooth"}]
    assert document["imageLibrary"] == ["ct-001.dcm", "ct-002.dcm"]
    observer["ObserverType"].widget.value = "DEVICE"
    assert "PersonObserverName" in " ".join(editor.problems)  # a device observer has no person name


def test_100_segments_build_and_edit_quickly():
    start = time.perf_counter()
    editor = MetadataEditor("seg")
    editor.panel()
    editor.from_label_values({v: 100 + v for v in range(1, 101)})
    build = time.perf_counter() - start
    assert len(editor.document["segmentAttributes"][0]) == 100
    name = rows_of(editor.segments.form)["SegmentAlgorithmName"]
    start = time.perf_counter()
    type_text(name, "Threshold")
    edit = time.perf_counter() - start
    editor.segments.items.value = "99"
    start = time.perf_counter()
    type_text(rows_of(editor.segments.form)["SegmentLabel"], "Last")
    other = time.perf_counter() - start
    assert editor.document["segmentAttributes"][0][99]["SegmentLabel"] == "Last"
    assert len(editor.problems) == 99
    figures = {"build_s": round(build, 3), "edit_s": round(edit, 3), "edit_other_segment_s": round(other, 3),
               "validation_ms": round(editor.last_validation_ms, 1)}
    print("editor with 100 segments in CPython:", figures)
    (ROOT / "build" / "cache").mkdir(parents=True, exist_ok=True)
    (ROOT / "build" / "cache" / "editor-cpython-timing.json").write_text(json.dumps(figures, indent=1))
    assert edit < 0.5 and other < 0.5, figures


# --------------------------------------------------------------------------- code lists


def test_code_search_by_meaning_or_value():
    assert codes.search("anatomic-region", "liver")[0].as_json() == {
        "CodeValue": "10200004", "CodingSchemeDesignator": "SCT", "CodeMeaning": "Liver"}
    assert codes.search("pm-units", "um2/s")[0].value == "um2/s"
    assert codes.search("sr-quantity", "118565006")[0].meaning == "Volume"
    assert {c.meaning for c in codes.search("laterality", "")} >= {"Left", "Right"}
    words = codes.search("segmentation-type", "kidney left")  # every word, any order
    assert all("kidney" in c.meaning.lower() and "left" in c.meaning.lower() for c in words)
    anatomical = codes.find("segmentation-category", "91723000")
    assert "Liver" in {c.meaning for c in codes.types_of_category(anatomical)}
    with pytest.raises(ValueError, match="unknown code picker"):
        codes.code_list("nope")


def test_check_code_gives_dicom_rules_with_paths():
    assert codes.check_code({"CodeValue": "1", "CodingSchemeDesignator": "99X", "CodeMeaning": "x"}) == []
    assert codes.check_code({"CodeValue": " 1", "CodingSchemeDesignator": "A" * 17, "CodeMeaning": "a\\b"}, "Finding") == [
        "Finding.CodeValue: leading or trailing spaces are not allowed",
        "Finding.CodingSchemeDesignator: 17 characters, at most 16 allowed",
        "Finding.CodeMeaning: must not hold a backslash or control character",
    ]


def _generator():
    script = ROOT / "schemas" / "tools" / "make_code_lists.py"
    spec = importlib.util.spec_from_file_location("make_code_lists", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_picker_lists_are_what_the_generator_makes():
    import pydicom

    committed = json.loads((ROOT / "schemas" / "codelists" / "picker-codes.json").read_text(encoding="utf-8"))
    if f"pydicom {pydicom.__version__}:" not in committed["source"]:
        pytest.skip(f"code lists were generated with another pydicom than {pydicom.__version__}")
    assert _generator().picker_codes() == committed
    assert set(committed["lists"]) | {"segmentation-category", "segmentation-type", "segmentation-modifier"} == set(codes.PICKERS)


def test_colours_are_what_the_generator_makes_from_slicer_terminology(shared):
    source = shared / "reference" / "dcmqi" / "segContexts" / "SegmentationCategoryTypeModifier-SlicerGeneralAnatomy.json"
    committed = json.loads((ROOT / "schemas" / "codelists" / "segmentation-colours.json").read_text(encoding="utf-8"))
    assert _generator().colour_codes(source) == committed
    left_kidney = codes.recommended_colour(codes.find("segmentation-type", "64033007"), codes.find("laterality", "7771000"))
    assert left_kidney is not None


def test_layout_needs_no_script_evaluation():
    """The app's Content Security Policy forbids 'unsafe-eval': no ReactiveHTML anywhere, also
    in the forms built when a list gets its first item."""
    from panel.reactive import ReactiveHTML

    editor = MetadataEditor("sr")
    layout = editor.panel()
    groups = rows_of(editor.form)["Measurements"]
    groups.add.clicks += 1
    for name in ("measurementItems", "qualitativeEvaluations"):
        rows_of(groups.form)[name].add.clicks += 1
    items = rows_of(groups.form)["measurementItems"]
    for name in ("measurementModifiers", "measurementDerivationParameters", "measurementNumProperties"):
        rows_of(items.form)[name].add.clicks += 1
    seg = MetadataEditor("seg")
    seg_layout = seg.panel()
    seg.from_label_values({1: 1})
    found = {type(item).__name__ for item in [*layout.select(ReactiveHTML), *seg_layout.select(ReactiveHTML)]}
    assert found == set()
    import panel as pn

    assert len(layout.select(pn.widgets.TextInput)) > 60  # the nested forms are in the layout


def test_text_view_edit_and_apply():
    editor = MetadataEditor("pm")
    editor.panel()
    assert json.loads(editor.text.value) == editor.document
    changed = {**editor.document, "SeriesDescription": "typed as text"}
    editor.text.value_input = json.dumps(changed)
    editor.apply_text.clicks += 1
    assert editor.document == changed
    assert rows_of(editor.form)["SeriesDescription"].widget.value == "typed as text"
    editor.text.value_input = '{"SeriesDescription": '
    editor.apply_text.clicks += 1
    assert editor.document == changed and "invalid JSON at line 1" in editor.load_error
    assert editor.text_error.visible


def test_long_problem_lists_are_cut_with_a_count():
    editor = MetadataEditor("seg")
    editor.panel()
    editor.from_label_values({v: 1 for v in range(1, 81)})
    assert len(editor.problems) == 80
    assert editor.problem_list.object.count("<li>") == 51
    assert "… and 30 more" in editor.problem_list.object
