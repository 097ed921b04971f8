"""qidicom's gzip reader gives exactly what gzip.GzipFile gives, and images read through it
are what nibabel and pynrrd read.

qidicom.readers.GzipStream replaces gzip.GzipFile in the image readers because GzipFile
inflates in small pieces, and beside the thread that parses the reference series every
piece waits for the GIL: a 45 MB map took seconds instead of a fraction of one. It is
allowed only because these tests prove its bytes, and its refusals, the same as GzipFile's.
"""

from __future__ import annotations

import gzip
import io
import zlib

import nibabel
import nrrd
import numpy as np
import pytest

import synthetic
from qidicom.errors import InputError
from qidicom.readers import GzipStream, read_image

DAMAGE = (EOFError, zlib.error, gzip.BadGzipFile)


def member(data: bytes, level: int = 6) -> bytes:
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)  # 31: gzip framing
    return compressor.compress(data) + compressor.flush()


def streams() -> dict[str, bytes]:
    rng = np.random.default_rng(11)
    noise = rng.integers(0, 256, 3 * 2**20 + 17, dtype=np.uint8).tobytes()  # hardly compresses
    sparse = (rng.random(2**21) > 0.97).astype(np.uint8).tobytes()  # compresses a lot, like label maps
    zeros = bytes(2**23)  # ~8 kB compressed: one read inflates a thousand times its input
    return {
        "empty member": member(b""),
        "one byte": member(b"x"),
        "noise": member(noise),
        "sparse, level 9": member(sparse, 9),
        "zeros": member(zeros, 9),
        "members one after another": member(b"head" * 100) + member(noise[:100_000]) + member(b"") + member(zeros, 1),
        "zero padding between and after members": member(sparse) + bytes(3) + member(b"tail") + bytes(1000),
        "a gzip file from the gzip module": gzip.compress(noise[:50_000], mtime=0) + gzip.compress(sparse),
    }


STREAMS = streams()


def gzipfile_bytes(data: bytes) -> bytes:
    return gzip.GzipFile(fileobj=io.BytesIO(data)).read()


def read_in_steps(stream, step: int) -> bytes:
    parts = []
    while block := stream.read(step):
        parts.append(block)
    return b"".join(parts)


@pytest.mark.parametrize("name", list(STREAMS))
def test_inflates_what_gzipfile_inflates_whatever_the_read_sizes(name):
    data = STREAMS[name]
    expected = gzipfile_bytes(data)
    assert GzipStream(io.BytesIO(data)).read() == expected
    for step in (1, 7, 4096, 2**16 + 3, 2**20, 2**24):
        if step < 4096 and len(expected) > 200_000:
            continue  # byte by byte through megabytes: slow, and nothing the larger steps miss
        assert read_in_steps(GzipStream(io.BytesIO(data)), step) == expected, step
    # One read into a buffer fills it (nibabel reads the voxels so, and expects all of them).
    buffer = bytearray(len(expected) + 10)
    assert GzipStream(io.BytesIO(data)).readinto(buffer) == len(expected)
    assert bytes(buffer[:len(expected)]) == expected


@pytest.mark.parametrize("name", ["noise", "members one after another", "zero padding between and after members"])
def test_seeks_and_tells_as_gzipfile_does(name):
    data = STREAMS[name]
    ours, theirs = GzipStream(io.BytesIO(data)), gzip.GzipFile(fileobj=io.BytesIO(data))
    for offset, size in ((0, 540), (352, 1000), (100, 10), (90_000, 20_000), (5, 3), (10**9, 5)):
        assert ours.seek(offset) == theirs.seek(offset) or offset > len(gzipfile_bytes(data))
        assert ours.read(size) == theirs.read(size)
        assert ours.tell() == theirs.tell()
    ours.seek(10)
    ours.seek(5, io.SEEK_CUR)
    assert ours.tell() == 15 and ours.read(4) == gzipfile_bytes(data)[15:19]


def test_the_stream_is_inflated_no_further_than_read():
    """A small read of a gzip bomb inflates about that much: a read never asks zlib for more."""
    bomb = member(bytes(2**26), 9)  # 64 MiB of zeros in ~65 kB
    stream = GzipStream(io.BytesIO(bomb))
    assert stream.read(1000) == bytes(1000)
    assert stream.tell() == 1000


def test_a_read_into_a_large_buffer_makes_no_second_copy_of_it():
    """nibabel reads a whole image with one readinto: the output comes in bounded blocks."""
    import tracemalloc

    size = 2**26
    data = member(bytes(size), 9)
    buffer = bytearray(size)
    tracemalloc.start()
    try:
        assert GzipStream(io.BytesIO(data)).readinto(buffer) == size
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < size // 3


