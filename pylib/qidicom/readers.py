"""Readers for label maps, parametric maps (NIfTI, NRRD) and DICOM reference series.

Every reader takes a path, bytes, a binary file-like object or a ``(name, bytes)``
pair: the browser app has file contents, never paths.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import math
import os
import sys
import warnings as warnings_module
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Callable, Iterator, Sequence, Union

if TYPE_CHECKING:  # pydicom is imported where DICOM is read: an image is read without it
    from pydicom.dataset import Dataset

import numpy as np

from qidicom.errors import GeometryError, InputError
from qidicom.geometry import (
    LPS_FROM_RAS,
    PlaneStack,
    POSITION_TOLERANCE_MM,
    Volume,
    check_regular_spacing,
    index_mapping,
    slice_normal,
)

#: What readers accept: a path, raw bytes, a binary file object, or a (name, bytes) pair.
Source = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO, tuple]


@dataclass
class NamedBytes:
    """File contents with the name a person knows the file by."""

    name: str
    data: bytes
    path: Path | None = None


def as_named_bytes(source: Source, name: str | None = None) -> NamedBytes:
    """Read any accepted source into memory, keeping a human name for messages."""
    if isinstance(source, NamedBytes):
        return source
    if isinstance(source, tuple) and len(source) == 2:
        source_name, data = source
        return as_named_bytes(data, name or str(source_name))
    if isinstance(source, (bytes, bytearray, memoryview)):
        return NamedBytes(name or "<bytes>", bytes(source))
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            return NamedBytes(name or path.name, path.read_bytes(), path)
        except FileNotFoundError:
            raise InputError(f"{path}: file not found") from None
        except IsADirectoryError:
            raise InputError(f"{path}: is a directory, a file was expected") from None
        except OSError as error:
            raise InputError(f"{path}: cannot be read ({error.strerror or error})") from None
    if hasattr(source, "read"):
        data = source.read()
        if isinstance(data, str):
            data = data.encode()
        return NamedBytes(name or str(getattr(source, "name", "<stream>")), bytes(data))
    raise InputError(f"cannot read {type(source).__name__} as a file (give a path, bytes or a file object)")


# --------------------------------------------------------------------------- images

_NIFTI_SUFFIXES = (".nii", ".nii.gz")
_NRRD_SUFFIXES = (".nrrd", ".nhdr")

#: The largest image accepted, in voxels and in bytes of voxel data, as its header declares
#: them. Both are checked before any voxel data is read or inflated, so a small compressed
#: file that claims a huge grid (a "gzip bomb") is refused at once. 2**29 voxels is twice a
#: 512x512x1000 CT grid; 2**31 bytes holds that grid even as float64.
MAX_IMAGE_VOXELS = 2**29
MAX_IMAGE_BYTES = 2**31
#: Room for what precedes the voxel data: NRRD header text, NIfTI header and extensions.
MAX_HEADER_BYTES = 2**24
# Compressed data is inflated at most this much at a time, so a stream is never inflated
# much past what was asked for.
_CHUNK = 2**24
_HEAD = 540  # a NIfTI-2 header; enough to tell the formats apart
_INFLATE_STEP = 2**23  # the most GzipStream inflates in one call (see there)


def read_image(source: Source, name: str | None = None) -> Volume:
    """Read a NIfTI or NRRD image as a Volume in LPS, whatever the file's own space.

    A fourth dimension of size 1 is dropped; a real fourth dimension is an error, since a
    label map or parametric map here is one 3-D volume. An image whose header declares more
    than ``MAX_IMAGE_VOXELS`` voxels or ``MAX_IMAGE_BYTES`` bytes is refused before its
    voxel data is read, and compressed data is inflated only up to the size its header
    declares: a stream holding more, or less, is an error.
    """
    if isinstance(source, PendingImage):
        return source.take()
    _check_file_size(source)
    item = as_named_bytes(source, name)
    data = item.data
    lowered = item.name.lower()
    gzipped = data[:2] == b"\x1f\x8b" and not lowered.endswith(_NRRD_SUFFIXES)
    # A gzip file is read as a stream: only what the header declares is ever inflated.
    stream = GzipStream(io.BytesIO(data)) if gzipped else io.BytesIO(data)
    head = _read_stream(stream, _HEAD, item.name, "gzip data")
    if head.startswith(b"NRRD") or lowered.endswith(_NRRD_SUFFIXES):
        volume = _read_nrrd(item, _Prefixed(head, stream), gzipped)
    elif lowered.endswith(_NIFTI_SUFFIXES) or _looks_like_nifti(head):
        volume = _read_nifti(item, head, stream, gzipped)
    else:
        raise InputError(
            f"{item.name}: not a NIfTI (.nii, .nii.gz) or NRRD (.nrrd, .nhdr) image"
        )
    return _as_3d(volume)


class PendingImage:
    """An image being read on another thread from the moment it is made, to be taken once
    by ``read_image`` (which accepts it as a source).

    The command line makes one for each image file it is given before it imports the DICOM
    libraries: inflating a gzip'd image is zlib's work, which runs without the GIL, so it
    overlaps those imports (~0.3 s) and the reference series' parsing instead of adding to
    them. Problems reading it surface when it is taken, so they are reported where they
    would be had it been read then. Taking it hands the volume over (the pending image
    keeps no reference, so a writer can let the voxels go); taking it again reads the file
    again. Where no thread can be started (Pyodide), the file is read when taken.
    """

    def __init__(self, source: Source, name: str | None = None):
        self.source = source
        self.name = name
        self._volume: Volume | None = None
        self._error: BaseException | None = None
        self._thread = None
        if sys.platform == "emscripten":
            return
        import threading

        thread = threading.Thread(target=self._read, name="qidicom-read-image", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # no threads here: read when taken
            return
        self._thread = thread

    def _read(self) -> None:
        try:
            self._volume = read_image(self.source, self.name)
        except BaseException as error:  # noqa: BLE001 - raised again when taken
            self._error = error

    def take(self) -> Volume:
        """The volume read (waiting for it), or what reading it raised."""
        thread, self._thread = self._thread, None
        if thread is None:
            return read_image(self.source, self.name)
        thread.join()
        volume, error, self._volume, self._error = self._volume, self._error, None, None
        if error is not None:
            raise error
        return volume


def _check_file_size(source: Source) -> None:
    """Refuse a file on disk too large to hold an accepted image, before reading it."""
    if not isinstance(source, (str, os.PathLike)):
        return
    try:
        size = os.stat(source).st_size
    except OSError:
        return  # as_named_bytes names the problem
    if size > MAX_IMAGE_BYTES + MAX_HEADER_BYTES:
        raise InputError(
            f"{source}: is {size / 2**30:.1f} GiB, larger than any image qidicom reads "
            f"(at most {_limits_text()}); it was not read"
        )


def _limits_text() -> str:
    return f"{MAX_IMAGE_VOXELS:,} voxels and {MAX_IMAGE_BYTES / 2**30:g} GiB of voxel data"


def _check_declared_size(label: str, shape: Sequence[int], itemsize: int) -> int:
    """The byte size of the voxel data a header declares, or InputError if over the limits."""
    shape = [int(n) for n in shape]
    if any(n < 0 for n in shape):
        raise InputError(f"{label}: header declares a negative size ({'x'.join(map(str, shape))})")
    voxels = math.prod(shape)  # Python integers: no overflow for absurd sizes
    size = voxels * int(itemsize)
    if voxels > MAX_IMAGE_VOXELS or size > MAX_IMAGE_BYTES:
        raise InputError(
            f"{label}: header declares {'x'.join(map(str, shape))} voxels of {itemsize} byte(s) "
            f"({voxels:,} voxels, {size / 2**30:.1f} GiB), over qidicom's limit of {_limits_text()}; "
            "refused before reading its voxel data"
        )
    return size


class GzipStream(io.RawIOBase):
    """The inflated bytes of a gzip stream (one member or several, as ``gzip.GzipFile``
    reads them), read from ``source`` in large steps.

    ``gzip.GzipFile`` inflates 128 KiB of input at a time and takes the GIL back after each
    piece of output. Beside a thread parsing DICOM headers each hand-over waits up to the
    interpreter's switch interval (5 ms), so a 45 MB map took seconds instead of 0.4 s.
    Here a read of n bytes inflates up to about n bytes of input at a time, and never
    gives more than n bytes of output, so a stream is still inflated no further than read.
    Reads fill the buffer unless the stream ends, as GzipFile's do. Seeking forward skips,
    seeking back starts again from the beginning (as GzipFile does). A truncated stream
    raises ``EOFError`` with GzipFile's message, damaged data ``zlib.error``, and bytes
    other than a gzip member after one ``gzip.BadGzipFile``.
    """

    _MAGIC = b"\x1f\x8b"
    _ENDED = "Compressed file ended before the end-of-stream marker was reached"

    def __init__(self, source: BinaryIO):
        self._source = source
        self._start = source.tell() if source.seekable() else None
        self._rewind()

    def _rewind(self) -> None:
        if self._start is not None:
            self._source.seek(self._start)
        self._inflater = None  # None: between members
        self._members = 0  # members begun
        self._input = b""  # compressed bytes read but not yet inflated
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            offset += self._position
        elif whence != io.SEEK_SET:
            raise io.UnsupportedOperation("a gzip stream seeks from its start or its position only")
        if offset < self._position:
            if self._start is None:
                raise io.UnsupportedOperation("the compressed data cannot be read again from its start")
            self._rewind()
        skip = bytearray(min(offset - self._position, _CHUNK))
        with memoryview(skip) as view:
            while self._position < offset:
                if not self.readinto(view[:offset - self._position]):
                    break
        return self._position

    def _more_input(self, size: int) -> bool:
        data = self._source.read(size)
        self._input = self._input + data if self._input else data
        return bool(data)

    def _start_member(self, size: int) -> bool:
        """Begin the next member; False at the end of the stream (zero bytes after a member
        are padding, as GzipFile takes them)."""
        while True:
            if self._members:
                self._input = self._input.lstrip(b"\0")
            if len(self._input) >= 2 or not self._more_input(size):
                break
        if not self._input:
            return False
        if self._input[:2] != self._MAGIC:
            raise gzip.BadGzipFile(f"Not a gzipped file ({bytes(self._input[:2])!r})")
        self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._members += 1
        return True

    def readinto(self, buffer) -> int:
        with memoryview(buffer) as view, view.cast("B") as out:
            filled = 0
            while filled < out.nbytes:
                wanted = out.nbytes - filled
                step = min(max(wanted, 1 << 16), _CHUNK)
                if self._inflater is None and not self._start_member(step):
                    break
                inflater = self._inflater
                if not self._input and not self._more_input(step):
                    raise EOFError(self._ENDED)
                if len(self._input) > step:
                    piece, self._input = self._input[:step], self._input[step:]
                else:
                    piece, self._input = self._input, b""
                # At most _INFLATE_STEP at a time: a read into a large buffer holds a few
                # megabytes more (zlib joins its pieces of output), not a second copy of the
                # whole image; that is still few enough calls to hand the GIL over seldom.
                block = inflater.decompress(piece, min(wanted, _INFLATE_STEP))
                # What the inflater did not use goes back in front: at a member's end that is
                # unused_data (unconsumed_tail may then still hold the same bytes).
                rest = inflater.unused_data if inflater.eof else inflater.unconsumed_tail
                if rest:
                    self._input = rest + self._input
                if inflater.eof:
                    self._inflater = None
                out[filled:filled + len(block)] = block
                filled += len(block)
                del block
            self._position += filled
            return filled


class _Prefixed(io.RawIOBase):
    """A stream with bytes already read from it put back in front."""

    def __init__(self, prefix: bytes, stream: BinaryIO):
        self._prefix = memoryview(prefix)
        self._stream = stream

    def readable(self) -> bool:
        return True

    def unread(self, data: bytes) -> None:
        self._prefix = memoryview(bytes(data) + bytes(self._prefix))

    def readinto(self, buffer) -> int:
        if self._prefix.nbytes:
            count = min(len(buffer), self._prefix.nbytes)
            buffer[:count] = self._prefix[:count]
            self._prefix = self._prefix[count:]
            return count
        return self._stream.readinto(buffer)


def _read_bounded(stream: BinaryIO, size: int) -> bytearray:
    """Up to ``size`` bytes (fewer if the stream ends), read in chunks so that a compressed
    stream is never inflated much past ``size``."""
    buffer = bytearray(size)
    filled = 0
    with memoryview(buffer) as view:
        while filled < size:
            count = stream.readinto(view[filled:filled + _CHUNK])
            if not count:
                break
            filled += count
    del buffer[filled:]
    return buffer


def _read_stream(stream: BinaryIO, size: int, label: str, what: str) -> bytearray:
    """``_read_bounded``, with a damaged compressed stream named as such."""
    try:
        return _read_bounded(stream, size)
    except (OSError, EOFError, zlib.error) as error:
        raise InputError(f"{label}: {what} is corrupt or truncated ({error})") from None


def _refuse_more(stream: BinaryIO, label: str, what: str, declared: int, limit: str = "its header declares") -> None:
    """Error if a compressed stream goes on past the size its header declares."""
    if _read_stream(stream, 1, label, what):
        raise InputError(
            f"{label}: {what} holds more than the {declared:,} bytes {limit}; it was not inflated further"
        )


def _looks_like_nifti(data: bytes) -> bool:
    return len(data) >= 348 and data[344:348] in (b"n+1\0", b"ni1\0") or data[4:8] == b"n+2\0"


def _read_nifti(item: NamedBytes, head: bytes, stream: BinaryIO, gzipped: bool) -> Volume:
    import nibabel

    kind = nibabel.Nifti2Image if head[4:8] == b"n+2\0" else nibabel.Nifti1Image
    header_size = kind.header_class.template_dtype.itemsize
    try:
        header = kind.header_class.from_fileobj(io.BytesIO(bytes(head[:header_size])))
        shape = header.get_data_shape()
        itemsize = header.get_data_dtype().itemsize
        offset = int(header.get_data_offset())
    except Exception as error:  # nibabel raises several types for a bad header
        raise InputError(f"{item.name}: not a readable NIfTI image ({error})") from None
    if offset > MAX_HEADER_BYTES:
        raise InputError(
            f"{item.name}: header puts the voxel data at byte {offset:,}, past the "
            f"{MAX_HEADER_BYTES:,} bytes allowed for header and extensions"
        )
    declared = offset + _check_declared_size(item.name, shape, itemsize)
    # nibabel reads exactly the declared voxel data from the stream, so a gzip stream is
    # inflated no further than that.
    try:
        stream.seek(0)
        image = kind.from_stream(stream)
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise InputError(f"{item.name}: gzip data is corrupt or truncated ({error})") from None
    except Exception as error:
        raise InputError(f"{item.name}: not a readable NIfTI image ({error})") from None
    try:
        array = np.asanyarray(image.dataobj)
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise InputError(f"{item.name}: gzip data is corrupt or truncated ({error})") from None
    except Exception as error:  # nibabel's OSError for data shorter than declared, among others
        raise InputError(f"{item.name}: NIfTI voxel data is truncated or corrupt ({error})") from None
    if gzipped:  # the stream now stands at the end of the voxel data
        _refuse_more(stream, item.name, "gzip stream", declared)
    affine = LPS_FROM_RAS @ image.affine
    return Volume(np.asarray(array), affine, item.name)


_NRRD_SPACES = {
    "left-posterior-superior": np.diag([1.0, 1.0, 1.0]),
    "lps": np.diag([1.0, 1.0, 1.0]),
    "right-anterior-superior": np.diag([-1.0, -1.0, 1.0]),
    "ras": np.diag([-1.0, -1.0, 1.0]),
    "left-anterior-superior": np.diag([1.0, -1.0, 1.0]),
    "las": np.diag([1.0, -1.0, 1.0]),
}
_NRRD_REQUIRED = ("dimension", "type", "encoding", "sizes")
_NRRD_GZIP = ("gzip", "gz")
_NRRD_BZIP2 = ("bzip2", "bz2")
_NRRD_TEXT = ("ascii", "text", "txt")


class _NrrdDataError(Exception):
    """The voxel data does not match the NRRD header (worded for the person's message)."""


def _read_nrrd(item: NamedBytes, stream: BinaryIO, gzipped: bool) -> Volume:
    import nrrd

    header_text = _nrrd_header_text(item, stream)
    try:
        header = nrrd.read_header(header_text.splitlines(keepends=True))
    except Exception as error:
        raise InputError(f"{item.name}: not a readable NRRD header ({error})") from None
    detached = header.get("data file", header.get("datafile"))
    if detached is not None and item.path is None:
        raise InputError(
            f"{item.name}: a detached NRRD header needs its data file; give the path, "
            "or use a single-file .nrrd"
        )
    try:
        if detached is None:
            array = _nrrd_voxels(item.name, header, stream, gzipped)
        else:
            data_path = item.path.parent / str(detached)
            with open(data_path, "rb") as data_file:
                array = _nrrd_voxels(item.name, header, data_file, False)
    except _NrrdDataError as error:
        problem = "NRRD voxel data is truncated or corrupt" if detached is None else "its detached data could not be read"
        raise InputError(f"{item.name}: {problem} ({error})") from None
    except OSError as error:  # the detached data file
        raise InputError(f"{item.name}: its detached data could not be read ({error})") from None
    space = str(header.get("space", "left-posterior-superior")).lower()
    if space not in _NRRD_SPACES:
        raise InputError(
            f"{item.name}: NRRD space '{header.get('space')}' is not supported "
            "(use left-posterior-superior or right-anterior-superior)"
        )
    directions = header.get("space directions")
    if directions is None:
        raise InputError(f"{item.name}: NRRD header has no 'space directions', so its grid is unknown")
    directions = np.asarray(
        [np.full(3, np.nan) if d is None or (np.ndim(d) and np.isnan(d).all()) else d for d in directions], float
    )
    spatial_axes = [n for n, d in enumerate(directions) if not np.isnan(d).all()]
    if len(spatial_axes) != 3:
        raise InputError(f"{item.name}: expected 3 spatial axes in the NRRD, found {len(spatial_axes)}")
    non_spatial = [n for n in range(array.ndim) if n not in spatial_axes]
    for axis in non_spatial:
        if array.shape[axis] != 1:
            raise InputError(
                f"{item.name}: has a non-spatial axis of size {array.shape[axis]}; one 3-D volume is needed"
            )
    array = np.squeeze(array, axis=tuple(non_spatial)) if non_spatial else array
    to_lps = _NRRD_SPACES[space]
    affine = np.eye(4)
    affine[:3, :3] = to_lps @ directions[spatial_axes].T
    affine[:3, 3] = to_lps @ np.asarray(header.get("space origin", np.zeros(3)), float)
    return Volume(np.asarray(array), affine, item.name)


def _nrrd_header_text(item: NamedBytes, stream: _Prefixed) -> bytes:
    """The header lines up to and including the blank line that ends them, read in small
    steps (never a whole "line" of a stream with no line breaks); the stream is left at
    the first byte of the data."""
    text = bytearray()
    while len(text) <= MAX_HEADER_BYTES:
        step = _read_stream(stream, 4096, item.name, "gzip data")
        if not step:
            return bytes(text)  # no blank line: pynrrd names what is wrong
        start = max(len(text) - 2, 0)
        text += step
        ends = [at + len(mark) for mark in (b"\n\n", b"\n\r\n") if (at := text.find(mark, start)) >= 0]
        if ends:
            end = min(ends)
            stream.unread(text[end:])  # the data's first bytes
            return bytes(text[:end])
    raise InputError(f"{item.name}: NRRD header has no blank line ending it within {MAX_HEADER_BYTES:,} bytes")


def _nrrd_voxels(label: str, header: dict, stream: BinaryIO, gzipped: bool) -> np.ndarray:
    """Read exactly the voxels the header declares, never inflating more.

    pynrrd's ``read_data`` inflates the whole compressed stream before counting it, so
    the voxel data is read here; pynrrd still parses the header and its type names.
    """
    from nrrd.reader import _determine_datatype

    for key in _NRRD_REQUIRED:
        if key not in header:
            raise _NrrdDataError(f"Header is missing required field: {key}")
    sizes = [int(n) for n in header["sizes"]]
    if int(header["dimension"]) != len(sizes):
        raise _NrrdDataError(f"Number of elements in sizes does not match dimension: {header['dimension']}, {len(sizes)}")
    try:
        dtype = _determine_datatype(header)
    except Exception as error:
        raise _NrrdDataError(str(error)) from None
    size = _check_declared_size(label, sizes, dtype.itemsize)
    count = math.prod(sizes)
    encoding = str(header["encoding"]).lower()
    for _ in range(int(header.get("line skip", header.get("lineskip", 0)))):
        line = stream.readline(MAX_HEADER_BYTES)
        if not line.endswith(b"\n"):
            raise _NrrdDataError("the data ends, or has no line break, within the lines the header says to skip")
    byte_skip = int(header.get("byte skip", header.get("byteskip", 0)))
    if byte_skip < -1:
        raise _NrrdDataError(f"byte skip {byte_skip} is not allowed (it must be -1 or more)")
    if encoding in _NRRD_TEXT:
        # 32 characters a value is room for any double written in full; the voxel-data
        # limit bounds the text too.
        bound = min(32 * count, MAX_IMAGE_BYTES) + MAX_HEADER_BYTES
        text = _read_stream(stream, bound, label, "NRRD text data")
        if gzipped:
            _refuse_more(stream, label, "NRRD text data", bound, f"its {count:,} values can take")
        with warnings_module.catch_warnings():
            warnings_module.simplefilter("ignore")  # numpy warns, then stops, at a value it cannot parse
            values = np.fromstring(bytes(text), dtype, sep=" ") if text.strip() else np.zeros(0, dtype)
        if values.size != count:
            raise _NrrdDataError(f"the text holds {values.size} values, but the header declares {count}")
        return values.reshape(sizes[::-1]).T
    if encoding == "raw":
        source, what = stream, "NRRD raw data"
    elif encoding in _NRRD_GZIP:
        source, what = GzipStream(stream), "NRRD gzip data"
    elif encoding in _NRRD_BZIP2:
        import bz2

        source, what = bz2.BZ2File(stream), "NRRD bzip2 data"
    else:
        raise _NrrdDataError(f"Unsupported encoding: {header['encoding']}")
    if byte_skip == -1:
        # The voxels are the last bytes of the data: allow a header's worth before them.
        data = _read_stream(source, size + MAX_HEADER_BYTES, label, what)
        if len(data) < size:
            raise _NrrdDataError(f"the data holds {len(data):,} bytes, but the header declares {size:,}")
        skip = len(data) - size
    else:
        skip = byte_skip
        data = _read_stream(source, skip + size, label, what)
        if len(data) < skip + size:
            raise _NrrdDataError(f"the data holds {len(data):,} bytes, but the header declares {skip + size:,}")
    if gzipped or source is not stream or byte_skip == -1:
        _refuse_more(source, label, what, len(data))
    return np.frombuffer(data, dtype, count, skip).reshape(sizes[::-1]).T


def _as_3d(volume: Volume) -> Volume:
    array = volume.array
    if array.ndim == 2:
        array = array[:, :, np.newaxis]
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise InputError(
            f"{volume.name}: has {array.ndim} dimensions (shape {'x'.join(map(str, array.shape))}); "
            "one 3-D volume is needed (split a time series or multi-channel image first)"
        )
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating) or array.dtype == bool):
        raise InputError(f"{volume.name}: voxel type {array.dtype} is not supported")
    return Volume(array, volume.affine, volume.name, volume.meta)


