"""The fast per-frame encoder writes exactly pydicom's bytes, for every SEG and PM variant.

qidicom.dicom_encoding hand-encodes the Per-frame Functional Groups Sequence because
pydicom's generic writer is the slowest step of a conversion. It is allowed only because
these tests prove its output byte-identical to pydicom's on the objects qidicom writes.
"""

from __future__ import annotations

import copy
import io

import highdicom as hd
import pydicom
import pytest
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from qidicom import dicom_encoding
from qidicom.pm import parametric_map_from_files
from qidicom.samples import make_sample_study
from qidicom.seg import binary_to_labelmap, segmentation_from_files

STUDY = make_sample_study(rows=24, columns=20, slices=6)


def pydicom_file_bytes(dataset: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, dataset, enforce_file_format=True)
    return buffer.getvalue()


def pydicom_dataset_bytes(dataset: pydicom.Dataset) -> bytes:
    buffer = DicomBytesIO()
    buffer.is_implicit_VR, buffer.is_little_endian = False, True
    write_dataset(buffer, dataset)
    return buffer.getvalue()


def seg(**options) -> pydicom.Dataset:
    return segmentation_from_files([STUDY.ct_labels], STUDY.seg_metadata, STUDY.ct_series, **options).dataset


def fractional_seg() -> pydicom.Dataset:
    import numpy as np

    from qidicom.readers import read_image
    from qidicom.writers import volume_bytes

    labels = read_image(STUDY.ct_labels[1], STUDY.ct_labels[0])
    probability = copy.copy(labels)
    probability.array = (labels.array == 1).astype(np.float32) * 0.75
    document = copy.deepcopy(STUDY.seg_metadata)
    document["segmentAttributes"] = [[document["segmentAttributes"][0][0]]]
    return segmentation_from_files(
        [("liver-probability.nrrd", volume_bytes(probability))], document, STUDY.ct_series,
        segmentation_type="fractional",
    ).dataset


def objects() -> dict[str, pydicom.Dataset]:
    binary = seg()
    return {
        "binary": binary,
        "binary, empty frames kept": seg(skip_empty=False),
        "labelmap": seg(segmentation_type="labelmap"),
        "labelmap, rle": seg(segmentation_type="labelmap", compress="rle"),
        "fractional": fractional_seg(),
        "labelmap with palette (bin2labelsegimage)": binary_to_labelmap(
            ("binary.dcm", pydicom_file_bytes(binary)), use_palette=True
        ).dataset,
        "labelmap 16-bit (bin2labelsegimage)": binary_to_labelmap(
            ("binary.dcm", pydicom_file_bytes(binary)), force_16_bit=True
        ).dataset,
        "pm float32": parametric_map_from_files(STUDY.adc_map, STUDY.pm_metadata, STUDY.mr_series).dataset,
        "pm float64": parametric_map_from_files(
            STUDY.adc_map, STUDY.pm_metadata, STUDY.mr_series, data_type="float64"
        ).dataset,
    }


OBJECTS = objects()


@pytest.mark.parametrize("name", list(OBJECTS))
def test_per_frame_items_take_the_fast_path_and_match_pydicom(name):
    dataset = OBJECTS[name]
    items = dataset.PerFrameFunctionalGroupsSequence
    assert len(items) > 1
    assert dicom_encoding.encode_items(items) is not None, "the fast path did not apply"
    # Native pixel data is appended to pydicom's encoding of the rest (not when encapsulated).
    assert (dicom_encoding._trailing_pixels(dataset) is None) == ("rle" in name)
    assert dicom_encoding.write_part10(dataset) == pydicom_file_bytes(dataset)
    assert dicom_encoding.encode_dataset(dataset) == pydicom_dataset_bytes(dataset)


