"""SEG behaviours a dcmqi user relies on: segment numbering with file mappings and label IDs,
one label map per LABELMAP SEG, dcmqi's output names and metadata, Patient Orientation and
palettes on LABELMAP SEGs, and clear messages for inconsistent or non-finite input.

Each behaviour runs on generated data (tests/synthetic.py); where dcmqi has its own file for
it, a second test runs the same behaviour on that file (skipping without ../shared).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import nrrd
import numpy as np
import pydicom
import pytest

import synthetic
from conftest import DCMQI_EXAMPLES, UNKNOWN_IOD, dciodvfy_errors
from qidicom.cli import main
from qidicom.errors import InputError
from qidicom.readers import read_image
from qidicom.seg import binary_to_labelmap, read_segmentation, segmentation_from_files, segmentation_to_files


def segment(label_id: int, label: str, code: str = "10200004", meaning: str = "Liver", **extra) -> dict:
    entry = {
        "labelID": label_id,
        "SegmentLabel": label,
        "SegmentedPropertyCategoryCodeSequence": {"CodeValue": "85756007", "CodingSchemeDesignator": "SCT", "CodeMeaning": "Tissue"},
        "SegmentedPropertyTypeCodeSequence": {"CodeValue": code, "CodingSchemeDesignator": "SCT", "CodeMeaning": meaning},
        "SegmentAlgorithmType": "MANUAL",
    }
    entry.update(extra)
    return entry


def seg_metadata(*groups: list[dict], **top) -> dict:
    document = {"ContentCreatorName": "Doe^Jane", "SeriesDescription": "Test SEG", "SeriesNumber": "300", "InstanceNumber": "1"}
    document.update(top)
    document["segmentAttributes"] = [list(group) for group in groups]
    return document


def save(datasets, array, directory: Path, name: str, affine=None) -> Path:
    affine = synthetic.series_affine(datasets) if affine is None else affine
    if name.endswith(".nrrd"):
        return synthetic.save_nrrd(array, affine, directory / name)
    return synthetic.save_nifti(array, affine, directory / name)


def cli(*args) -> int:
    return main([str(a) for a in args])


def export(seg: Path, out: Path, *options) -> dict[str, Path]:
    """segimage2itkimage through the command line; the files it wrote, by name."""
    assert cli("segimage2itkimage", "--inputDICOM", seg, "--outputDirectory", out, *options) == 0
    return {p.name: p for p in sorted(out.iterdir())}


def written(result, path: Path) -> Path:
    path.write_bytes(result.data)
    return path


@pytest.fixture
def ct(tmp_path):
    """A six-slice synthetic CT on disk."""
    datasets = synthetic.make_ct_series(slices=6)
    synthetic.write_series(datasets, tmp_path / "ct")
    return tmp_path / "ct", datasets


def dcmqi_file(shared: Path, name: str) -> Path:
    return shared / "data" / "dcmqi" / "segmentations" / name


# --------------------------------------------------------------------------- 3. file mapping order


def test_segment_numbers_follow_the_metadata_order_not_the_file_order(ct, tmp_path):
    directory, datasets = ct
    shape = synthetic.grid_shape(datasets)
    masks = {
        "liver": synthetic.sphere_labels(shape, [((10, 10, 2), 4, 1)]),
        "spleen": synthetic.sphere_labels(shape, [((30, 20, 3), 4, 1)]),
        "kidney": synthetic.sphere_labels(shape, [((20, 24, 4), 3, 1)]),
    }
    paths = {name: save(datasets, mask, tmp_path, f"{name}.nrrd") for name, mask in masks.items()}
    metadata = seg_metadata(
        [segment(1, "Liver")], [segment(1, "Spleen", "78961009", "Spleen")], [segment(1, "Kidney", "64033007", "Kidney")],
        segmentAttributesFileMapping=["liver.nrrd", "spleen.nrrd", "kidney.nrrd"],
    )
    result = segmentation_from_files([paths["kidney"], paths["liver"], paths["spleen"]], metadata, directory)

    assert [(int(s.SegmentNumber), s.SegmentLabel) for s in result.dataset.SegmentSequence] == [
        (1, "Liver"), (2, "Spleen"), (3, "Kidney")]
    seg = written(result, tmp_path / "seg.dcm")
    assert dciodvfy_errors(seg) == []
    files = export(seg, tmp_path / "out", "--prefix", "p")
    for number, name in enumerate(("liver", "spleen", "kidney"), start=1):
        back = read_image(files[f"p-{number}.nrrd"]).array
        assert np.array_equal(back, masks[name] * number), name


def test_within_one_file_segments_are_numbered_by_ascending_label_id(ct, tmp_path):
    """dcmqi 1.5.7 numbers the segments of one file by label value, not by the order of the
    group's entries: entries listed 3, 1, 2 still give segment 1 = label 1."""
    directory, datasets = ct
    labels = synthetic.sphere_labels(synthetic.grid_shape(datasets), [((10, 10, 2), 4, 1), ((30, 20, 3), 4, 2), ((20, 24, 4), 3, 3)])
    path = save(datasets, labels, tmp_path, "three.nrrd")
    metadata = seg_metadata([segment(3, "Kidney", "64033007", "Kidney"), segment(1, "Liver"), segment(2, "Spleen", "78961009", "Spleen")])
    result = segmentation_from_files([path], metadata, directory)
    assert [(int(s.SegmentNumber), s.SegmentLabel) for s in result.dataset.SegmentSequence] == [
        (1, "Liver"), (2, "Spleen"), (3, "Kidney")]
    for item in read_segmentation(result.data).segments:
        assert np.array_equal(item.array, labels == item.number)


