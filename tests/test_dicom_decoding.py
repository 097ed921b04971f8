"""qidicom.dicom_decoding reads a SEG's functional groups and native pixel data from its
bytes as pydicom does: proved here on every kind of SEG (qidicom's binary, fractional and
labelmap ones, 8- and 16-bit, RLE, deflated, with and without empty frames, highdicom's,
pydicom's defined and undefined lengths, dcmqi's own from ../shared), and shown to hand
everything else (Implicit VR, Big Endian, odd values and structures) back to pydicom, so
that reading a SEG gives what pydicom's reading gives."""

from __future__ import annotations

import io
import re

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.sequence import Sequence

import synthetic
from qidicom import readers
from qidicom.dicom_decoding import PackedFrames, Undecoded, frame_groups_from_dataset, native_frames, split_functional_groups
from qidicom.errors import InputError
from qidicom.seg import binary_to_labelmap, read_segmentation, segmentation_from_files, segmentation_to_files


def _segment(label_id: int, label: str) -> dict:
    return {
        "labelID": label_id, "SegmentLabel": label, "SegmentAlgorithmType": "MANUAL",
        "SegmentedPropertyCategoryCodeSequence": {"CodeValue": "85756007", "CodingSchemeDesignator": "SCT", "CodeMeaning": "Tissue"},
        "SegmentedPropertyTypeCodeSequence": {"CodeValue": "10200004", "CodingSchemeDesignator": "SCT", "CodeMeaning": "Liver"},
        "recommendedDisplayRGBValue": [200, 100 + label_id, 50],
    }


def _metadata(count: int) -> dict:
    return {"ContentCreatorName": "Doe^Jane", "SeriesDescription": "Decoding test", "SeriesNumber": "300",
            "InstanceNumber": "1", "segmentAttributes": [[_segment(n, f"Sphere {n}") for n in range(1, count + 1)]]}


