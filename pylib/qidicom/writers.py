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
import threading
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

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


def dicom_bytes(dataset: Dataset, compress: str = "none") -> bytes:
    """Encode a dataset as a DICOM Part 10 file.

    ``compress="deflate"`` writes Deflated Explicit VR Little Endian: highdicom cannot,
    pydicom can, and for sparse binary segmentations it is by far the smallest.
    """
    if compress != "deflate":
        return write_part10(dataset)
    # pydicom deflates at zlib's default level; level 9 costs little more time on sparse
    # segmentation frames and makes the files smaller (smaller than dcmqi's). PS3.5 A.5:
    # the file meta stays plain, the dataset is encoded Explicit VR Little Endian, then
    # deflated without a zlib header.
    dataset.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
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


def prepare_highdicom() -> Callable[[], None]:
    """Import highdicom and load its standard tables on another thread, while the caller
    reads its inputs; the function returned waits until that is done.

    highdicom reads the tables (``module_attribute_map.json``, 22 MB: ~0.3 s) on its first
    construction of a SEG or PM, to copy the patient and study modules from the source
    images. Loading them beside reading the inputs, whose gzip inflation runs without the
    GIL, takes that time off the conversion's wall clock. Only highdicom's own loaders are
    called, so what they return is what its construction would load. Nothing happens where
    there are no threads (Pyodide) or once the tables are loaded; a failure here is left
    for highdicom's construction to report.
    """
    if not _threads_available() or _HIGHDICOM_PREPARED.is_set():
        return lambda: None

    def load() -> None:
        try:
            import highdicom  # noqa: F401
            from highdicom import _standard_utils as standard

            standard.get_sop_class_iod_map()
            standard.get_iod_module_map()
            standard.get_module_attribute_map()
            _HIGHDICOM_PREPARED.set()
        except Exception:  # noqa: BLE001 - reported, if real, by highdicom's constructor
            pass

    try:
        thread = threading.Thread(target=load, name="qidicom-prepare-highdicom", daemon=True)
        thread.start()
    except RuntimeError:  # no thread can be started here: highdicom loads them when used
        return lambda: None
    return thread.join


_HIGHDICOM_PREPARED = threading.Event()


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
        options = {"zdict": bytes(view[start - _WINDOW if start > _WINDOW else 0:start])} if start else {}
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
    # pynrrd writes the header and the voxels; they are then gzip'd here, on two threads
    # (pynrrd deflates on one), with IMAGE_GZIP_STRATEGY.
    buffer = io.BytesIO()
    nrrd.write(buffer, np.asarray(volume.array), header)
    written = buffer.getbuffer()
    end = bytes(written[:MAX_NRRD_HEADER]).find(b"\n\n") + 2
    head = bytes(written[:end])
    if end < 2 or head.count(b"\nencoding: raw\n") != 1:
        raise RuntimeError("pynrrd wrote an NRRD header without its one 'encoding: raw' line")
    head = head.replace(b"\nencoding: raw\n", b"\nencoding: gzip\n")
    data = gzip_bytes(written[end:], 3, strategy=IMAGE_GZIP_STRATEGY)
    del written
    return head + data


#: Where the header of an NRRD that pynrrd wrote must end (it is a few hundred bytes).
MAX_NRRD_HEADER = 1 << 16
