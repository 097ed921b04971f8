"""Writers: DICOM datasets to file bytes (optionally deflated), volumes to NRRD or NIfTI.

Everything returns bytes, so the browser app can offer them as downloads and the CLI
can write them atomically.
"""

from __future__ import annotations

import gzip
import io
import os
import sys
import tempfile
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, RLELossless

from qidicom.dicom_encoding import encode_dataset, write_part10
from qidicom.errors import InputError
from qidicom.geometry import LPS_FROM_RAS, Volume

@dataclass
class ExportedFile:
    """One output file of a conversion back from DICOM: its name and contents."""

    name: str
    data: bytes


def suggested_filename(dataset: Dataset, kind: str) -> str:
    """A download name a person recognises: patient, series and kind, no odd characters."""
    parts = [str(dataset.get("PatientID", "")), str(dataset.get("SeriesDescription", "")), kind]
    cleaned = ["".join(c if c.isalnum() or c in "-_" else "_" for c in part).strip("_") for part in parts]
    return "_".join(part for part in cleaned if part) + ".dcm"


#: Compression names accepted by the converters and what transfer syntax highdicom writes.
COMPRESSIONS = ("none", "deflate", "rle")


def transfer_syntax_for(compress: str) -> str:
    """The transfer syntax highdicom should encode pixels with; deflate is applied on top."""
    if compress not in COMPRESSIONS:
        raise InputError(f"compression '{compress}' is not one of {', '.join(COMPRESSIONS)}")
    return RLELossless if compress == "rle" else ExplicitVRLittleEndian


def dicom_bytes(dataset: Dataset, compress: str = "none", workers: int = 1) -> bytes:
    """Encode a dataset as a DICOM Part 10 file.

    ``compress="deflate"`` writes Deflated Explicit VR Little Endian: highdicom cannot,
    pydicom can, and for sparse binary segmentations it is by far the smallest. With
    ``workers`` > 1 the dataset is deflated on that many threads, in ``gzip_bytes``'
    pieces: still one deflate stream, a few bytes larger per 4 MiB piece (the SEG and PM
    writers' choice: a labelmap SEG's frames take 0.6 s to deflate on one core, a float
    PM's seconds).
    """
    if compress != "deflate":
        return write_part10(dataset)
    # pydicom deflates at zlib's default level; level 9 costs little more time on sparse
    # segmentation frames and makes the files smaller (smaller than dcmqi's). PS3.5 A.5:
    # the file meta stays plain, the dataset is encoded Explicit VR Little Endian, then
    # deflated without a zlib header.
    dataset.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    if workers > 1:
        deflated = deflated_pieces(encode_dataset(dataset), 9, workers)
    else:
        compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        deflated = compressor.compress(encode_dataset(dataset)) + compressor.flush()
    output = DicomBytesIO()
    output.is_implicit_VR, output.is_little_endian = False, True
    output.write(getattr(dataset, "preamble", None) or b"\0" * 128)
    output.write(b"DICM")
    write_file_meta_info(output, dataset.file_meta, enforce_standard=True)
    output.write(deflated)
    if len(deflated) % 2:
        output.write(b"\0")
    return output.getvalue()


def write_file_atomically(path: str | os.PathLike, data: bytes) -> None:
    """Write via a temporary file and rename, so a failure never leaves half a file."""
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise InputError(f"{target}: the output folder {directory} does not exist")
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=directory)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        # mkstemp makes the file private; give it the permissions any new file would get.
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
        if not mode & 0o400:  # Pyodide starts with umask 0o777: a file its owner cannot read
            mode = 0o644
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


#: File extension per output type. dcmqi's readers write gzipped NIfTI for both "nii" and
#: "nifti" (``1.nii.gz``, ``pmap.nii.gz``), so qidicom names and compresses them alike.
IMAGE_EXTENSIONS = {"nrrd": ".nrrd", "nii": ".nii.gz", "nifti": ".nii.gz", "nii.gz": ".nii.gz"}