# --------------------------------------------------------------------------- DICOM


@contextlib.contextmanager
def tolerant_dicom_values() -> Iterator[None]:
    """Accept dcmqi-style value problems (empty SpecificCharacterSet, VR violations),
    as dcmqi's ``--noDicomValueChecks`` does, while reading and copying source values."""
    from pydicom import config as pydicom_config

    settings = pydicom_config.settings
    saved = (settings.reading_validation_mode, settings.writing_validation_mode)
    settings.reading_validation_mode = pydicom_config.IGNORE
    settings.writing_validation_mode = pydicom_config.IGNORE
    try:
        with warnings_module.catch_warnings():
            warnings_module.simplefilter("ignore")
            yield
    finally:
        settings.reading_validation_mode, settings.writing_validation_mode = saved


@dataclass
class DicomPath:
    """A file on disk not read yet (``iter_dicom_sources(..., read=False)``)."""

    name: str
    path: Path


def iter_dicom_sources(sources: Source | Sequence[Source], read: bool = True) -> Iterator[NamedBytes | DicomPath]:
    """Expand a directory (recursively), a list of files, or in-memory files into contents
    (``read=False``: files on disk as ``DicomPath``, for ``parse_dicom_file``)."""
    if isinstance(sources, (str, os.PathLike)) and Path(sources).is_dir():
        root = Path(sources)
        paths = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
        for path in paths:
            name = str(path.relative_to(root))
            yield as_named_bytes(path, name) if read else DicomPath(name, path)
        return
    if isinstance(sources, (str, os.PathLike, bytes, bytearray, NamedBytes)) or (
        isinstance(sources, tuple) and len(sources) == 2 and isinstance(sources[1], (bytes, bytearray, os.PathLike))
    ):
        sources = [sources]
    for source in sources:
        if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
            yield from iter_dicom_sources(source, read)
        elif not read and isinstance(source, (str, os.PathLike)) and Path(source).is_file():
            yield DicomPath(Path(source).name, Path(source))
        elif not read and isinstance(source, tuple) and len(source) == 2 and isinstance(source[1], os.PathLike) \
                and Path(source[1]).is_file():
            yield DicomPath(str(source[0]), Path(source[1]))  # (name, path): a file read later, by its name
        else:
            yield as_named_bytes(source)


