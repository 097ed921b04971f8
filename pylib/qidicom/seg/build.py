"""The SEG dataset: highdicom's Segmentation plus the dcmqi-level details it does not set.

Shared by the writer and the binary-to-labelmap conversion. While highdicom builds, BINARY
frames are made by ``segment_mask`` (without highdicom's cast of each one) and packed by
``pack_bits`` (the same bytes as pydicom's, in fewer passes); LABELMAP frames already of the
output type are checked by ``checked_label_frames`` without a copy.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from typing import Iterator, Sequence

import numpy as np
from pydicom.dataset import Dataset

from qidicom import __version__
from qidicom import metadata as metadata_module
from qidicom.errors import QidicomError
from qidicom.geometry import patient_orientation
from qidicom.readers import frame_item, tolerant_dicom_values


def _background_as_padding(dataset: Dataset) -> None:
    """Mark LABELMAP background with Pixel Padding Value rather than a described segment 0.

    highdicom describes pixel value 0 as a "Background" segment numbered 0; dcmqi (1.5.5
    on) designates the background with Pixel Padding Value instead, which keeps segment
    numbering as the metadata gave it and is what readers of either tool expect.
    """
    dataset.SegmentSequence = [item for item in dataset.SegmentSequence if int(item.SegmentNumber) != 0]
    dataset.PixelPaddingValue = 0


#: Pack bits eight bytes at a time (``packed_by_words``) rather than with ``np.packbits``:
#: under Pyodide, whose numpy has no vector instructions, packbits and the 0/1 check take
#: ~1.7 ms a 512x512 frame and the words ~0.15 ms; in CPython packbits is faster (0.014 ms
#: against 0.03). The trick reads the bytes of a word in little-endian order.
PACK_BY_WORDS = sys.platform == "emscripten" and sys.byteorder == "little"

_LOW_BITS_ONLY = np.uint64(0xFEFEFEFEFEFEFEFE)  # any bit set here: a byte that is not 0 or 1
# Byte i of a word (at bit 8i) times 2**(56 - 7i) lands on bit 56 + i; every other product
# of the multiplication lands below bit 56 or past bit 63, each on a bit of its own.
_GATHER = np.uint64(sum(1 << (56 - 7 * i) for i in range(8)))  # 0x0102040810204080


def packed_by_words(values: np.ndarray) -> bytes | None:
    """The bits of a flat uint8 array of 0s and 1s (length a multiple of 8), least
    significant bit first, as ``np.packbits(values, bitorder="little")`` packs them; None if
    a value is neither 0 nor 1. Little-endian machines only (see PACK_BY_WORDS)."""
    words = values.view(np.uint64)
    if np.any(words & _LOW_BITS_ONLY):
        return None
    gathered = words * _GATHER
    gathered >>= np.uint64(56)
    return gathered.astype(np.uint8).tobytes()


def pack_bits(arr: np.ndarray, pad: bool = True) -> bytes:
    """``pydicom.pixels.utils.pack_bits`` (the packing highdicom uses for BINARY frames), in
    fewer passes over the frame: one to check the values are 0 and 1, one to pack.

    pydicom checks with a boolean copy compared to the frame, then packs a uint8 copy. Under
    Pyodide, whose numpy has no vector instructions, that was the largest part of writing a
    BINARY SEG (about 2 s of the bench case). Anything but a boolean or unsigned 8-bit array
    goes to pydicom's function.
    """
    from pydicom.pixels import utils

    if not isinstance(arr, np.ndarray) or arr.dtype not in (np.bool_, np.uint8) or arr.shape == (0,):
        return utils.pack_bits(arr, pad=pad)
    flat = arr.reshape(-1)  # pydicom pads to a whole byte with zero bits, as packbits does
    if PACK_BY_WORDS and flat.size % 8 == 0:
        # (numpy's booleans are the bytes 0 and 1; a strided frame is copied, as packbits would)
        packed = packed_by_words(np.ascontiguousarray(flat).view(np.uint8))
        if packed is None:
            return utils.pack_bits(arr, pad=pad)  # raises pydicom's error
    else:
        if arr.dtype == np.uint8 and arr.size and int(arr.max()) > 1:
            return utils.pack_bits(arr, pad=pad)  # raises pydicom's error
        packed = np.packbits(flat, bitorder="little").tobytes()
    return packed + b"\x00" if pad and len(packed) % 2 else packed


class SegmentFrame(np.ndarray):
    """One segment's BINARY frame of a plane whose emptiness the writer already knows (from
    its label bits): ``any()`` gives that answer without reading the frame's 262,144 bytes
    (a 512x512 frame).

    highdicom tests every segment's frame of every plane with ``np.any`` to omit the empty
    ones, and ``np.any`` calls the method of an ndarray subclass. Only the frame made here
    carries ``known_any``; arrays derived from it (highdicom flattens it before packing)
    are not known and are tested as any array is.
    """

    known_any: bool | None = None

    def any(self, axis=None, out=None, **kwargs):
        if self.known_any is not None and axis is None and out is None and not kwargs:
            return np.bool_(self.known_any)
        return super().any(axis=axis, out=out, **kwargs)


def _known_frame(plane: np.ndarray, segment_number: int, present: bool) -> np.ndarray:
    """The segment's frame of the plane as a ``SegmentFrame``: the comparison's own boolean
    array viewed as uint8 if present, else one shared read-only frame of zeros."""
    if present:
        frame = np.equal(plane, segment_number).view(dtype=np.uint8, type=SegmentFrame)
        frame.known_any = True
        return frame
    frame = _absent_frames.get(plane.shape)
    if frame is None:
        frame = np.zeros(plane.shape, np.uint8).view(SegmentFrame)
        frame.setflags(write=False)
        frame.known_any = False
        _absent_frames[plane.shape] = frame
    return frame


_absent_frames: dict[tuple[int, ...], np.ndarray] = {}

#: id(label frames) -> (the frames, the (frames, numbers) table of segments present) while
#: highdicom builds a BINARY SEG from them with empty frames omitted.
_segments_by_frame: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _segment_present(plane: np.ndarray, segment_number: int) -> bool | None:
    """Whether ``plane``, a frame of registered label frames, holds a voxel of
    ``segment_number``, by the writer's table; None when not known."""
    frames = plane.base
    entry = _segments_by_frame.get(id(frames)) if frames is not None else None
    if entry is None or entry[0] is not frames or plane.shape != frames.shape[1:]:
        return None
    index, rest = divmod(plane.ctypes.data - frames.ctypes.data, frames.strides[0])
    table = entry[1]
    if rest or not 0 <= index < table.shape[0] or not 0 < segment_number < table.shape[1]:
        return None
    return bool(table[index, segment_number])