def volume_bytes(volume: Volume, image_type: str = "nrrd") -> bytes:
    """Encode a volume as NRRD (LPS, gzip) or gzipped NIfTI (RAS)."""
    if image_type not in IMAGE_EXTENSIONS:
        raise InputError(f"output type '{image_type}' is not one of {', '.join(IMAGE_EXTENSIONS)}")
    if image_type == "nrrd":
        return _nrrd_bytes(volume)
    import nibabel

    affine_ras = LPS_FROM_RAS @ volume.affine
    image = nibabel.Nifti1Image(volume.array, affine_ras)
    image.set_sform(affine_ras, code=1)
    image.set_qform(affine_ras, code=1)
    image.header.set_xyzt_units("mm")
    data = image.to_bytes()
    if IMAGE_EXTENSIONS[image_type].endswith(".gz"):
        data = gzip_bytes(data, 6, strategy=IMAGE_GZIP_STRATEGY)
    return data


#: How NRRD and NIfTI outputs are deflated: zlib's run-length strategy. On the label maps
#: and parametric maps these files hold it is as small as (label maps: a quarter of) the
#: default strategy's output and, on noisy float maps, 3-4 times faster (0.6 s instead of
#: 2.2 s for a 256x256x200 float32 map, whose bytes repeat too little for matches to pay).
IMAGE_GZIP_STRATEGY = zlib.Z_RLE

#: gzip_bytes deflates its input in pieces of this size: fixed, so the bytes written do
#: not depend on how many threads there were.
GZIP_PIECE = 1 << 22
_WINDOW = 1 << 15  # deflate's history: each piece is primed with the 32 KiB before it


def _threads_available() -> bool:
    return sys.platform != "emscripten"  # Pyodide has no threads


def gzip_bytes(data, level: int, workers: int = 2, strategy: int = zlib.Z_DEFAULT_STRATEGY) -> bytes:
    """One gzip member holding ``data`` (no file name, time 0), deflated with zlib's
    ``level`` and ``strategy`` on ``workers`` threads where threads exist.

    The data is deflated in ``GZIP_PIECE`` pieces, each primed with the 32 KiB before it
    and ended on a sync flush (pigz's layout): the pieces join into one ordinary deflate
    stream that any gzip reader inflates, nearly as small as deflating it whole. zlib
    releases the GIL while it works, so two pieces deflate at once on two cores.
    """
    view = memoryview(data).cast("B")
    size = view.nbytes
    starts = list(range(0, size, GZIP_PIECE)) or [0]

    def deflate(start: int) -> bytes:
        end = min(start + GZIP_PIECE, size)
        primer = view[start - _WINDOW if start > _WINDOW else 0:start]
        zeros = _zero_piece(primer, view[start:end], level, strategy, end == size)
        if zeros is not None:
            return zeros
        options = {"zdict": bytes(primer)} if start else {}
        compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, zlib.DEF_MEM_LEVEL, strategy, **options)
        return compressor.compress(view[start:end]) + compressor.flush(zlib.Z_FINISH if end == size else zlib.Z_SYNC_FLUSH)

    if workers < 2 or len(starts) < 2 or not _threads_available():
        pieces = [deflate(start) for start in starts]
        crc = zlib.crc32(view)
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers) as pool:
            checksum = pool.submit(zlib.crc32, view)
            pieces = list(pool.map(deflate, starts))
            crc = checksum.result()
    # RFC 1952 header as zlib writes it: deflate, no flags, time 0, "extra flags" for the
    # level (2 = slowest, 4 = fastest), operating system 3 (Unix).
    fastest = level == 1 or strategy in (zlib.Z_HUFFMAN_ONLY, zlib.Z_RLE)
    extra = 4 if fastest else 2 if level == 9 else 0
    header = bytes((0x1F, 0x8B, 8, 0, 0, 0, 0, 0, extra, 3))
    return b"".join([header, *pieces, (crc & 0xFFFFFFFF).to_bytes(4, "little"), (size & 0xFFFFFFFF).to_bytes(4, "little")])


#: Deflated pieces of zeros, by (level, strategy, length, primer length, last piece).
_ZERO_PIECES: dict[tuple, bytes] = {}
_ZEROS: list[bytes] = []  # GZIP_PIECE zero bytes, made on first use


