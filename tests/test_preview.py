"""qidicom.preview: the series' pixels decoded once, patient-frame planes with their
orientation letters, overlays on the right voxels, windows and the hover readout."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.uid import DeflatedExplicitVRLittleEndian, JPEGBaseline8Bit, JPEGLossless, RLELossless

import synthetic
from qidicom import preview, readers
from qidicom.geometry import Volume
from qidicom.seg import read_segmentation


def pairs(datasets, syntax=None) -> list[tuple[str, bytes]]:
    """Datasets as in-memory files (as the browser hands them over), in reverse order."""
    files = []
    for n, ds in enumerate(reversed(datasets)):
        if syntax is not None:
            ds.file_meta.TransferSyntaxUID = syntax
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        files.append((f"slice-{n:03d}.dcm", buffer.getvalue()))
    return files


def pixels_by_position(datasets) -> np.ndarray:
    """The plain-pydicom answer: each dataset's pixel_array, sorted along the normal, as [i, j, k]."""
    normal = np.cross(*np.reshape(np.asarray(datasets[0].ImageOrientationPatient, float), (2, 3)))
    ordered = sorted(datasets, key=lambda ds: np.dot(np.asarray(ds.ImagePositionPatient, float), normal))
    return np.stack([ds.pixel_array for ds in ordered], axis=-1).transpose(1, 0, 2)


# --------------------------------------------------------------------------- decoding


def test_uncompressed_series_is_decoded_once_in_slice_order(sample_study):
    volume = preview.read_series_volume(sample_study.ct_series)
    datasets = [pydicom.dcmread(io.BytesIO(data)) for _, data in sample_study.ct_series]
    assert np.array_equal(volume.array, pixels_by_position(datasets))
    assert volume.stored.flags.c_contiguous and volume.array.base is volume.stored or np.shares_memory(volume.array, volume.stored)
    assert volume.modality == "CT" and volume.units == "HU"
    assert volume.shape == (64, 64, 24)


@pytest.mark.parametrize("syntax", [DeflatedExplicitVRLittleEndian, RLELossless])
def test_deflated_and_rle_series_decode_to_the_same_pixels(syntax):
    datasets = synthetic.make_ct_series(rows=16, columns=20, slices=4)
    expected = pixels_by_position(datasets)
    if syntax == RLELossless:
        for ds in datasets:
            ds.compress(RLELossless, encoding_plugin="pydicom")
        files = pairs(datasets)
    else:
        files = pairs(datasets, syntax)
    volume = preview.read_series_volume(files)
    assert np.array_equal(volume.array, expected)


def test_jpeg_baseline_series_decodes_through_pillow():
    datasets = synthetic.make_ct_series(rows=16, columns=16, slices=3)
    gradient = (np.add.outer(np.arange(16), np.arange(16)) * 8).astype(np.uint8)
    for n, ds in enumerate(datasets):
        image = gradient + n * 4
        jpeg = io.BytesIO()
        Image.fromarray(image, "L").save(jpeg, "JPEG", quality=100)
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.PixelData = encapsulate([jpeg.getvalue()])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds.LossyImageCompression = "01"
    volume = preview.read_series_volume(pairs(datasets))
    assert volume.stored.dtype == np.uint8
    for k in range(3):  # lossy: close to what was encoded
        assert np.abs(volume.array[:, :, k].T.astype(int) - (gradient + k * 4)).max() <= 3


def test_undecodable_transfer_syntax_says_preview_unavailable_while_conversion_works(tmp_path, sample_study):
    from qidicom import seg

    datasets = synthetic.make_ct_series(rows=8, columns=8, slices=3)
    for ds in datasets:
        ds.PixelData = encapsulate([b"\xff\xd8\xff\xd9"])  # stands in for lossless JPEG frames
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = JPEGLossless
    files = pairs(datasets)
    with pytest.raises(preview.PreviewUnavailable, match="preview unavailable for transfer syntax JPEG Lossless"):
        preview.read_series_volume(files)
    # The SEG writer needs the headers only.
    labels = np.zeros((8, 8, 3), np.uint8)
    labels[2:5, 2:5, 1] = 1
    synthetic.save_nifti(labels, synthetic.series_affine(sorted(datasets, key=lambda d: float(d.ImagePositionPatient[2]))), tmp_path / "l.nii.gz")
    metadata = dict(sample_study.seg_metadata, segmentAttributes=[sample_study.seg_metadata["segmentAttributes"][0][:1]])
    result = seg.segmentation_from_files([tmp_path / "l.nii.gz"], metadata, files)
    assert read_segmentation(result.data).segments[0].array.sum() == 9


