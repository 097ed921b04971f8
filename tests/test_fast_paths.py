"""The speed-ups of conversions give exactly what the plain path gives.

Each test runs a fast path and the straightforward one on the same input and compares
bytes or arrays: two volumes encoded at a time equal one after another, in order.
"""

from __future__ import annotations

import sys

import numpy as np

from qidicom.geometry import Volume
from qidicom.writers import volume_bytes, volumes_bytes


def _volumes() -> list[Volume]:
    rng = np.random.default_rng(7)
    affine = np.diag([0.8, 0.8, 1.5, 1.0])
    shapes = [(40, 30, 12), (17, 23, 5), (64, 64, 9)]
    volumes = []
    for n, shape in enumerate(shapes):
        array = np.asfortranarray((rng.random(shape) > 0.7).astype(np.uint8) * (n + 1))
        volumes.append(Volume(array, affine, f"segment {n + 1}"))
    volumes.append(Volume(rng.random((20, 20, 4)).astype(np.float32), affine, "probabilities"))
    return volumes


def test_volumes_encoded_two_at_a_time_equal_one_after_another():
    for image_type in ("nrrd", "nii"):
        volumes = _volumes()
        serial = [volume_bytes(volume, image_type) for volume in volumes]
        assert volumes_bytes(iter(volumes), image_type, workers=2) == serial
        assert volumes_bytes(volumes, image_type, workers=1) == serial
        assert len(set(serial)) == len(serial)  # distinct files, so order is checked too


def test_gzip_in_pieces_is_one_gzip_member_of_the_data_whatever_the_threads():
    import gzip
    import zlib

    from qidicom.writers import GZIP_PIECE, gzip_bytes

    rng = np.random.default_rng(3)
    sizes = [0, 1, 1000, GZIP_PIECE - 1, GZIP_PIECE, GZIP_PIECE + 1, 2 * GZIP_PIECE + 12345]
    for size in sizes:
        data = (rng.random(size) > 0.9).astype(np.uint8).tobytes()  # sparse, like label maps
        one, two = gzip_bytes(data, 3, workers=1), gzip_bytes(data, 3, workers=2)
        assert one == two
        for member in (one, gzip_bytes(data, 3, workers=2, strategy=zlib.Z_RLE)):
            assert gzip.decompress(member) == data
            inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)  # one member, nothing after it
            assert inflater.decompress(member) == data and inflater.eof and not inflater.unused_data
        # Priming each piece with the data before it keeps the size of deflating it whole.
        assert len(one) <= len(zlib.compress(data, 3, wbits=31)) * 1.01 + 64


def test_nrrd_written_with_pynrrds_header_and_its_voxels(tmp_path):
    import io

    import nrrd

    from qidicom.writers import volume_bytes

    array = np.asfortranarray(np.random.default_rng(5).random((33, 20, 7)).astype(np.float32))
    volume = Volume(array, np.array([[0.0, 0.9, 0, 10], [-0.9, 0, 0, 20], [0, 0, 1.5, 30], [0, 0, 0, 1]]), "map")
    data = volume_bytes(volume, "nrrd")
    path = tmp_path / "map.nrrd"
    path.write_bytes(data)
    read, header = nrrd.read(str(path))
    assert header["encoding"] == "gzip" and read.dtype == np.float32
    np.testing.assert_array_equal(read, array)
    # The header is what pynrrd writes for this volume gzip'd itself (but for its time stamp).
    expected = io.BytesIO()
    nrrd.write(expected, array, {
        "space": "left-posterior-superior", "space directions": volume.affine[:3, :3].T,
        "space origin": volume.affine[:3, 3], "kinds": ["domain"] * 3, "encoding": "gzip",
    })
    def lines(text: bytes) -> list[bytes]:
        return [line for line in text.split(b"\n\n")[0].split(b"\n") if not line.startswith(b"# on ")]
    assert lines(data) == lines(expected.getvalue())