def nonempty_planes(pixel_array: np.ndarray) -> tuple[list[int], bool]:
    """highdicom's ``_Image._get_nonempty_plane_indices`` (the planes with any voxel of any
    segment, and whether there are none), from the writer's table of segments by frame
    when ``pixel_array`` has one: no scan of each plane. Otherwise highdicom's function."""
    entry = _segments_by_frame.get(id(pixel_array))
    if entry is not None and entry[0] is pixel_array:
        planes = np.flatnonzero(entry[1][:, 1:].any(axis=1))  # (column 0: no segment)
        if planes.size:
            return [int(plane) for plane in planes], False
    return _highdicom_shortcuts.originals["_get_nonempty_plane_indices"](pixel_array)


def segment_mask(
    pixel_array: np.ndarray,
    segment_number: int,
    described_segment_numbers: np.ndarray,
    segmentation_type,
    max_fractional_value: int,
    dtype: type,
) -> np.ndarray:
    """highdicom's ``Segmentation._get_segment_pixel_array`` (one segment's frame of one
    plane), with a BINARY segment of a label-map plane made without a cast.

    highdicom makes that frame as ``(plane == segment_number).astype(np.uint8)``: the cast
    of a fresh boolean frame to a fresh uint8 one, for every segment on every plane (1,890
    times for the bench case's ten segments on 189 planes, ~0.1 s more than the comparison).
    numpy's booleans are the bytes 0 and 1, so the comparison's own array viewed as uint8
    holds exactly the values of the cast (a new array, C-ordered, writeable, as the cast
    gives). Where the writer knows which segments each plane holds (``build_segmentation``'s
    ``segments_by_frame``), the frame is a ``SegmentFrame`` that answers highdicom's empty
    test without a scan, and an absent segment's frame is not compared at all: 1,080 of the
    bench case's 1,890 frames. Every other case goes to highdicom's function.
    """
    from highdicom.seg import SegmentationTypeValues

    if (
        segmentation_type == SegmentationTypeValues.BINARY
        and isinstance(pixel_array, np.ndarray)
        and pixel_array.ndim == 2
        and pixel_array.dtype.kind in "ui"
        and np.dtype(dtype) == np.uint8
        and not np.array_equal(described_segment_numbers, np.array([1]))
    ):
        present = _segment_present(pixel_array, segment_number)
        if present is not None:
            return _known_frame(pixel_array, segment_number, present)
        return np.equal(pixel_array, segment_number).view(np.uint8)
    return _highdicom_shortcuts.originals["_get_segment_pixel_array"](
        pixel_array,
        segment_number=segment_number,
        described_segment_numbers=described_segment_numbers,
        segmentation_type=segmentation_type,
        max_fractional_value=max_fractional_value,
        dtype=dtype,
    )