def test_dcmqi_reordered_files_read_back_liver_spine_heart(shared, tmp_path):
    """dcmqi's makeSEG_multiple_segment_files_reordered: heart, liver, spine files with a
    mapping listing liver, spine, heart; read back, -1 is liver, -2 spine, -3 heart."""
    data = shared / "data" / "dcmqi" / "segmentations"
    seg = tmp_path / "reordered.dcm"
    assert cli("itkimage2segimage", "--inputMetadata", DCMQI_EXAMPLES / "seg-example_multiple_segments_reordered.json",
               "--inputImageList", f"{data / 'heart_seg.nrrd'},{data / 'liver_seg.nrrd'},{data / 'spine_seg.nrrd'}",
               "--inputDICOMList", ",".join(str(data / "ct-3slice" / f"0{n}.dcm") for n in (1, 2, 3)),
               "--outputDICOM", seg) == 0
    assert dciodvfy_errors(seg) == []
    files = export(seg, tmp_path / "out", "--prefix", "reordered")
    assert sorted(files) == ["reordered-1.nrrd", "reordered-2.nrrd", "reordered-3.nrrd", "reordered-meta.json"]
    for number, organ in ((1, "liver"), (2, "spine"), (3, "heart")):
        expected, _ = nrrd.read(str(data / f"{organ}_seg.nrrd"))
        actual, _ = nrrd.read(str(files[f"reordered-{number}.nrrd"]))
        assert np.array_equal(actual, expected), organ
    meta = json.loads(files["reordered-meta.json"].read_text())
    assert [group[0]["SegmentLabel"] for group in meta["segmentAttributes"]] == ["Liver", "Thoracic spine", "Heart"]


# --------------------------------------------------------------------------- 4. label IDs over several files


def partial_overlap_inputs(datasets, directory: Path) -> tuple[list[Path], dict, dict[int, np.ndarray]]:
    """Label IDs 1, 4, 5 in the first file, 2 and 3 in the others; 1, 2 and 3 overlap."""
    shape = synthetic.grid_shape(datasets)
    first = synthetic.sphere_labels(shape, [((10, 10, 2), 4, 1), ((30, 8, 2), 3, 4), ((30, 24, 4), 3, 5)])
    second = synthetic.sphere_labels(shape, [((12, 10, 2), 4, 2)])
    third = synthetic.sphere_labels(shape, [((11, 12, 3), 4, 3)])
    paths = [save(datasets, array, directory, f"part-{n}.nrrd") for n, array in enumerate((first, second, third), start=1)]
    metadata = seg_metadata(
        [segment(1, "GREEN"), segment(4, "LIGHT_BLUE"), segment(5, "DARK_BLUE")], [segment(2, "ORANGE")], [segment(3, "PURPLE")],
    )
    masks = {1: first == 1, 4: first == 4, 5: first == 5, 2: second == 2, 3: third == 3}
    return paths, metadata, masks


def test_label_ids_one_to_n_across_files_are_the_segment_numbers_of_a_binary_seg(ct, tmp_path):
    directory, datasets = ct
    paths, metadata, masks = partial_overlap_inputs(datasets, tmp_path)
    result = segmentation_from_files(paths, metadata, directory, use_label_id_as_segment_number=True)

    assert [(int(s.SegmentNumber), s.SegmentLabel) for s in result.dataset.SegmentSequence] == [
        (1, "GREEN"), (2, "ORANGE"), (3, "PURPLE"), (4, "LIGHT_BLUE"), (5, "DARK_BLUE")]
    assert dciodvfy_errors(written(result, tmp_path / "ids.dcm")) == []
    contents = read_segmentation(result.data)
    assert (masks[1] & masks[2]).any()  # the overlap is real
    for item in contents.segments:
        assert np.array_equal(item.array, masks[item.number]), item.number
    # Merged export groups them as dcmqi's partial_overlaps test expects.
    files = {f.name: f.data for f in segmentation_to_files(result.data, prefix="m", merge_segments=True)}
    meta = json.loads(files["m-meta.json"])
    assert [[s["labelID"] for s in group] for group in meta["segmentAttributes"]] == [[1, 4, 5], [2], [3]]


