"""Metadata JSON: loading from any source, validation against qidicom's schemas, messages.

These tests double as examples of the ``qidicom.metadata`` API.
"""

from __future__ import annotations

import copy
import io
import json
import socket
import urllib.request
from pathlib import Path

import jsonschema
import pytest

from conftest import SHARED
from qidicom import metadata
from qidicom.errors import InputError, MetadataError

DCMQI = SHARED / "reference" / "dcmqi"
EXAMPLES = DCMQI / "examples"

needs_dcmqi_examples = pytest.mark.skipif(
    not EXAMPLES.is_dir(), reason=f"dcmqi reference examples not present at {EXAMPLES}"
)


def _examples(pattern: str) -> list[Path]:
    return sorted(EXAMPLES.glob(pattern)) if EXAMPLES.is_dir() else []


# A small valid SEG document: one label-map file with two labels.
def seg_doc() -> dict:
    def segment(label: int, code: str, meaning: str) -> dict:
        return {
            "labelID": label,
            "SegmentLabel": meaning,
            "SegmentAlgorithmType": "MANUAL",
            "SegmentedPropertyCategoryCodeSequence": {
                "CodeValue": "123037004",
                "CodingSchemeDesignator": "SCT",
                "CodeMeaning": "Anatomical Structure",
            },
            "SegmentedPropertyTypeCodeSequence": {
                "CodeValue": code,
                "CodingSchemeDesignator": "SCT",
                "CodeMeaning": meaning,
            },
            "recommendedDisplayRGBValue": [220, 129, 101],
        }

    return {
        "@schema": metadata.DCMQI_SCHEMA_IDS["seg"],
        "ContentCreatorName": "Doe^John",
        "SeriesDescription": "Segmentation",
        "SeriesNumber": "300",
        "InstanceNumber": "1",
        "segmentAttributes": [[segment(1, "10200004", "Liver"), segment(2, "78961009", "Spleen")]],
    }


def pm_doc() -> dict:
    code = {"CodeValue": "113041", "CodingSchemeDesignator": "DCM", "CodeMeaning": "Apparent Diffusion Coefficient"}
    return {
        "QuantityValueCode": code,
        "DerivationCode": code,
        "MeasurementUnitsCode": {"CodeValue": "um2/s", "CodingSchemeDesignator": "UCUM", "CodeMeaning": "um2/s"},
        "AnatomicRegionSequence": {"CodeValue": "41216001", "CodingSchemeDesignator": "SCT", "CodeMeaning": "Prostate"},
        "FrameLaterality": "U",
    }


# --------------------------------------------------------------------------- generated documents


@pytest.mark.parametrize("kind", ["seg", "pm", "sr"])
def test_the_sample_documents_validate_and_name_their_kind(sample_study, kind):
    """qidicom.samples' documents carry dcmqi's schema URLs, as dcmqi's examples do."""
    document = copy.deepcopy(getattr(sample_study, f"{kind}_metadata"))
    assert metadata.kind_of(document) == kind
    assert metadata.validate(document, kind) == []
    assert metadata.check(document, kind, name=f"{kind}.json") is document
    # Read back from the JSON text the way a user's file arrives.
    assert metadata.load_metadata(json.dumps(document).encode(), kind, name=f"{kind}.json") == document


def test_nan_measurement_is_accepted_but_other_words_are_not_in_a_generated_report(sample_study):
    document = copy.deepcopy(sample_study.sr_metadata)
    item = document["Measurements"][0]["measurementItems"][0]
    item["value"] = "nan"
    assert metadata.validate(document, "sr") == []
    item["value"] = "n/a"
    assert metadata.validate(document, "sr") == [
        "Measurements[0].measurementItems[0].value: 'n/a' is not a valid measurement value "
        '(a decimal string of at most 16 characters, or "nan")'
    ]


# --------------------------------------------------------------------------- dcmqi's examples


@needs_dcmqi_examples
@pytest.mark.parametrize("path", _examples("seg-example*.json") + _examples("bmmr-example.json"), ids=lambda p: p.name)
def test_every_dcmqi_seg_example_validates_unchanged(path):
    document = metadata.load_json(path)
    assert metadata.validate(document, "seg") == []
    assert metadata.check(document, "seg", name=path.name) is document


