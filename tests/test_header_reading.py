"""Reference images on disk are parsed without reading their pixels (``parse_dicom_file``):
the same datasets as parsing the whole file (``parse_dicom``), the same refusals, and the
same SEG and PM written from them, byte for byte once the UIDs and times made while
writing are set alike."""

from __future__ import annotations

import copy
import io
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest

import synthetic
from synthetic import written_alike
from qidicom import pm
from qidicom.errors import InputError
from qidicom.readers import DicomPath, as_named_bytes, parse_dicom, parse_dicom_file, read_dicom_series, read_image
from qidicom.samples import make_sample_study
from qidicom.seg import write_segmentation

#: UIDs made while writing start with highdicom's root; those of the inputs do not.


def both_ways(path: Path):
    """(whole file, header only) for one file: datasets, or the InputError text."""
    results = []
    for parse in (lambda: parse_dicom(as_named_bytes(path, path.name)), lambda: parse_dicom_file(DicomPath(path.name, path))):
        try:
            results.append(parse())
        except InputError as error:
            results.append(str(error))
    return results


def assert_same_dataset(whole, header) -> None:
    assert (whole is None) == (header is None)
    if isinstance(whole, str) or whole is None:
        assert header == whole
        return
    assert list(whole.keys()) == list(header.keys())
    assert whole == header and whole.file_meta == header.file_meta
    for name in ("preamble", "original_encoding", "original_character_set", "filename"):
        assert getattr(whole, name) == getattr(header, name), name
    assert not any(tag in header for tag in (0x7FE00008, 0x7FE00009, 0x7FE00010))


def files_of(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.startswith("."))


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory) -> Path:
    from qidicom.samples import write_sample_study

    return write_sample_study(tmp_path_factory.mktemp("study"), make_sample_study(), with_seg=False)["ct"].parent