def test_label_ids_with_a_gap_still_cannot_number_a_binary_seg(ct, tmp_path):
    directory, datasets = ct
    paths, metadata, _ = partial_overlap_inputs(datasets, tmp_path)
    metadata["segmentAttributes"][0][2]["labelID"] = 6
    labels = read_image(paths[0]).array
    save(datasets, np.where(labels == 5, 6, labels).astype(labels.dtype), tmp_path, "part-1.nrrd")
    with pytest.raises(InputError, match=r"label IDs 1, 2, 3, 4, 6 are not 1, 2, 3, \.\.\.; a binary SEG must number"):
        segmentation_from_files(paths, metadata, directory, use_label_id_as_segment_number=True)


def test_dcmqi_partial_overlaps_with_label_ids_as_segment_numbers(shared, tmp_path):
    data = shared / "data" / "dcmqi" / "segmentations"
    seg = tmp_path / "partial_overlaps.dcm"
    assert cli("itkimage2segimage", "--inputMetadata", DCMQI_EXAMPLES / "seg-example_partial_overlaps.json",
               "--inputImageList", ",".join(str(data / f"partial_overlaps-{n}.nrrd") for n in (1, 2, 3)),
               "--inputDICOMList", ",".join(str(data / "ct-3slice" / f"0{n}.dcm") for n in (1, 2, 3)),
               "--outputDICOM", seg, "--useLabelIDAsSegmentNumber") == 0
    assert dciodvfy_errors(seg) == []
    assert [int(s.SegmentNumber) for s in pydicom.dcmread(seg).SegmentSequence] == [1, 2, 3, 4, 5]
    files = export(seg, tmp_path / "out", "--prefix", "po", "--mergeSegments")
    for n in (1, 2, 3):
        expected, _ = nrrd.read(str(data / f"partial_overlaps-{n}.nrrd"))
        actual, _ = nrrd.read(str(files[f"po-{n}.nrrd"]))
        assert np.array_equal(actual, expected), n
    expected_meta = json.loads((DCMQI_EXAMPLES / "seg-example_partial_overlaps.json").read_text())
    meta = json.loads(files["po-meta.json"].read_text())
    labels = lambda doc: [[(s["labelID"], s["SegmentLabel"]) for s in g] for g in doc["segmentAttributes"]]  # noqa: E731
    assert labels(meta) == labels(expected_meta)
    assert meta["BodyPartExamined"] == expected_meta["BodyPartExamined"] == ""


# --------------------------------------------------------------------------- 5. one label map per LABELMAP SEG


def test_labelmap_seg_reads_back_as_one_label_map_with_all_segments(ct, tmp_path):
    directory, datasets = ct
    labels = synthetic.sphere_labels(synthetic.grid_shape(datasets), [((10, 10, 2), 4, 1), ((30, 20, 3), 4, 2), ((20, 24, 4), 3, 5)])
    path = save(datasets, labels, tmp_path, "labels.nii.gz")
    metadata = seg_metadata([segment(1, "Liver"), segment(2, "Spleen", "78961009", "Spleen"), segment(5, "Kidney", "64033007", "Kidney")])
    result = segmentation_from_files([path], metadata, directory, segmentation_type="labelmap", use_label_id_as_segment_number=True)
    seg = written(result, tmp_path / "labelmap.dcm")

    files = export(seg, tmp_path / "out", "--prefix", "lm")
    assert sorted(files) == ["lm-1.nrrd", "lm-meta.json"]
    assert np.array_equal(read_image(files["lm-1.nrrd"]).array, labels)
    meta = json.loads(files["lm-meta.json"].read_text())
    assert meta["segmentAttributesFileMapping"] == ["lm-1.nrrd"]
    assert [[s["labelID"] for s in group] for group in meta["segmentAttributes"]] == [[1, 2, 5]]
    # --mergeSegments changes nothing: a label map is one group already.
    merged = export(seg, tmp_path / "merged", "--prefix", "lm", "--mergeSegments")
    assert sorted(merged) == sorted(files)
    assert json.loads(merged["lm-meta.json"].read_text())["segmentAttributes"] == meta["segmentAttributes"]