def test_rescale_per_slice_gives_real_values():
    datasets = synthetic.make_ct_series(rows=6, columns=5, slices=3)
    for n, ds in enumerate(datasets):
        ds.RescaleSlope, ds.RescaleIntercept = str(1 + n), str(-1024 + 10 * n)
    volume = preview.read_series_volume(pairs(datasets))
    k = 2
    stored = datasets[k].pixel_array.T
    assert not volume.uniform_rescale
    assert volume.real_at((3, 4, k)) == float(stored[3, 4]) * 3 - 1004
    coronal = preview.plane_geometry(volume.affine, volume.shape, "coronal")
    image = preview.real_slice(volume, coronal, 4)  # j = 4 across all slices
    for row in range(image.shape[0]):
        for column in range(image.shape[1]):
            assert image[row, column] == pytest.approx(volume.real_at(coronal.voxel(4, row, column)))


# --------------------------------------------------------------------------- planes and letters


ORIENTATIONS = {
    "axial": (1, 0, 0, 0, 1, 0),
    "axial flipped": (-1, 0, 0, 0, -1, 0),
    "sagittal acquisition": (0, 1, 0, 0, 0, -1),
    "coronal acquisition": (1, 0, 0, 0, 0, -1),
    "oblique 30 degrees": (np.cos(np.pi / 6), np.sin(np.pi / 6), 0, -np.sin(np.pi / 6), np.cos(np.pi / 6), 0),
}


@pytest.mark.parametrize("orientation", ORIENTATIONS)
@pytest.mark.parametrize("plane", list(preview.PLANES))
def test_planes_are_in_the_patient_frame_whatever_the_acquisition(orientation, plane):
    datasets = synthetic.make_ct_series(rows=5, columns=7, slices=4, orientation=ORIENTATIONS[orientation])
    volume = preview.read_series_volume(pairs(datasets))
    geometry = preview.plane_geometry(volume.affine, volume.shape, plane)
    _, (right_axis, _), (down_axis, down_sign) = preview.PLANES[plane]
    index = geometry.count // 2
    image = geometry.take(volume.array, index)
    assert image.shape == (geometry.rows, geometry.columns)
    for row in range(geometry.rows):
        for column in range(geometry.columns):
            assert image[row, column] == volume.array[geometry.voxel(index, row, column)]
            assert geometry.locate(geometry.voxel(index, row, column)) == (index, row, column)
    here = volume.position_mm(geometry.voxel(index, 1, 1))
    step_right = volume.position_mm(geometry.voxel(index, 1, 2)) - here
    step_down = volume.position_mm(geometry.voxel(index, 2, 1)) - here
    # Screen right goes towards the patient's left (axial, coronal) or posterior (sagittal);
    # screen down towards posterior (axial) or inferior (coronal, sagittal).
    assert step_right[right_axis] > 0.5 * np.linalg.norm(step_right)
    assert down_sign * step_down[down_axis] > 0.5 * np.linalg.norm(step_down)