def odd_files(directory: Path) -> list[Path]:
    """Files the header-only reading must hand to the whole-file parse, or refuse alike."""
    [dataset] = synthetic.make_ct_series(rows=16, columns=20, slices=1, seed=3)
    directory.mkdir(parents=True, exist_ok=True)
    made = {}
    trailing = copy.deepcopy(dataset)
    trailing.add_new(0xFFFCFFFC, "OB", b"\0" * 8)  # Data Set Trailing Padding, after the pixels
    made["trailing.dcm"] = trailing
    long_header = copy.deepcopy(dataset)
    long_header.add_new(0x00091010, "LO", "qidicom")  # a private block...
    long_header.add_new(0x00091011, "OB", bytes(200_000))  # ...with a long value before the pixels
    made["long-header.dcm"] = long_header
    float_pixels = copy.deepcopy(dataset)
    del float_pixels.PixelData
    float_pixels.BitsAllocated = 32
    float_pixels.FloatPixelData = np.zeros((16, 20), np.float32).tobytes()
    made["float-pixels.dcm"] = float_pixels
    paths = []
    for name, item in made.items():
        item.save_as(directory / name, enforce_file_format=True)
        paths.append(directory / name)
    implicit = copy.deepcopy(dataset)
    implicit.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    implicit.save_as(directory / "implicit.dcm", enforce_file_format=True)
    paths.append(directory / "implicit.dcm")
    deflated = copy.deepcopy(dataset)
    deflated.file_meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
    deflated.save_as(directory / "deflated.dcm", enforce_file_format=True)
    paths.append(directory / "deflated.dcm")
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, dataset, enforce_file_format=True)
    data = buffer.getvalue()
    pixel_start = data.index(b"\xe0\x7f\x10\x00")
    for name, cut in (("no-preamble.dcm", data[132:]), ("cut-in-pixels.dcm", data[:-100]),
                      ("cut-at-pixels.dcm", data[:pixel_start]), ("cut-in-pixel-header.dcm", data[:pixel_start + 6]),
                      ("cut-in-header.dcm", data[:pixel_start // 2]), ("not-dicom.txt", b"hello " * 40)):
        (directory / name).write_bytes(cut)
        paths.append(directory / name)
    return paths


def test_every_kind_of_file_parses_to_the_same_dataset(study_dir, tmp_path):
    paths = files_of(study_dir / "ct") + files_of(study_dir / "mr") + odd_files(tmp_path / "odd")
    for path in paths:
        whole, header = both_ways(path)
        assert_same_dataset(whole, header), path.name
    # The cut files are refused, with the same message either way.
    assert "pixel data has" in both_ways(tmp_path / "odd" / "cut-in-pixels.dcm")[1]
    assert both_ways(tmp_path / "odd" / "not-dicom.txt") == [None, None]


def test_dcmqis_series_parse_to_the_same_datasets(shared, tmp_path):
    data = shared / "data" / "dcmqi"
    with zipfile.ZipFile(data / "paramaps" / "pm-example-dcm.zip") as archive:
        archive.extractall(tmp_path / "pm-example")
    paths = files_of(data / "segmentations" / "ct-3slice") + files_of(tmp_path / "pm-example")
    paths.append(data / "paramaps" / "pm-example-slice.dcm")
    assert len(paths) > 20
    for path in paths:
        assert_same_dataset(*both_ways(path))


def test_a_dropped_element_would_be_seen(study_dir):
    path = files_of(study_dir / "ct")[0]
    whole, header = both_ways(path)
    del header.PatientName
    with pytest.raises(AssertionError):
        assert_same_dataset(whole, header)


def in_memory(directory: Path) -> list[tuple[str, bytes]]:
    """The series as the browser gives it: (name, bytes) pairs, parsed whole."""
    return [(str(path.relative_to(directory)), path.read_bytes()) for path in files_of(directory)]


def test_the_seg_and_pm_written_from_headers_are_the_seg_and_pm_written_from_whole_files(study_dir, sample_study):
    ct, mr = study_dir / "ct", study_dir / "mr"
    labels = read_image(sample_study.ct_labels[1], sample_study.ct_labels[0])
    adc = read_image(sample_study.adc_map[1], sample_study.adc_map[0])
    for segmentation_type in ("binary", "labelmap"):
        files = [written_alike(write_segmentation([labels], sample_study.seg_metadata, reference,
                                                  segmentation_type=segmentation_type).dataset)
                 for reference in (read_dicom_series(ct), read_dicom_series(in_memory(ct)))]
        assert files[0] == files[1], segmentation_type
    files = [written_alike(pm.write_parametric_map(adc, sample_study.pm_metadata, reference).dataset)
             for reference in (read_dicom_series(mr, check_spacing=False), read_dicom_series(in_memory(mr), check_spacing=False))]
    assert files[0] == files[1]


def test_dcmqis_seg_example_written_from_headers_is_the_one_from_whole_files(liver_sample):
    import json

    labels = read_image(liver_sample["labels"])
    metadata = json.loads(Path(liver_sample["metadata"]).read_text())
    files = [written_alike(write_segmentation([labels], metadata, reference).dataset)
             for reference in (read_dicom_series(liver_sample["series"]), read_dicom_series(in_memory(liver_sample["series"])))]
    assert files[0] == files[1]


def test_a_plain_image_is_parsed_from_its_header_alone(study_dir, tmp_path, monkeypatch):
    import qidicom.readers as readers

    odd = {path.name: path for path in odd_files(tmp_path / "odd")}
    plain = files_of(study_dir / "ct")[:3] + files_of(study_dir / "mr")[:3] + [odd["implicit.dcm"], odd["float-pixels.dcm"]]
    expected = [parse_dicom(as_named_bytes(path, path.name)) for path in plain]
    monkeypatch.setattr(readers, "parse_dicom", lambda *args, **kwargs: pytest.fail("the whole file was read"))
    for path, whole in zip(plain, expected):
        assert_same_dataset(whole, parse_dicom_file(DicomPath(path.name, path)))
    with pytest.raises(pytest.fail.Exception):  # ...and these need the whole file
        parse_dicom_file(DicomPath("trailing.dcm", odd["trailing.dcm"]))