def sparse_labelmap(ct, tmp_path) -> tuple[pydicom.Dataset, np.ndarray]:
    """A LABELMAP SEG whose middle slices are empty, so they have no frame."""
    directory, datasets = ct
    labels = np.zeros(synthetic.grid_shape(datasets), np.uint8)
    labels[3:9, 4:12, [0, 1, 4, 5]] = 1
    path = save(datasets, labels, tmp_path, "sparse.nrrd")
    result = segmentation_from_files([path], seg_metadata([segment(1, "Liver")]), directory, segmentation_type="labelmap")
    assert int(result.dataset.NumberOfFrames) == 4
    return pydicom.dcmread(written(result, tmp_path / "sparse.dcm")), labels


def test_missing_frames_of_a_labelmap_are_filled_with_the_pixel_padding_value(ct, tmp_path):
    dataset, labels = sparse_labelmap(ct, tmp_path)
    contents = read_segmentation(dataset)
    assert np.array_equal(contents.label_map, labels)  # qidicom writes Pixel Padding Value 0
    dataset.PixelPaddingValue = 7
    contents = read_segmentation(dataset)
    assert [s.number for s in contents.segments] == [1]  # 7 pads; it is no segment
    assert (contents.label_map[:, :, [2, 3]] == 7).all()
    assert np.array_equal(contents.label_map[:, :, [0, 1, 4, 5]], labels[:, :, [0, 1, 4, 5]])


def test_described_segment_zero_without_padding_is_background_with_warnings(ct, tmp_path):
    dataset, labels = sparse_labelmap(ct, tmp_path)
    background = pydicom.Dataset()
    background.update(dataset.SegmentSequence[0])
    background.SegmentNumber, background.SegmentLabel = 0, "Background"
    dataset.SegmentSequence.insert(0, background)
    del dataset.PixelPaddingValue
    seg = tmp_path / "zero.dcm"
    dataset.save_as(seg)

    warnings: list[str] = []
    files = segmentation_to_files(seg, prefix="z", warnings=warnings)
    assert [f.name for f in files] == ["z-1.nrrd", "z-meta.json"]
    meta = json.loads(files[1].data)
    assert [[s["labelID"] for s in group] for group in meta["segmentAttributes"]] == [[1]]
    assert warnings == [
        "zero.dcm: 2 of 6 slice positions have no frame and there is no Pixel Padding Value; they are filled "
        "with 0, which this SEG also uses for segment 0",
        "zero.dcm: segment 0 ('Background') is described, but 0 is the background of a label map file; its "
        "voxels stay 0 and it has no entry in the metadata",
    ]


def test_highdicom_labelmap_with_its_background_segment_reads_as_one_label_map(ct, tmp_path):
    """highdicom describes pixel value 0 as a "Background" segment 0, and designates it with
    Pixel Padding Value 0: it is background, with no file or metadata entry."""
    import highdicom as hd

    _, datasets = ct
    labels = synthetic.sphere_labels(synthetic.grid_shape(datasets), [((10, 10, 2), 4, 1), ((30, 20, 3), 4, 2)]).astype(np.uint8)
    descriptions = [
        hd.seg.SegmentDescription(n, name, hd.sr.CodedConcept("85756007", "SCT", "Tissue"),
                                  hd.sr.CodedConcept(code, "SCT", name), algorithm_type="MANUAL")
        for n, name, code in ((1, "Liver", "10200004"), (2, "Spleen", "78961009"))
    ]
    seg = hd.seg.Segmentation(
        datasets, np.transpose(labels, (2, 1, 0)), "LABELMAP", descriptions, series_instance_uid=hd.UID(), series_number=5,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="test", manufacturer_model_name="test",
        software_versions="1", device_serial_number="1",
    )
    assert 0 in [int(item.SegmentNumber) for item in seg.SegmentSequence] and seg.PixelPaddingValue == 0
    path = tmp_path / "highdicom.dcm"
    seg.save_as(path)
    files = export(path, tmp_path / "out", "--prefix", "hd")
    assert sorted(files) == ["hd-1.nrrd", "hd-meta.json"]
    assert np.array_equal(read_image(files["hd-1.nrrd"]).array, labels)
    meta = json.loads(files["hd-meta.json"].read_text())
    assert [[(s["labelID"], s["SegmentLabel"]) for s in g] for g in meta["segmentAttributes"]] == [[(1, "Liver"), (2, "Spleen")]]