#: The most a Deflated Explicit VR Little Endian object may inflate to: the voxel-data limit
#: plus room for per-frame attributes. pydicom inflates such a file whole, and nothing in
#: it declares its size, so it is measured (in bounded steps) before pydicom reads it.
MAX_DEFLATED_DICOM_BYTES = MAX_IMAGE_BYTES + 2**28
_DEFLATED_SYNTAX = b"1.2.840.10008.1.2.1.99"  # Deflated Explicit VR Little Endian
# File meta elements with a 4-byte length (PS3.5 7.1.2).
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}


def _file_meta_syntax(data: bytes) -> tuple[bytes | None, int]:
    """The Transfer Syntax UID in a Part 10 file's meta group (None if absent), and where
    the group ends (past ``len(data)`` if ``data`` holds only its start)."""
    offset = 132  # the file meta group, always Explicit VR Little Endian
    syntax = None
    while offset + 8 <= len(data) and data[offset:offset + 2] == b"\x02\x00":
        element, vr = data[offset + 2:offset + 4], data[offset + 4:offset + 6]
        if vr in _LONG_VRS:
            start, length = offset + 12, int.from_bytes(data[offset + 8:offset + 12], "little")
        else:
            start, length = offset + 8, int.from_bytes(data[offset + 6:offset + 8], "little")
        if element == b"\x10\x00":  # (0002,0010) Transfer Syntax UID
            syntax = data[start:start + length].rstrip(b"\0 ")
        offset = start + length
    return syntax, offset