def test_images_read_beside_the_series_as_one_after_the_other():
    from qidicom.errors import InputError
    from qidicom.readers import read_dicom_series, read_image, read_images_and_series
    from qidicom.samples import make_sample_study

    study = make_sample_study(rows=24, columns=20, slices=6)
    other = make_sample_study(rows=30, columns=26, slices=8, patient_id="OTHER")  # another grid
    (volume,), series = read_images_and_series([study.ct_labels], study.ct_series + other.ct_series)
    alone = read_image(study.ct_labels)
    np.testing.assert_array_equal(volume.array, alone.array)
    # Two series: the one the label map lies on is chosen, as with the volume given outright.
    expected = read_dicom_series(study.ct_series + other.ct_series, match=alone)
    assert [ds.SOPInstanceUID for ds in series.datasets] == [ds.SOPInstanceUID for ds in expected.datasets]
    assert series.warnings == expected.warnings
    # A broken image and broken references: the image's problem is the one reported.
    broken = ("labels.nrrd", b"NRRD0004\ntype: short\ndimension: 3\n\n")
    try:
        read_images_and_series([broken], [("x.dcm", b"not dicom")])
    except InputError as error:
        assert str(error).startswith("labels.nrrd")
    else:
        raise AssertionError("no error for a broken image")


def test_label_values_found_by_bits_or_counts_equal_numpys_unique():
    from qidicom.seg.write import _label_bits_by_slice, _label_values

    rng = np.random.default_rng(11)
    for dtype in (np.uint8, np.int16, np.uint16, np.int32, np.int64):
        for high in (0, 1, 9, 31, 32, 63, 64, 200, 1000):
            if high > np.iinfo(dtype).max:
                continue
            array = np.zeros((23, 17, 6), dtype, order=rng.choice(["C", "F"]))
            array[rng.random(array.shape) > 0.8] = rng.integers(0, high + 1, size=1)[0]
            spots = rng.integers(0, array.size, size=40)
            array.reshape(-1, order="A")[spots] = rng.integers(0, high + 1, size=40)
            array.reshape(-1, order="A")[spots[0]] = high
            assert _label_values(array) == set(np.unique(array).tolist()), (dtype, high)
            slices = _label_bits_by_slice(array)
            if high < 64:  # slice by slice, one bit per value
                assert slices == [sum(1 << int(v) for v in np.unique(array[:, :, k])) for k in range(6)], (dtype, high)
            else:
                assert slices is None
    for odd in (np.array([[[-1, 0, 3]]], np.int16), np.array([[[0.0, 2.0, 5.0]]]), np.ones((2, 2, 2), bool)):
        assert _label_values(odd) == set(np.unique(odd).tolist())


