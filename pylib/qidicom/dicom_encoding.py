"""A fast encoder for the Per-frame Functional Groups Sequence, byte-identical to pydicom's.

A SEG or PM of a few hundred frames carries one functional-group item per frame, each a small
tree of sequences. pydicom's generic writer spends most of a conversion's encoding time on
these: per element it re-checks ambiguous VRs, character sets and the file's endianness.
This module encodes such items directly (Explicit VR Little Endian, the only encoding qidicom
writes datasets in), for the value representations those items use, and hands the result to
pydicom as one raw element, so pydicom still writes everything else of the file.

It is an optimisation only: :func:`encode_items` returns ``None`` for anything outside what it
knows (a raw element, an ambiguous or unusual VR, non-ASCII text, an undefined length, a value
too long for its length field), and the caller then lets pydicom encode the sequence as usual.
The tests compare its bytes with pydicom's for every SEG and PM variant qidicom writes.
"""

from __future__ import annotations

import io
from struct import pack
from typing import Sequence

import pydicom
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import correct_ambiguous_vr, write_dataset
from pydicom.multival import MultiValue
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian

PER_FRAME_FUNCTIONAL_GROUPS = Tag(0x5200, 0x9230)

_ITEM = pack("<HH", 0xFFFE, 0xE000)
_LONG_LENGTH_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV", "UV"})
_NUMBER_FORMATS = {"UL": "L", "US": "H", "SL": "l", "SS": "h", "FD": "d", "FL": "f", "SV": "q", "UV": "Q"}
_STRING_VRS = {"UI": b"\0", "CS": b" ", "AE": b" ", "AS": b" ", "DA": b" ", "TM": b" ", "DT": b" "}
_TEXT_VRS = frozenset({"SH", "LO", "ST", "LT", "UT", "UC"})
_NUMBER_STRING_VRS = frozenset({"DS", "IS"})


class _Unsupported(Exception):
    """An element this encoder does not handle: pydicom encodes the sequence instead."""


def _number_string(value) -> str:
    return value.original_string if hasattr(value, "original_string") else str(value)


def _ascii(text: str) -> bytes:
    try:
        return text.encode("ascii")
    except UnicodeEncodeError:  # pydicom would apply the character set: let it
        raise _Unsupported from None


def _is_multi(value) -> bool:
    return isinstance(value, (MultiValue, list, tuple))