@needs_dcmqi_examples
@pytest.mark.parametrize("path", _examples("pm-example*.json"), ids=lambda p: p.name)
def test_every_dcmqi_pm_example_validates_unchanged(path):
    assert metadata.validate(metadata.load_json(path), "pm") == []


@needs_dcmqi_examples
@pytest.mark.parametrize("path", _examples("sr-tid1500-*.json"), ids=lambda p: p.name)
def test_every_dcmqi_sr_example_validates_unchanged(path):
    assert metadata.validate(metadata.load_json(path), "sr") == []


@needs_dcmqi_examples
def test_the_examples_are_all_there():
    # Guards the parametrised tests above against silently running on nothing.
    assert len(_examples("seg-example*.json")) >= 9
    assert len(_examples("pm-example*.json")) >= 3
    assert len(_examples("sr-tid1500-*.json")) >= 4


@needs_dcmqi_examples
def test_bmmr_example_is_a_segmentation_document():
    document = metadata.load_json(EXAMPLES / "bmmr-example.json")
    assert metadata.kind_of(document) == "seg"


@needs_dcmqi_examples
def test_nan_measurement_is_accepted_but_other_words_are_not():
    document = metadata.load_json(EXAMPLES / "sr-tid1500-example-nan.json")
    assert document["Measurements"][0]["measurementItems"][0]["value"] == "nan"
    assert metadata.validate(document, "sr") == []
    document["Measurements"][0]["measurementItems"][0]["value"] = "n/a"
    assert metadata.validate(document, "sr") == [
        "Measurements[0].measurementItems[0].value: 'n/a' is not a valid measurement value "
        '(a decimal string of at most 16 characters, or "nan")'
    ]


@pytest.mark.skipif(not (DCMQI / "segContexts").is_dir(), reason="dcmqi code lists not present")
@pytest.mark.parametrize(
    "path",
    sorted((DCMQI / "segContexts").glob("*.json")) + sorted((DCMQI / "pmContexts").glob("*.json"))
    if DCMQI.is_dir()
    else [],
    ids=lambda p: p.name,
)
def test_dcmqi_code_lists_fit_our_code_list_schemas(path):
    document = metadata.load_json(path)
    kind = metadata.kind_of(document)
    assert kind in ("segment-context", "anatomic-context", "pm-context")
    assert metadata.validate(document, kind) == []


# --------------------------------------------------------------------------- the schemas


def test_schemas_are_valid_draft4_and_carry_our_ids():
    for kind, filename in metadata.SCHEMA_FILES.items():
        schema = metadata.load_schema(kind)
        jsonschema.Draft4Validator.check_schema(schema)
        assert schema["id"] == metadata.SCHEMA_IDS[kind] == metadata.SCHEMA_BASE + filename + "#"
        assert schema["$schema"] == "http://json-schema.org/draft-04/schema#"
    for library in ("common-schema.json", "sr-common-schema.json", "segment-context-common-schema.json"):
        jsonschema.Draft4Validator.check_schema(metadata.load_schema(library))


def test_schema_path_points_at_a_readable_file():
    path = metadata.schema_path("seg")
    assert path.name == "seg-schema.json"
    assert json.loads(path.read_text(encoding="utf-8"))["id"] == metadata.SCHEMA_IDS["seg"]


def test_load_schema_returns_a_copy():
    metadata.load_schema("seg")["properties"].clear()
    assert "segmentAttributes" in metadata.load_schema("seg")["properties"]


def test_every_ref_resolves_to_a_bundled_file():
    refs: list[tuple[str, str]] = []

    def collect(node, filename):
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append((filename, node["$ref"]))
            for value in node.values():
                collect(value, filename)
        elif isinstance(node, list):
            for value in node:
                collect(value, filename)

    files = list(metadata.SCHEMA_FILES.values()) + ["common-schema.json", "sr-common-schema.json", "segment-context-common-schema.json"]
    for filename in files:
        collect(metadata.load_schema(filename), filename)
    assert refs
    for filename, ref in refs:
        target = ref.split("#")[0] or filename
        assert target in files, f"{filename}: $ref {ref} leaves the bundled schemas"
        schema = metadata.load_schema(filename)
        resolver = metadata._BundledOnlyResolver.from_schema(schema, store=metadata._store(), id_of=metadata._draft4_id)
        resolver.resolve(ref)  # raises if the file or the fragment is wrong