def _undefined_lengths(data: bytes, undefined: bool) -> bytes:
    """The same SEG written by pydicom with every sequence and item of undefined length
    (as DCMTK writes them) or of defined length."""
    dataset = pydicom.dcmread(io.BytesIO(data))
    for element in dataset.iterall():
        if element.VR == "SQ":
            element.is_undefined_length = undefined
            for item in element.value:
                item.is_undefined_length_sequence_item = undefined
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _highdicom_seg(datasets, labels: np.ndarray, segmentation_type: str) -> bytes:
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=n, segment_label=f"Sphere {n}",
            segmented_property_category=hd.sr.CodedConcept("85756007", "SCT", "Tissue"),
            segmented_property_type=hd.sr.CodedConcept("10200004", "SCT", "Liver"),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        )
        for n in range(1, int(labels.max()) + 1)
    ]
    pixels = np.transpose(labels, (2, 1, 0)).astype(np.uint8)  # [slice, row, column]
    if segmentation_type == "FRACTIONAL":
        pixels = np.stack([pixels == n for n in range(1, int(labels.max()) + 1)], axis=-1).astype(np.float32) * 0.5
    segmentation = hd.seg.Segmentation(
        source_images=datasets, pixel_array=pixels, segmentation_type=segmentation_type,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=5, sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer="highdicom", manufacturer_model_name="test", software_versions="1",
        device_serial_number="1",
    )
    buffer = io.BytesIO()
    segmentation.save_as(buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def segs(tmp_path_factory) -> dict[str, bytes]:
    """Every kind of SEG qidicom, highdicom and pydicom write, by name."""
    work = tmp_path_factory.mktemp("decoding")
    made: dict[str, bytes] = {}
    for name, (rows, columns) in {"": (32, 40), " odd grid": (23, 37)}.items():
        datasets = synthetic.make_ct_series(rows=rows, columns=columns, slices=7)
        directory = work / f"ct{rows}"
        synthetic.write_series(datasets, directory)
        shape = synthetic.grid_shape(datasets)
        labels = synthetic.sphere_labels(shape, [((10, 10, 2), 4, 1), ((25, 12, 4), 3, 2), ((12, 20, 3), 2, 3)])
        path = synthetic.save_nifti(labels, synthetic.series_affine(datasets), work / f"labels{rows}.nii.gz")
        metadata = _metadata(3)

        def write(**options) -> bytes:
            return segmentation_from_files([path], metadata, directory, **options).data

        made[f"binary{name}"] = write()
        if name:
            made[f"labelmap{name}"] = write(segmentation_type="labelmap")
            continue
        made["binary deflated"] = write(compress="deflate")
        made["binary with empty frames"] = write(skip_empty=False)
        made["labelmap"] = write(segmentation_type="labelmap")
        made["labelmap deflated"] = write(segmentation_type="labelmap", compress="deflate")
        made["labelmap RLE"] = write(segmentation_type="labelmap", compress="rle")
        made["labelmap with empty frames"] = write(segmentation_type="labelmap", skip_empty=False)
        made["labelmap 16-bit palette"] = binary_to_labelmap(made["binary"], use_palette=True, force_16_bit=True).data
        probabilities = np.clip(labels.astype(np.float32) / 3, 0, 1)
        fractional = synthetic.save_nifti(probabilities, synthetic.series_affine(datasets), work / "p.nii.gz")
        made["fractional"] = segmentation_from_files(
            [fractional], _metadata(1), directory, segmentation_type="fractional").data
        made["highdicom binary"] = _highdicom_seg(datasets, labels, "BINARY")
        made["highdicom fractional"] = _highdicom_seg(datasets, labels, "FRACTIONAL")
        made["binary, undefined lengths"] = _undefined_lengths(made["binary"], True)
        made["binary, defined lengths"] = _undefined_lengths(made["highdicom binary"], False)
    return made


#: dcmqi's own SEGs in ../shared (compared only when present).
DCMQI_SEGS = [
    "segmentations/liver.dcm", "segmentations/partial_overlaps.dcm", "segmentations/sparse-labelmap-noppv.dcm",
    "segmentations/sparse-labelmap-ppv5.dcm", "segmentations/23x38x3/seg/label.seg",
    "segmentations/24x38x3/seg/label.seg", "sr-example/seg.dcm",
]

KINDS = [
    "binary", "binary odd grid", "binary deflated", "binary with empty frames", "labelmap", "labelmap odd grid",
    "labelmap deflated", "labelmap RLE", "labelmap with empty frames", "labelmap 16-bit palette", "fractional",
    "highdicom binary", "highdicom fractional", "binary, undefined lengths", "binary, defined lengths",
]


@pytest.fixture(params=KINDS + [f"dcmqi {name}" for name in DCMQI_SEGS])
def seg_bytes(request, segs) -> bytes:
    if request.param.startswith("dcmqi "):
        shared = request.getfixturevalue("shared")
        return (shared / "data" / "dcmqi" / request.param[len("dcmqi "):]).read_bytes()
    return segs[request.param]


def _frame_count(dataset) -> int:
    return int(dataset.get("NumberOfFrames", 1) or 1)


def test_the_variants_cover_what_they_are_named_for(segs):
    """The SEGs above really are of the syntaxes, bit depths and encodings they are named for."""
    def read(name):
        return pydicom.dcmread(io.BytesIO(segs[name]))

    assert read("binary deflated").file_meta.TransferSyntaxUID == pydicom.uid.DeflatedExplicitVRLittleEndian
    assert read("labelmap RLE").file_meta.TransferSyntaxUID == pydicom.uid.RLELossless
    assert int(read("labelmap 16-bit palette").BitsAllocated) == 16
    assert int(read("labelmap").BitsAllocated) == 8 and int(read("binary").BitsAllocated) == 1
    assert (int(read("binary odd grid").Rows) * int(read("binary odd grid").Columns)) % 8 != 0
    assert _frame_count(read("binary with empty frames")) > _frame_count(read("binary"))
    assert read("fractional").SegmentationType == "FRACTIONAL"
    undefined = read("binary, undefined lengths")
    defined = read("binary, defined lengths")
    assert undefined["PerFrameFunctionalGroupsSequence"].is_undefined_length
    assert undefined.PerFrameFunctionalGroupsSequence[0].is_undefined_length_sequence_item
    assert not defined["PerFrameFunctionalGroupsSequence"].is_undefined_length
    assert not defined.PerFrameFunctionalGroupsSequence[0].is_undefined_length_sequence_item


def test_decoded_functional_groups_equal_pydicoms(seg_bytes):
    split = split_functional_groups(seg_bytes)
    whole = pydicom.dcmread(io.BytesIO(seg_bytes))
    count = _frame_count(whole)
    decoded = split.frame_groups(count)
    assert decoded == frame_groups_from_dataset(whole, count)
    assert len(decoded.positions) == count and None not in decoded.positions
    if whole.SegmentationType != "LABELMAP":
        assert None not in decoded.segment_numbers


def test_the_rest_of_the_file_is_what_pydicom_reads_without_the_per_frame_groups(seg_bytes):
    split = split_functional_groups(seg_bytes)
    rest = pydicom.dcmread(io.BytesIO(split.remainder))
    whole = pydicom.dcmread(io.BytesIO(seg_bytes))
    assert split.transfer_syntax == whole.file_meta.TransferSyntaxUID
    assert "PerFrameFunctionalGroupsSequence" not in rest and "PerFrameFunctionalGroupsSequence" in whole
    del whole.PerFrameFunctionalGroupsSequence
    assert rest == whole  # every other element, Pixel Data included, the same
    meta, expected = dict(rest.file_meta), dict(whole.file_meta)
    if whole.file_meta.TransferSyntaxUID == pydicom.uid.DeflatedExplicitVRLittleEndian:
        # Inflated for pydicom, so its file meta names the inflated syntax (and group length).
        assert rest.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        for tag in (0x00020000, 0x00020010):
            meta.pop(tag), expected.pop(tag)
    assert meta == expected
    # Native Pixel Data can be taken out too: a view of the file's bytes, not a copy.
    cut = split_functional_groups(seg_bytes, cut_pixels=True)
    rest = pydicom.dcmread(io.BytesIO(cut.remainder))
    if pydicom.uid.UID(split.transfer_syntax).is_compressed:  # encapsulated: left in
        assert cut.pixels is None and rest == whole
        return
    assert "PixelData" not in rest
    assert isinstance(cut.pixels, memoryview) and cut.pixel_vr == whole["PixelData"].VR
    if split.transfer_syntax != pydicom.uid.DeflatedExplicitVRLittleEndian:
        assert cut.pixels.obj is seg_bytes
    rest.add_new(0x7FE00010, cut.pixel_vr, bytes(cut.pixels))
    assert rest == whole
    # And sequences the caller does not use: the Referenced Series Sequence here.
    fewer = pydicom.dcmread(io.BytesIO(split_functional_groups(seg_bytes, leave_out=(0x00081115,)).remainder))
    assert "ReferencedSeriesSequence" in whole and "ReferencedSeriesSequence" not in fewer
    del whole.ReferencedSeriesSequence
    assert fewer == whole


def test_native_frames_equal_pydicoms_pixel_array(seg_bytes):
    dataset = pydicom.dcmread(io.BytesIO(seg_bytes))
    syntax = str(dataset.file_meta.TransferSyntaxUID)
    expected = dataset.pixel_array.reshape(_frame_count(dataset), int(dataset.Rows), int(dataset.Columns))
    if pydicom.uid.UID(syntax).is_compressed:
        with pytest.raises(Undecoded):
            native_frames(dataset, syntax)
        return
    frames = native_frames(dataset, syntax)
    if isinstance(frames, PackedFrames):
        assert frames.shape == expected.shape
        np.testing.assert_array_equal(frames[:], expected)
        picked = [len(frames) - 1, 0, len(frames) // 2]  # any frames, in any order
        np.testing.assert_array_equal(frames[np.array(picked)], expected[picked])
        np.testing.assert_array_equal(frames[1], expected[1])
    else:
        assert frames.dtype == expected.dtype
        np.testing.assert_array_equal(frames, expected)


def _contents(contents) -> dict:
    return {
        "affine": contents.affine.tolist(), "type": contents.segmentation_type, "metadata": contents.metadata,
        "warnings": contents.warnings, "segments": [(s.number, s.attributes) for s in contents.segments],
        "label map": None if contents.label_map is None else (contents.label_map.dtype, contents.label_map.tobytes("F")),
    }


def _files(source, **options) -> dict[str, bytes]:
    files = segmentation_to_files(source, prefix="seg", **options)
    # pynrrd writes the time into a comment of each NRRD header.
    return {f.name: re.sub(rb"\n# on [^\n]*\n", b"\n# on (time)\n", f.data, count=1) for f in files}


def test_reading_the_bytes_gives_what_reading_pydicoms_dataset_gives(seg_bytes, monkeypatch):
    """read_segmentation of the file (functional groups and pixels from the bytes) and of
    the dataset pydicom read (everything through pydicom, as before) agree in every part."""
    def whole_file_read(*args, **kwargs):
        raise AssertionError("the whole file was read by pydicom")

    with monkeypatch.context() as patch:  # the bytes are decoded here, not handed to pydicom whole
        patch.setattr("qidicom.seg.read.read_dicom", whole_file_read)
        fast = read_segmentation(seg_bytes, "seg.dcm")
    dataset = pydicom.dcmread(io.BytesIO(seg_bytes))
    slow = read_segmentation(dataset, "seg.dcm")
    assert _contents(fast) == _contents(slow)
    for a, b in zip(fast.segments, slow.segments):
        assert a.array.dtype == b.array.dtype and a.array.flags.f_contiguous == b.array.flags.f_contiguous
        np.testing.assert_array_equal(a.array, b.array)


def test_written_files_are_those_of_pydicoms_reading(seg_bytes, monkeypatch):
    """segimage2itkimage's files, byte for byte, with the bytes decoded here and with the
    whole file read by pydicom (the decoder made to refuse everything)."""
    fast = _files(seg_bytes)

    def refuse(*args, **kwargs):
        raise Undecoded("made to refuse")

    monkeypatch.setattr("qidicom.seg.read.split_functional_groups", refuse)
    monkeypatch.setattr("qidicom.seg.read.native_frames", refuse)
    assert _files(seg_bytes) == fast
    dataset = pydicom.dcmread(io.BytesIO(seg_bytes))
    if dataset.SegmentationType != "FRACTIONAL":
        merged = _files(seg_bytes, merge_segments=True)
        monkeypatch.undo()
        assert _files(seg_bytes, merge_segments=True) == merged


# --------------------------------------------------------------------------- refusals


def _reencoded(data: bytes, syntax: pydicom.uid.UID) -> bytes:
    dataset = pydicom.dcmread(io.BytesIO(data))
    dataset.file_meta.TransferSyntaxUID = syntax
    buffer = io.BytesIO()  # (1- and 8-bit pixels: OB, no bytes to swap for Big Endian)
    pydicom.dcmwrite(buffer, dataset, enforce_file_format=True, implicit_vr=syntax.is_implicit_VR,
                     little_endian=syntax.is_little_endian)
    return buffer.getvalue()


@pytest.mark.parametrize("syntax", [pydicom.uid.ImplicitVRLittleEndian, pydicom.uid.ExplicitVRBigEndian])
def test_implicit_vr_and_big_endian_are_read_by_pydicom(segs, syntax):
    for name in ("binary", "labelmap"):
        explicit = segs[name]
        other = _reencoded(explicit, syntax)
        assert pydicom.dcmread(io.BytesIO(other)).file_meta.TransferSyntaxUID == syntax
        with pytest.raises(Undecoded):
            split_functional_groups(other)
        assert _contents(read_segmentation(other, "seg.dcm")) == _contents(read_segmentation(explicit, "seg.dcm"))


def _per_frame_value(data: bytes, tag: bytes, vr: bytes, occurrence: int = 0) -> tuple[int, int]:
    """(start, length) of a value of ``tag`` (little-endian tag bytes) in the Per-Frame
    Functional Groups Sequence of an Explicit VR Little Endian file."""
    start = data.index(b"\x00\x52\x30\x92SQ")  # (5200,9230)
    at = start
    for _ in range(occurrence + 1):
        at = data.index(tag + vr, at + 1)
    return at + 8, int.from_bytes(data[at + 6:at + 8], "little")


POSITION = b"\x20\x00\x32\x00"  # (0020,0032) Image Position (Patient)
SEGMENT_NUMBER = b"\x62\x00\x0b\x00"  # (0062,000B) Referenced Segment Number


def _patched(data: bytes, start: int, value: bytes) -> bytes:
    return data[:start] + value + data[start + len(value):]


def test_the_comparison_sees_a_change_of_one_value(segs):
    """A position of one frame changed in the bytes (same length): the decoder reads the
    change, so it no longer equals pydicom's reading of the original, and equals
    pydicom's reading of the changed file."""
    data = segs["binary"]
    start, length = _per_frame_value(data, POSITION, b"DS", occurrence=2)
    text = data[start:start + length]
    changed = text.replace(text.split(b"\\")[0], b"9" * len(text.split(b"\\")[0]), 1)
    assert changed != text and len(changed) == len(text)
    patched = _patched(data, start, changed)
    count = _frame_count(pydicom.dcmread(io.BytesIO(data)))
    decoded = split_functional_groups(patched).frame_groups(count)
    assert decoded != frame_groups_from_dataset(pydicom.dcmread(io.BytesIO(data)), count)
    assert decoded == frame_groups_from_dataset(pydicom.dcmread(io.BytesIO(patched)), count)
    assert decoded.positions[2][0] == float(b"9" * len(text.split(b"\\")[0]))


@pytest.mark.parametrize("value", [b"1.5\\x\\-3", b"1.5\\\\-3.0", b"-204.8\\0\x00"])
def test_decimal_strings_pydicom_would_read_otherwise_are_left_to_pydicom(segs, value):
    """Not a number, an empty value among three, a NUL where pydicom strips only spaces."""
    data = segs["binary"]
    start, length = _per_frame_value(data, POSITION, b"DS")
    patched = _patched(data, start, value.ljust(length, b" ")[:length])
    split = split_functional_groups(patched)
    with pytest.raises(Undecoded):
        split.frame_groups(_frame_count(pydicom.dcmread(io.BytesIO(patched))))
    # Read as pydicom reads it: what pydicom's reading gives, or its error.
    try:
        expected = _contents(read_segmentation(pydicom.dcmread(io.BytesIO(patched)), "seg.dcm"))
    except Exception as error:  # noqa: BLE001 - whatever it is, the same
        with pytest.raises(type(error)):
            read_segmentation(patched, "seg.dcm")
    else:
        assert _contents(read_segmentation(patched, "seg.dcm")) == expected


def test_a_segment_number_of_two_values_is_left_to_pydicom(segs):
    dataset = pydicom.dcmread(io.BytesIO(segs["binary"]))
    dataset.PerFrameFunctionalGroupsSequence[0].SegmentIdentificationSequence[0].ReferencedSegmentNumber = [1, 1]
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    data = buffer.getvalue()
    with pytest.raises(Undecoded):
        split_functional_groups(data).frame_groups(_frame_count(dataset))
    with pytest.raises(Exception):  # pydicom's value, a list, is no segment number
        read_segmentation(pydicom.dcmread(io.BytesIO(data)), "seg.dcm")
    with pytest.raises(Exception):
        read_segmentation(data, "seg.dcm")


def test_an_undefined_length_unknown_element_is_left_to_pydicom(segs):
    """A UN of undefined length holds Implicit VR data (PS3.5 6.2.2): not read here."""
    dataset = pydicom.dcmread(io.BytesIO(segs["binary"]))
    item = pydicom.Dataset()  # empty: the same in Implicit and Explicit VR
    item.is_undefined_length_sequence_item = True
    frame = dataset.PerFrameFunctionalGroupsSequence[0]
    frame.add_new(0x00091001, "SQ", Sequence([item]))
    frame[0x00091001].is_undefined_length = True
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    data = buffer.getvalue().replace(b"\x09\x00\x01\x10SQ", b"\x09\x00\x01\x10UN", 1)
    assert b"\x09\x00\x01\x10UN\x00\x00\xff\xff\xff\xff" in data
    with pytest.raises(Undecoded):
        split_functional_groups(data)
    assert _contents(read_segmentation(data, "seg.dcm")) == _contents(read_segmentation(segs["binary"], "seg.dcm"))


@pytest.mark.parametrize("name", ["binary", "binary, undefined lengths", "binary deflated"])
def test_a_file_cut_short_fails_as_pydicom_reading_it_fails(segs, name):
    data = segs[name]
    start = data.index(b"\x00\x52\x30\x92SQ") if name != "binary deflated" else 200
    cut = data[:start + (len(data) - start) // 3] if name != "binary deflated" else data[:len(data) // 2]
    with pytest.raises(Undecoded):
        split_functional_groups(cut)
    with pytest.raises(Exception) as expected:
        readers.read_dicom(cut, "seg.dcm")
    with pytest.raises(Exception) as raised:
        read_segmentation(cut, "seg.dcm")
    assert (type(raised.value), str(raised.value)) == (type(expected.value), str(expected.value))
    if name != "binary deflated":  # (pydicom's zlib.error on a cut deflated stream passes through readers)
        assert isinstance(raised.value, InputError)


@pytest.mark.parametrize("damage", ["item tag", "item length", "delimiter length"])
def test_damaged_structure_is_left_to_pydicom(segs, damage):
    """An item whose tag is not an item's, a length past its parent, a delimiter with a
    length: never decoded here; read_segmentation says what pydicom's reading says."""
    data = segs["binary, undefined lengths"]
    start = data.index(b"\x00\x52\x30\x92SQ\x00\x00\xff\xff\xff\xff") + 12  # the first item
    if damage == "item tag":
        patched = _patched(data, start, b"\xfe\xff\x01\xe0")
    elif damage == "item length":
        patched = _patched(data, start + 4, (len(data)).to_bytes(4, "little"))
    else:
        end = data.index(b"\xfe\xff\x0d\xe0\x00\x00\x00\x00", start)  # the first item delimiter
        patched = _patched(data, end + 4, b"\x04\x00\x00\x00")
    with pytest.raises(Undecoded):
        split_functional_groups(patched)
    try:
        expected = _contents(read_segmentation(pydicom.dcmread(io.BytesIO(patched)), "seg.dcm"))
    except Exception as error:  # noqa: BLE001 - whatever it is, the same
        with pytest.raises(type(error)):
            read_segmentation(patched, "seg.dcm")
    else:
        assert _contents(read_segmentation(patched, "seg.dcm")) == expected


def test_not_a_part_10_file_is_left_to_pydicom(segs):
    dataset = pydicom.dcmread(io.BytesIO(segs["binary"]))
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, dataset)
    bare = buffer.getvalue()[132:]  # no preamble
    with pytest.raises(Undecoded):
        split_functional_groups(bare)
    assert _contents(read_segmentation(bare, "seg.dcm")) == _contents(read_segmentation(segs["binary"], "seg.dcm"))


def test_a_deflated_file_larger_than_allowed_is_not_inflated_here(segs):
    data = segs["binary deflated"]
    with pytest.raises(Undecoded):
        split_functional_groups(data, max_inflated=1000)
    assert split_functional_groups(data, max_inflated=10**9).per_frame


def test_packed_frames_unpack_like_numpy_whatever_the_frame_size():
    rng = np.random.default_rng(7)
    for rows, columns in ((4, 4), (3, 5), (7, 9), (16, 16)):
        count = 5
        bits = rng.random((count, rows, columns)) > 0.5
        data = np.packbits(bits.ravel(), bitorder="little").tobytes()
        frames = PackedFrames(data, count, rows, columns)
        np.testing.assert_array_equal(frames[:], bits)
        np.testing.assert_array_equal(frames[np.array([4, 0, 2])], bits[[4, 0, 2]])
        np.testing.assert_array_equal(frames[3], bits[3])


def test_a_deflated_seg_that_inflates_past_the_limit_is_refused_in_bounded_memory(tmp_path):
    """A SEG of 3 GB of zeros deflated into a few MB: refused while it is measured, as any
    DICOM file is (readers), never inflated whole by the decoder."""
    import json
    import subprocess
    import sys
    import zlib

    from pydicom.dataset import FileMetaDataset
    from pydicom.filewriter import write_file_meta_info

    from qidicom.readers import MAX_DEFLATED_DICOM_BYTES

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.66.4"  # Segmentation Storage
    meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
    stream = io.BytesIO()
    stream.write(bytes(128) + b"DICM")
    write_file_meta_info(stream, meta)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    step = 2**24
    block = compressor.compress(bytes(step)) + compressor.flush(zlib.Z_FULL_FLUSH)
    bomb = tmp_path / "bomb.dcm"
    bomb.write_bytes(stream.getvalue() + block * (3 * 2**30 // step) + compressor.flush())
    assert bomb.stat().st_size < 5 * 2**20
    measure = (
        "import json, resource, subprocess, sys\n"
        "run = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024\n"
        "print(json.dumps({'returncode': run.returncode, 'stderr': run.stderr, 'peak': peak}))\n"
    )
    command = [sys.executable, "-m", "qidicom", "segimage2itkimage", "--inputDICOM", str(bomb),
               "--outputDirectory", str(tmp_path / "out")]
    done = subprocess.run([sys.executable, "-c", measure, *command], capture_output=True, text=True, timeout=300)
    report = json.loads(done.stdout)
    message = (f"bomb.dcm: its deflated data inflates to more than {MAX_DEFLATED_DICOM_BYTES:,} bytes, "
               "more than any object qidicom reads; it was not inflated further")
    assert report["returncode"] == 1 and report["stderr"].endswith(f"{message}\n"), report["stderr"]
    assert report["peak"] < 2**29  # the decoder alone would have held the 2.4 GB it may inflate to