def checked_label_frames(cls, pixel_array, segment_numbers: np.ndarray, segmentation_type, dtype: type):
    """highdicom's ``Segmentation._check_and_cast_pixel_array``, with LABELMAP frames that are
    already of the output type taken as they are.

    For label-map frames (frames, rows, columns) highdicom checks that every value is
    described, then returns ``pixel_array.astype(dtype)``: a copy of the whole array even when
    it has that type (49 MB for the bench case, which the writer makes uint8 as highdicom
    wants), kept beside ours while highdicom builds, and only read. The same checks, in
    highdicom's words, then the array itself; every other case goes to highdicom's method.
    """
    from highdicom.seg import SegmentationTypeValues, SegmentsOverlapValues

    if not (
        segmentation_type == SegmentationTypeValues.LABELMAP
        and type(pixel_array) is np.ndarray
        and pixel_array.ndim in (2, 3)
        and pixel_array.dtype in (np.uint8, np.uint16)
        and pixel_array.dtype == np.dtype(dtype)
    ):
        return _highdicom_shortcuts.originals["_check_and_cast_pixel_array"](
            pixel_array, segment_numbers, segmentation_type, dtype=dtype
        )
    count = len(segment_numbers)
    if len(np.setxor1d(np.arange(1, count + 1), segment_numbers)) == 0:
        undescribed = pixel_array.max() > count  # numbered 1..N: the largest value tells
    else:
        undescribed = len(np.setdiff1d(pixel_array, np.concatenate([np.array([0]), segment_numbers]))) != 0
    if undescribed:
        raise ValueError("Pixel array contains segments that lack descriptions.")
    return pixel_array, SegmentsOverlapValues.NO


_SHORTCUTS_LOCK = threading.Lock()
_shortcut_users = 0


@contextlib.contextmanager
def _highdicom_shortcuts() -> Iterator[None]:
    """highdicom packs BINARY frames with qidicom's ``pack_bits``, makes segments' frames
    with ``segment_mask``, checks label-map frames with ``checked_label_frames`` and finds
    non-empty planes with ``nonempty_planes`` while this is entered.

    highdicom.image binds pydicom's packing function by name, and the Segmentation class
    holds its frame function as a static method and its check as a class method: each is
    swapped for the equivalent one above and put back when the last user leaves (counted, so
    concurrent conversions on threads never leave them swapped or restore them under each
    other).
    """
    global _shortcut_users
    import highdicom.image as image
    from highdicom.seg import Segmentation

    with _SHORTCUTS_LOCK:
        if not _shortcut_users:
            _highdicom_shortcuts.originals = {
                "pack_bits": image.pack_bits,
                "_get_segment_pixel_array": Segmentation._get_segment_pixel_array,
                "_check_and_cast_pixel_array": Segmentation._check_and_cast_pixel_array,
                "_get_nonempty_plane_indices": Segmentation._get_nonempty_plane_indices,  # _Image's
            }
            _highdicom_shortcuts.descriptors = {
                name: Segmentation.__dict__[name] for name in ("_get_segment_pixel_array", "_check_and_cast_pixel_array")
            }
            image.pack_bits = pack_bits
            Segmentation._get_segment_pixel_array = staticmethod(segment_mask)
            Segmentation._check_and_cast_pixel_array = classmethod(checked_label_frames)
            Segmentation._get_nonempty_plane_indices = staticmethod(nonempty_planes)  # shadows _Image's
        _shortcut_users += 1
    try:
        yield
    finally:
        with _SHORTCUTS_LOCK:
            _shortcut_users -= 1
            if not _shortcut_users:
                image.pack_bits = _highdicom_shortcuts.originals["pack_bits"]
                for name, descriptor in _highdicom_shortcuts.descriptors.items():
                    setattr(Segmentation, name, descriptor)
                del Segmentation._get_nonempty_plane_indices  # _Image's again