def test_validation_never_touches_the_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)

    document = seg_doc()
    assert document["@schema"].startswith("https://raw.githubusercontent.com/qiicr/dcmqi/")
    assert metadata.validate(document, "seg") == []
    bad = seg_doc()
    del bad["segmentAttributes"][0][0]["SegmentedPropertyCategoryCodeSequence"]["CodeMeaning"]
    assert len(metadata.validate(bad, "seg")) == 1
    sr = {"observerContext": {"ObserverType": "DEVICE", "DeviceObserverUID": "1.2.3"}, "Measurements": [{}]}
    assert metadata.validate(sr, "sr") == []
    assert metadata.validate(pm_doc(), "pm") == []

    # A schema that points at dcmqi's published URL resolves to our bundled copy.
    via_dcmqi_url = {"$ref": metadata.DCMQI_SCHEMA_IDS["seg"]}
    resolver = metadata._BundledOnlyResolver.from_schema(via_dcmqi_url, store=metadata._store())
    validator = jsonschema.Draft4Validator(via_dcmqi_url, resolver=resolver)
    assert validator.is_valid(seg_doc())
    assert not validator.is_valid(bad)


def test_an_unbundled_schema_url_is_an_error_not_a_download(monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("network access attempted"))
    schema = {"$ref": "https://example.org/elsewhere.json#/definitions/x"}
    resolver = metadata._BundledOnlyResolver.from_schema(schema, store=metadata._store())
    with pytest.raises(jsonschema.RefResolutionError, match="not bundled"):
        jsonschema.Draft4Validator(schema, resolver=resolver).validate({})


# --------------------------------------------------------------------------- problems and paths


def test_missing_code_value_in_second_segment_is_reported_with_its_path():
    document = seg_doc()
    del document["segmentAttributes"][0][1]["SegmentedPropertyTypeCodeSequence"]["CodeValue"]
    assert metadata.validate(document, "seg") == [
        "segmentAttributes[0][1].SegmentedPropertyTypeCodeSequence: 'CodeValue' is a required property"
    ]


def test_all_problems_are_reported_at_once_in_document_order():
    document = seg_doc()
    document["SeriesNumber"] = "three"
    first, second = document["segmentAttributes"][0]
    first["SegmentAlgorithmType"] = "GUESSED"
    second["SegmentLable"] = "typo"
    del second["SegmentedPropertyTypeCodeSequence"]["CodeValue"]
    second["recommendedDisplayRGBValue"] = [0, 0, 256]

    assert metadata.validate(document, "seg") == [
        "SeriesNumber: 'three' is not a valid IS (integer string)",
        "segmentAttributes[0][0].SegmentAlgorithmType: 'GUESSED' is not one of ['MANUAL', 'SEMIAUTOMATIC', 'AUTOMATIC']",
        "segmentAttributes[0][1].SegmentedPropertyTypeCodeSequence: 'CodeValue' is a required property",
        "segmentAttributes[0][1].recommendedDisplayRGBValue[2]: 256 is greater than the maximum of 255",
        "segmentAttributes[0][1].SegmentLable: unknown property (did you mean 'SegmentLabel'?)",
    ]


def test_check_raises_with_every_problem_and_the_file_name():
    document = seg_doc()
    document["BodyPartExamined"] = "ABDOMEN_AND_PELVIS"  # 18 characters; CS allows 16
    document["segmentAttributes"][0][0]["SegmentAlgorithmType"] = "manual"
    with pytest.raises(MetadataError) as caught:
        metadata.check(document, "seg", name="seg.json")
    error = caught.value
    assert error.problems == [
        "segmentAttributes[0][0].SegmentAlgorithmType: 'manual' is not one of ['MANUAL', 'SEMIAUTOMATIC', 'AUTOMATIC']",
        "BodyPartExamined: 'ABDOMEN_AND_PELVIS' is too long for CS (code string): 18 characters, at most 16 allowed",
    ]
    message = str(error)
    assert message.startswith("seg.json: 2 problems in the Segmentation metadata:")
    for problem in error.problems:
        assert problem in message


def test_missing_top_level_field_is_reported_at_the_root():
    assert metadata.validate({"SeriesNumber": "1"}, "seg") == ["(root): 'segmentAttributes' is a required property"]
    assert metadata.validate({}, "pm") == [
        "(root): 'QuantityValueCode' is a required property",
        "(root): 'MeasurementUnitsCode' is a required property",
        "(root): 'DerivationCode' is a required property",
        "(root): 'AnatomicRegionSequence' is a required property",
        "(root): 'FrameLaterality' is a required property",
    ]