@pytest.mark.parametrize("variant, fill", [("noppv", 0), ("ppv5", 5)])
def test_dcmqi_sparse_labelmaps(shared, tmp_path, capsys, variant, fill):
    """dcmqi's segimage2itkimage_sparse_labelmap_* tests: slices without a frame are the
    Pixel Padding Value (or 0), encoded slices unchanged, and no file or entry for 0 or 5."""
    files = export(dcmqi_file(shared, f"sparse-labelmap-{variant}.dcm"), tmp_path, "--prefix", f"sparse_{variant}")
    assert sorted(files) == [f"sparse_{variant}-1.nrrd", f"sparse_{variant}-meta.json"]
    expected, expected_header = nrrd.read(str(dcmqi_file(shared, f"sparse_labelmap_{variant}_seg.nrrd")))
    actual, header = nrrd.read(str(files[f"sparse_{variant}-1.nrrd"]))
    assert np.array_equal(actual, expected)
    assert (actual[:, :, 1] == fill).all()
    assert np.allclose(header["space origin"], expected_header["space origin"], atol=1e-3)
    assert np.allclose(header["space directions"], expected_header["space directions"], atol=1e-3)
    meta = json.loads(files[f"sparse_{variant}-meta.json"].read_text())
    assert [[s["labelID"] for s in group] for group in meta["segmentAttributes"]] == [[1]]
    assert "segment 0 ('Background') is described" in capsys.readouterr().err


def test_dcmqi_gapped_labelmap_round_trip_is_one_group(shared, tmp_path):
    """dcmqi's makeNRRD_from_labelmap_gapped and labelmap_gapped_meta_roundtrip."""
    data = shared / "data" / "dcmqi" / "segmentations"
    seg = tmp_path / "gapped.dcm"
    assert cli("itkimage2segimage", "--inputMetadata", DCMQI_EXAMPLES / "seg-example_liver_spine_gapped.json",
               "--inputImageList", f"{data / 'liver_seg.nrrd'},{data / 'spine_seg_label5.nrrd'}",
               "--inputDICOMList", ",".join(str(data / "ct-3slice" / f"0{n}.dcm") for n in (1, 2, 3)),
               "--outputDICOM", seg, "--segmentationType", "labelmap", "--useLabelIDAsSegmentNumber") == 0
    files = export(seg, tmp_path / "out", "--prefix", "gapped")
    assert sorted(files) == ["gapped-1.nrrd", "gapped-meta.json"]
    expected, _ = nrrd.read(str(data / "liver_spine_gapped_seg.nrrd"))
    actual, _ = nrrd.read(str(files["gapped-1.nrrd"]))
    assert np.array_equal(actual, expected)
    expected_meta = json.loads((DCMQI_EXAMPLES / "seg-example_liver_spine_gapped_merged.json").read_text())
    meta = json.loads(files["gapped-meta.json"].read_text())
    for key, value in expected_meta.items():
        if key != "segmentAttributes":
            assert meta[key] == value, key
    labels = lambda doc: [[(s["labelID"], s["SegmentLabel"]) for s in g] for g in doc["segmentAttributes"]]  # noqa: E731
    assert labels(meta) == labels(expected_meta) == [[(1, "Liver"), (5, "Thoracic spine")]]


# --------------------------------------------------------------------------- 6. NIfTI names


@pytest.mark.parametrize("output_type", ["nii", "nifti"])
def test_nii_and_nifti_write_gzipped_nii_gz_named_as_dcmqi_does(ct, tmp_path, output_type):
    directory, datasets = ct
    labels = synthetic.sphere_labels(synthetic.grid_shape(datasets), [((10, 10, 2), 4, 1), ((30, 20, 3), 4, 2)])
    path = save(datasets, labels, tmp_path, "labels.nrrd")
    metadata = seg_metadata([segment(1, "Liver"), segment(2, "Spleen", "78961009", "Spleen")])
    seg = written(segmentation_from_files([path], metadata, directory), tmp_path / "seg.dcm")

    unprefixed = export(seg, tmp_path / "plain", "--outputType", output_type)
    assert sorted(unprefixed) == ["1.nii.gz", "2.nii.gz", "meta.json"]
    prefixed = export(seg, tmp_path / "prefixed", "--outputType", output_type, "--prefix", "x")
    assert sorted(prefixed) == ["x-1.nii.gz", "x-2.nii.gz", "x-meta.json"]
    assert prefixed["x-2.nii.gz"].read_bytes()[:2] == b"\x1f\x8b"
    gzip.decompress(prefixed["x-2.nii.gz"].read_bytes())  # a complete gzip stream
    volume = read_image(prefixed["x-2.nii.gz"])
    assert np.array_equal(volume.array, (labels == 2) * 2)
    assert np.allclose(volume.affine, synthetic.series_affine(datasets), atol=1e-4)
    meta = json.loads(prefixed["x-meta.json"].read_text())
    assert meta["segmentAttributesFileMapping"] == ["x-1.nii.gz", "x-2.nii.gz"]


def test_dcmqi_liver_seg_as_nii(shared, tmp_path):
    files = export(dcmqi_file(shared, "liver.dcm"), tmp_path, "--outputType", "nii")
    assert sorted(files) == ["1.nii.gz", "meta.json"]
    expected = read_image(dcmqi_file(shared, "liver_seg.nrrd"))
    actual = read_image(files["1.nii.gz"])
    assert np.array_equal(actual.array, expected.array)
    assert np.allclose(actual.affine, expected.affine, atol=1e-3)