@contextlib.contextmanager
def _segments_known(frames: np.ndarray, table: np.ndarray | None) -> Iterator[None]:
    """``segment_mask`` knows ``table`` for ``frames`` while this is entered (if a table)."""
    if table is None:
        yield
        return
    if table.shape[0] != frames.shape[0]:
        raise ValueError(f"a table of segments for {table.shape[0]} frames given with {frames.shape[0]} frames")
    _segments_by_frame[id(frames)] = (frames, table)
    try:
        yield
    finally:
        del _segments_by_frame[id(frames)]


#: False: highdicom builds the SEG with its own functions (for tests comparing the two).
SHORTCUTS = True


def build_segmentation(
    source_images: Sequence[Dataset],
    pixel_array: np.ndarray,
    segmentation_type: str,
    descriptions: Sequence,
    algorithms: dict[int, tuple[str, str | None]],
    metadata: dict,
    *,
    fractional_type: str = "PROBABILITY",
    transfer_syntax: str,
    skip_empty: bool = True,
    palette=None,
    segments_by_frame: np.ndarray | None = None,
) -> Dataset:
    """The highdicom Segmentation, with the dcmqi-level details highdicom does not set.

    ``segments_by_frame``: for label frames (frames, rows, columns), which segment number
    has voxels in which frame (a boolean table, numbers as columns), if the caller knows.
    With empty frames omitted, highdicom then finds the non-empty planes, and a BINARY
    SEG's empty segment frames, from it instead of scanning each one.
    """
    import highdicom as hd

    from qidicom import highdicom_luts, highdicom_tables

    highdicom_tables.install()  # highdicom's module table decoded a module at a time

    shortcuts = _highdicom_shortcuts() if SHORTCUTS else contextlib.nullcontext()
    known = SHORTCUTS and skip_empty and segments_by_frame is not None and pixel_array.ndim == 3
    with tolerant_dicom_values(), shortcuts, _segments_known(pixel_array, segments_by_frame if known else None):
        try:
            segmentation = highdicom_luts.segmentation_class()(
                source_images=source_images,
                pixel_array=pixel_array,
                segmentation_type=segmentation_type.upper(),
                segment_descriptions=descriptions,
                series_instance_uid=hd.UID(),
                series_number=metadata_module.integer_field(metadata.get("SeriesNumber", "300"), "SeriesNumber"),
                sop_instance_uid=hd.UID(),
                instance_number=metadata_module.integer_field(metadata.get("InstanceNumber", "1"), "InstanceNumber"),
                manufacturer="qidicom",
                manufacturer_model_name="qidicom",
                software_versions=__version__,
                device_serial_number="1",
                fractional_type=fractional_type.upper(),
                content_label=str(metadata.get("ContentLabel") or "SEGMENTATION"),
                content_description=str(metadata.get("ContentDescription") or "Image segmentation")[:64],
                content_creator_name=metadata.get("ContentCreatorName") or None,
                series_description=metadata.get("SeriesDescription") or "Segmentation",
                transfer_syntax_uid=transfer_syntax,
                omit_empty_frames=skip_empty,
                palette_color_lut_transformation=palette,
            )
        except (ValueError, TypeError) as error:
            raise QidicomError(f"the segmentation could not be built: {error}") from None
    for item in segmentation.SegmentSequence:
        number = int(item.SegmentNumber)
        if number in algorithms:
            item.SegmentAlgorithmType, name = algorithms[number]
            if name:
                item.SegmentAlgorithmName = name
    if segmentation_type == "labelmap":
        _background_as_padding(segmentation)
        # General Image's Patient Orientation (Type 2C) is required of a Label Map
        # Segmentation; highdicom leaves it out, so derive it from the planes' orientation.
        orientation = frame_item(segmentation, 0, "PlaneOrientationSequence").ImageOrientationPatient
        segmentation.PatientOrientation = patient_orientation([float(v) for v in orientation])
    _add_clinical_trial_attributes(segmentation, metadata)
    return segmentation



def _add_clinical_trial_attributes(dataset: Dataset, metadata: dict) -> None:
    """dcmqi's series-level fields that highdicom has no argument for."""
    for keyword in ("ClinicalTrialSeriesID", "ClinicalTrialTimePointID", "ClinicalTrialCoordinatingCenterName"):
        if metadata.get(keyword):
            setattr(dataset, keyword, str(metadata[keyword]))
    if "ClinicalTrialSeriesID" in dataset and "ClinicalTrialCoordinatingCenterName" not in dataset:
        # Type 2 in the Clinical Trial Series module, which the series ID brings in.
        dataset.ClinicalTrialCoordinatingCenterName = ""
    if metadata.get("BodyPartExamined"):
        dataset.BodyPartExamined = str(metadata["BodyPartExamined"])