def test_a_document_that_is_not_an_object():
    assert metadata.validate([], "seg") == ["(root): [] is not of type 'object' (got an array)"]


def test_long_lo_and_empty_lists():
    document = seg_doc()
    document["SeriesDescription"] = "x" * 65
    document["segmentAttributes"].append([])
    assert metadata.validate(document, "seg") == [
        "SeriesDescription: 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx... is too long "
        "for LO (long string): 65 characters, at most 64 allowed",
        "segmentAttributes[1]: must not be empty (at least 1 item needed)",
    ]


def test_fields_dcmqi_ignores_but_its_schema_allows_are_accepted():
    document = seg_doc()
    document["ContentLabel"] = "LIVER_SEG"
    document["ContentDescription"] = "Liver and spleen"
    document["segmentAttributesFileMapping"] = ["organs.nrrd"]
    document["segmentAttributes"][0][0]["RecommendedDisplayCIELabValue"] = [43802, 39158, 37479]
    assert metadata.validate(document, "seg") == []
    document["ContentLabel"] = "LIVER_SEGMENTATION"  # 18 > 16
    document["segmentAttributes"][0][0]["RecommendedDisplayCIELabValue"] = [1, 2]
    assert metadata.validate(document, "seg") == [  # in document order: ContentLabel was added last
        "segmentAttributes[0][0].RecommendedDisplayCIELabValue: has 2 items, at least 3 needed",
        "ContentLabel: 'LIVER_SEGMENTATION' is too long for CS (code string): 18 characters, at most 16 allowed",
    ]


def test_pm_reader_fields_are_accepted():
    document = pm_doc()
    document.update(
        RealWorldValueSlope="0.0001220703125",
        RealWorldValueIntercept="-1024",
        DerivedPixelContrast="ADC",
        ContentLabel="ADC",
        SourceImageDiffusionBValues=["0", "1400"],
    )
    assert metadata.validate(document, "pm") == []
    document["FrameLaterality"] = "X"
    document["RealWorldValueSlope"] = "one"
    assert metadata.validate(document, "pm") == [
        "FrameLaterality: 'X' is not one of ['R', 'L', 'B', 'U']",
        "RealWorldValueSlope: 'one' is not a valid FD (floating point number as text)",
    ]


def test_observer_context_errors_explain_the_closest_alternative():
    sr = {"observerContext": {"ObserverType": "PERSON"}, "Measurements": [{}]}
    assert metadata.validate(sr, "sr") == ["observerContext: 'PersonObserverName' is a required property"]
    sr["observerContext"] = {"ObserverType": "ROBOT"}
    assert metadata.validate(sr, "sr") == ["observerContext.ObserverType: 'ROBOT' is not one of ['PERSON', 'DEVICE']"]
    sr["observerContext"] = {"ObserverType": "DEVICE", "PersonObserverName": "Doe^John"}
    assert metadata.validate(sr, "sr") == [
        "observerContext.PersonObserverName: unknown property (did you mean 'DeviceObserverName'?)"
    ]


def test_qualitative_value_is_a_code_or_a_text():
    def sr_with(value) -> dict:
        code = {"CodeValue": "123", "CodingSchemeDesignator": "99TEST", "CodeMeaning": "Tremendousness"}
        evaluation = {"conceptCode": code, "conceptValue": value}
        return {
            "observerContext": {"ObserverType": "PERSON", "PersonObserverName": "Reader1"},
            "Measurements": [{"qualitativeEvaluations": [evaluation]}],
        }

    assert metadata.validate(sr_with("Bad"), "sr") == []
    where = "Measurements[0].qualitativeEvaluations[0].conceptValue"
    assert metadata.validate(sr_with({"CodeValue": "1", "CodingSchemeDesignator": "99X"}), "sr") == [
        f"{where}: 'CodeMeaning' is a required property"
    ]
    assert metadata.validate(sr_with(5), "sr") == [f"{where}: 5 is not of type 'object' or 'string' (got a number)"]
    assert metadata.validate(sr_with([]), "sr") == [f"{where}: [] is not of type 'object' or 'string' (got an array)"]