# --------------------------------------------------------------------------- 7. BodyPartExamined


def test_reader_meta_carries_body_part_examined_empty_when_absent(ct, tmp_path):
    directory, datasets = ct
    path = save(datasets, synthetic.sphere_labels(synthetic.grid_shape(datasets), [((10, 10, 2), 4, 1)]), tmp_path, "l.nrrd")
    without = segmentation_from_files([path], seg_metadata([segment(1, "Liver")]), directory)
    assert "BodyPartExamined" not in without.dataset
    assert read_segmentation(without.data).metadata["BodyPartExamined"] == ""
    with_part = segmentation_from_files([path], seg_metadata([segment(1, "Liver")], BodyPartExamined="ABDOMEN"), directory)
    assert read_segmentation(with_part.data).metadata["BodyPartExamined"] == "ABDOMEN"


def test_reader_meta_has_dcmqis_always_present_fields_empty_when_absent(ct, tmp_path):
    directory, datasets = ct
    path = save(datasets, synthetic.sphere_labels(synthetic.grid_shape(datasets), [((10, 10, 2), 4, 1)]), tmp_path, "l.nrrd")
    document = seg_metadata([segment(1, "Liver")])
    del document["ContentCreatorName"]
    seg = written(segmentation_from_files([path], document, directory), tmp_path / "seg.dcm")
    meta = json.loads(export(seg, tmp_path / "out")["meta.json"].read_text())
    for keyword in ("ContentCreatorName", "ClinicalTrialSeriesID", "ClinicalTrialTimePointID"):
        assert meta[keyword] == ""
    assert meta["segmentAttributes"][0][0]["SegmentDescription"] == ""


def test_a_clinical_trial_series_id_alone_still_gives_a_conformant_seg(ct, tmp_path):
    """The series ID brings in the Clinical Trial Series module, whose coordinating centre
    name is Type 2: it is written empty when the metadata has none."""
    directory, datasets = ct
    path = save(datasets, synthetic.sphere_labels(synthetic.grid_shape(datasets), [((10, 10, 2), 4, 1)]), tmp_path, "l.nrrd")
    result = segmentation_from_files([path], seg_metadata([segment(1, "Liver")], ClinicalTrialSeriesID="Session1"), directory)
    assert result.dataset.ClinicalTrialCoordinatingCenterName == ""
    assert dciodvfy_errors(written(result, tmp_path / "seg.dcm")) == []


def test_dcmqi_liver_seg_meta_has_an_empty_body_part(shared):
    assert read_segmentation(dcmqi_file(shared, "liver.dcm")).metadata["BodyPartExamined"] == ""


# --------------------------------------------------------------------------- 8. Patient Orientation, palettes


@pytest.mark.parametrize("orientation, expected", [
    ((1, 0, 0, 0, 1, 0), ["L", "P"]),                                     # axial
    ((0, 1, 0, 0, 0, -1), ["P", "F"]),                                    # sagittal
    ((1, 0, 0, 0, np.cos(0.35), np.sin(0.35)), ["L", "PH"]),              # oblique: principal axis first
    ((-1, 0, 0, 0, 0, -1), ["R", "F"]),                                   # coronal, flipped
])
def test_labelmap_seg_carries_patient_orientation_from_its_planes(tmp_path, orientation, expected):
    datasets = synthetic.make_ct_series(slices=4, orientation=orientation)
    synthetic.write_series(datasets, tmp_path / "ct")
    labels = synthetic.sphere_labels(synthetic.grid_shape(datasets), [((10, 10, 2), 4, 1)])
    path = save(datasets, labels, tmp_path, "l.nii.gz")
    result = segmentation_from_files([path], seg_metadata([segment(1, "Liver")]), tmp_path / "ct", segmentation_type="labelmap")
    assert list(result.dataset.PatientOrientation) == expected
    # Debian's dciodvfy predates the Label Map IOD: naming it is all it cannot do.
    assert dciodvfy_errors(written(result, tmp_path / "lm.dcm")) == [UNKNOWN_IOD]


#: What the (older) Segmentation IOD's checks must say of a LABELMAP SEG presented as one:
#: only where the Label Map Segmentation IOD differs from it.
LABELMAP_DIFFERENCES = (
    "Error - Unrecognized enumerated value <LABELMAP> for value 1 of attribute <Segmentation Type>",
    "Error - Unrecognized enumerated value <PALETTE COLOR> for value 1 of attribute <Photometric Interpretation>",
    "Error - Unrecognized enumerated value <0x10> for value 1 of attribute <Bits Allocated>",
    "Error - Unrecognized enumerated value <0x10> for value 1 of attribute <Bits Stored>",
    "Error - Unrecognized enumerated value <0xf> for value 1 of attribute <High Bit>",
    # A label map frame holds every segment, so it names none.
    "Error - Missing attribute Type 1 Required Element=<SegmentIdentificationSequence> Module=<SegmentationMacro>",
)