def test_orientation_letters_standard_flipped_and_oblique():
    def letters(orientation, plane):
        datasets = synthetic.make_ct_series(rows=4, columns=4, slices=3, orientation=orientation)
        volume = preview.read_series_volume(pairs(datasets))
        return preview.plane_geometry(volume.affine, volume.shape, plane).letters

    standard = {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    assert letters(ORIENTATIONS["axial"], "axial") == standard
    assert letters(ORIENTATIONS["axial flipped"], "axial") == standard  # flipped back for display
    assert letters(ORIENTATIONS["axial"], "coronal") == {"left": "R", "right": "L", "top": "S", "bottom": "I"}
    assert letters(ORIENTATIONS["axial"], "sagittal") == {"left": "A", "right": "P", "top": "S", "bottom": "I"}
    assert letters(ORIENTATIONS["sagittal acquisition"], "axial") == standard
    # Rotated 30 degrees about the feet-head axis: the edges point mostly L/R, partly A/P.
    assert letters(ORIENTATIONS["oblique 30 degrees"], "axial") == {"left": "RA", "right": "LP", "top": "AL", "bottom": "PR"}
    assert preview.direction_letters([0.6, -0.8, 0.0]) == "AL"
    assert preview.direction_letters([0, 0, -1]) == "I"


# --------------------------------------------------------------------------- overlays


def test_seg_overlay_sits_on_the_label_map_with_the_segs_colours(sample_files, sample_study):
    volume = preview.read_series_volume(sample_study.ct_series)
    contents = read_segmentation(sample_files["seg"])
    overlay = preview.overlay_from_segmentation(contents, volume)
    labels = readers.read_image(sample_files["ct_labels"])
    expected = np.asarray(labels.array)
    attributes = {a["labelID"]: a for a in sample_study.seg_metadata["segmentAttributes"][0]}
    by_label = {info.label: number for number, info in overlay.segments.items()}
    assert sorted(by_label) == sorted(a["SegmentLabel"] for a in attributes.values())
    shown = overlay.arrays()
    for label_id, attribute in attributes.items():
        number = by_label[attribute["SegmentLabel"]]
        group = shown[overlay.segments[number].group]
        assert np.array_equal(group == number, expected == label_id), attribute["SegmentLabel"]
        # CIELab in the SEG, back to RGB: within rounding of the form's colour.
        assert np.abs(np.subtract(overlay.segments[number].colour, attribute["recommendedDisplayRGBValue"])).max() <= 2


def test_flipped_nifti_label_map_lands_on_the_right_voxels(tmp_path):
    datasets = synthetic.make_ct_series(rows=12, columns=10, slices=5)
    ordered = sorted(datasets, key=lambda d: float(d.ImagePositionPatient[2]))
    affine = synthetic.series_affine(ordered)
    labels = np.zeros((10, 12, 5), np.uint8)
    labels[1:3, 2:6, 1] = 1  # near the patient's right, anterior
    labels[7, 9, 3] = 2
    # The same labels stored in RAS+ order (i and j reversed), as many NIfTI tools write them.
    flipped = labels[::-1, ::-1, :]
    flip = np.eye(4)
    flip[0, 0], flip[1, 1], flip[0, 3], flip[1, 3] = -1, -1, 9, 11
    path = synthetic.save_nifti(np.ascontiguousarray(flipped), affine @ flip, tmp_path / "flipped.nii.gz")
    volume = preview.read_series_volume(pairs(datasets))
    overlay = preview.overlay_from_label_maps([readers.read_image(path)], volume)
    assert np.array_equal(overlay.arrays()[0], labels)
    assert [s.label for s in overlay.segments.values()] == ["Segment 1", "Segment 2"]
    axial = preview.plane_geometry(volume.affine, volume.shape, "axial")
    shown = axial.take(overlay.arrays()[0], 1)
    rows, columns = np.nonzero(shown == 1)
    assert columns.max() < shown.shape[1] / 2 and axial.letters["left"] == "R"  # on the screen's left: patient's right


def test_oblique_series_overlay_and_readout_on_the_right_voxel(tmp_path):
    datasets = synthetic.make_ct_series(rows=9, columns=11, slices=4, orientation=ORIENTATIONS["oblique 30 degrees"],
                                        origin=(10.0, -20.0, 5.0))
    volume = preview.read_series_volume(pairs(datasets))
    labels = np.zeros(volume.shape, np.uint8)
    labels[8, 2, 3] = 1
    path = synthetic.save_nrrd(labels, volume.affine, tmp_path / "oblique.nrrd")
    metadata = {"segmentAttributes": [[{"labelID": 1, "SegmentLabel": "Lesion", "recommendedDisplayRGBValue": [255, 0, 0]}]]}
    overlay = preview.overlay_from_label_maps([readers.read_image(path)], volume, metadata)
    position = volume.affine @ [8, 2, 3, 1]
    for plane in preview.PLANES:
        geometry = preview.plane_geometry(volume.affine, volume.shape, plane)
        index, row, column = geometry.locate((8, 2, 3))
        assert geometry.take(overlay.arrays()[0], index)[row, column] == 1
    values = preview.readout(volume, (8, 2, 3), overlay)
    assert values["segments"] == [(1, "Lesion")]
    assert np.allclose(values["position_mm"], position[:3])
    assert values["real"] == float(volume.array[8, 2, 3])
    assert overlay.segments[1].colour == (255, 0, 0)
    assert preview.readout(volume, (0, 0, 0), overlay)["segments"] == []


def test_label_map_off_the_series_grid_is_refused_readably():
    datasets = synthetic.make_ct_series(rows=6, columns=6, slices=3)
    volume = preview.read_series_volume(pairs(datasets))
    off = Volume(np.ones((6, 6, 3), np.uint8), volume.affine @ np.diag([2.0, 1, 1, 1]), "coarse.nii.gz")
    with pytest.raises(preview.GeometryError, match="coarse.nii.gz does not lie on the reference series' grid"):
        preview.overlay_from_label_maps([off], volume)


def test_jump_to_segment_gives_a_voxel_of_it_at_its_centre(sample_files, sample_study):
    volume = preview.read_series_volume(sample_study.ct_series)
    overlay = preview.overlay_from_segmentation(read_segmentation(sample_files["seg"]), volume)
    for number in overlay.segments:
        i, j, k = overlay.centre(number)
        mask = overlay.arrays()[overlay.segments[number].group] == number
        assert mask[i, j, k]
        centroid = np.argwhere(mask).mean(axis=0)
        assert np.linalg.norm(np.subtract((i, j, k), centroid)) <= np.sqrt(3) * max(2.0, mask.sum() ** (1 / 3) / 2)
    with pytest.raises(preview.InputError, match="there is no segment 99"):
        overlay.centre(99)


# --------------------------------------------------------------------------- windows, maps, readout


def test_windows_presets_series_and_mr_percentiles(sample_study):
    assert preview.WINDOW_PRESETS == {"CT soft tissue": (40, 400), "CT lung": (-600, 1500), "CT bone": (480, 2500),
                                      "CT brain": (40, 80), "CT liver": (90, 150)}
    ct = preview.read_series_volume(sample_study.ct_series)
    first = pydicom.dcmread(io.BytesIO(sample_study.ct_series[0][1]))
    assert preview.default_window(ct) == (float(first.WindowCenter), float(first.WindowWidth))
    mr = preview.read_series_volume(sample_study.mr_series)
    centre, width = preview.auto_window(mr)
    values = mr.array.astype(float) * mr.slope[0] + mr.intercept[0]
    low, high = np.percentile(values, [1, 99])
    assert (centre - width / 2, centre + width / 2) == pytest.approx((low, high))


def test_map_overlay_values_units_and_readout(sample_study):
    mr = preview.read_series_volume(sample_study.mr_series)
    adc = readers.read_image(sample_study.adc_map)
    pmap = preview.map_overlay(adc, mr, sample_study.pm_metadata)
    assert pmap.units == "um2/s"
    assert np.allclose(pmap.arrays(), adc.array)  # the sample map is on the MR grid
    lo, hi = pmap.value_range()
    assert lo == pytest.approx(float(adc.array.min())) and hi == pytest.approx(float(adc.array.max()))
    values = preview.readout(mr, (16, 15, 5), pmap=pmap)
    assert values["map"] == pytest.approx(float(adc.array[16, 15, 5])) and values["map_units"] == "um2/s"
    assert "um2/s" in preview.format_readout(values)


def test_outline_keeps_only_the_border():
    square = np.zeros((7, 7), np.uint8)
    square[1:6, 1:6] = 3
    edge = preview.outline(square)
    assert edge[1, 1] == 3 and edge[1, 3] == 3 and edge[3, 3] == 0 and edge[2, 2] == 0
    assert set(np.unique(edge)) == {0, 3}


@pytest.mark.parametrize("syntax,bits_stored", [(pydicom.uid.ImplicitVRLittleEndian, 16), (pydicom.uid.ExplicitVRLittleEndian, 12)])
def test_pixels_read_straight_from_the_bytes_equal_pydicoms(syntax, bits_stored):
    datasets = synthetic.make_ct_series(rows=7, columns=9, slices=3)
    for ds in datasets:
        ds.BitsStored, ds.HighBit = bits_stored, bits_stored - 1
        if bits_stored == 12:  # 12-bit signed values: pydicom sign-extends them
            ds.PixelData = (np.arange(63, dtype=np.int16).reshape(7, 9) * 64 - 2048).astype(np.int16).tobytes()
    files = pairs(datasets, syntax)
    expected = pixels_by_position([pydicom.dcmread(io.BytesIO(data)) for _, data in files])
    assert np.array_equal(preview.read_series_volume(files).array, expected)


def test_several_label_maps_matched_to_their_attributes_by_file_name(tmp_path):
    datasets = synthetic.make_ct_series(rows=6, columns=6, slices=2)
    volume = preview.read_series_volume(pairs(datasets))
    first, second = np.zeros(volume.shape, np.uint8), np.zeros(volume.shape, np.uint8)
    first[1, 1, 0], second[4, 4, 1] = 1, 1
    paths = [synthetic.save_nrrd(a, volume.affine, tmp_path / n) for a, n in ((first, "a.nrrd"), (second, "b.nrrd"))]
    metadata = {"segmentAttributesFileMapping": ["b.nrrd", "a.nrrd"],
                "segmentAttributes": [[{"labelID": 1, "SegmentLabel": "from b"}], [{"labelID": 1, "SegmentLabel": "from a"}]]}
    overlay = preview.overlay_from_label_maps([readers.read_image(p) for p in paths], volume, metadata)
    # Numbered as the SEG writer (and dcmqi) numbers them: group by group in the metadata's
    # order, whatever the order of the files; so the preview's numbers are the SEG's.
    assert preview.readout(volume, (1, 1, 0), overlay)["segments"] == [(2, "from a")]
    assert [(s.number, s.label) for s in overlay.segments_at((4, 4, 1))] == [(1, "from b")]
    # By label value when asked (--useLabelIDAsSegmentNumber): here both are 1, which no SEG can hold,
    # so the preview falls back to one segment per value of each file, in file order.
    fallback = preview.overlay_from_label_maps([readers.read_image(p) for p in paths], volume, metadata,
                                               use_label_id_as_segment_number=True)
    assert sorted(fallback.segments) == [1, 2]


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32, np.bool_])
def test_label_counts_equal_numpys_unique(dtype, order):
    rng = np.random.default_rng(3)
    array = rng.integers(0, 2 if dtype is np.bool_ else 7, size=(33, 17, 9)).astype(dtype, order=order)
    values, counts = np.unique(array, return_counts=True)
    assert preview.label_counts(array, chunk=1000) == {v.item(): int(c) for v, c in zip(values, counts)}