def _check_deflated_size(item: NamedBytes) -> None:
    """Refuse a deflated DICOM file that inflates past MAX_DEFLATED_DICOM_BYTES."""
    data = item.data
    syntax, offset = _file_meta_syntax(data)
    if syntax != _DEFLATED_SYNTAX:
        return
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    pending, total = memoryview(data)[offset:], 0
    try:
        while pending.nbytes or inflater.unconsumed_tail:
            if inflater.unconsumed_tail:
                block = inflater.decompress(inflater.unconsumed_tail, _CHUNK)
            else:
                block, pending = inflater.decompress(pending[:_CHUNK], _CHUNK), pending[_CHUNK:]
            total += len(block)
            if total > MAX_DEFLATED_DICOM_BYTES:
                raise InputError(
                    f"{item.name}: its deflated data inflates to more than {MAX_DEFLATED_DICOM_BYTES:,} bytes, "
                    "more than any object qidicom reads; it was not inflated further"
                )
            if inflater.eof:
                return
    except zlib.error:
        return  # pydicom names the damage


def parse_dicom(item: NamedBytes, keep_pixels: bool = False) -> Dataset | None:
    """Parse one file; None if it is not DICOM at all, InputError if it is DICOM but broken."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    data = item.data
    has_preamble = len(data) >= 132 and data[128:132] == b"DICM"
    if has_preamble:
        _check_deflated_size(item)
    try:
        with tolerant_dicom_values():
            dataset = pydicom.dcmread(io.BytesIO(data), force=not has_preamble)
            # Touch every element so a truncated or corrupt value fails here, not later.
            for _ in dataset.iterall():
                pass
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, NotImplementedError, AttributeError,
            zlib.error) as error:  # zlib: a deflated file cut short
        if not has_preamble:
            return None
        raise InputError(f"{item.name}: truncated or corrupt DICOM file ({_short(error)})") from None
    if not has_preamble and "SOPClassUID" not in dataset:
        return None
    problem = _truncation(dataset)
    if problem:
        raise InputError(f"{item.name}: truncated or corrupt DICOM file ({problem})")
    if "SpecificCharacterSet" in dataset and not dataset.SpecificCharacterSet:
        # Empty means the default repertoire; highdicom rejects the empty value it would copy.
        del dataset.SpecificCharacterSet
    if not keep_pixels:
        for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
            if keyword in dataset:
                del dataset[keyword]
    # pydicom keeps the stream it parsed, and with it every byte of the file: pixels
    # included, for each file of a reference series. Every value is parsed by now.
    dataset.buffer = None
    dataset.filename = item.name
    return dataset


#: The pixel data tags (Float, Double Float, Pixel Data) as they start an element in a
#: little endian file.
_PIXEL_TAG_BYTES = (b"\xe0\x7f\x08\x00", b"\xe0\x7f\x09\x00", b"\xe0\x7f\x10\x00")
#: How much of a file ``parse_dicom_file`` reads first: its elements before the pixel data
#: (a few KiB in a CT or MR image), and the pixel data element's header.
_HEAD_BYTES = 1 << 16


def parse_dicom_file(item: DicomPath) -> Dataset | None:
    """``parse_dicom`` of a file on disk, reading the pixel data's length but not its bytes:
    the same dataset (the pixels left out, as ``parse_dicom`` leaves them out), the same
    refusals.

    A reference image's pixels are never used, and in a CT series they are nearly all of
    every file (0.5 MB of a 512x512 slice). When the file's first ``_HEAD_BYTES`` hold every
    element before the pixel data, and the pixel data is the file's last element, they are
    parsed alone and the pixel data's length is checked against the file's size (as
    ``_truncation`` checks what was read). Any other file (no preamble, deflated, Explicit
    VR Big Endian, a longer header, elements after the pixels, a file that cannot be
    opened) is read whole by ``parse_dicom``, which names its problems.
    """
    import pydicom

    try:
        with open(item.path, "rb") as stream:
            head = stream.read(_HEAD_BYTES)
            size = os.fstat(stream.fileno()).st_size
    except OSError:
        head, size = b"", -1
    whole = lambda: parse_dicom(as_named_bytes(item.path, item.name))  # noqa: E731
    syntax, meta_end = _file_meta_syntax(head)
    if head[128:132] != b"DICM" or syntax in (None, _DEFLATED_SYNTAX, b"1.2.840.10008.1.2.2") or meta_end >= len(head):
        return whole()
    buffer = io.BytesIO(head)
    try:
        with tolerant_dicom_values():
            dataset = pydicom.dcmread(buffer, stop_before_pixels=True)
            stop = buffer.tell()
            if head[stop:stop + 4] not in _PIXEL_TAG_BYTES:
                return whole()  # the head ended before the pixel data (or the file has none)
            # Touch every element so a corrupt value fails here, not later.
            for _ in dataset.iterall():
                pass
    except Exception:  # noqa: BLE001 - a head cut short may fail anywhere: read it whole
        return whole()
    implicit = syntax == b"1.2.840.10008.1.2"
    if implicit:
        value_start, length = stop + 8, int.from_bytes(head[stop + 4:stop + 8], "little")
    elif head[stop + 4:stop + 6] in _LONG_VRS:
        value_start, length = stop + 12, int.from_bytes(head[stop + 8:stop + 12], "little")
    else:
        return whole()
    if length == 0xFFFFFFFF or value_start + length < size:
        return whole()  # encapsulated, or elements follow the pixels
    stored = max(0, size - value_start)
    dataset.PixelData = b""  # a stand-in, so that _truncation sees what kind of image it is
    problem = _truncation(dataset, stored)
    del dataset.PixelData
    if problem:
        raise InputError(f"{item.name}: truncated or corrupt DICOM file ({problem})")
    if "SpecificCharacterSet" in dataset and not dataset.SpecificCharacterSet:
        del dataset.SpecificCharacterSet  # as parse_dicom does
    dataset.buffer = None
    dataset.filename = item.name
    return dataset


def _truncation(dataset: Dataset, stored: int | None = None) -> str | None:
    """Why a parsed dataset looks cut short, or None.

    pydicom reads a value cut short by the end of the file without complaint, so check
    what an image must have: pixel data, of the length its attributes imply. ``stored`` is
    how many bytes of pixel data the file holds when they were left unread in it.
    """
    import pydicom.uid

    sop_class = dataset.get("SOPClassUID") or getattr(dataset, "file_meta", {}).get("MediaStorageSOPClassUID")
    if sop_class is None:
        return "no SOP Class UID: the file ends early or is not a DICOM object"
    stores_pixels = "Image Storage" in pydicom.uid.UID(sop_class).name
    is_image = stores_pixels or ("Rows" in dataset and "Columns" in dataset and "BitsAllocated" in dataset)
    pixel_keyword = next((k for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData") if k in dataset), None)
    if is_image and pixel_keyword is None:
        return "the file ends before its pixel data"
    if pixel_keyword is None:
        return None
    syntax = dataset.file_meta.get("TransferSyntaxUID") if hasattr(dataset, "file_meta") else None
    if syntax is not None and pydicom.uid.UID(syntax).is_compressed:
        return None  # encapsulated: pydicom itself fails on a missing delimiter
    try:
        expected = (
            int(dataset.Rows) * int(dataset.Columns) * int(dataset.get("SamplesPerPixel", 1) or 1)
            * int(dataset.get("NumberOfFrames", 1) or 1) * int(dataset.BitsAllocated)
        )
    except (TypeError, ValueError, AttributeError):
        return None
    expected_bytes = (expected + 7) // 8
    actual = stored if stored is not None else len(dataset[pixel_keyword].value or b"")
    if actual < expected_bytes:
        return f"pixel data has {actual} of the {expected_bytes} bytes its size implies"
    return None


def read_dicom(source: Source, name: str | None = None, keep_pixels: bool = True) -> Dataset:
    """Read one DICOM object (e.g. a SEG or PM to convert back), or fail naming the file."""
    item = as_named_bytes(source, name)
    dataset = parse_dicom(item, keep_pixels=keep_pixels)
    if dataset is None:
        raise InputError(f"{item.name}: not a DICOM file")
    return dataset


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


@dataclass
class ReferenceSeries:
    """One series of single-frame images, sorted along the slice normal."""

    datasets: list[Dataset]
    stack: PlaneStack
    warnings: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [str(ds.filename) for ds in self.datasets]

    @property
    def affine(self) -> np.ndarray:
        return self.stack.affine

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.stack.shape

    @property
    def series_uid(self) -> str:
        return str(self.datasets[0].SeriesInstanceUID)

    def summary(self) -> dict:
        """What a person wants to see about the series found."""
        first = self.datasets[0]
        return {
            "patient_name": str(first.get("PatientName", "")),
            "patient_id": str(first.get("PatientID", "")),
            "study_date": str(first.get("StudyDate", "")),
            "modality": str(first.get("Modality", "")),
            "series_description": str(first.get("SeriesDescription", "")),
            "series_number": str(first.get("SeriesNumber", "")),
            "series_instance_uid": self.series_uid,
            "rows": self.stack.rows,
            "columns": self.stack.columns,
            "slices": len(self.datasets),
            "pixel_spacing_mm": [float(v) for v in self.stack.pixel_spacing],
            "slice_spacing_mm": float(np.linalg.norm(self.stack.slice_step())) if len(self.datasets) > 1 else None,
        }

    def describe(self) -> str:
        s = self.summary()
        return (
            f"series {s['series_instance_uid']} ({s['modality']}, '{s['series_description']}', "
            f"{s['columns']}x{s['rows']}, {s['slices']} slices)"
        )


def read_dicom_series(
    sources: Source | Sequence[Source],
    match: Volume | Callable[[], Volume] | None = None,
    check_spacing: bool = True,
) -> ReferenceSeries:
    """Find the reference image series among DICOM files.

    Non-DICOM files are skipped with a warning. Where several series are present, the
    one whose grid the ``match`` volume lies on is chosen; otherwise the error lists the
    candidates. Slices are sorted along their normal, and duplicates or gaps are errors
    (``check_spacing=False`` accepts an irregular stack).
    candidates. ``match`` may be a function giving that volume: it is called only then.
    """
    skipped: list[str] = []
    by_series: dict[str, list[Dataset]] = {}
    seen_instances: dict[str, str] = {}
    count = 0
    for item in iter_dicom_sources(sources, read=False):  # files on disk: headers only
        count += 1
        dataset = parse_dicom_file(item) if isinstance(item, DicomPath) else parse_dicom(item)
        if dataset is None:
            skipped.append(f"{item.name}: not a DICOM file, skipped")
            continue
        if "ImagePositionPatient" not in dataset or "ImageOrientationPatient" not in dataset:
            if int(dataset.get("NumberOfFrames", 1) or 1) > 1:
                skipped.append(f"{item.name}: multi-frame image, not supported as a reference series; skipped")
            else:
                skipped.append(f"{item.name}: not an image with a position in the patient, skipped")
            continue
        uid = str(dataset.get("SOPInstanceUID", ""))
        if uid and uid in seen_instances:
            skipped.append(f"{item.name}: same instance as {seen_instances[uid]}, skipped")
            continue
        seen_instances[uid] = item.name
        by_series.setdefault(str(dataset.get("SeriesInstanceUID", "")), []).append(dataset)
    folders = _given_folders(sources)
    if count == 0:
        if folders:
            raise InputError(f"{_folder_list(folders)}: {_emptiness(folders)}; the reference DICOM series was expected there")
        raise InputError("no files were given for the reference DICOM series")
    if not by_series:
        where = f"{_folder_list(folders)}: no DICOM images in the folder" if folders else "no DICOM images were found among the reference files"
        raise InputError(
            where + (f" ({len(skipped)} file(s) skipped: {skipped[0]}{' ...' if len(skipped) > 1 else ''})" if skipped else "")
        )
    candidates = []
    errors = []
    for datasets in by_series.values():
        try:
            candidates.append(_build_series(datasets, check_spacing))
        except (GeometryError, InputError) as error:
            errors.append((datasets, error))
    if len(by_series) == 1 and errors:
        raise errors[0][1]
    if match is not None and len(by_series) > 1:
        if callable(match):  # a volume still being read (see read_images_and_series)
            match = match()
        fitting = [series for series in candidates if volume_fits(match, series)]
        if len(fitting) == 1:
            chosen = fitting[0]
            skipped += _left_out(chosen, candidates, errors, match.name or "the image", len(by_series))
        else:
            listing = "; ".join(series.describe() for series in candidates)
            listing += "".join(f"; series {ds[0].SeriesInstanceUID} (unusable: {err})" for ds, err in errors)
            verdict = "none of them matches" if not fitting else f"{len(fitting)} of them match"
            raise InputError(
                f"the reference files hold {len(by_series)} series and {verdict} the grid of "
                f"{match.name or 'the image'}: {listing}. Give only the files of one series."
            )
    elif len(by_series) > 1:
        listing = "; ".join(series.describe() for series in candidates)
        raise InputError(f"the reference files hold {len(by_series)} series: {listing}. Give only the files of one series.")
    else:
        chosen = candidates[0]
    chosen.warnings = skipped + chosen.warnings
    return chosen


#: The interpreter's switch interval while images are inflated beside Python work (the
#: default is 5 ms). zlib gives up the GIL while it inflates, but takes it back after each
#: block of output (a few per call); beside a thread running Python, each time it waited up
#: to the switch interval: a 45 MB map took 0.7 s instead of 0.45 s beside a busy thread,
#: and 0.47 s with this interval.
THREAD_SWITCH_INTERVAL = 0.0005


@contextlib.contextmanager
def prompt_thread_switches() -> Iterator[None]:
    """``THREAD_SWITCH_INTERVAL`` while the block runs, unless the interval is already shorter."""
    before = sys.getswitchinterval()
    if before <= THREAD_SWITCH_INTERVAL:
        yield
        return
    sys.setswitchinterval(THREAD_SWITCH_INTERVAL)
    try:
        yield
    finally:
        if sys.getswitchinterval() == THREAD_SWITCH_INTERVAL:  # not changed meanwhile by another
            sys.setswitchinterval(before)


def read_images_and_series(
    images: Sequence[Source],
    references: Source | Sequence[Source],
    check_spacing: bool = True,
    while_waiting: Callable[[ReferenceSeries], object] | None = None,
) -> tuple[list[Volume], ReferenceSeries]:
    """``read_image`` of each image and ``read_dicom_series`` of the references (matched to
    the first image), with the images read on a second thread while the series is parsed.

    Inflating a gzip'd image is zlib's work, which runs without the GIL, and parsing DICOM
    headers is Python's: on two cores they take the time of the longer one. Problems are
    reported as if read one after the other: the images' first. Where there are no threads
    (Pyodide), they are.

    ``while_waiting`` is called with the series, once, if the images are still being read
    when it is parsed: work the caller does next anyway that needs no image (a 45 MB map
    inflates for ~0.15 s longer than 200 headers take to parse, time this thread would
    otherwise spend waiting). Should it raise, an image's problem still comes first.
    """
    if not images:
        raise InputError("no image was given")
    if sys.platform == "emscripten":
        volumes = [read_image(source) for source in images]
        return volumes, read_dicom_series(references, match=volumes[0], check_spacing=check_spacing)
    from concurrent.futures import ThreadPoolExecutor

    with prompt_thread_switches(), ThreadPoolExecutor(1) as pool:
        reading = pool.submit(lambda: [read_image(source) for source in images])
        try:
            series = read_dicom_series(references, match=lambda: reading.result()[0], check_spacing=check_spacing)
            if while_waiting is not None and not reading.done():
                while_waiting(series)
        except BaseException:
            reading.result()  # an image's problem comes first, as it would one after the other
            raise
        return reading.result(), series


def _given_folders(sources: Source | Sequence[Source]) -> list[Path]:
    """The folders among the sources, to name them in messages."""
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    elif not isinstance(sources, (list, tuple)) or _is_pair(sources):
        return []
    return [Path(source) for source in sources if isinstance(source, (str, os.PathLike)) and Path(source).is_dir()]


def _is_pair(source) -> bool:
    return isinstance(source, tuple) and len(source) == 2 and isinstance(source[1], (bytes, bytearray, memoryview))


def _folder_list(folders: list[Path]) -> str:
    return ", ".join(str(folder) for folder in folders)


def _emptiness(folders: list[Path]) -> str:
    if any(p.is_file() for folder in folders for p in folder.rglob(".*")):
        return "the folder holds only hidden files (names starting with '.'), which are not read"
    return "the folder is empty"


def _series_label(datasets: Sequence[Dataset]) -> str:
    """A series as a person can find it again: number, description, modality, UID, file count."""
    first = datasets[0]
    number = first.get("SeriesNumber")
    description = str(first.get("SeriesDescription", "") or "")
    return (
        f"series{f' {number}' if number not in (None, '') else ''}"
        f"{f' {description!r}' if description else ''} "
        f"({first.get('Modality', 'no modality')}, UID {first.get('SeriesInstanceUID', 'none')}, {len(datasets)} file(s))"
    )


def _file_list(datasets: Sequence[Dataset], shown: int = 10) -> str:
    names = sorted(str(ds.filename) for ds in datasets)
    if len(names) <= shown:
        return ", ".join(names)
    return ", ".join(names[:shown]) + f" and {len(names) - shown} more"


def _left_out(
    chosen: ReferenceSeries,
    candidates: Sequence[ReferenceSeries],
    errors: Sequence[tuple[list[Dataset], Exception]],
    image_name: str,
    series_count: int,
) -> list[str]:
    """Warnings saying which of several series was used, and which files were left out."""
    messages = [
        f"the reference files hold {series_count} series; used {_series_label(chosen.datasets)}, "
        f"the one {image_name} lies on"
    ]
    for series in candidates:
        if series is not chosen:
            messages.append(
                f"left out {_series_label(series.datasets)}, as {image_name} does not lie on its grid: "
                f"{_file_list(series.datasets)}"
            )
    for datasets, error in errors:
        messages.append(f"left out {_series_label(datasets)}, unusable ({error}): {_file_list(datasets)}")
    return messages


def volume_fits(volume: Volume, series: ReferenceSeries) -> bool:
    """True if the volume's grid is the series' grid (up to axis order, flips and a slice subset)."""
    mapping = index_mapping(volume.affine, series.affine)
    if mapping is None:
        return False
    matrix, offset = mapping
    corners = np.array([[0, 0, 0], [n - 1 for n in volume.shape]])
    mapped = corners @ matrix.T + offset
    low, high = mapped.min(axis=0), mapped.max(axis=0)
    return bool((low >= 0).all() and (high < np.array(series.shape)).all())


def _build_series(datasets: list[Dataset], check_spacing: bool) -> ReferenceSeries:
    first = datasets[0]
    orientation = np.asarray(first.ImageOrientationPatient, float)
    pixel_spacing = np.asarray(first.get("PixelSpacing", [1.0, 1.0]), float)
    rows, columns = int(first.Rows), int(first.Columns)
    for ds in datasets[1:]:
        if not np.allclose(np.asarray(ds.ImageOrientationPatient, float), orientation, atol=1e-4):
            raise GeometryError(
                f"{ds.filename} and {first.filename} have different orientations in one series; "
                "a reference series must be one stack of parallel slices"
            )
        if (int(ds.Rows), int(ds.Columns)) != (rows, columns):
            raise GeometryError(
                f"{ds.filename} is {ds.Columns}x{ds.Rows} but {first.filename} is {columns}x{rows}"
            )
    # Scanners round the orientation text differently from slice to slice; highdicom wants
    # it identical. These datasets are our own parsed copies, so align them to the first.
    for ds in datasets[1:]:
        ds.ImageOrientationPatient = first.ImageOrientationPatient
    normal = slice_normal(orientation)
    positions = np.array([np.asarray(ds.ImagePositionPatient, float) for ds in datasets])
    order = np.argsort(positions @ normal, kind="stable")
    datasets = [datasets[n] for n in order]
    stack = PlaneStack(orientation, pixel_spacing, positions[order], rows, columns)
    if check_spacing:
        check_regular_spacing(stack, [str(ds.filename) for ds in datasets])
    return ReferenceSeries(datasets, stack)


def source_name(source, default: str | None = None) -> str | None:
    """The name a person knows a source by, for messages (None for anonymous text or bytes)."""
    if isinstance(source, dict):
        return default
    if isinstance(source, (tuple, NamedBytes)):
        return as_named_bytes(source).name
    if isinstance(source, str) and not source.lstrip().startswith("{"):
        return source
    return getattr(source, "name", None) or (str(source) if hasattr(source, "__fspath__") else None)


# --------------------------------------------------------------------------- multi-frame objects


def frame_item(dataset: Dataset, frame: int, keyword: str) -> Dataset | None:
    """The first item of a functional group sequence for one frame (per-frame, else shared)."""
    per_frame = dataset.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and len(per_frame) > frame and per_frame[frame].get(keyword):
        return per_frame[frame][keyword][0]
    shared = dataset.get("SharedFunctionalGroupsSequence")
    if shared and shared[0].get(keyword):
        return shared[0][keyword][0]
    return None


@dataclass
class FrameGrid:
    """Where the frames of a multi-frame object (SEG, PM) lie: a regular grid, and each
    frame's slice index in it."""

    affine: np.ndarray
    shape: tuple[int, int, int]
    slice_index: np.ndarray