@pytest.mark.parametrize("options", [{}, {"use_palette": True}, {"use_palette": True, "force_16_bit": True}])
def test_labelmap_seg_differs_from_the_segmentation_iod_only_where_the_label_map_iod_does(ct, tmp_path, options):
    """Debian's dciodvfy does not know the Label Map IOD and checks none of its modules. Shown
    the same file as a (binary/fractional) Segmentation, it checks them all: every error must
    then be one the Label Map IOD allows (no palette LUT error, no missing module attribute
    but the per-frame segment identification a label map has no use for)."""
    result = binary_to_labelmap(colour_binary_seg(ct, tmp_path), **options)
    dataset = result.dataset
    dataset.SOPClassUID = dataset.file_meta.MediaStorageSOPClassUID = pydicom.uid.SegmentationStorage
    path = tmp_path / "as-segmentation.dcm"
    dataset.save_as(path)
    errors = dciodvfy_errors(path)
    assert "Error - Unrecognized enumerated value <LABELMAP> for value 1 of attribute <Segmentation Type>" in errors
    assert [e for e in errors if e not in LABELMAP_DIFFERENCES] == []


def colour_binary_seg(ct, tmp_path) -> bytes:
    directory, datasets = ct
    labels = synthetic.sphere_labels(synthetic.grid_shape(datasets), [((10, 10, 2), 4, 1), ((30, 20, 3), 4, 2)])
    path = save(datasets, labels, tmp_path, "l.nii.gz")
    metadata = seg_metadata([segment(1, "Liver", recommendedDisplayRGBValue=[221, 130, 101]),
                             segment(2, "Spleen", "78961009", "Spleen", recommendedDisplayRGBValue=[30, 60, 90])])
    return segmentation_from_files([path], metadata, directory).data


@pytest.mark.parametrize("force_16_bit, entries", [(False, 256), (True, 65536)])
def test_palette_labelmap_passes_dciodvfy_and_reads_back_its_colours(ct, tmp_path, force_16_bit, entries):
    binary = colour_binary_seg(ct, tmp_path)
    colours = {s.number: s.attributes["recommendedDisplayRGBValue"] for s in read_segmentation(binary).segments}
    result = binary_to_labelmap(binary, use_palette=True, force_16_bit=force_16_bit)
    path = written(result, tmp_path / "palette.dcm")

    assert dciodvfy_errors(path) == [UNKNOWN_IOD]
    dataset = pydicom.dcmread(path)
    assert dataset.PhotometricInterpretation == "PALETTE COLOR"
    assert list(dataset.PatientOrientation) == ["L", "P"]
    descriptor = list(dataset.RedPaletteColorLookupTableDescriptor)
    assert (descriptor[0] or 65536, descriptor[1]) == (entries, 0)  # every storable value has an entry
    contents = read_segmentation(path)
    assert {s.number: s.attributes["recommendedDisplayRGBValue"] for s in contents.segments} == colours
    assert "RecommendedDisplayCIELabValue" not in contents.segments[0].attributes
    assert_dcmtk_renders(path, {0: [0, 0, 0], **colours}, tmp_path)


def assert_dcmtk_renders(path: Path, colours: dict[int, list[int]], tmp_path: Path) -> None:
    """DCMTK (the toolkit dcmqi is built on) draws every frame in the palette's colours."""
    import shutil
    import subprocess

    from PIL import Image

    if shutil.which("dcm2pnm") is None:
        pytest.skip("dcm2pnm (Debian package dcmtk) is not installed")
    stored = pydicom.dcmread(path).pixel_array
    for frame in range(len(stored)):
        image = tmp_path / f"frame{frame + 1}.ppm"
        subprocess.run(["dcm2pnm", "--frame", str(frame + 1), "+on", str(path), str(image)], check=True, capture_output=True)
        rendered = np.asarray(Image.open(image))
        for value in np.unique(stored[frame]):
            assert (rendered[stored[frame] == value] == colours[int(value)]).all(), (frame, value)


