"""DICOM Segmentation: writing from label maps and reading back, on the generated phantom
(qidicom.samples) and dcmqi's liver sample, and on synthetic series with oblique, flipped
and partial geometry."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest

import synthetic
from conftest import DCMQI_EXAMPLES, UNKNOWN_IOD, dciodvfy_errors
from qidicom.readers import read_dicom_series, read_image
from qidicom.seg import read_segmentation, segmentation_from_files, segmentation_to_files, write_segmentation


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


def on_grid(datasets, array, tmp_path, name="labels.nii.gz", affine=None):
    path = tmp_path / name
    affine = synthetic.series_affine(datasets) if affine is None else affine
    if name.endswith(".nrrd"):
        return synthetic.save_nrrd(array, affine, path)
    return synthetic.save_nifti(array, affine, path)


def read_back(data: bytes) -> dict[int, np.ndarray]:
    contents = read_segmentation(data, "written.dcm")
    return {segment.number: segment.array for segment in contents.segments}


def expected_segments(sample: dict) -> dict[int, np.ndarray]:
    """Segment number -> voxels, from a sample's one label map: segment n is the metadata's
    n-th entry."""
    labels = read_image(sample["labels"]).array
    entries = json.loads(Path(sample["metadata"]).read_text())["segmentAttributes"][0]
    return {number: labels == entry["labelID"] for number, entry in enumerate(entries, start=1)}


def assert_same_segments(data: bytes, expected: dict[int, np.ndarray]) -> None:
    written = read_back(data)
    assert sorted(written) == sorted(expected)
    for number, voxels in expected.items():
        assert np.array_equal(written[number], voxels), f"segment {number}"


# --------------------------------------------------------------------------- samples


def test_sample_converts_to_a_conformant_binary_seg(seg_sample, tmp_path):
    result = segmentation_from_files([seg_sample["labels"]], seg_sample["metadata"], seg_sample["series"])
    path = tmp_path / result.filename
    path.write_bytes(result.data)

    assert dciodvfy_errors(path) == []
    seg = hd.seg.segread(path)
    assert seg.SegmentationType == "BINARY"
    metadata = json.loads(Path(seg_sample["metadata"]).read_text())
    labels = [entry["SegmentLabel"] for entry in metadata["segmentAttributes"][0]]
    assert [seg.get_segment_description(n).segment_label for n in range(1, len(labels) + 1)] == labels
    expected = expected_segments(seg_sample)
    assert_same_segments(result.data, expected)
    # Empty frames are skipped by default: only slices with voxels of a segment are stored.
    assert int(seg.NumberOfFrames) == sum(int(np.count_nonzero(v.any(axis=(0, 1)))) for v in expected.values())


def test_seg_keeps_the_composite_context_of_the_reference_series(seg_sample):
    result = segmentation_from_files([seg_sample["labels"]], seg_sample["metadata"], seg_sample["series"])
    sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(seg_sample["series"].iterdir())]
    source = sources[0]
    seg = result.dataset
    for keyword in ("PatientID", "PatientName", "StudyInstanceUID", "FrameOfReferenceUID"):
        assert seg.get(keyword) == source.get(keyword)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    metadata = json.loads(Path(seg_sample["metadata"]).read_text())
    assert seg.ContentCreatorName == metadata["ContentCreatorName"]
    assert seg.ClinicalTrialCoordinatingCenterName == metadata["ClinicalTrialCoordinatingCenterName"]
    instances = {str(ds.SOPInstanceUID) for ds in sources}
    for frame in seg.PerFrameFunctionalGroupsSequence:
        derivation = frame.DerivationImageSequence[0]
        assert derivation.SourceImageSequence[0].ReferencedSOPInstanceUID in instances


def test_reads_a_seg_another_writer_made_exactly(sample_files):
    """highdicom, not qidicom, writes the phantom's SEG here; reading it gives every segment
    voxel-exact on the CT grid, with its attributes."""
    series = read_dicom_series(sample_files["ct"])
    labels = read_image(sample_files["ct_labels"])
    metadata = json.loads(sample_files["seg_metadata"].read_text())["segmentAttributes"][0]
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=entry["SegmentLabel"],
            segmented_property_category=hd.sr.CodedConcept(*entry["SegmentedPropertyCategoryCodeSequence"].values()),
            segmented_property_type=hd.sr.CodedConcept(*entry["SegmentedPropertyTypeCodeSequence"].values()),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        )
        for number, entry in enumerate(metadata, start=1)
    ]
    # highdicom takes frames as [slice, row, column] with one label value per segment.
    pixels = np.transpose(labels.array, (2, 1, 0)).astype(np.uint8)
    written = hd.seg.Segmentation(
        source_images=series.datasets, pixel_array=pixels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=5, sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer="highdicom", manufacturer_model_name="test", software_versions="1",
        device_serial_number="1",
    )
    contents = read_segmentation(written)
    assert np.allclose(contents.affine, labels.affine, atol=1e-4)
    assert [segment.number for segment in contents.segments] == list(range(1, len(metadata) + 1))
    for segment, entry in zip(contents.segments, metadata):
        assert np.array_equal(segment.array, labels.array == entry["labelID"]), entry["SegmentLabel"]
        assert segment.attributes["SegmentLabel"] == entry["SegmentLabel"]
        assert segment.attributes["SegmentedPropertyTypeCodeSequence"] == entry["SegmentedPropertyTypeCodeSequence"]


def test_reads_dcmqi_liver_seg_exactly(liver_sample):
    contents = read_segmentation(liver_sample["dcmqi_seg"])
    expected = read_image(liver_sample["labels"])
    [liver] = contents.segments
    assert np.array_equal(liver.array, expected.array > 0)
    assert np.allclose(contents.affine, expected.affine, atol=1e-4)
    assert liver.attributes["SegmentLabel"] == "Liver"
    assert liver.attributes["recommendedDisplayRGBValue"] == [221, 130, 101]


@pytest.mark.parametrize(
    "segmentation_type, compress",
    [("binary", "none"), ("binary", "deflate"), ("labelmap", "none"), ("labelmap", "deflate"), ("labelmap", "rle")],
)
def test_every_type_and_compression_reads_back_the_same_voxels(seg_sample, tmp_path, segmentation_type, compress):
    result = segmentation_from_files(
        [seg_sample["labels"]], seg_sample["metadata"], seg_sample["series"],
        segmentation_type=segmentation_type, compress=compress,
    )
    path = tmp_path / "out.dcm"
    path.write_bytes(result.data)
    errors = dciodvfy_errors(path, tmp_path)
    if segmentation_type == "labelmap":
        # Debian's dicom3tools predates LABELMAP (Supplement 243): it cannot name the IOD,
        # and that must be the only complaint.
        assert errors == [UNKNOWN_IOD]
    else:
        assert errors == []
    expected = expected_segments(seg_sample)
    assert_same_segments(result.data, expected)
    # highdicom, an independent reader, finds the same voxels.
    volume = hd.seg.segread(path).get_volume(combine_segments=True)
    assert int(np.count_nonzero(volume.array)) == sum(int(v.sum()) for v in expected.values())


def test_deflate_makes_the_binary_seg_much_smaller(seg_sample):
    plain = segmentation_from_files([seg_sample["labels"]], seg_sample["metadata"], seg_sample["series"])
    deflated = segmentation_from_files([seg_sample["labels"]], seg_sample["metadata"], seg_sample["series"], compress="deflate")
    assert len(deflated.data) * 5 < len(plain.data)
    assert deflated.dataset.file_meta.TransferSyntaxUID == pydicom.uid.DeflatedExplicitVRLittleEndian


# --------------------------------------------------------------------------- geometry


def test_oblique_series_round_trips_voxel_exact_with_geometry(tmp_path):
    angle = np.deg2rad(20)
    orientation = (1, 0, 0, 0, np.cos(angle), np.sin(angle))
    datasets = synthetic.make_ct_series(orientation=orientation, slices=5)
    synthetic.write_series(datasets, tmp_path / "ct")
    shape = synthetic.grid_shape(datasets)
    labels = synthetic.sphere_labels(shape, [((20, 16, 2), 6, 1), ((10, 8, 3), 3, 2)])
    label_path = on_grid(datasets, labels, tmp_path)
    metadata = seg_metadata([segment(1, "Liver"), segment(2, "Spleen", "78961009", "Spleen")])

    result = segmentation_from_files([label_path], metadata, tmp_path / "ct")
    (tmp_path / "seg.dcm").write_bytes(result.data)
    assert dciodvfy_errors(tmp_path / "seg.dcm") == []

    contents = read_segmentation(result.data)
    assert np.allclose(contents.affine, synthetic.series_affine(datasets), atol=1e-4)
    for number in (1, 2):
        restored = np.zeros(shape, bool)
        array = contents.segments[number - 1].array
        restored[:, :, : array.shape[2]] = array  # the SEG grid starts at the first non-empty slice
        offset = int(np.argmax((labels == number).any(axis=(0, 1))))
        assert np.array_equal(array, (labels == number)[:, :, offset: offset + array.shape[2]])


def test_nifti_in_ras_axis_order_lands_on_the_right_voxels(tmp_path):
    """A label map reoriented to RAS+ (x flipped against DICOM's LPS rows) still maps exactly."""
    datasets = synthetic.make_ct_series(slices=4)
    synthetic.write_series(datasets, tmp_path / "ct")
    shape = synthetic.grid_shape(datasets)
    labels = synthetic.sphere_labels(shape, [((5, 7, 1), 3, 1)])
    affine = synthetic.series_affine(datasets)
    # Flip i and j: voxel (i, j) of the flipped array is voxel (n-1-i, m-1-j) of the series.
    flipped = labels[::-1, ::-1, :]
    flip_affine = affine.copy()
    flip_affine[:3, 0] = -affine[:3, 0]
    flip_affine[:3, 1] = -affine[:3, 1]
    flip_affine[:3, 3] = affine[:3, :3] @ [shape[0] - 1, shape[1] - 1, 0] + affine[:3, 3]
    label_path = on_grid(datasets, np.ascontiguousarray(flipped), tmp_path, affine=flip_affine)

    result = segmentation_from_files([label_path], seg_metadata([segment(1, "Lesion")]), tmp_path / "ct", skip_empty=False)
    assert np.array_equal(read_back(result.data)[1], labels == 1)


def test_label_map_covering_some_slices_is_placed_by_position(tmp_path):
    datasets = synthetic.make_ct_series(slices=6)
    synthetic.write_series(datasets, tmp_path / "ct")
    columns, rows, _ = synthetic.grid_shape(datasets)
    partial = np.zeros((columns, rows, 2), np.uint8)
    partial[3:9, 4:10, :] = 1
    affine = synthetic.series_affine(datasets)
    shifted = affine.copy()
    shifted[:3, 3] = affine[:3, :3] @ [0, 0, 3] + affine[:3, 3]  # starts at the 4th slice
    label_path = on_grid(datasets, partial, tmp_path, "partial.nrrd", affine=shifted)

    result = segmentation_from_files([label_path], seg_metadata([segment(1, "Lesion")]), tmp_path / "ct")
    position_of = {ds.SOPInstanceUID: [float(v) for v in ds.ImagePositionPatient] for ds in datasets}
    frames = {
        item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID:
            [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
        for item in result.dataset.PerFrameFunctionalGroupsSequence
    }
    assert sorted(frames) == sorted([datasets[3].SOPInstanceUID, datasets[4].SOPInstanceUID])
    for uid, position in frames.items():
        assert np.allclose(position, position_of[uid])


def test_geometry_check_can_be_switched_off_for_a_grid_that_differs_slightly(tmp_path):
    datasets = synthetic.make_ct_series(slices=3)
    synthetic.write_series(datasets, tmp_path / "ct")
    labels = np.zeros(synthetic.grid_shape(datasets), np.uint8)
    labels[2:5, 2:5, 1] = 1
    affine = synthetic.series_affine(datasets)
    affine[:3, 3] += [0.2, 0, 0]  # a fifth of a voxel off
    label_path = on_grid(datasets, labels, tmp_path, affine=affine)
    metadata = seg_metadata([segment(1, "Lesion")])

    with pytest.raises(Exception, match="does not lie on the reference series' grid"):
        segmentation_from_files([label_path], metadata, tmp_path / "ct")
    result = segmentation_from_files([label_path], metadata, tmp_path / "ct", check_geometry=False)
    assert np.array_equal(read_back(result.data)[1][:, :, 0], labels[:, :, 1])


# --------------------------------------------------------------------------- segments


def test_several_files_with_overlapping_segments_make_a_binary_seg(synthetic_ct, tmp_path):
    directory, datasets = synthetic_ct
    shape = synthetic.grid_shape(datasets)
    first = synthetic.sphere_labels(shape, [((10, 10, 2), 5, 1), ((30, 20, 3), 4, 2)])
    second = synthetic.sphere_labels(shape, [((12, 10, 2), 5, 1)])  # overlaps label 1 of the first
    paths = [on_grid(datasets, first, tmp_path, "a.nii.gz"), on_grid(datasets, second, tmp_path, "b.nrrd")]
    metadata = seg_metadata(
        [segment(1, "Liver"), segment(2, "Spleen", "78961009", "Spleen")],
        [segment(1, "Tumour", "108369006", "Neoplasm")],
    )

    result = segmentation_from_files(paths, metadata, directory)
    segments = read_back(result.data)
    assert sorted(segments) == [1, 2, 3]
    assert np.array_equal(segments[1], first == 1)
    assert np.array_equal(segments[3], second == 1)
    assert (segments[1] & segments[3]).any()

    with pytest.raises(Exception, match=r"LABELMAP .* cannot hold overlapping segments: segment 3 .*overlaps segment 1"):
        segmentation_from_files(paths, metadata, directory, segmentation_type="labelmap")


def test_label_ids_as_segment_numbers(synthetic_ct, tmp_path):
    directory, datasets = synthetic_ct
    labels = synthetic.sphere_labels(synthetic.grid_shape(datasets), [((10, 10, 2), 4, 1), ((30, 20, 3), 4, 5)])
    path = on_grid(datasets, labels, tmp_path)
    metadata = seg_metadata([segment(1, "Liver"), segment(5, "Spine", "421060004", "Spinal column")])

    labelmap = segmentation_from_files([path], metadata, directory, segmentation_type="labelmap", use_label_id_as_segment_number=True)
    assert [int(item.SegmentNumber) for item in labelmap.dataset.SegmentSequence] == [1, 5]
    assert np.array_equal(read_back(labelmap.data)[5], labels == 5)

    numbered = segmentation_from_files([path], metadata, directory)
    assert [int(item.SegmentNumber) for item in numbered.dataset.SegmentSequence] == [1, 2]

    with pytest.raises(Exception, match="must number its segments consecutively"):
        segmentation_from_files([path], metadata, directory, use_label_id_as_segment_number=True)


def test_empty_frames_are_kept_when_skip_is_off(synthetic_ct, tmp_path):
    directory, datasets = synthetic_ct
    labels = synthetic.sphere_labels(synthetic.grid_shape(datasets), [((10, 10, 2), 2, 1)])
    path = on_grid(datasets, labels, tmp_path)
    metadata = seg_metadata([segment(1, "Lesion")])
    skipped = segmentation_from_files([path], metadata, directory)
    kept = segmentation_from_files([path], metadata, directory, skip_empty=False)
    assert int(kept.dataset.NumberOfFrames) == len(datasets)
    assert int(skipped.dataset.NumberOfFrames) < len(datasets)


def test_fractional_seg_from_probabilities(synthetic_ct, tmp_path):
    directory, datasets = synthetic_ct
    shape = synthetic.grid_shape(datasets)
    grid = np.indices(shape).astype(np.float32)
    probabilities = np.clip(1 - np.sqrt((grid[0] - 20) ** 2 + (grid[1] - 16) ** 2) / 10, 0, 1).astype(np.float32)
    path = on_grid(datasets, probabilities, tmp_path, "p.nii.gz")
    metadata = seg_metadata([segment(1, "Tumour probability", "108369006", "Neoplasm")])

    result = segmentation_from_files([path], metadata, directory, segmentation_type="fractional", compress="deflate")
    (tmp_path / "frac.dcm").write_bytes(result.data)
    assert dciodvfy_errors(tmp_path / "frac.dcm", tmp_path) == []
    assert result.dataset.SegmentationFractionalType == "PROBABILITY"
    restored = read_back(result.data)[1]
    assert restored.dtype == np.float32
    assert np.abs(restored - probabilities).max() <= 0.5 / 255 + 1e-6
    assert hd.seg.segread(tmp_path / "frac.dcm").segmentation_type.value == "FRACTIONAL"


def test_fractional_values_outside_zero_to_one_are_refused(synthetic_ct, tmp_path):
    directory, datasets = synthetic_ct
    values = np.full(synthetic.grid_shape(datasets), 1.5, np.float32)
    path = on_grid(datasets, values, tmp_path, "p.nii.gz")
    with pytest.raises(Exception, match=r"p.nii.gz: fractional values must lie in 0..1; found 1.5..1.5"):
        segmentation_from_files([path], seg_metadata([segment(1, "X")]), directory, segmentation_type="fractional")


def test_file_mapping_pairs_metadata_with_files_by_name(synthetic_ct, tmp_path):
    directory, datasets = synthetic_ct
    shape = synthetic.grid_shape(datasets)
    liver = on_grid(datasets, synthetic.sphere_labels(shape, [((10, 10, 2), 4, 1)]), tmp_path, "liver.nii.gz")
    spleen = on_grid(datasets, synthetic.sphere_labels(shape, [((30, 20, 3), 4, 1)]), tmp_path, "spleen.nii.gz")
    metadata = seg_metadata(
        [segment(1, "Liver")], [segment(1, "Spleen", "78961009", "Spleen")],
        segmentAttributesFileMapping=["liver.nii.gz", "spleen.nii.gz"],
    )
    # Inputs given in the other order: the mapping, not the position, decides.
    result = segmentation_from_files([spleen, liver], metadata, directory)
    contents = read_segmentation(result.data)
    by_label = {s.attributes["SegmentLabel"]: s.array for s in contents.segments}
    assert by_label["Liver"][10, 10, 2] and not by_label["Spleen"][10, 10, 2]


def test_content_label_description_and_cielab_colour_are_honoured(synthetic_ct, tmp_path):
    directory, datasets = synthetic_ct
    path = on_grid(datasets, synthetic.sphere_labels(synthetic.grid_shape(datasets), [((10, 10, 2), 4, 1)]), tmp_path)
    metadata = seg_metadata(
        [segment(1, "Liver", RecommendedDisplayCIELabValue=[40000, 30000, 20000])],
        ContentLabel="LIVERSEG", ContentDescription="Liver by hand",
    )
    seg = segmentation_from_files([path], metadata, directory).dataset
    assert seg.ContentLabel == "LIVERSEG"
    assert seg.ContentDescription == "Liver by hand"
    assert list(seg.SegmentSequence[0].RecommendedDisplayCIELabValue) == [40000, 30000, 20000]


def test_write_read_write_gives_the_same_segments_and_attributes(synthetic_ct, tmp_path):
    directory, datasets = synthetic_ct
    labels = synthetic.sphere_labels(synthetic.grid_shape(datasets), [((10, 10, 2), 4, 1), ((30, 20, 3), 4, 2)])
    path = on_grid(datasets, labels, tmp_path)
    metadata = seg_metadata([
        segment(1, "Liver", SegmentAlgorithmType="SEMIAUTOMATIC", SegmentAlgorithmName="Editor",
                AnatomicRegionSequence={"CodeValue": "818981001", "CodingSchemeDesignator": "SCT", "CodeMeaning": "Abdomen"},
                TrackingIdentifier="liver 1", TrackingUniqueIdentifier="1.2.3.4", recommendedDisplayRGBValue=[200, 100, 50]),
        segment(2, "Kidney", "64033007", "Kidney",
                SegmentedPropertyTypeModifierCodeSequence={"CodeValue": "7771000", "CodingSchemeDesignator": "SCT", "CodeMeaning": "Left"}),
    ])
    first = segmentation_from_files([path], metadata, directory)
    out = tmp_path / "out"
    out.mkdir()
    for exported in segmentation_to_files(first.data, prefix="rt"):
        (out / exported.name).write_bytes(exported.data)
    meta = json.loads((out / "rt-meta.json").read_text())
    images = [out / name for name in meta["segmentAttributesFileMapping"]]

    second = segmentation_from_files(images, meta, directory)
    assert read_back(second.data).keys() == read_back(first.data).keys()
    for number, array in read_back(first.data).items():
        assert np.array_equal(read_back(second.data)[number], array)
    attributes = lambda data: [s.attributes for s in read_segmentation(data).segments]  # noqa: E731
    assert attributes(second.data) == attributes(first.data)
    assert attributes(first.data)[1]["SegmentedPropertyTypeModifierCodeSequence"]["CodeMeaning"] == "Left"


def test_merged_export_groups_non_overlapping_segments_first_fit(synthetic_ct, tmp_path):
    directory, datasets = synthetic_ct
    shape = synthetic.grid_shape(datasets)
    a = synthetic.sphere_labels(shape, [((10, 10, 2), 4, 1), ((30, 20, 3), 4, 2)])
    b = synthetic.sphere_labels(shape, [((11, 10, 2), 4, 1)])  # overlaps segment 1 only
    paths = [on_grid(datasets, a, tmp_path, "a.nii.gz"), on_grid(datasets, b, tmp_path, "b.nii.gz")]
    metadata = seg_metadata([segment(1, "A"), segment(2, "B")], [segment(1, "C")])
    data = segmentation_from_files(paths, metadata, directory).data

    files = {f.name: f.data for f in segmentation_to_files(data, prefix="m", merge_segments=True)}
    meta = json.loads(files["m-meta.json"])
    assert [[s["labelID"] for s in group] for group in meta["segmentAttributes"]] == [[1, 2], [3]]
    merged = read_image(files["m-1.nrrd"], "m-1.nrrd").array
    assert set(np.unique(merged)) == {0, 1, 2}


def test_every_dcmqi_seg_example_converts_unchanged(tmp_path):
    examples = sorted(DCMQI_EXAMPLES.glob("seg-example*.json"))
    if not examples:
        pytest.skip("dcmqi's examples are not in ../shared")
    datasets = synthetic.make_ct_series(slices=4)
    synthetic.write_series(datasets, tmp_path / "ct")
    shape = synthetic.grid_shape(datasets)
    for example in examples:
        metadata = json.loads(example.read_text())
        paths = []
        for index, group in enumerate(metadata["segmentAttributes"]):
            spheres = [((6 + 5 * n, 8 + 3 * n, 1 + n % 3), 2, entry["labelID"]) for n, entry in enumerate(group)]
            name = (metadata.get("segmentAttributesFileMapping") or [f"{example.stem}-{index}.nrrd"] * 99)[index]
            paths.append(on_grid(datasets, synthetic.sphere_labels(shape, spheres), tmp_path, name))
        result = segmentation_from_files(paths, example, tmp_path / "ct")
        described = sum(len(group) for group in metadata["segmentAttributes"])
        assert len(result.dataset.SegmentSequence) == described, example.name
        path = tmp_path / f"{example.stem}.dcm"
        path.write_bytes(result.data)
        assert dciodvfy_errors(path) == [], example.name


#: The download name: patient ID, series description, kind.
SAMPLE_FILENAMES = {"phantom": "QIDICOM-PHANTOM-001_Organ_segmentation_SEG.dcm", "dcmqi-liver": "99000_Segmentation_SEG.dcm"}


def test_writer_takes_in_memory_files(seg_sample):
    """The browser path: (name, bytes) pairs, no paths anywhere."""
    series = [(p.name, p.read_bytes()) for p in sorted(seg_sample["series"].iterdir())]
    labels = [(seg_sample["labels"].name, seg_sample["labels"].read_bytes())]
    metadata = (seg_sample["metadata"].name, seg_sample["metadata"].read_bytes())
    result = segmentation_from_files(labels, metadata, series)
    assert result.filename == SAMPLE_FILENAMES[seg_sample["source"]]
    assert_same_segments(result.data, expected_segments(seg_sample))


def test_write_segmentation_with_progress_reports(seg_sample):
    series = read_dicom_series(seg_sample["series"])
    volume = read_image(seg_sample["labels"])
    steps = []
    write_segmentation([volume], json.loads(seg_sample["metadata"].read_text()), series, progress=lambda m, f: steps.append(f))
    assert steps[0] < steps[-1] == 1.0 and steps == sorted(steps)


def test_metadata_dict_is_not_modified(seg_sample):
    metadata = json.loads(seg_sample["metadata"].read_text())
    before = copy.deepcopy(metadata)
    segmentation_from_files([seg_sample["labels"]], metadata, seg_sample["series"])
    assert metadata == before


# --------------------------------------------------------------------------- binary to labelmap


def test_bin2labelsegimage_converts_a_binary_seg(seg_sample, tmp_path):
    """The phantom's SEG is qidicom's own; the liver's is dcmqi's."""
    from qidicom.seg import binary_to_labelmap

    result = binary_to_labelmap(seg_sample["binary_seg"])
    path = tmp_path / "labelmap.dcm"
    path.write_bytes(result.data)
    assert dciodvfy_errors(path) == [UNKNOWN_IOD]
    labelmap = hd.seg.segread(path)
    assert labelmap.SegmentationType == "LABELMAP"
    assert labelmap.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.7"
    binary = pydicom.dcmread(seg_sample["binary_seg"])
    for keyword in ("PatientID", "StudyInstanceUID", "FrameOfReferenceUID"):
        assert labelmap.get(keyword) == binary.get(keyword)
    assert labelmap.ReferencedSeriesSequence[0].SeriesInstanceUID == binary.ReferencedSeriesSequence[0].SeriesInstanceUID
    metadata = json.loads(seg_sample["metadata"].read_text())
    assert [item.SegmentAlgorithmName for item in labelmap.SegmentSequence] == [
        entry["SegmentAlgorithmName"] for entry in metadata["segmentAttributes"][0]]
    assert_same_segments(result.data, expected_segments(seg_sample))


def test_bin2labelsegimage_palette_16_bit_rle(seg_sample, tmp_path):
    from qidicom.seg import binary_to_labelmap

    result = binary_to_labelmap(seg_sample["binary_seg"], use_palette=True, force_16_bit=True, compress="rle")
    path = tmp_path / "palette.dcm"
    path.write_bytes(result.data)
    seg = hd.seg.segread(path)
    assert (seg.PhotometricInterpretation, int(seg.BitsAllocated)) == ("PALETTE COLOR", 16)
    assert seg.file_meta.TransferSyntaxUID == pydicom.uid.RLELossless
    assert_same_segments(result.data, expected_segments(seg_sample))
    # Debian's dciodvfy predates LABELMAP and cannot name the IOD; the palette (an entry for
    # every storable value) passes its LUT checks.
    assert dciodvfy_errors(path) == [UNKNOWN_IOD]


def test_bin2labelsegimage_refuses_overlapping_segments(synthetic_ct, tmp_path):
    from qidicom.seg import binary_to_labelmap

    directory, datasets = synthetic_ct
    shape = synthetic.grid_shape(datasets)
    paths = [
        on_grid(datasets, synthetic.sphere_labels(shape, [((10, 10, 2), 4, 1)]), tmp_path, "a.nii.gz"),
        on_grid(datasets, synthetic.sphere_labels(shape, [((11, 10, 2), 4, 1)]), tmp_path, "b.nii.gz"),
    ]
    binary = segmentation_from_files(paths, seg_metadata([segment(1, "A")], [segment(1, "B")]), directory)
    with pytest.raises(Exception, match=r"segment 2 overlaps segment 1 in \d+ voxel\(s\); overlapping segments cannot be one label map"):
        binary_to_labelmap(binary.data)


def test_merged_groups_equal_first_fit_by_masks():
    """merged_volumes on random overlapping segments, numbers below and above 255: the same
    groups, label maps and dtypes as placing each segment's mask by boolean indexing."""
    from qidicom.seg.read import Segment, SegmentationContents

    rng = np.random.default_rng(7)
    shape = (9, 8, 5)
    for numbers in ([1, 2, 3, 4, 5, 6], [1, 2, 300, 4, 301]):
        masks = {n: np.asfortranarray(rng.random(shape) < 0.2) for n in numbers}
        contents = SegmentationContents(affine=np.eye(4), segments=[Segment(n, masks[n], {}) for n in numbers],
                                        metadata={}, segmentation_type="BINARY")
        expected: list[tuple[list[int], np.ndarray]] = []
        for n in numbers:
            for members, occupied in expected:
                if not (occupied & masks[n]).any():
                    members.append(n)
                    occupied |= masks[n]
                    break
            else:
                expected.append(([n], masks[n].copy()))
        merged = contents.merged_volumes()
        assert [[s.number for s in members] for members, _ in merged] == [members for members, _ in expected]
        assert len(merged) > 1  # the masks overlap: more than one group
        for (members, volume), (numbers_expected, _) in zip(merged, expected):
            reference = np.zeros(shape, np.uint8 if max(numbers_expected) < 256 else np.uint16)
            for n in numbers_expected:
                reference[masks[n]] = n
            assert volume.array.dtype == reference.dtype and np.array_equal(volume.array, reference)
