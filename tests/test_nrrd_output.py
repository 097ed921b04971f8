"""The gzip'd NRRD files the readers write: pieces of zeros deflated once and reused give
the bytes deflating each piece gives, and pynrrd's header written alone gives the file
pynrrd's whole write gives."""

from __future__ import annotations

import gzip
import zlib

import numpy as np
import pytest

from qidicom.geometry import Volume
from qidicom.writers import GZIP_PIECE, gzip_bytes, volume_bytes

WINDOW = 1 << 15


def deflated_piece_by_piece(data: bytes, level: int, strategy: int) -> bytes:
    """gzip_bytes's layout made here without its reuse: every piece deflated by zlib,
    primed with the 32 KiB before it, ended on a sync flush (the last: finished)."""
    pieces = []
    for start in range(0, max(len(data), 1), GZIP_PIECE):
        end = min(start + GZIP_PIECE, len(data))
        options = {"zdict": data[max(0, start - WINDOW):start]} if start else {}
        compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, zlib.DEF_MEM_LEVEL, strategy, **options)
        pieces.append(compressor.compress(data[start:end]) + compressor.flush(zlib.Z_FINISH if end == len(data) else zlib.Z_SYNC_FLUSH))
    return b"".join(pieces)


def label_like(pieces: float, where: list[tuple[float, float]]) -> bytes:
    """Zeros, with sparse labels in the spans given (in pieces)."""
    size = int(pieces * GZIP_PIECE)
    data = np.zeros(size, np.uint8)
    rng = np.random.default_rng(11)
    for start, end in where:
        span = slice(int(start * GZIP_PIECE), int(end * GZIP_PIECE))
        data[span] = (rng.random(data[span].size) > 0.97) * 3
    return data.tobytes()


CASES = {
    "zeros only": label_like(3.5, []),
    "labels in the middle": label_like(5.25, [(1.5, 2.5)]),
    "labels just before a piece of zeros": label_like(3, [(0.999, 0.9999)]),  # its primer is not all zeros
    "one byte at the very end": label_like(2, [(1.99999, 2)]),
    "one byte at the very start": label_like(2, [(0, 0.000001)]),
    "shorter than a piece": label_like(0.3, []),
}


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("level, strategy", [(3, zlib.Z_RLE), (6, zlib.Z_RLE), (6, zlib.Z_DEFAULT_STRATEGY)])
def test_pieces_of_zeros_reused_give_the_bytes_of_deflating_each(name, level, strategy):
    data = CASES[name]
    expected = deflated_piece_by_piece(data, level, strategy)
    for workers in (1, 2):
        member = gzip_bytes(data, level, workers=workers, strategy=strategy)
        assert member[10:-8] == expected
        assert gzip.decompress(member) == data
    # Twice: the second time from what the first left for reuse.
    assert gzip_bytes(data, level, workers=1, strategy=strategy)[10:-8] == expected


def test_reuse_depends_on_the_primer_and_the_settings():
    """A piece of zeros after labels, and the same piece at another level, differ from the
    piece of zeros after zeros: reuse keys on all of them."""
    after_zeros = gzip_bytes(label_like(2, []), 3, workers=1, strategy=zlib.Z_RLE)
    after_labels = gzip_bytes(label_like(2, [(0.99, 1)]), 3, workers=1, strategy=zlib.Z_RLE)
    other_level = gzip_bytes(label_like(2, []), 6, workers=1, strategy=zlib.Z_DEFAULT_STRATEGY)
    assert after_zeros[10:-8] == deflated_piece_by_piece(label_like(2, []), 3, zlib.Z_RLE)
    assert after_labels[10:-8] == deflated_piece_by_piece(label_like(2, [(0.99, 1)]), 3, zlib.Z_RLE)
    assert other_level[10:-8] == deflated_piece_by_piece(label_like(2, []), 6, zlib.Z_DEFAULT_STRATEGY)
    assert len({after_zeros, other_level}) == 2


@pytest.mark.parametrize("dtype, order", [(np.uint8, "F"), (np.uint16, "F"), (np.float32, "C"), (np.uint8, "C")])
def test_nrrd_with_pynrrds_header_alone_is_pynrrds_whole_file(monkeypatch, dtype, order):
    """The header pynrrd writes alone, then the voxels in its (Fortran) order, are what the
    whole write gives, whatever the array's memory order; and a pynrrd without those
    helpers gets its whole write."""
    import nrrd

    rng = np.random.default_rng(2)
    array = np.asarray((rng.random((37, 21, 9)) * 7).astype(dtype), order=order)
    affine = np.array([[0.0, 0.9, 0, 10], [-0.9, 0, 0, 20], [0, 0, 1.5, 30], [0, 0, 0, 1]])
    volume = Volume(array, affine, "labels")

    def without_time(data: bytes) -> bytes:
        head, _, rest = data.partition(b"\n\n")
        return b"\n".join(line for line in head.split(b"\n") if not line.startswith(b"# on ")) + b"\n\n" + rest

    alone = volume_bytes(volume, "nrrd")
    monkeypatch.setattr(nrrd, "writer", None)  # as if pynrrd had no such helpers
    whole = volume_bytes(volume, "nrrd")
    assert without_time(alone) == without_time(whole)
    voxels = gzip.decompress(alone.partition(b"\n\n")[2])
    assert voxels == array.tobytes(order="F")