def test_palette_of_another_writer_is_read_as_the_standard_lays_it_out(ct, tmp_path):
    """A short palette (entries for 0..2 only, an odd count padded to an even length): 8-bit
    entries are read one per byte in file order, as DCMTK and pydicom read them."""
    dataset = binary_to_labelmap(colour_binary_seg(ct, tmp_path), use_palette=True).dataset
    tables = {"Red": [0, 200, 10], "Green": [0, 100, 20], "Blue": [0, 50, 30]}
    for colour, entries in tables.items():
        setattr(dataset, f"{colour}PaletteColorLookupTableDescriptor", [3, 0, 8])
        setattr(dataset, f"{colour}PaletteColorLookupTableData", bytes(entries + [0]))
    contents = read_segmentation(dataset)
    assert {s.number: s.attributes["recommendedDisplayRGBValue"] for s in contents.segments} == {1: [200, 100, 50], 2: [10, 20, 30]}


@pytest.mark.parametrize("options", [[], ["--force16Bit"]])
def test_dcmqi_liver_palette_labelmap(shared, tmp_path, options):
    seg = tmp_path / "palette.dcm"
    assert cli("bin2labelsegimage", "--inputDICOM", dcmqi_file(shared, "liver.dcm"), "--outputDICOM", seg,
               "--usePalette", *options) == 0
    assert dciodvfy_errors(seg) == [UNKNOWN_IOD]
    files = export(seg, tmp_path / "out", "--prefix", "palette")
    expected, _ = nrrd.read(str(dcmqi_file(shared, "liver_seg.nrrd")))
    actual, _ = nrrd.read(str(files["palette-1.nrrd"]))
    assert np.array_equal(actual, expected)
    meta = json.loads(files["palette-meta.json"].read_text())
    assert meta["segmentAttributes"][0][0]["recommendedDisplayRGBValue"] == [221, 130, 101]


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("segmentation_type, compress", [("binary", "none"), ("binary", "deflate"), ("labelmap", "none"), ("labelmap", "rle")])
@pytest.mark.parametrize("said", [5, 2])
def test_number_of_frames_disagreeing_with_pixel_data_is_named(ct, tmp_path, segmentation_type, compress, said):
    directory, datasets = ct
    labels = np.zeros(synthetic.grid_shape(datasets), np.uint8)
    labels[3:9, 4:12, 1:4] = 1
    path = save(datasets, labels, tmp_path, "l.nrrd")
    result = segmentation_from_files([path], seg_metadata([segment(1, "Liver")]), directory,
                                     segmentation_type=segmentation_type, compress=compress)
    assert int(result.dataset.NumberOfFrames) == 3
    dataset = pydicom.dcmread(written(result, tmp_path / "seg.dcm"))
    dataset.NumberOfFrames = said
    bad = tmp_path / "frames.dcm"
    dataset.save_as(bad)
    with pytest.raises(InputError, match=rf"^frames.dcm: NumberOfFrames says {said} but Pixel Data holds 3 frames$"):
        read_segmentation(bad)


def test_label_map_on_part_of_the_grid_warns_with_both_sizes(ct, tmp_path):
    directory, datasets = ct
    columns, rows, _ = synthetic.grid_shape(datasets)
    partial = np.zeros((columns, rows, 2), np.uint8)
    partial[3:9, 4:10, :] = 1
    affine = synthetic.series_affine(datasets)
    affine[:3, 3] = affine[:3, :3] @ [0, 0, 3] + affine[:3, 3]  # starts at the 4th slice
    path = save(datasets, partial, tmp_path, "partial.nrrd", affine=affine)
    result = segmentation_from_files([path], seg_metadata([segment(1, "Lesion")]), directory)
    assert ("partial.nrrd is 40x32x2 voxels but the reference series is 40x32x6; it covers slices 4-5 of 6 "
            "and the rest of the series is treated as empty") in result.warnings
    whole = save(datasets, np.pad(partial, ((0, 0), (0, 0), (3, 1))), tmp_path, "whole.nrrd")
    assert not any("treated as empty" in w for w in segmentation_from_files([whole], seg_metadata([segment(1, "Lesion")]), directory).warnings)


@pytest.mark.parametrize("segmentation_type", ["fractional", "binary"])
@pytest.mark.parametrize("value, word", [(np.nan, "NaN"), (np.inf, "infinite"), (-np.inf, "infinite")])
def test_non_finite_values_in_a_float_label_map_are_located(ct, tmp_path, segmentation_type, value, word):
    directory, datasets = ct
    labels = np.zeros(synthetic.grid_shape(datasets), np.float32)
    labels[3:9, 4:12, 1:4] = 1
    labels[5, 7, 2] = labels[6, 7, 2] = value
    path = save(datasets, labels, tmp_path, "float.nii.gz")
    with pytest.raises(InputError, match=rf"^float.nii.gz: 2 voxel\(s\) are {word}, the first at voxel index \[5, 7, 2\]"):
        segmentation_from_files([path], seg_metadata([segment(1, "Liver")]), directory, segmentation_type=segmentation_type)
