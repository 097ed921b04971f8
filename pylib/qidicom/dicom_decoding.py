"""The per-frame functional groups and native pixel data of a multi-frame object, read
from its bytes.

pydicom decodes every element of every item of a Per-Frame Functional Groups Sequence
into Python objects: for a SEG of 810 frames that is ~16,000 elements and ~0.45 s of CPU
(for DCMTK's undefined lengths, 0.25 s of it inside ``dcmread``), most of a SEG read. The
readers use four values of each frame (where it lies, which segment it shows) and a few of
the first frame. This module walks the file's top level and that sequence's bytes once,
checks their structure as pydicom's parser would (every item and element within its
parent, every delimiter in place), decodes only those values, with pydicom's rules for
their VRs, and leaves the rest of the file to pydicom. Native pixel data is taken as it is
stored: a view of the file's bytes, 1-bit frames unpacked when used.

It reads what pydicom writes and dcmqi (DCMTK) writes: Explicit VR Little Endian, Deflated
Explicit VR Little Endian and the encapsulated syntaxes, defined and undefined lengths. On
anything else (Implicit VR, Big Endian, an undefined-length UN, a value not in the form
pydicom would decode the same way) it raises :class:`Undecoded`, and the caller reads the
object with pydicom instead, as before: this module never decides an error of its own.
``tests/test_dicom_decoding.py`` proves its results equal to pydicom's for every SEG kind.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

__all__ = [
    "FrameGroups", "PackedFrames", "SplitFile", "Undecoded", "frame_groups_from_dataset", "native_frames",
    "split_functional_groups",
]


class Undecoded(Exception):
    """The bytes are not in a form this module reads; read the object with pydicom."""


#: (group << 16) | element of the tags this module looks for.
PER_FRAME_FUNCTIONAL_GROUPS = 0x52009230
SHARED_FUNCTIONAL_GROUPS = 0x52009229
PLANE_POSITION = 0x00209113
IMAGE_POSITION = 0x00200032
PLANE_ORIENTATION = 0x00209116
IMAGE_ORIENTATION = 0x00200037
PIXEL_MEASURES = 0x00289110
PIXEL_SPACING = 0x00280030
SLICE_THICKNESS = 0x00180050
SPACING_BETWEEN_SLICES = 0x00180088
SEGMENT_IDENTIFICATION = 0x0062000A
REFERENCED_SEGMENT_NUMBER = 0x0062000B
REFERENCED_SERIES = 0x00081115

_ITEM = 0xFFFEE000
_ITEM_END = 0xFFFEE00D
_SEQUENCE_END = 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
_TRANSFER_SYNTAX = 0x00020010
_GROUP_LENGTH = 0x00020000

EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"
#: Implicit VR Little Endian, Explicit VR Big Endian, and the JPIP Referenced syntaxes
#: (the second deflated, without Pixel Data): left to pydicom.
_NOT_READ_HERE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.4.94", "1.2.840.10008.1.2.4.95"}

# Explicit VR elements with a 4-byte length after two reserved bytes (PS3.5 7.1.2).
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
_HEAD = struct.Struct("<HH2sH")
_TAG = struct.Struct("<HHL")  # an item or delimiter: tag, 4-byte length
_LENGTH = struct.Struct("<L")

#: A parsed item: tag -> (VR, value start, value length) for a value, or (b"SQ", items).
Item = dict


def _sequence(data, pos: int, length: int, end: int) -> tuple[list[Item], int]:
    """The items of a sequence value starting at ``pos``, and where the value ends."""
    items: list[Item] = []
    if length != _UNDEFINED:
        stop = pos + length
        if stop > end:
            raise Undecoded("a sequence runs past its parent")
        while pos < stop:
            pos = _item(data, pos, stop, items)
        if pos != stop:
            raise Undecoded("a sequence's items overrun its length")
        return items, stop
    while True:
        if pos + 8 > end:
            raise Undecoded("an undefined-length sequence has no delimiter")
        group, element, item_length = _TAG.unpack_from(data, pos)
        tag = group << 16 | element
        if tag == _SEQUENCE_END:
            if item_length:
                raise Undecoded("a sequence delimiter with a length")
            return items, pos + 8
        pos = _item(data, pos, end, items)


def _item(data, pos: int, end: int, items: list[Item]) -> int:
    """Parse the item at ``pos`` (within ``end``) onto ``items``; where it ends."""
    if pos + 8 > end:
        raise Undecoded("an item runs past its sequence")
    group, element, length = _TAG.unpack_from(data, pos)
    if group << 16 | element != _ITEM:
        raise Undecoded("a sequence holds something other than items")
    pos += 8
    item: Item = {}
    if length != _UNDEFINED:
        stop = pos + length
        if stop > end:
            raise Undecoded("an item runs past its sequence")
        pos = _elements(data, pos, stop, item, False)
        if pos != stop:
            raise Undecoded("an item's elements overrun its length")
    else:
        pos = _elements(data, pos, end, item, True)
    items.append(item)
    return pos


def _elements(data, pos: int, end: int, item: Item, delimited: bool) -> int:
    """Parse elements from ``pos`` to ``end`` (or to an item delimiter) into ``item``."""
    head, long_vrs, length_of = _HEAD.unpack_from, _LONG_VRS, _LENGTH.unpack_from
    while pos < end:
        if pos + 8 > end:
            raise Undecoded("an element's header runs past its item")
        group, element, vr, length = head(data, pos)
        tag = group << 16 | element
        if group == 0xFFFE:
            if tag == _ITEM_END and delimited:
                if length or vr != b"\0\0":
                    raise Undecoded("an item delimiter with a length")
                return pos + 8
            raise Undecoded("an item or delimiter where an element belongs")
        if vr in long_vrs:
            if pos + 12 > end or data[pos + 6:pos + 8] != b"\0\0":
                raise Undecoded("a long element's header is cut short or malformed")
            length = length_of(data, pos + 8)[0]
            pos += 12
        elif vr.isalpha() and vr.isupper():
            pos += 8
        else:
            raise Undecoded("an element without an explicit VR")
        if tag in item:
            raise Undecoded("an element twice in one item")
        if vr == b"SQ":
            items, pos = _sequence(data, pos, length, end)
            item[tag] = (b"SQ", items)
            continue
        if length == _UNDEFINED:
            raise Undecoded("an undefined-length value other than a sequence")
        if pos + length > end:
            raise Undecoded("a value runs past its item")
        item[tag] = (vr, pos, length)
        pos += length
    if delimited:
        raise Undecoded("an undefined-length item has no delimiter")
    return pos


def _skip_encapsulated(data, pos: int, end: int) -> int:
    """Past encapsulated pixel data: defined-length items, then a sequence delimiter."""
    while True:
        if pos + 8 > end:
            raise Undecoded("encapsulated pixel data has no delimiter")
        group, element, length = _TAG.unpack_from(data, pos)
        tag = group << 16 | element
        if tag == _SEQUENCE_END:
            return pos + 8
        if tag != _ITEM or length == _UNDEFINED or pos + 8 + length > end:
            raise Undecoded("encapsulated pixel data is not a list of fragments")
        pos += 8 + length


@dataclass
class FrameGroups:
    """What the readers use of a multi-frame object's functional groups.

    Each value is taken as DICOM's frame rules say: from the frame's own item of the
    Per-Frame Functional Groups Sequence when it has the group, else from the Shared one.
    ``None`` where neither has it. Values are as ``float()``/``int()`` of pydicom's.
    """

    positions: list  # per frame: Image Position (Patient), 3 floats, or None
    segment_numbers: list  # per frame: Referenced Segment Number, or None
    orientation: list | None  # of frame 1: Image Orientation (Patient), 6 floats
    pixel_spacing: list | None  # of frame 1 (None also when it has no Pixel Measures)
    slice_thickness: float | None  # of frame 1; None when absent or empty
    spacing_between_slices: float | None  # of frame 1; None when absent or empty


@dataclass
class SplitFile:
    """A Part 10 file without its Per-Frame Functional Groups Sequence, and that sequence.

    ``remainder`` is the file as Explicit VR Little Endian (a deflated file inflated, its
    file meta naming Explicit VR Little Endian): small enough for pydicom to parse whole.
    ``transfer_syntax`` is the original's.
    """

    remainder: bytes
    transfer_syntax: str
    body: bytes | memoryview
    per_frame: list[Item] | None
    shared: list[Item] | None
    #: With ``cut_pixels``: native Pixel Data taken out too, its VR and value (a view of
    #: the file's bytes, or of the inflated ones).
    pixel_vr: str | None = None
    pixels: memoryview | None = None

    def frame_groups(self, frame_count: int) -> FrameGroups:
        """The functional group values of ``frame_count`` frames (Undecoded if odd)."""
        return _frame_groups(self.body, self.per_frame, self.shared, frame_count)


def _file_meta(data: bytes) -> tuple[int, str, list[tuple[int, int, int, int]]]:
    """End of the file meta group, its transfer syntax, and its elements (tag, start,
    value start, value end), read as PS3.10 lays them out (Explicit VR Little Endian)."""
    if len(data) < 132 or data[128:132] != b"DICM":
        raise Undecoded("no DICOM preamble")
    pos, syntax, elements = 132, None, []
    while pos + 8 <= len(data) and data[pos:pos + 2] == b"\x02\x00":
        group, element, vr, length = _HEAD.unpack_from(data, pos)
        if vr in _LONG_VRS:
            if pos + 12 > len(data):
                raise Undecoded("the file meta is cut short")
            start, length = pos + 12, _LENGTH.unpack_from(data, pos + 8)[0]
        else:
            start = pos + 8
        if length == _UNDEFINED or start + length > len(data):
            raise Undecoded("the file meta is cut short")
        tag = group << 16 | element
        if tag == _TRANSFER_SYNTAX:
            syntax = bytes(data[start:start + length]).rstrip(b"\0 ").decode("ascii", "replace")
        elements.append((tag, pos, start, start + length))
        pos = start + length
    if syntax is None:
        raise Undecoded("no transfer syntax in the file meta")
    return pos, syntax, elements


def _meta_as_explicit(data: bytes, elements: list[tuple[int, int, int, int]]) -> bytes:
    """The preamble and file meta with the transfer syntax Explicit VR Little Endian."""
    uid = EXPLICIT_VR_LITTLE_ENDIAN.encode() + b"\0"  # even length (PS3.5 9.1)
    parts, change = [bytes(data[:132])], 0
    for tag, start, value_start, value_end in elements:
        if tag == _TRANSFER_SYNTAX:
            change = len(uid) - (value_end - value_start)
            parts.append(bytes(data[start:start + 6]) + len(uid).to_bytes(2, "little") + uid)
        else:
            parts.append(bytes(data[start:value_end]))
    for n, (tag, start, value_start, value_end) in enumerate(elements):
        if tag == _GROUP_LENGTH and value_end - value_start == 4:
            length = int.from_bytes(data[value_start:value_end], "little") + change
            parts[n + 1] = bytes(data[start:value_start]) + length.to_bytes(4, "little")
    return b"".join(parts)


def split_functional_groups(
    data: bytes, max_inflated: int | None = None, cut_pixels: bool = False, leave_out: tuple[int, ...] = ()
) -> SplitFile:
    """Take the Per-Frame Functional Groups Sequence out of a Part 10 file, parsed.

    The rest of the file is returned for pydicom to parse; the Shared Functional Groups
    Sequence stays in it and is parsed here too. ``max_inflated`` bounds what a deflated
    file may inflate to (past it: Undecoded, and pydicom's reader names the problem).
    ``cut_pixels`` takes native Pixel Data out as well (pydicom would copy it, twice), and
    ``leave_out`` the top-level sequences of those tags that the caller does not use (their
    structure is checked here all the same).
    Raises Undecoded for what this module does not read (see the module's docstring).
    """
    meta_end, syntax, meta_elements = _file_meta(data)
    if syntax in _NOT_READ_HERE or not syntax.startswith("1.2.840.10008.1.2"):
        raise Undecoded(f"transfer syntax {syntax}")
    body: bytes | memoryview
    if syntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        try:
            limit = max_inflated + 1 if max_inflated else 0
            body = inflater.decompress(memoryview(data)[meta_end:], limit)
        except zlib.error:
            raise Undecoded("the deflated data cannot be inflated") from None
        if max_inflated and len(body) > max_inflated or not inflater.eof:
            raise Undecoded("the deflated data is too large or cut short")
        head = _meta_as_explicit(data, meta_elements)
    else:
        body = memoryview(data)[meta_end:]
        head = bytes(data[:meta_end])
    end, pos = len(body), 0
    per_frame = shared = None
    cuts: list[tuple[int, int]] = []
    pixel_vr = pixels = None
    while pos < end:
        if pos + 8 > end:
            raise Undecoded("an element's header is cut short")
        group, element, vr, length = _HEAD.unpack_from(body, pos)
        tag = group << 16 | element
        start = pos
        if group in (0x0002, 0xFFFE):
            raise Undecoded("a file meta element or an item in the data set")
        if vr in _LONG_VRS:
            if pos + 12 > end:
                raise Undecoded("an element's header is cut short")
            length = _LENGTH.unpack_from(body, pos + 8)[0]
            pos += 12
        elif vr.isalpha() and vr.isupper():
            pos += 8
        else:
            raise Undecoded("an element without an explicit VR")
        if vr == b"SQ":
            items, pos = _sequence(body, pos, length, end)
            if tag == PER_FRAME_FUNCTIONAL_GROUPS:
                if per_frame is not None:
                    raise Undecoded("two Per-Frame Functional Groups Sequences")
                per_frame = items
                cuts.append((start, pos))
            elif tag == SHARED_FUNCTIONAL_GROUPS:
                shared = items
            elif tag in leave_out:
                cuts.append((start, pos))
        elif length == _UNDEFINED:
            if vr not in (b"OB", b"OW") or tag != 0x7FE00010:
                raise Undecoded("an undefined-length value other than a sequence or pixel data")
            pos = _skip_encapsulated(body, pos, end)
        else:
            if pos + length > end:
                raise Undecoded("a value runs past the end of the file")
            if cut_pixels and tag == 0x7FE00010 and vr in (b"OB", b"OW"):
                pixel_vr, pixels = vr.decode(), memoryview(body)[pos:pos + length]
                cuts.append((start, pos + length))
            pos += length
    parts, last = [head], 0
    for start, stop in cuts:
        parts.append(body[last:start])
        last = stop
    parts.append(body[last:])
    return SplitFile(b"".join(parts), syntax, body, per_frame, shared, pixel_vr, pixels)


# --------------------------------------------------------------------------- values


def _text(data, value) -> str:
    vr, start, length = value
    return bytes(data[start:start + length]).decode("latin-1")


def _decimals(data, value, count: int | None) -> list[float] | float | None:
    """A DS value as pydicom reads it, as floats: ``count`` of them (a list), or one
    float (count None). None when empty. Undecoded when pydicom would read it otherwise."""
    if value[0] != b"DS":
        raise Undecoded("a decimal string with another VR")
    text = _text(data, value).strip()  # as pydicom: the whole value stripped, then split
    if not text:
        if count is None:
            return None
        raise Undecoded("an empty multi-valued decimal string")
    parts = text.split("\\")
    if len(parts) != (count or 1) or any(not part.strip() for part in parts):
        raise Undecoded("a decimal string with another number of values")
    try:
        numbers = [float(part) for part in parts]
    except ValueError:
        raise Undecoded("a decimal string that is not a number") from None
    return numbers if count is not None else numbers[0]


def _unsigned_short(data, value) -> int:
    vr, start, length = value
    if vr != b"US" or length != 2:
        raise Undecoded("a segment number that is not one US value")
    return data[start] | data[start + 1] << 8


def _first(item: Item | None, tag: int) -> Item | None:
    """The first item of the sequence ``tag`` in ``item``, None if it has none."""
    if item is None:
        return None
    value = item.get(tag)
    if value is None:
        return None
    if value[0] != b"SQ":
        raise Undecoded("a functional group that is not a sequence")
    return value[1][0] if value[1] else None


def _frame_groups(data, per_frame: list[Item] | None, shared: list[Item] | None, frame_count: int) -> FrameGroups:
    shared_item = shared[0] if shared else None
    shared_position = _first(shared_item, PLANE_POSITION)
    shared_segment = _first(shared_item, SEGMENT_IDENTIFICATION)
    positions, numbers = [], []
    frames = per_frame or []
    for f in range(frame_count):
        item = frames[f] if f < len(frames) else None
        plane = _first(item, PLANE_POSITION) or shared_position
        value = plane.get(IMAGE_POSITION) if plane is not None else None
        positions.append(_decimals(data, value, 3) if value is not None else None)
        identification = _first(item, SEGMENT_IDENTIFICATION) or shared_segment
        value = identification.get(REFERENCED_SEGMENT_NUMBER) if identification is not None else None
        numbers.append(_unsigned_short(data, value) if value is not None else None)
    first = frames[0] if frames else None
    orientation_item = _first(first, PLANE_ORIENTATION) or _first(shared_item, PLANE_ORIENTATION)
    value = orientation_item.get(IMAGE_ORIENTATION) if orientation_item is not None else None
    orientation = _decimals(data, value, 6) if value is not None else None
    measures = _first(first, PIXEL_MEASURES) or _first(shared_item, PIXEL_MEASURES)
    spacing = thickness = between = None
    if measures is not None:
        value = measures.get(PIXEL_SPACING)
        spacing = _decimals(data, value, 2) if value is not None else None
        value = measures.get(SLICE_THICKNESS)
        thickness = _decimals(data, value, None) if value is not None else None
        value = measures.get(SPACING_BETWEEN_SLICES)
        between = _decimals(data, value, None) if value is not None else None
    return FrameGroups(positions, numbers, orientation, spacing, thickness, between)


def _floats(value) -> list[float]:
    """A multi-valued pydicom DS as floats (a single value as a list of one)."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        return [float(value)]
    return [float(v) for v in value]


def _optional_float(value) -> float | None:
    return None if value in (None, "") else float(value)


def frame_groups_from_dataset(dataset, frame_count: int) -> FrameGroups:
    """The same values as :meth:`SplitFile.frame_groups`, from a dataset pydicom parsed."""
    from qidicom.readers import frame_item

    positions, numbers = [], []
    for f in range(frame_count):
        plane = frame_item(dataset, f, "PlanePositionSequence")
        value = plane.get("ImagePositionPatient") if plane is not None else None
        positions.append(_floats(value) if value is not None else None)
        identification = frame_item(dataset, f, "SegmentIdentificationSequence")
        value = identification.get("ReferencedSegmentNumber") if identification is not None else None
        numbers.append(int(value) if value is not None else None)
    orientation_item = frame_item(dataset, 0, "PlaneOrientationSequence")
    value = orientation_item.get("ImageOrientationPatient") if orientation_item is not None else None
    orientation = _floats(value) if value is not None else None
    measures = frame_item(dataset, 0, "PixelMeasuresSequence")
    spacing = thickness = between = None
    if measures is not None:
        value = measures.get("PixelSpacing")
        spacing = _floats(value) if value is not None else None
        thickness = _optional_float(measures.get("SliceThickness"))
        between = _optional_float(measures.get("SpacingBetweenSlices"))
    return FrameGroups(positions, numbers, orientation, spacing, thickness, between)


# --------------------------------------------------------------------------- pixels


#: Transfer syntaxes whose pixel data is native little-endian (deflated: once inflated).
_NATIVE_LITTLE_ENDIAN = {EXPLICIT_VR_LITTLE_ENDIAN, "1.2.840.10008.1.2", DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN}


class PackedFrames:
    """1-bit frames as stored (PS3.5 8.1.1: first pixel in the lowest bit), unpacked a
    few frames at a time: ``self[indices]`` is uint8 0/1, shape (len(indices), rows, columns).

    A SEG's bits unpacked at once would take eight times their bytes (212 MB for 810
    frames of 512x512); a segment's volume needs only its own frames.
    """

    def __init__(self, data, frame_count: int, rows: int, columns: int):
        self.shape = (frame_count, rows, columns)
        self.dtype = np.dtype(np.uint8)
        self._packed = np.frombuffer(data, np.uint8)
        self._pixels = rows * columns
        self._unpacked: np.ndarray | None = None

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> np.ndarray:
        frames = np.arange(self.shape[0])[index]
        count, rows, columns = np.size(frames), self.shape[1], self.shape[2]
        if self._pixels % 8 == 0:  # frames start on byte boundaries
            step = self._pixels // 8
            packed = self._packed[:self.shape[0] * step].reshape(self.shape[0], step)[frames]
            unpacked = np.unpackbits(packed, bitorder="little")
        else:  # frames share bytes: unpack all once
            if self._unpacked is None:
                self._unpacked = np.unpackbits(self._packed, count=self.shape[0] * self._pixels, bitorder="little")
            unpacked = self._unpacked.reshape(self.shape[0], self._pixels)[frames]
        return unpacked.reshape((count, rows, columns) if np.ndim(frames) else (rows, columns))


def native_frames(dataset, syntax: str | None) -> np.ndarray | PackedFrames:
    """A native (uncompressed) single-sample SEG's frames, as pydicom's ``pixel_array``
    gives them (1-bit frames packed, unpacked when used), without a copy of 8- and 16-bit
    ones. Undecoded for what pydicom's decoder should handle (encapsulated, signed, or
    BitsStored short of BitsAllocated)."""
    if syntax not in _NATIVE_LITTLE_ENDIAN:
        raise Undecoded(f"pixel data in {syntax}")
    try:
        rows, columns = int(dataset.Rows), int(dataset.Columns)
        bits, stored = int(dataset.BitsAllocated), int(dataset.BitsStored)
        samples = int(dataset.get("SamplesPerPixel", 1) or 1)
        signed = int(dataset.get("PixelRepresentation", 0) or 0)
        count = int(dataset.get("NumberOfFrames", 1) or 1)
        data = dataset.PixelData
    except (AttributeError, TypeError, ValueError):
        raise Undecoded("pixel attributes missing or odd") from None
    if samples != 1 or signed or not isinstance(data, (bytes, bytearray, memoryview)) or bits not in (1, 8, 16) or stored != bits:
        raise Undecoded("pixel data for pydicom's decoder")
    if bits == 1:
        if len(data) * 8 < count * rows * columns:
            raise Undecoded("short pixel data")
        return PackedFrames(data, count, rows, columns)
    dtype = np.dtype(np.uint8 if bits == 8 else "<u2")
    size = count * rows * columns
    if len(data) < size * dtype.itemsize:
        raise Undecoded("short pixel data")
    return np.frombuffer(data, dtype, size).reshape(count, rows, columns)