def test_schema_of_another_kind_is_reported():
    document = seg_doc()
    document["@schema"] = metadata.SCHEMA_IDS["pm"]
    assert metadata.validate(document, "seg") == [
        "@schema: names the Parametric Map schema, but Segmentation metadata was expected"
    ]
    document["@schema"] = metadata.SCHEMA_IDS["seg"]
    assert metadata.validate(document, "seg") == []


def test_kind_of_reads_our_and_dcmqi_schema_urls():
    assert metadata.kind_of({"@schema": metadata.SCHEMA_IDS["sr"]}) == "sr"
    assert metadata.kind_of({"@schema": metadata.DCMQI_SCHEMA_IDS["pm"]}) == "pm"
    assert metadata.kind_of({"@schema": "https://example.org/other.json"}) is None
    assert metadata.kind_of({}) is None


def test_unknown_kind_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown metadata kind"):
        metadata.validate({}, "rtstruct")


def test_format_path():
    assert metadata.format_path([]) == "(root)"
    assert metadata.format_path(["segmentAttributes", 0, 1, "labelID"]) == "segmentAttributes[0][1].labelID"
    assert metadata.format_path(["@schema"]) == "@schema"
    assert metadata.format_path(["a", "3dSlicerLabel"]) == 'a["3dSlicerLabel"]'


# --------------------------------------------------------------------------- loading


SEG_TEXT = json.dumps(seg_doc(), indent=2)


def test_load_from_a_path(tmp_path):
    path = tmp_path / "seg.json"
    path.write_text(SEG_TEXT, encoding="utf-8")
    assert metadata.load_json(path) == seg_doc()
    assert metadata.load_json(str(path)) == seg_doc()


def test_load_from_bytes_text_file_objects_and_pairs():
    assert metadata.load_json(SEG_TEXT.encode()) == seg_doc()
    assert metadata.load_json(SEG_TEXT) == seg_doc()
    assert metadata.load_json(io.BytesIO(SEG_TEXT.encode())) == seg_doc()
    assert metadata.load_json(io.StringIO(SEG_TEXT)) == seg_doc()
    assert metadata.load_json(("seg.json", SEG_TEXT.encode())) == seg_doc()
    assert metadata.load_json(("seg.json", SEG_TEXT)) == seg_doc()
    assert metadata.load_json(b"\xef\xbb\xbf" + SEG_TEXT.encode()) == seg_doc()  # UTF-8 with BOM


def test_invalid_json_names_file_line_and_column():
    text = SEG_TEXT.replace('"SeriesNumber": "300",', '"SeriesNumber": "300"', 1)
    line = next(n for n, l in enumerate(text.splitlines(), 1) if '"InstanceNumber"' in l)
    with pytest.raises(MetadataError) as caught:
        metadata.load_json(("seg.json", text.encode()))
    message = str(caught.value)
    assert message.startswith(f"seg.json: invalid JSON at line {line}, column 3: Expecting ',' delimiter")
    assert '"InstanceNumber": "1",' in message  # the offending line is quoted
    assert message.rstrip().endswith("^")


def test_invalid_json_in_a_file_names_the_path(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{\n  "SeriesNumber": "1",\n}\n', encoding="utf-8")
    with pytest.raises(MetadataError, match=r"broken\.json: invalid JSON at line 3, column 1: .*closing bracket"):
        metadata.load_json(path)


def test_single_quotes_get_a_hint():
    with pytest.raises(MetadataError, match=r"line 1, column 2: .*double quotes"):
        metadata.load_json("{'SeriesNumber': '1'}", name="seg.json")


def test_top_level_must_be_an_object():
    with pytest.raises(MetadataError, match=r"^list\.json: the metadata must be a JSON object .* not an array$"):
        metadata.load_json(("list.json", b"[1, 2]"))


def test_empty_and_undecodable_input():
    with pytest.raises(MetadataError, match="empty"):
        metadata.load_json(("seg.json", b"  \n"))
    with pytest.raises(MetadataError, match=r"seg\.json: not readable as UTF-8 text"):
        metadata.load_json(("seg.json", b'{"a": "\xc3\x28"}'))


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match=r"absent\.json: file not found"):
        metadata.load_json(tmp_path / "absent.json")