def frame_grid(dataset: Dataset, label: str, groups=None) -> FrameGrid:
    """Place every frame by its own plane position on one regular grid.

    The slice step is SpacingBetweenSlices when present, else the smallest distance
    between distinct planes: frames of empty slices may be missing, so gaps are allowed.
    ``groups`` (a ``dicom_decoding.FrameGroups``) gives the frames' functional group values
    when they were read already; otherwise they are taken from the dataset.
    """
    if groups is None:
        from qidicom.dicom_decoding import frame_groups_from_dataset

        groups = frame_groups_from_dataset(dataset, int(dataset.get("NumberOfFrames", 1) or 1))
    for f, position in enumerate(groups.positions):
        if position is None:
            raise InputError(f"{label}: frame {f + 1} has no plane position, so it cannot be placed")
    positions = np.asarray(groups.positions, float)
    if groups.orientation is None or groups.pixel_spacing is None:
        raise InputError(f"{label}: no plane orientation or pixel spacing, so its grid is unknown")
    orientation = np.asarray(groups.orientation, float)
    normal = slice_normal(orientation)
    distances = positions @ normal
    distinct = np.sort(np.round(distances, 4))  # np.unique's result, without its import of numpy.ma
    distinct = distinct[np.concatenate(([True], distinct[1:] != distinct[:-1]))]
    if groups.spacing_between_slices is not None:
        step = abs(groups.spacing_between_slices)
    elif len(distinct) > 1:
        step = float(np.min(np.diff(distinct)))
    else:
        step = float(groups.slice_thickness or 1.0)
    if step <= POSITION_TOLERANCE_MM:
        raise GeometryError(f"{label}: slice spacing {step:g} mm is not usable")
    start = distances.min()
    index = np.round((distances - start) / step).astype(int)
    if np.abs((distances - start) / step - index).max() > 0.02:
        raise GeometryError(f"{label}: frame positions are not on a regular grid of {step:g} mm")
    first = positions[int(np.argmin(distances))]
    rows, columns = int(dataset.Rows), int(dataset.Columns)
    stack = PlaneStack(orientation, np.asarray(groups.pixel_spacing, float), np.array([first, first + normal * step]), rows, columns)
    return FrameGrid(stack.affine, (columns, rows, int(index.max()) + 1), index)