def _value_bytes(element: DataElement, memo: dict[int, bytes]) -> bytes:
    vr = element.VR
    value = element.value
    if vr == "SQ":
        return b"".join([_item_bytes(item, memo) for item in value])
    if element.VM == 0:
        return b""
    if vr in _NUMBER_FORMATS:
        fmt = _NUMBER_FORMATS[vr]
        if vr == "SS" and _is_multi(value):  # LUT descriptors mix US and SS: pydicom special-cases them
            raise _Unsupported
        if isinstance(value, (MultiValue, list)):
            return pack(f"<{len(value)}{fmt}", *value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return pack(f"<{fmt}", value)
        raise _Unsupported
    if vr in _NUMBER_STRING_VRS:
        text = "\\".join(_number_string(v) for v in value) if _is_multi(value) else _number_string(value)
        data = _ascii(text)
        return data + b" " if len(data) % 2 else data
    if vr in _STRING_VRS:
        if _is_multi(value):
            if not all(isinstance(v, str) for v in value):
                raise _Unsupported
            text = "\\".join(value)
        elif isinstance(value, str):
            text = value
        else:  # a DA/TM/DT object: pydicom formats it
            raise _Unsupported
        data = _ascii(text)
        return data + _STRING_VRS[vr] if len(data) % 2 else data
    if vr in _TEXT_VRS:
        if _is_multi(value):
            if not all(isinstance(v, str) for v in value):
                raise _Unsupported
            data = b"\\".join(_ascii(v) for v in value)
        elif isinstance(value, str):
            data = _ascii(value)
        else:
            raise _Unsupported
        return data + b" " if len(data) % 2 else data
    raise _Unsupported


def _element_bytes(element, memo: dict[int, bytes]) -> bytes:
    if not isinstance(element, DataElement) or element.is_undefined_length or element.is_buffered:
        raise _Unsupported
    vr = element.VR
    value = _value_bytes(element, memo)
    tag = element.tag
    header = pack("<HH", tag >> 16, tag & 0xFFFF) + vr.encode("ascii")
    if vr in _LONG_LENGTH_VRS:
        return header + pack("<HL", 0, len(value)) + value
    if len(value) > 0xFFFF:  # pydicom would rewrite the VR as UN
        raise _Unsupported
    return header + pack("<H", len(value)) + value


def _item_bytes(item: Dataset, memo: dict[int, bytes]) -> bytes:
    # An item's bytes depend on its elements only, and highdicom puts the same item objects
    # in many frames (a plane's position and source image in each of its segments' frames,
    # the derivation and purpose codes in all): each object is encoded once per call.
    encoded = memo.get(id(item))
    if encoded is not None:
        return encoded
    if not isinstance(item, Dataset) or getattr(item, "is_undefined_length_sequence_item", False):
        raise _Unsupported
    parts = []
    for tag in sorted(item.keys()):
        if tag.element == 0 and tag.group > 6:  # retired group lengths are not written
            continue
        parts.append(_element_bytes(item.get_item(tag), memo))
    body = b"".join(parts)
    encoded = memo[id(item)] = _ITEM + pack("<L", len(body)) + body
    return encoded


def encode_items(items: Sequence[Dataset]) -> bytes | None:
    """The encoded items of a sequence, as pydicom writes them, or ``None`` when not supported."""
    memo: dict[int, bytes] = {}  # id -> bytes; every item stays referenced by ``items`` meanwhile
    try:
        return b"".join([_item_bytes(item, memo) for item in items])
    except _Unsupported:
        return None


def _with_fast_sequence(dataset: Dataset):
    """Prepare ``dataset`` for pydicom with its per-frame items pre-encoded.

    Returns a function that undoes the change, or ``None`` when the fast path does not apply.
    """
    element = dataset.get(PER_FRAME_FUNCTIONAL_GROUPS)
    if element is None or not isinstance(element, DataElement) or element.is_undefined_length:
        return None
    encoded = encode_items(element.value)
    if encoded is None:
        return None
    previous_encoding = (dataset._read_implicit, dataset._read_little, dataset._read_charset)
    del dataset[PER_FRAME_FUNCTIONAL_GROUPS]
    # What pydicom's writer would do to the rest of the dataset (resolving "US or SS" and
    # the like) is done here once; then it may write every element as it stands.
    correct_ambiguous_vr(dataset, True)
    dataset[PER_FRAME_FUNCTIONAL_GROUPS] = RawDataElement(
        PER_FRAME_FUNCTIONAL_GROUPS, "SQ", len(encoded), encoded, 0, False, True, True, False
    )
    dataset.set_original_encoding(False, True, dataset._character_set)

    def restore() -> None:
        dataset[PER_FRAME_FUNCTIONAL_GROUPS] = element
        dataset._read_implicit, dataset._read_little, dataset._read_charset = previous_encoding

    return restore


_PIXEL_TAGS = (Tag(0x7FE0, 0x0008), Tag(0x7FE0, 0x0009), Tag(0x7FE0, 0x0010))  # Float, Double Float, Pixel Data


def _trailing_pixels(dataset: Dataset) -> DataElement | None:
    """The pixel data element, when the file is plain Explicit VR Little Endian (not
    encapsulated, not deflated) and it is the dataset's last element."""
    meta = getattr(dataset, "file_meta", None)
    if meta is None or meta.get("TransferSyntaxUID") != ExplicitVRLittleEndian:
        return None
    tags = [tag for tag in _PIXEL_TAGS if tag in dataset]
    if len(tags) != 1 or max(dataset.keys()) != tags[0]:
        return None
    element = dataset.get_item(tags[0])
    if (
        not isinstance(element, DataElement) or element.is_undefined_length or element.is_buffered
        or element.VR not in ("OB", "OW", "OF", "OD") or not isinstance(element.value, (bytes, bytearray))
    ):
        return None
    return element


def write_part10(dataset: Dataset) -> bytes:
    """``pydicom.dcmwrite(..., enforce_file_format=True)``, with the per-frame items fast.

    Native pixel data, the last element, is appended to pydicom's encoding of the rest:
    pydicom would copy it into its buffer and that buffer into the result (50 MB of a
    256x256x200 float map, twice), where one copy into the result suffices.
    """
    restore = _with_fast_sequence(dataset)
    try:
        pixels = _trailing_pixels(dataset)
        buffer = io.BytesIO()
        if pixels is None:
            pydicom.dcmwrite(buffer, dataset, enforce_file_format=True)
            return buffer.getvalue()
        del dataset[pixels.tag]
        try:
            pydicom.dcmwrite(buffer, dataset, enforce_file_format=True)
        finally:
            dataset[pixels.tag] = pixels
        value = pixels.value
        padding = b"\0" if len(value) % 2 else b""
        tag = pixels.tag
        header = pack("<HH", tag >> 16, tag & 0xFFFF) + pixels.VR.encode("ascii") + pack("<HL", 0, len(value) + len(padding))
        return b"".join([buffer.getbuffer(), header, value, padding])
    finally:
        if restore is not None:
            restore()


def encode_dataset(dataset: Dataset) -> bytes:
    """``pydicom.filewriter.write_dataset`` in Explicit VR Little Endian, per-frame items fast."""
    restore = _with_fast_sequence(dataset)
    try:
        encoded = DicomBytesIO()
        encoded.is_implicit_VR, encoded.is_little_endian = False, True
        write_dataset(encoded, dataset)
        return encoded.getvalue()
    finally:
        if restore is not None:
            restore()


__all__ = ["encode_items", "write_part10", "encode_dataset"]