def test_label_map_numbered_as_its_values_is_shown_without_a_copy(tmp_path):
    """Label values 1..N that are the segment numbers: the overlay is the label map itself
    (read-only, so the preview cannot change the conversion's input); other numberings get
    a new array with the segment numbers."""
    datasets = synthetic.make_ct_series(rows=12, columns=10, slices=5)
    volume = preview.read_series_volume(pairs(datasets))
    labels = np.zeros((10, 12, 5), np.uint8)
    labels[1:3, 2:6, 1], labels[7, 9, 3] = 1, 2
    label_map = readers.read_image(synthetic.save_nifti(labels, volume.affine, tmp_path / "labels.nii.gz"))
    shown = preview.overlay_from_label_maps([label_map], volume).arrays()[0]
    assert np.shares_memory(shown, label_map.array) and not shown.flags.writeable
    assert np.array_equal(shown, labels)
    tripled = readers.read_image(synthetic.save_nifti(labels * 3, volume.affine, tmp_path / "tripled.nii.gz"))
    metadata = {"segmentAttributes": [[{"labelID": 6, "SegmentLabel": "B"}, {"labelID": 3, "SegmentLabel": "A"}]]}
    renumbered = preview.overlay_from_label_maps([tripled], volume, metadata)
    numbers = {s.label: s.number for s in renumbered.segments.values()}
    assert sorted(numbers.values()) == [1, 2]
    array = renumbered.arrays()[0]
    assert not np.shares_memory(array, tripled.array)
    expected = np.where(labels == 1, numbers["A"], np.where(labels == 2, numbers["B"], 0))
    assert np.array_equal(array, expected)