def test_load_metadata_loads_and_checks_naming_the_file(tmp_path):
    path = tmp_path / "pm.json"
    path.write_text(json.dumps(pm_doc()), encoding="utf-8")
    assert metadata.load_metadata(path, "pm") == pm_doc()
    broken = pm_doc()
    del broken["FrameLaterality"]
    with pytest.raises(MetadataError) as caught:
        metadata.load_metadata(("upload.json", json.dumps(broken).encode()), "pm")
    assert str(caught.value).startswith("upload.json: 1 problem in the Parametric Map metadata:")
    assert caught.value.problems == ["(root): 'FrameLaterality' is a required property"]


def test_validate_does_not_modify_the_document():
    document = seg_doc()
    before = copy.deepcopy(document)
    metadata.validate(document, "seg")
    assert document == before


# --------------------------------------------------------------------------- bundled code lists


@pytest.mark.parametrize("name", sorted(metadata.CODE_LISTS))
def test_bundled_code_lists_validate_and_stay_small(name):
    document = metadata.load_code_list(name)
    kind = metadata.kind_of(document)
    assert kind in ("segment-context", "anatomic-context", "pm-context")
    assert metadata.validate(document, kind) == []
    path = metadata.schemas_dir().joinpath("codelists", metadata.CODE_LISTS[name])
    assert len(path.read_bytes()) < 1_000_000


def test_segmentation_code_list_offers_liver_under_anatomical_structure():
    categories = metadata.load_code_list("segmentation")["SegmentationCodes"]["Category"]
    anatomical = next(c for c in categories if c["CodeMeaning"] == "Anatomical Structure")
    assert (anatomical["CodeValue"], anatomical["CodingSchemeDesignator"]) == ("91723000", "SCT")
    liver = next(t for t in anatomical["Type"] if t["CodeMeaning"] == "Liver")
    assert (liver["CodeValue"], liver["CodingSchemeDesignator"]) == ("10200004", "SCT")
    tissue = next(c for c in categories if c["CodeMeaning"] == "Tissue")
    assert any(t["CodeMeaning"] == "Fat" for t in tissue["Type"])
    # Every entry is usable as-is in a document's code sequence.
    document = seg_doc()
    entry = {k: liver[k] for k in ("CodeValue", "CodingSchemeDesignator", "CodeMeaning")}
    document["segmentAttributes"][0][0]["SegmentedPropertyTypeCodeSequence"] = entry
    assert metadata.validate(document, "seg") == []


def test_anatomic_code_list_has_common_regions_and_laterality():
    codes = metadata.load_code_list("anatomic")["AnatomicCodes"]
    assert any(r["CodeMeaning"] == "Prostate" for r in codes["AnatomicRegion"])
    assert {"Left", "Right"} <= {m["CodeMeaning"] for m in codes["Modifier"]}


def test_code_lists_are_what_the_generator_makes():
    import importlib.util

    import pydicom

    script = Path(__file__).resolve().parents[1] / "schemas" / "tools" / "make_code_lists.py"
    if not script.is_file():
        pytest.skip("generator script not in this installation")
    spec = importlib.util.spec_from_file_location("make_code_lists", script)
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    committed = metadata.load_code_list("segmentation")
    if f"pydicom {pydicom.__version__}:" not in committed["source"]:
        pytest.skip(f"code lists were generated with another pydicom than {pydicom.__version__}")
    assert generator.segmentation_codes() == committed
    assert generator.anatomic_codes() == metadata.load_code_list("anatomic")
    assert generator.pm_codes() == metadata.load_code_list("pm")


def test_label_described_twice_and_file_mapping_mismatch_are_reported():
    document = seg_doc()
    document["segmentAttributes"][0][1]["labelID"] = 1
    document["segmentAttributesFileMapping"] = ["organs.nrrd", "extra.nrrd"]
    assert metadata.validate(document, "seg") == [
        "segmentAttributes[0][1].labelID: label 1 is already described by segmentAttributes[0][0] "
        "(each label of a file needs exactly one entry)",
        "segmentAttributesFileMapping: names 2 files but segmentAttributes describes 1 file; "
        "they must match one to one",
    ]
    document = seg_doc()
    document["segmentAttributes"].append([dict(document["segmentAttributes"][0][0])])
    assert metadata.validate(document, "seg") == []  # the same label value in another file is fine


def test_background_label_is_not_a_segment():
    document = seg_doc()
    document["segmentAttributes"][0][0]["labelID"] = 0
    assert metadata.validate(document, "seg") == ["segmentAttributes[0][0].labelID: 0 is less than the minimum of 1"]