def test_a_conversion_command_line_is_parsed_without_the_batch_module(tmp_path):
    import subprocess
    import sys

    from qidicom import cli

    full, lean = cli.build_parser(), cli.build_parser(with_batch=False)

    def subcommands(parser):
        return next(a for a in parser._actions if isinstance(getattr(a, "choices", None), dict)).choices

    for name in cli.CONVERSION_COMMANDS:  # the same options, defaults and choices either way
        described = [
            [(a.option_strings, a.dest, a.default, a.choices, a.required) for a in subcommands(parser)[name]._actions]
            for parser in (full, lean)
        ]
        assert described[0] == described[1], name
    assert "batch" in subcommands(full) and "batch" not in subcommands(lean)
    code = (
        "import sys; from qidicom.cli import main;"
        f"status = main(['segimage2itkimage', '--inputDICOM', {str(tmp_path / 'missing.dcm')!r}, '--outputDirectory', {str(tmp_path)!r}]);"
        "print(status, 'qidicom.batch' in sys.modules)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["1", "False"] and "missing.dcm" in run.stderr


def test_bit_packing_equals_pydicoms_and_highdicom_writes_the_same_seg():
    import highdicom
    import pytest
    from pydicom.pixels.utils import pack_bits as pydicom_pack_bits

    from qidicom import seg
    from qidicom.readers import read_dicom_series, read_image
    from qidicom.samples import make_sample_study

    from qidicom.seg import build

    rng = np.random.default_rng(2)
    for by_words in (False, True):  # numpy's packbits (CPython) and eight bytes at a time (Pyodide)
        build.PACK_BY_WORDS = by_words
        try:
            for size in (1, 7, 8, 9, 64, 1000, 4096 + 3, 4096, 512 * 512):
                for dtype in (bool, np.uint8):
                    frame = (rng.random(size) > 0.6).astype(dtype)
                    for shaped in (frame, frame.reshape(1, -1), frame[::-1]):
                        for pad in (True, False):
                            assert seg.pack_bits(shaped, pad=pad) == pydicom_pack_bits(shaped, pad=pad), \
                                (size, dtype, pad, by_words)
            for other in (np.array([0, 1, 1, 0, 1, 0, 0, 1], np.int16), np.zeros(0, np.uint8), np.ones(16, np.uint8)):
                assert seg.pack_bits(other) == pydicom_pack_bits(other)
            for bad in ([0, 2, 1, 0, 0, 0, 0, 0], [0, 1, 1, 0, 0, 0, 0, 255], [128] + [0] * 15):
                with pytest.raises(ValueError, match="Only binary arrays"):
                    seg.pack_bits(np.array(bad, np.uint8))
        finally:
            build.PACK_BY_WORDS = sys.platform == "emscripten"
    # Every byte value in every place of a word: 0 and 1 packed as numpy packs them, others refused.
    for place in range(8):
        for value in range(256):
            word = np.zeros(16, np.uint8)
            word[place] = word[8 + (7 - place)] = value
            ours = build.packed_by_words(word)
            if value <= 1:
                assert ours == np.packbits(word, bitorder="little").tobytes()
            else:
                assert ours is None, (place, value)

    # A BINARY SEG: the same pixel data through highdicom with either packing, and pydicom's
    # function back in place afterwards.
    study = make_sample_study(rows=24, columns=20, slices=6)
    series = read_dicom_series(study.ct_series)
    labels = read_image(study.ct_labels)
    build.PACK_BY_WORDS = True
    try:
        by_words = seg.write_segmentation([labels], study.seg_metadata, series, segmentation_type="binary")
    finally:
        build.PACK_BY_WORDS = sys.platform == "emscripten"
    written = seg.write_segmentation([labels], study.seg_metadata, series, segmentation_type="binary")
    assert by_words.dataset.PixelData == written.dataset.PixelData
    assert highdicom.image.pack_bits is pydicom_pack_bits
    rows, columns = int(written.dataset.Rows), int(written.dataset.Columns)
    expected = b"".join(
        pydicom_pack_bits(
            (np.asarray(_frame_labels(labels, series, item)) == int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
             ).astype(np.uint8).reshape(-1), pad=False)
        for item in written.dataset.PerFrameFunctionalGroupsSequence
    )
    expected += b"\0" if len(expected) % 2 else b""
    assert written.dataset.PixelData == expected and rows * columns % 8 == 0


def _frame_labels(labels, series, item) -> np.ndarray:
    """The label map's plane at a frame's position, as (rows, columns)."""
    position = np.asarray(item.PlanePositionSequence[0].ImagePositionPatient, float)
    k = int(np.argmin(np.linalg.norm(series.stack.positions - position, axis=1)))
    return labels.array[:, :, k].T


def test_finite_range_of_a_map_with_and_without_nan():
    from qidicom.pm import _finite_range

    rng = np.random.default_rng(4)
    for dtype in (np.float32, np.float64):
        values = (rng.normal(size=(30, 20, 5)) * 1e-3).astype(dtype)
        assert _finite_range(values) == (float(values.min()), float(values.max()))
        holed = values.copy()
        holed[0, 0, 0], holed[1, 2, 3] = np.nan, np.inf
        finite = values[np.isfinite(holed)]
        assert _finite_range(holed) == (float(finite.min()), float(finite.max()))
        assert _finite_range(np.full((2, 2, 2), np.nan, dtype)) == (0.0, 0.0)
        assert _finite_range(np.zeros((0, 3, 3), dtype)) == (0.0, 0.0)
    assert _finite_range(np.array([[[3, -2, 7]]], np.int16)) == (-2, 7)


def _written_by_highdicom_alone(write) -> bytes:
    """``written_alike`` of what ``write()`` makes with highdicom's own functions (no shortcuts)."""
    from synthetic import written_alike

    from qidicom.seg import build

    build.SHORTCUTS = False
    try:
        return written_alike(write().dataset)
    finally:
        build.SHORTCUTS = True


def test_segment_frames_made_without_highdicoms_cast_give_the_same_seg():
    import copy

    import highdicom
    import pytest
    from synthetic import written_alike

    from qidicom.samples import make_sample_study

    from qidicom.readers import read_dicom_series, read_image
    from qidicom.seg import build
    from qidicom.seg.write import write_segmentation

    highdicoms = highdicom.seg.Segmentation.__dict__["_get_segment_pixel_array"]
    binary = highdicom.seg.SegmentationTypeValues.BINARY
    # The frame function itself, plane by plane: the same values, type and layout as highdicom's.
    rng = np.random.default_rng(11)
    for dtype in (np.uint8, np.uint16, np.int32):
        plane = rng.integers(0, 4, size=(9, 13)).astype(dtype)
        for kind in highdicom.seg.SegmentationTypeValues:
            for described in (np.array([1, 2, 3]), np.array([1])):
                with build._highdicom_shortcuts():
                    ours = build.segment_mask(plane.copy(), 2, described, kind, 255, np.uint8)
                theirs = highdicoms.__func__(plane.copy(), 2, described, kind, 255, np.uint8)
                np.testing.assert_array_equal(ours, theirs)
                assert ours.dtype == theirs.dtype and ours.flags.c_contiguous and ours.flags.writeable
                fast = ours.base is not None and ours.base.dtype == np.bool_  # the comparison's own array
                assert fast == (kind == binary and len(described) > 1)
    with build._highdicom_shortcuts():
        assert np.shares_memory(build.segment_mask(plane, 1, np.array([1]), binary, 255, np.uint8), plane) == \
            np.shares_memory(highdicoms.__func__(plane, 1, np.array([1]), binary, 255, np.uint8), plane)

    # Whole SEGs, either way: the same bytes once the UIDs and times made while writing are alike.
    study = make_sample_study(rows=21, columns=23, slices=7)  # frames of 483 pixels: not whole bytes
    series = read_dicom_series(study.ct_series)
    labels = read_image(study.ct_labels)
    liver_only = copy.deepcopy(study.seg_metadata)
    liver_only["segmentAttributes"] = [liver_only["segmentAttributes"][0][:1]]
    liver = Volume((labels.array == 1).astype(np.uint8), labels.affine, "liver")
    cases = {
        "binary": lambda: write_segmentation([labels], study.seg_metadata, series),
        "binary, empty frames kept": lambda: write_segmentation([labels], study.seg_metadata, series, skip_empty=False),
        "binary, deflated": lambda: write_segmentation([labels], study.seg_metadata, series, compress="deflate"),
        "binary, one segment": lambda: write_segmentation([liver], liver_only, series),
        "labelmap": lambda: write_segmentation([labels], study.seg_metadata, series, segmentation_type="labelmap"),
        "fractional": lambda: write_segmentation([liver], liver_only, series, segmentation_type="fractional"),
    }
    for name, case in cases.items():
        fast = written_alike(case().dataset)
        assert highdicom.seg.Segmentation.__dict__["_get_segment_pixel_array"] is highdicoms  # put back
        plain = _written_by_highdicom_alone(case)
        assert fast == plain, name
    with pytest.raises(AssertionError):  # the comparison sees a changed frame
        changed = case().dataset
        changed.PixelData = bytes([changed.PixelData[0] ^ 1]) + changed.PixelData[1:]
        assert written_alike(changed) == plain


def test_label_map_frames_checked_without_highdicoms_copy_as_highdicom_checks_them():
    import highdicom
    import pytest

    from qidicom.seg import build

    kinds = highdicom.seg.SegmentationTypeValues
    theirs = highdicom.seg.Segmentation._check_and_cast_pixel_array  # bound to the class
    rng = np.random.default_rng(5)
    frames8 = rng.integers(0, 4, size=(3, 9, 13)).astype(np.uint8)
    cases = [
        (frames8, np.array([1, 2, 3]), kinds.LABELMAP, np.uint8),  # the writer's usual case: no copy
        (frames8[0], np.array([1, 2, 3]), kinds.LABELMAP, np.uint8),  # one plane
        (frames8 * 2, np.array([2, 4, 6]), kinds.LABELMAP, np.uint8),  # gapped numbers
        (frames8.astype(np.uint16) * 300, np.array([300, 600, 900]), kinds.LABELMAP, np.uint16),
        (frames8.astype(np.uint16), np.array([1, 2, 3]), kinds.LABELMAP, np.uint8),  # a real cast: highdicom's
        (frames8, np.array([1, 2, 3]), kinds.BINARY, np.uint8),  # not a label map: highdicom's
        (np.stack([frames8 == 1, frames8 == 2], axis=-1).astype(np.uint8), np.array([1, 2]), kinds.LABELMAP, np.uint8),
        (frames8, np.array([1, 2]), kinds.LABELMAP, np.uint8),  # value 3 undescribed
        (frames8 * 2, np.array([2, 4]), kinds.LABELMAP, np.uint8),  # value 6 undescribed, gapped
    ]
    for array, numbers, kind, dtype in cases:
        with build._highdicom_shortcuts():
            try:
                ours = highdicom.seg.Segmentation._check_and_cast_pixel_array(array, numbers, kind, dtype=dtype)
            except ValueError as error:
                ours = error
        try:
            plain = theirs(array, numbers, kind, dtype=dtype)
        except ValueError as error:
            assert isinstance(ours, ValueError) and str(ours) == str(error)
            continue
        (our_array, our_overlap), (plain_array, plain_overlap) = ours, plain
        np.testing.assert_array_equal(our_array, plain_array)
        assert our_array.dtype == plain_array.dtype and our_overlap == plain_overlap
        taken_as_is = kind == kinds.LABELMAP and array.ndim < 4 and array.dtype == np.dtype(dtype)
        if taken_as_is:
            assert our_array is array and plain_array is not array  # highdicom's copy, left out
        else:
            assert (our_array is array) == (plain_array is array)  # highdicom's own answer
    assert highdicom.seg.Segmentation._check_and_cast_pixel_array.__func__ is theirs.__func__  # put back
    with pytest.raises(AssertionError):  # the comparison above sees a differing array
        np.testing.assert_array_equal(frames8, frames8 + 1)


def test_segments_known_absent_from_a_plane_are_omitted_as_highdicom_omits_them(monkeypatch):
    import copy

    import highdicom

    from synthetic import written_alike

    from qidicom.readers import read_dicom_series, read_image
    from qidicom.samples import make_sample_study
    from qidicom.seg import build
    from qidicom.seg.write import write_segmentation

    study = make_sample_study(rows=21, columns=23, slices=7)  # six organs, each on some slices only
    series = read_dicom_series(study.ct_series)
    labels = read_image(study.ct_labels)
    organs = study.seg_metadata["segmentAttributes"][0]
    # Two files, the second's label 5 becoming segment 2: the table maps labels to numbers.
    two_files = copy.deepcopy(study.seg_metadata)
    two_files["segmentAttributes"] = [[organs[0]], [dict(organs[1], labelID=5)]]
    liver = Volume((labels.array == 1).astype(np.uint8), labels.affine, "liver.nii.gz")
    spleen_as_5 = Volume((labels.array == 2).astype(np.uint8) * 5, labels.affine, "spleen.nii.gz")
    # Labels of 64 and more are not found by bits: highdicom's own tests then.
    high = copy.deepcopy(study.seg_metadata)
    for spec in high["segmentAttributes"][0]:
        spec["labelID"] += 100
    high_labels = Volume(np.where(labels.array > 0, labels.array + 100, 0).astype(np.uint16), labels.affine, "high")
    # Overlapping files: a stack of segments (4D), not label frames.
    overlapping = copy.deepcopy(two_files)
    overlapping["segmentAttributes"][1][0]["labelID"] = 1
    liver_again = Volume(liver.array.copy(), labels.affine, "liver-again.nii.gz")
    cases = {
        "one file": (lambda: write_segmentation([labels], study.seg_metadata, series), True),
        "label IDs as numbers": (
            lambda: write_segmentation([labels], study.seg_metadata, series, use_label_id_as_segment_number=True), True),
        "two files, relabelled": (lambda: write_segmentation([liver, spleen_as_5], two_files, series), True),
        "labels from 100": (lambda: write_segmentation([high_labels], high, series), False),
        "overlapping files": (lambda: write_segmentation([liver, liver_again], overlapping, series), False),
        "empty frames kept": (lambda: write_segmentation([labels], study.seg_metadata, series, skip_empty=False), False),
    }
    made = []  # the segment numbers of frames known absent
    make_known = build._known_frame

    def counted(plane, number, present):
        if not present:
            made.append(number)
        return make_known(plane, number, present)

    monkeypatch.setattr(build, "_known_frame", counted)
    for name, (case, known) in cases.items():
        made.clear()
        dataset = case().dataset
        fast = written_alike(dataset)
        assert not build._segments_by_frame  # registered only while building
        assert "_get_nonempty_plane_indices" not in highdicom.seg.Segmentation.__dict__  # _Image's again
        if known:
            # Every (plane, segment) pair highdicom looked at on a non-empty plane either
            # became a frame or was known absent.
            segments = len(dataset.SegmentSequence)
            planes = {item.FrameContentSequence[0].DimensionIndexValues[1]
                      for item in dataset.PerFrameFunctionalGroupsSequence}
            assert len(made) == len(planes) * segments - int(dataset.NumberOfFrames) > 0, name
        else:
            assert not made, name
        plain = _written_by_highdicom_alone(case)
        assert fast == plain, name


def test_a_frame_of_known_emptiness_answers_any_as_its_values_do_and_arrays_made_from_it_are_scanned():
    from qidicom.seg.build import _known_frame

    plane = np.array([[0, 2, 1], [2, 0, 0]], np.uint16)
    absent = _known_frame(plane, 3, present=False)
    assert not np.any(absent) and not absent.any() and not absent.flags.writeable
    assert np.array_equal(absent, np.zeros((2, 3), np.uint8)) and _known_frame(plane, 5, False) is absent
    present = _known_frame(plane, 2, present=True)
    np.testing.assert_array_equal(present, (plane == 2).astype(np.uint8))
    assert present.dtype == np.uint8 and present.flags.writeable and np.any(present)
    # What highdicom and the packing derive from a frame is tested by its values.
    assert np.any(absent + 1) and not np.any(present.flatten() * 0) and not np.any(present[0, :1])
    assert np.array_equal(present.any(axis=0), [True, True, False])  # with arguments: numpy's answer


def test_planes_with_segments_found_from_the_table_as_highdicom_finds_them_by_scanning():
    import highdicom

    from qidicom.seg import build

    theirs = highdicom.image._Image._get_nonempty_plane_indices
    frames = np.zeros((5, 4, 6), np.uint8)
    frames[1, 2, 3], frames[3, 0, 0], frames[3, 1, 1] = 2, 1, 2
    table = np.array([[n > 0 and (frame == n).any() for n in range(3)] for frame in frames])  # numbers as columns
    with build._highdicom_shortcuts(), build._segments_known(frames, table):
        assert highdicom.seg.Segmentation._get_nonempty_plane_indices(frames) == theirs(frames) == ([1, 3], False)
        empty = np.zeros_like(frames)  # no plane with a segment: highdicom's own answer (keep all)
        with build._segments_known(empty, np.zeros_like(table)):
            assert build.nonempty_planes(empty) == theirs(empty) == ([0, 1, 2, 3, 4], True)
        unregistered = frames.copy()
        unregistered[0, 0, 0] = 1
        assert build.nonempty_planes(unregistered) == theirs(unregistered) == ([0, 1, 3], False)