@pytest.mark.parametrize("name", list(OBJECTS))
def test_the_dataset_is_left_as_it_was_and_highdicom_reads_the_file(name):
    dataset = OBJECTS[name]
    before = pydicom_file_bytes(dataset)
    data = dicom_encoding.write_part10(dataset)
    assert isinstance(dataset["PerFrameFunctionalGroupsSequence"].value, pydicom.sequence.Sequence)
    assert pydicom_file_bytes(dataset) == before
    written = pydicom.dcmread(io.BytesIO(data))
    if "pm" in name:
        hd.pm.ParametricMap.from_dataset(written)
    else:
        assert hd.seg.Segmentation.from_dataset(written).number_of_frames == int(dataset.NumberOfFrames)


def test_what_it_does_not_know_falls_back_to_pydicom():
    dataset = copy.deepcopy(OBJECTS["binary"])
    # Non-ASCII text needs the character set; an undefined-length item is written differently.
    dataset.SpecificCharacterSet = "ISO_IR 192"
    frame_content = dataset.PerFrameFunctionalGroupsSequence[0].FrameContentSequence[0]
    frame_content.FrameLabel = "Léber"
    assert dicom_encoding.encode_items(dataset.PerFrameFunctionalGroupsSequence) is None
    assert dicom_encoding.write_part10(dataset) == pydicom_file_bytes(dataset)

    dataset = copy.deepcopy(OBJECTS["binary"])
    dataset.PerFrameFunctionalGroupsSequence[1].is_undefined_length_sequence_item = True
    assert dicom_encoding.encode_items(dataset.PerFrameFunctionalGroupsSequence) is None
    assert dicom_encoding.write_part10(dataset) == pydicom_file_bytes(dataset)


def test_pixel_data_not_last_or_deflated_is_left_to_pydicom():
    dataset = copy.deepcopy(OBJECTS["pm float32"])
    dataset.add_new(0xFFFCFFFC, "OB", b"\0" * 4)  # Data Set Trailing Padding, after the pixels
    assert dicom_encoding._trailing_pixels(dataset) is None
    assert dicom_encoding.write_part10(dataset) == pydicom_file_bytes(dataset)

    dataset = copy.deepcopy(OBJECTS["pm float32"])
    dataset.file_meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
    assert dicom_encoding._trailing_pixels(dataset) is None
    assert dicom_encoding.write_part10(dataset) == pydicom_file_bytes(dataset)

    dataset = copy.deepcopy(OBJECTS["binary"])
    dataset.PixelData = dataset.PixelData + b"\1"  # odd length: padded as pydicom pads it
    assert dicom_encoding._trailing_pixels(dataset) is not None
    assert dicom_encoding.write_part10(dataset) == pydicom_file_bytes(dataset)


def test_items_shared_between_frames_are_encoded_as_pydicom_encodes_each_place():
    # highdicom puts one item object in many frames; the encoder encodes each object once.
    built = seg()
    items = built.PerFrameFunctionalGroupsSequence
    positions = [frame.PlanePositionSequence[0] for frame in items]
    assert len({id(item) for item in positions}) < len(positions)  # shared in this SEG
    # One object in three places, and a copy of it changed between them.
    shared = copy.deepcopy(items[0].DerivationImageSequence[0])
    changed = copy.deepcopy(shared)
    changed.SourceImageSequence[0].ReferencedSOPInstanceUID = "1.2.3.4"
    sequence = []
    for item in (shared, changed, shared):
        frame = pydicom.Dataset()
        frame.DerivationImageSequence = [item]
        frame.PlanePositionSequence = [positions[0]]
        sequence.append(frame)
    encoded = dicom_encoding.encode_items(sequence)
    holder = pydicom.Dataset()
    holder.PerFrameFunctionalGroupsSequence = sequence
    expected = pydicom_dataset_bytes(holder)
    assert encoded is not None and expected.endswith(encoded) and len(expected) == len(encoded) + 12
    assert dicom_encoding.encode_items(items) == pydicom_dataset_bytes(built_items(built))[12:]


def built_items(dataset: pydicom.Dataset) -> pydicom.Dataset:
    holder = pydicom.Dataset()
    holder.PerFrameFunctionalGroupsSequence = dataset.PerFrameFunctionalGroupsSequence
    return holder