def test_large_reads_inflate_in_large_steps(monkeypatch):
    """The reason for the class: few calls into zlib, so few hand-overs of the GIL."""
    data = STREAMS["noise"]
    expected = gzipfile_bytes(data)
    calls = []
    real = zlib.decompressobj

    class Counting:
        def __init__(self, *args, **options):
            self._inflater = real(*args, **options)

        def decompress(self, data, max_length=0):
            calls.append(len(data))
            return self._inflater.decompress(data, max_length)

        def __getattr__(self, name):
            return getattr(self._inflater, name)

    monkeypatch.setattr(zlib, "decompressobj", Counting)
    assert GzipStream(io.BytesIO(data)).read(2**22) == expected
    assert len(calls) <= 2
    calls.clear()
    gzip.GzipFile(fileobj=io.BytesIO(data)).read(2**22)
    assert len(calls) > 20  # GzipFile's 128 KiB steps


def damaged() -> dict[str, bytes]:
    data = STREAMS["members one after another"]
    flipped = bytearray(STREAMS["noise"])
    flipped[len(flipped) // 2] ^= 0xFF
    crc = bytearray(STREAMS["sparse, level 9"])
    crc[-6] ^= 0x01  # the CRC-32 in the trailer
    return {
        "cut in its header": data[:5],
        "cut in its data": data[: len(data) // 2],
        "cut in its trailer": STREAMS["noise"][:-3],
        "one byte after its end": STREAMS["one byte"] + b"\x1f",
        "not gzip after a member": STREAMS["one byte"] + b"PK\x03\x04",
        "zero bytes before the first member": bytes(4) + STREAMS["one byte"],
        "a damaged block": bytes(flipped),
        "a wrong checksum": bytes(crc),
    }


@pytest.mark.parametrize("name", list(damaged()))
def test_refuses_what_gzipfile_refuses(name):
    data = damaged()[name]
    with pytest.raises(DAMAGE) as theirs:
        gzipfile_bytes(data)
    with pytest.raises(DAMAGE) as ours:
        GzipStream(io.BytesIO(data)).read()
    if isinstance(theirs.value, EOFError) or isinstance(ours.value, EOFError):
        assert type(ours.value) is type(theirs.value) and str(ours.value) == str(theirs.value)


# --------------------------------------------------------------------------- images


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(5)
    affine = np.array([[0.0, 0.9, 0, 10], [-0.9, 0, 0, 20], [0, 0, 1.5, 30], [0, 0, 0, 1]])
    float_map = rng.random((64, 48, 30)).astype(np.float32)
    labels = (rng.random((40, 30, 20)) > 0.9).astype(np.uint16) * 7
    paths = {
        "float.nii.gz": synthetic.save_nifti(float_map, affine, folder / "float.nii.gz"),
        "labels.nii.gz": synthetic.save_nifti(labels, affine, folder / "labels.nii.gz"),
        "float.nrrd": synthetic.save_nrrd(float_map, affine, folder / "float.nrrd"),  # gzip encoding
        "labels.nrrd": synthetic.save_nrrd(labels, affine, folder / "labels.nrrd"),
    }
    # A whole NRRD file gzip'd, its voxels raw inside.
    raw = io.BytesIO()
    nrrd.write(raw, labels, {"space": "left-posterior-superior", "space directions": affine[:3, :3].T,
                             "space origin": affine[:3, 3], "kinds": ["domain"] * 3, "encoding": "raw"})
    paths["labels.nrrd.gz"] = folder / "labels.nrrd.gz"
    paths["labels.nrrd.gz"].write_bytes(gzip.compress(raw.getvalue()))
    return paths


@pytest.mark.parametrize("name", ["float.nii.gz", "labels.nii.gz", "float.nrrd", "labels.nrrd", "labels.nrrd.gz"])
def test_images_read_through_it_are_what_nibabel_and_pynrrd_read(images, name):
    path = images[name]
    volume = read_image(path)
    if name.endswith(".nii.gz"):
        expected = np.asanyarray(nibabel.load(str(path)).dataobj)
    elif name.endswith(".gz"):
        expected = nrrd.read_data(*_nrrd_header_and_stream(gzip.decompress(path.read_bytes())))
    else:
        expected = nrrd.read(str(path))[0]
    assert volume.array.dtype == expected.dtype
    np.testing.assert_array_equal(volume.array, expected)
    # The same from bytes, as the browser app hands them over.
    np.testing.assert_array_equal(read_image((name, path.read_bytes())).array, expected)


def _nrrd_header_and_stream(data: bytes):
    stream = io.BytesIO(data)
    return nrrd.read_header(stream), stream


def test_a_truncated_image_is_refused_as_before(images, tmp_path):
    data = images["float.nii.gz"].read_bytes()
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"^cut.nii.gz: gzip data is corrupt or truncated \(Compressed file ended"):
        read_image(cut)
