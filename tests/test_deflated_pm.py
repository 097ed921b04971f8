"""A deflated PM is deflated on two threads, in pieces that make one deflate stream: it
inflates to exactly the bytes deflating on one thread inflates to, and reads the same."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pydicom
import pytest

import synthetic
from conftest import dciodvfy_errors
from qidicom import pm
from qidicom.dicom_encoding import encode_dataset
from qidicom.geometry import Volume
from qidicom.readers import read_dicom_series
from qidicom.writers import GZIP_PIECE, dicom_bytes

PM_METADATA = {
    "QuantityValueCode": {"CodeValue": "113041", "CodingSchemeDesignator": "DCM", "CodeMeaning": "Apparent Diffusion Coefficient"},
    "DerivationCode": {"CodeValue": "113041", "CodingSchemeDesignator": "DCM", "CodeMeaning": "Apparent Diffusion Coefficient"},
    "MeasurementUnitsCode": {"CodeValue": "mm2/s", "CodingSchemeDesignator": "UCUM", "CodeMeaning": "mm2/s"},
    "AnatomicRegionSequence": {"CodeValue": "41216001", "CodingSchemeDesignator": "SCT", "CodeMeaning": "Prostate"},
    "FrameLaterality": "U",
}


@pytest.fixture(scope="module")
def written() -> pm.WriteResult:
    """A float PM whose pixels span several deflate pieces (96 x 112 x 110 float32, 4.7 MB)."""
    datasets = synthetic.make_ct_series(rows=96, columns=112, slices=110, modality="MR", seed=5)
    files = []
    for n, dataset in enumerate(datasets):
        buffer = io.BytesIO()
        pydicom.dcmwrite(buffer, dataset, enforce_file_format=True)
        files.append((f"mr{n:03}.dcm", buffer.getvalue()))
    values = np.random.default_rng(6).random(synthetic.grid_shape(datasets)).astype(np.float32)
    volume = Volume(values, synthetic.series_affine(datasets), "noise.nrrd")
    reference = read_dicom_series(files, check_spacing=False)
    return pm.write_parametric_map(volume, PM_METADATA, reference, compress="deflate")


def split(data: bytes) -> tuple[bytes, bytes]:
    """A Part 10 file's preamble and file meta, and the rest (the deflated dataset)."""
    stream = io.BytesIO(data)
    pydicom.filereader.read_preamble(stream, False)
    pydicom.filereader._read_file_meta_info(stream)
    return data[:stream.tell()], data[stream.tell():]


def inflated(deflated: bytes) -> bytes:
    """One raw deflate stream, inflated; nothing may follow it but DICOM's padding byte."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    data = inflater.decompress(deflated) + inflater.flush()
    assert inflater.eof and inflater.unused_data in (b"", b"\0")
    return data


def test_the_pm_writer_deflates_in_pieces_that_inflate_to_the_one_thread_bytes(written):
    dataset = written.dataset
    one_thread = dicom_bytes(dataset, "deflate")
    assert len(encode_dataset(dataset)) > GZIP_PIECE  # two pieces or more: more than one thread works
    head, body = split(written.data)
    one_head, one_body = split(one_thread)
    assert head == one_head
    assert body != one_body  # deflated otherwise...
    assert inflated(body) == inflated(one_body) == encode_dataset(dataset)  # ...to the same bytes
    assert len(body) <= len(one_body) * 1.001  # and barely larger
    again = pydicom.dcmread(io.BytesIO(written.data))
    assert again.file_meta.TransferSyntaxUID == pydicom.uid.DeflatedExplicitVRLittleEndian
    np.testing.assert_array_equal(
        pm.read_parametric_map(written.data).volume.array, pm.read_parametric_map(one_thread).volume.array)


def test_the_pieces_are_the_same_on_any_number_of_threads(written):
    assert dicom_bytes(written.dataset, "deflate", workers=2) == dicom_bytes(written.dataset, "deflate", workers=3) == written.data
    assert split(dicom_bytes(written.dataset, "deflate", workers=1))[1] != split(written.data)[1]


def test_a_damaged_piece_is_seen(written):
    """The comparison is not blind: one byte changed in the middle of the stream shows."""
    head, body = split(written.data)
    damaged = bytearray(body)
    damaged[len(damaged) // 2] ^= 0xFF
    try:
        result = inflated(bytes(damaged))
    except (zlib.error, AssertionError):
        return
    assert result != encode_dataset(written.dataset)


def test_dcmtk_inflates_it_and_dciodvfy_finds_no_error(written, tmp_path):
    path = tmp_path / "pm-deflated.dcm"
    path.write_bytes(written.data)
    assert dciodvfy_errors(path, tmp_path) == []  # inflated by DCMTK's dcmconv first