def _zero_piece(primer: memoryview, piece: memoryview, level: int, strategy: int, last: bool) -> bytes | None:
    """The deflated piece if it and its primer are all zeros (else None), deflated once.

    A segment's label map is zeros outside the segment: in the bench case half of every
    file's pieces. zlib's output depends only on its settings, the dictionary and the
    input, so a piece of zeros primed with zeros deflates to the same bytes every time.
    """
    if piece.nbytes > GZIP_PIECE or _any_nonzero(primer) or _any_nonzero(piece):
        return None
    if not _ZEROS:
        _ZEROS.append(bytes(GZIP_PIECE))
    zeros = memoryview(_ZEROS[0])
    key = (level, strategy, piece.nbytes, primer.nbytes, last)
    deflated = _ZERO_PIECES.get(key)
    if deflated is None:
        options = {"zdict": bytes(primer.nbytes)} if primer.nbytes else {}
        compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, zlib.DEF_MEM_LEVEL, strategy, **options)
        deflated = compressor.compress(zeros[:piece.nbytes]) + compressor.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)
        if len(_ZERO_PIECES) >= 64:  # the last pieces of many sizes: keep a few
            _ZERO_PIECES.clear()
        _ZERO_PIECES[key] = deflated
    return deflated


def _any_nonzero(data: memoryview) -> bool:
    """Whether a byte is not zero (numpy: a memoryview comparison goes byte by byte)."""
    whole = data.nbytes - data.nbytes % 8
    return bool(np.frombuffer(data[:whole], np.uint64).any()) or any(data[whole:])


def deflated_pieces(data, level: int, workers: int = 2) -> memoryview:
    """``data`` as one raw deflate stream (RFC 1951, no header): the deflated pieces of
    ``gzip_bytes``, without its gzip header (10 bytes) and trailer (8: CRC and size)."""
    member = gzip_bytes(data, level, workers)
    return memoryview(member)[10:-8]


def volumes_bytes(volumes: Iterable[Volume], image_type: str = "nrrd", workers: int = 2) -> list[bytes]:
    """``volume_bytes`` of each volume, in order, ``workers`` at a time where threads exist.

    zlib releases the GIL while it compresses, so one volume's gzip runs beside the next
    one's; at most ``workers`` volumes are waiting at any time, so a lazy iterable of
    large volumes is never all in memory. Pyodide has no threads: one after another there.
    """
    if workers < 2 or not _threads_available():
        return [volume_bytes(volume, image_type) for volume in volumes]
    from concurrent.futures import ThreadPoolExecutor

    encoded: list[bytes] = []
    pending: deque = deque()
    with ThreadPoolExecutor(workers) as pool:
        for volume in volumes:
            pending.append(pool.submit(volume_bytes, volume, image_type))
            del volume
            if len(pending) >= workers:
                encoded.append(pending.popleft().result())
        encoded.extend(future.result() for future in pending)
    return encoded


def _nrrd_bytes(volume: Volume) -> bytes:
    import nrrd

    header = {
        "space": "left-posterior-superior",
        "space directions": volume.affine[:3, :3].T,
        "space origin": volume.affine[:3, 3],
        "kinds": ["domain", "domain", "domain"],
        "encoding": "raw",
    }
    # pynrrd writes the header; the voxels, in its (Fortran) order, are gzip'd here, on two
    # threads (pynrrd deflates on one), with IMAGE_GZIP_STRATEGY.
    array = np.asfortranarray(volume.array)
    writer = getattr(nrrd, "writer", None)
    handle_header, write_header = getattr(writer, "_handle_header", None), getattr(writer, "_write_header", None)
    buffer = io.BytesIO()
    if handle_header is not None and write_header is not None:
        # What nrrd.write writes before the voxels, without its copy of them (~0.05 s for
        # 50 MB: a SEG read writes one file per segment).
        write_header(buffer, handle_header(array, header))
        written, end = buffer.getbuffer(), len(buffer.getvalue())
        voxels = memoryview(array.T).cast("B") if array.size else b""
    else:  # another pynrrd: its whole file, then cut
        nrrd.write(buffer, array, header)
        written = buffer.getbuffer()
        end = bytes(written[:MAX_NRRD_HEADER]).find(b"\n\n") + 2
        voxels = written[end:]
    head = bytes(written[:end])
    if end < 2 or not head.endswith(b"\n\n") or head.count(b"\nencoding: raw\n") != 1:
        raise RuntimeError("pynrrd wrote an NRRD header without its one 'encoding: raw' line")
    head = head.replace(b"\nencoding: raw\n", b"\nencoding: gzip\n")
    data = gzip_bytes(voxels, 3, strategy=IMAGE_GZIP_STRATEGY)
    del written, voxels
    return head + data


#: Where the header of an NRRD that pynrrd wrote must end (it is a few hundred bytes).
MAX_NRRD_HEADER = 1 << 16
