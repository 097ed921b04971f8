"""Any DICOM SEG back to label maps and dcmqi seg metadata (``segimage2itkimage``).

Every frame is placed by its own plane position, so SEGs written by dcmqi, highdicom or
qidicom all come back on their grid. A file's per-frame functional groups and native pixel
data are read from its bytes (``qidicom.dicom_decoding``), the rest by pydicom; what that
module does not read, pydicom reads whole, as it reads a dataset given.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from qidicom import metadata as metadata_module
from qidicom.errors import InputError
from qidicom.geometry import Volume
from qidicom.metadata import code_to_json
from qidicom.dicom_decoding import (
    REFERENCED_SERIES,
    FrameGroups,
    PackedFrames,
    SplitFile,
    Undecoded,
    frame_groups_from_dataset,
    native_frames,
    split_functional_groups,
)
from qidicom.readers import (
    MAX_DEFLATED_DICOM_BYTES,
    NamedBytes,
    Source,
    _check_deflated_size,
    _truncation,
    as_named_bytes,
    frame_grid,
    read_dicom,
    tolerant_dicom_values,
)
from qidicom.results import ReadResult
from qidicom.writers import ExportedFile


class Segment:
    """One segment read from a SEG: its number, voxels on the SEG's grid, and attributes.

    ``array`` is bool for BINARY and LABELMAP segments, float32 0..1 for FRACTIONAL. A
    LABELMAP segment is a view of the SEG's one label map, a BINARY or FRACTIONAL one a view
    of its frames; either makes its volume when asked for, so a SEG of many segments is not
    held as that many volumes.
    """

    def __init__(
        self,
        number: int,
        array: np.ndarray | None,
        attributes: dict,
        label_map: np.ndarray | None = None,
        frames: "_SegmentFrames | None" = None,
    ):
        self.number = number
        self.attributes = attributes
        self._array = array
        self._label_map = label_map
        self._frames = frames

    @property
    def array(self) -> np.ndarray:
        if self._array is not None:
            return self._array
        if self._frames is not None:
            return self._frames.volume()
        return self._label_map == self.number

    def label_volume(self, dtype) -> np.ndarray:
        """The segment as a label map of ``dtype``: its number where it is, 0 elsewhere."""
        if self._frames is not None:
            return self._frames.volume(dtype, self.number)
        # One pass, no bool-to-int copy first: a bool array is already bytes of 0 and 1.
        return np.multiply(self.array.view(np.uint8), self.number, dtype=dtype)

    def __repr__(self) -> str:
        return f"Segment({self.number}, {self.attributes.get('SegmentLabel', '')!r})"


@dataclass
class _SegmentFrames:
    """Where one segment's frames lie: frame ``f`` of ``frames`` is slice ``slices[f]``."""

    frames: np.ndarray | PackedFrames
    indices: list[int]
    slices: np.ndarray
    shape: tuple[int, int, int]
    scale: float | None = None  # FRACTIONAL: the Maximum Fractional Value
    one_bit: bool = False  # 1-bit frames: every value is 0 or 1 already

    def volume(self, dtype=None, value: int = 1) -> np.ndarray:
        """bool (float32 0..1 if fractional), or ``value`` as ``dtype`` where the segment is."""
        if dtype is None:
            dtype = np.float32 if self.scale is not None else bool
        columns, rows, depth = self.shape
        # Made as (slice, row, column) in C order and returned transposed: the (column, row,
        # slice) volume in Fortran order, so slice [:, :, k] is frame k as stored, and writing
        # NRRD/NIfTI (Fortran order) reads it straight.
        stack = np.zeros((depth, rows, columns), dtype)
        if not self.indices:
            return stack.T
        frames = self.frames[np.asarray(self.indices, np.intp)]  # (frames, rows, columns)
        if self.scale is not None:
            values = frames / self.scale
        elif value == 1:
            values = frames != 0
        else:
            values = np.multiply(frames if self.one_bit else frames != 0, value, dtype=dtype)
        _place(stack, self.slices[self.indices], values)
        return stack.T


def _place(stack: np.ndarray, slices: np.ndarray, frames: np.ndarray) -> None:
    """``stack[slices[i]] = frames[i]`` for every frame, in frame order (the last frame at
    a slice wins, as when placed one by one)."""
    if len(set(slices.tolist())) == len(slices):  # (np.unique imports numpy.ma: ~10 ms)
        stack[slices] = frames
    else:
        for frame, k in zip(frames, slices):
            stack[k] = frame


@dataclass
class SegmentationContents(ReadResult):
    """Everything read from a SEG: the grid, the segments, and top-level metadata.

    A LABELMAP SEG also keeps its ``label_map``: voxel = segment number, as stored, with
    slices that have no frame filled with the Pixel Padding Value (or 0).
    """

    affine: np.ndarray
    segments: list[Segment]
    metadata: dict
    segmentation_type: str
    label_map: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list)

    def segment_volumes(self) -> list[tuple[Segment, Volume]]:
        """One volume per segment; label value = segment number (probabilities if fractional)."""
        return list(self.iter_segment_volumes())

    def iter_segment_volumes(self) -> Iterator[tuple[Segment, Volume]]:
        """``segment_volumes`` one at a time, so only the volumes in use are in memory."""
        for segment in self.segments:
            if self.segmentation_type == "FRACTIONAL":
                array = segment.array.astype(np.float32, copy=False)
            else:
                array = segment.label_volume(_label_dtype([segment.number]))
            yield segment, Volume(array, self.affine, f"segment {segment.number}")

    def merged_volumes(self) -> list[tuple[list[Segment], Volume]]:
        """Non-overlapping groups (first fit, in segment order), each as one label map.

        A LABELMAP SEG is one group already: its own label map, as stored.
        """
        if self.segmentation_type == "FRACTIONAL":
            raise InputError("fractional segments cannot be merged into label maps; read them unmerged")
        if self.label_map is not None:
            return [(list(self.segments), Volume(self.label_map, self.affine, "label map"))]
        # Each segment's mask is made once and written into its group's label map at once
        # (np.copyto with where=: a masked loop, several times faster than array[mask] = n).
        widest = _label_dtype([s.number for s in self.segments] or [0])
        groups: list[tuple[list[Segment], np.ndarray, np.ndarray]] = []
        for segment in self.segments:
            mask = segment.array
            for members, occupied, array in groups:
                if not np.any(occupied & mask):
                    break
            else:
                members, occupied, array = [], np.zeros(mask.shape, bool, order="F"), np.zeros(mask.shape, widest, order="F")
                groups.append((members, occupied, array))
            members.append(segment)
            np.logical_or(occupied, mask, out=occupied)
            np.copyto(array, segment.number, where=mask)
            del mask
        result = []
        for members, _occupied, array in groups:
            dtype = _label_dtype([s.number for s in members])
            result.append((members, Volume(array.astype(dtype, copy=False), self.affine, "merged segments")))
        return result


def _label_dtype(numbers: Sequence[int]):
    return np.uint8 if max(numbers) < 256 else np.uint16


def read_segmentation(source: Source | Dataset, name: str | None = None) -> SegmentationContents:
    """Read any SEG (binary, fractional or labelmap; from dcmqi, highdicom or qidicom)."""
    groups = None
    if isinstance(source, Dataset):
        dataset = source
    else:
        dataset, groups = _read_seg_file(as_named_bytes(source, name))
    label = getattr(dataset, "filename", None) or name or "the SEG"
    if str(dataset.get("Modality", "")) != "SEG" or "SegmentSequence" not in dataset:
        raise InputError(f"{label}: not a DICOM Segmentation (Modality is '{dataset.get('Modality', '')}')")
    segmentation_type = str(dataset.get("SegmentationType", "BINARY")).upper()
    frame_count = int(dataset.get("NumberOfFrames", 1) or 1)
    problem = _frame_count_mismatch(dataset)
    if problem:
        raise InputError(f"{label}: {problem}")
    frames = _frames(dataset, frame_count, label)
    if groups is None:
        groups = frame_groups_from_dataset(dataset, frame_count)
    grid = frame_grid(dataset, label, groups)
    slice_index, shape = grid.slice_index, grid.shape
    descriptions = {int(item.SegmentNumber): item for item in dataset.SegmentSequence}
    colours = _palette_colours(dataset, sorted(descriptions))
    segments = []
    warnings: list[str] = []
    if segmentation_type == "LABELMAP":
        label_map, numbers = _read_label_map(dataset, frames, slice_index, shape, descriptions, label, warnings)
        for number in numbers:
            segments.append(Segment(number, None, segment_attributes(descriptions[number], colours.get(number)), label_map))
        return SegmentationContents(grid.affine, segments, top_level_metadata(dataset), segmentation_type, label_map, warnings)
    segment_of_frame = groups.segment_numbers
    scale = float(dataset.get("MaximumFractionalValue", 255) or 255) if segmentation_type == "FRACTIONAL" else None
    frames_of: dict[int, list[int]] = {number: [] for number in descriptions}
    for f in range(frame_count):
        number = segment_of_frame[f]
        if number not in frames_of:
            raise InputError(f"{label}: frame {f + 1} refers to segment {number}, which is not described")
        frames_of[number].append(f)
    for number in sorted(descriptions):
        placed = _SegmentFrames(frames, frames_of[number], slice_index, shape, scale, int(dataset.BitsAllocated) == 1)
        segments.append(Segment(number, None, segment_attributes(descriptions[number], colours.get(number)), frames=placed))
    return SegmentationContents(grid.affine, segments, top_level_metadata(dataset), segmentation_type, None, warnings)


def _read_seg_file(item: NamedBytes) -> tuple[Dataset, FrameGroups | None]:
    """The SEG's dataset, and its frames' functional group values when read from its bytes.

    pydicom parses the file without its Per-Frame Functional Groups Sequence, which
    ``dicom_decoding`` reads (most of the file's elements, and of pydicom's time). Whatever
    that module does not read, or any problem in the rest, and the whole file is read by
    pydicom as before, so its reading, and its messages, decide.
    """
    # A deflated file that would inflate past the limit is refused while it is measured, in
    # bounded memory, before anything inflates it whole (readers.parse_dicom does the same).
    _check_deflated_size(item)
    try:
        # The reader uses nothing of the Referenced Series Sequence (an item per source image).
        split = split_functional_groups(item.data, MAX_DEFLATED_DICOM_BYTES, cut_pixels=True, leave_out=(REFERENCED_SERIES,))
        dataset = _parse_split(item.name, split)
        if dataset is not None:
            return dataset, split.frame_groups(int(dataset.get("NumberOfFrames", 1) or 1))
    except Exception:  # noqa: BLE001 - whatever it is, pydicom's reading of the whole file says
        pass
    try:
        return read_dicom(item), None
    except InputError:
        # A short Pixel Data reads as "truncated"; when it is a frame-count mismatch, say so.
        problem = _frame_count_problem(item)
        if problem:
            raise InputError(f"{item.name}: {problem}") from None
        raise


def _parse_split(name: str, split: SplitFile) -> Dataset | None:
    """The dataset of a SEG split by ``dicom_decoding``, checked as ``readers.parse_dicom``
    checks a file (every element decoded, Pixel Data of its full size); None at the first
    doubt, for the whole file to be read by pydicom. Its Pixel Data is a view of the file's
    bytes: pydicom would copy them twice (into the parsed value, and from a BytesIO)."""
    with tolerant_dicom_values():
        dataset = pydicom.dcmread(io.BytesIO(split.remainder))
        for _ in dataset.iterall():  # as parse_dicom: a corrupt value fails now
            pass
        if split.pixels is not None:
            dataset.add_new(0x7FE00010, split.pixel_vr, split.pixels)
    if _truncation(dataset):
        return None
    if "SpecificCharacterSet" in dataset and not dataset.SpecificCharacterSet:
        del dataset.SpecificCharacterSet  # as parse_dicom does
    if split.transfer_syntax != str(dataset.file_meta.TransferSyntaxUID):
        dataset.file_meta.TransferSyntaxUID = split.transfer_syntax  # as the file says (deflated)
    dataset.buffer = None
    dataset.filename = name
    return dataset


def _frames(dataset: Dataset, frame_count: int, label: str) -> np.ndarray | PackedFrames:
    """The SEG's frames (frames, rows, columns), as pydicom's ``pixel_array`` gives them;
    native ones straight from the Pixel Data (1-bit ones unpacked when used)."""
    syntax = dataset.file_meta.get("TransferSyntaxUID") if hasattr(dataset, "file_meta") else None
    try:
        return native_frames(dataset, str(syntax) if syntax is not None else None)
    except Undecoded:
        pass
    try:
        with tolerant_dicom_values():
            frames = dataset.pixel_array
    except Exception as error:
        raise InputError(f"{label}: its pixel data cannot be decoded ({error})") from None
    return np.asarray(frames).reshape(frame_count, int(dataset.Rows), int(dataset.Columns))


def _read_label_map(
    dataset: Dataset,
    frames: np.ndarray,
    slice_index: np.ndarray,
    shape: tuple[int, int, int],
    descriptions: dict[int, Dataset],
    label: str,
    warnings: list[str],
) -> tuple[np.ndarray, list[int]]:
    """The one label map of a LABELMAP SEG, and the segment numbers it holds.

    Pixel Padding Value, when present, marks background: it fills slices that have no
    frame and is no segment even if described. Without it, missing slices are 0. Pixel
    value 0 is never a segment of the output: in a label-map file (and dcmqi's metadata,
    whose labelID starts at 1) 0 is background.
    """
    padding = dataset.get("PixelPaddingValue")
    padding = int(padding) if padding not in (None, "") else None
    fill = padding if padding is not None else 0
    if isinstance(frames, PackedFrames):  # a 1-bit label map (not a valid SEG, but readable)
        frames = frames[:]
    columns, rows, depth = shape
    slice_index = np.asarray(slice_index)
    dtype = np.result_type(frames.dtype, np.min_scalar_type(fill))
    missing = depth - len(set(slice_index.tolist()))
    # Made as (slice, row, column) and returned transposed, as _SegmentFrames.volume does.
    stack = np.full((depth, rows, columns), fill, dtype) if missing else np.empty((depth, rows, columns), dtype)
    _place(stack, slice_index, frames)
    label_map = stack.T
    if missing and padding is None and 0 in descriptions:
        warnings.append(
            f"{label}: {missing} of {shape[2]} slice positions have no frame and there is no Pixel Padding "
            "Value; they are filled with 0, which this SEG also uses for segment 0"
        )
    numbers = []
    for number in sorted(descriptions):
        if number == padding:
            continue
        if number == 0:
            warnings.append(
                f"{label}: segment 0 ('{descriptions[0].get('SegmentLabel', '')}') is described, but 0 is the "
                "background of a label map file; its voxels stay 0 and it has no entry in the metadata"
            )
            continue
        numbers.append(number)
    return label_map, numbers


def _frame_count_mismatch(dataset: Dataset) -> str | None:
    """Whether NumberOfFrames and the frames the Pixel Data holds disagree, in those terms."""
    if "PixelData" not in dataset:
        return None
    said = int(dataset.get("NumberOfFrames", 1) or 1)
    value = dataset.PixelData or b""
    syntax = dataset.file_meta.get("TransferSyntaxUID") if hasattr(dataset, "file_meta") else None
    if syntax is not None and pydicom.uid.UID(syntax).is_compressed:
        if syntax != pydicom.uid.RLELossless:
            return None  # other encapsulations may split a frame over several fragments
        from pydicom.encaps import parse_fragments

        try:  # RLE Lossless: one fragment per frame (PS3.5 A.4.2), after the Basic Offset Table
            held = parse_fragments(value[8 + int.from_bytes(value[4:8], "little"):])[0]
        except Exception:
            return None
    else:
        try:
            bits = int(dataset.Rows) * int(dataset.Columns) * int(dataset.get("SamplesPerPixel", 1) or 1) * int(dataset.BitsAllocated)
        except (AttributeError, TypeError, ValueError):
            return None
        if not bits:
            return None
        held = len(value) * 8 // bits
        padded = ((said * bits + 7) // 8 + 1) // 2 * 2
        if held > said and len(value) <= padded:
            held = said  # the even-length padding of small 1-bit frames, not another frame
    if held == said:
        return None
    return f"NumberOfFrames says {said} but Pixel Data holds {held} frame{'s' if held != 1 else ''}"


def _frame_count_problem(item: NamedBytes) -> str | None:
    """For a file the reader refused: is it a SEG whose Pixel Data is short of its frames?"""
    try:
        with tolerant_dicom_values():
            dataset = pydicom.dcmread(io.BytesIO(item.data), force=True)
            if str(dataset.get("Modality", "")) != "SEG":
                return None
            return _frame_count_mismatch(dataset)
    except Exception:
        return None


def segment_attributes(item: Dataset, palette_rgb: Sequence[int] | None = None) -> dict:
    """dcmqi-style attributes of one SegmentSequence item; labelID is the segment number.

    A PALETTE COLOR label map shows each segment in its palette entry, so that entry is
    its recommendedDisplayRGBValue (``palette_rgb``); otherwise the colour comes from
    RecommendedDisplayCIELabValue.
    """
    attributes: dict = {"labelID": int(item.SegmentNumber)}
    if item.get("SegmentLabel"):
        attributes["SegmentLabel"] = str(item.SegmentLabel)
    # Always there, empty when the SEG has none, as in dcmqi's output.
    attributes["SegmentDescription"] = str(item.get("SegmentDescription", "") or "")
    category = item.SegmentedPropertyCategoryCodeSequence[0]
    property_type = item.SegmentedPropertyTypeCodeSequence[0]
    attributes["SegmentedPropertyCategoryCodeSequence"] = code_to_json(category)
    attributes["SegmentedPropertyTypeCodeSequence"] = code_to_json(property_type)
    modifier = property_type.get("SegmentedPropertyTypeModifierCodeSequence") or item.get(
        "SegmentedPropertyTypeModifierCodeSequence"
    )
    if modifier:
        attributes["SegmentedPropertyTypeModifierCodeSequence"] = code_to_json(modifier[0])
    region = item.get("AnatomicRegionSequence")
    if region:
        attributes["AnatomicRegionSequence"] = code_to_json(region[0])
        region_modifier = region[0].get("AnatomicRegionModifierSequence")
        if region_modifier:
            attributes["AnatomicRegionModifierSequence"] = code_to_json(region_modifier[0])
    attributes["SegmentAlgorithmType"] = str(item.get("SegmentAlgorithmType", "MANUAL"))
    if item.get("SegmentAlgorithmName"):
        attributes["SegmentAlgorithmName"] = str(item.SegmentAlgorithmName)
    lab = item.get("RecommendedDisplayCIELabValue")
    if lab:
        lab_values = [int(v) for v in lab]
        attributes["recommendedDisplayRGBValue"] = cielab_to_rgb(lab_values)
        attributes["RecommendedDisplayCIELabValue"] = lab_values
    if palette_rgb is not None:
        attributes["recommendedDisplayRGBValue"] = [int(v) for v in palette_rgb]
    if item.get("TrackingID"):
        attributes["TrackingIdentifier"] = str(item.TrackingID)
    if item.get("TrackingUID"):
        attributes["TrackingUniqueIdentifier"] = str(item.TrackingUID)
    return attributes


def cielab_to_rgb(value: Sequence[int]) -> list[int]:
    """A DICOM CIELab colour (three 16-bit values, PS3.3 C.10.7.1.1) as 8-bit sRGB, clipped
    into range: what highdicom's ``CIELabColor.from_dicom_value(value).to_rgb(clip=True)``
    gives (D65 white point, the same expressions in the same order, so the same floats).

    highdicom is not imported for this one formula: with pydicom's concept dictionaries it
    takes ~0.1 s to import, a fifth of reading a labelmap SEG. ``tests/test_seg_read_colour.py``
    proves the results equal to highdicom's.
    """
    if len(value) != 3 or any(not 0 <= int(v) <= 0xFFFF for v in value):
        raise InputError(f"RecommendedDisplayCIELabValue {list(value)} is not three values from 0 to 65535")
    l_star = int(value[0]) * (100.0 / 0xFFFF)
    a_star = int(value[1]) * (255.0 / 0xFFFF) - 128.0
    b_star = int(value[2]) * (255.0 / 0xFFFF) - 128.0
    # CIELab to CIE XYZ, scaled to the white point (95.047, 100.0, 108.883).
    y = (l_star + 16) / 116
    x = a_star / 500 + y
    z = y - b_star / 200

    def from_lab(c: float) -> float:
        c3 = c ** 3
        return c3 if c3 > 0.008856 else (c - 16.0 / 116) / 7.787

    x, y, z = 95.047 * from_lab(x) / 100, 100.0 * from_lab(y) / 100, 108.883 * from_lab(z) / 100
    # CIE XYZ to linear sRGB, then sRGB's transfer function.
    linear = (
        x * 3.2406 + y * -1.5372 + z * -0.4986,
        x * -0.9689 + y * 1.8758 + z * 0.0415,
        x * 0.0557 + y * -0.2040 + z * 1.0570,
    )

    def component(c: float) -> int:
        c = (1.055 * (c ** (1 / 2.4)) - 0.055 if c > 0.0031308 else 12.92 * c) * 255
        return round(c) if 0 <= round(c) <= 255 else max(min(c, 255), 0)

    return [component(c) for c in linear]


def _palette_colours(dataset: Dataset, numbers: Sequence[int]) -> dict[int, list[int]]:
    """The 8-bit RGB palette entry of each segment number, for a PALETTE COLOR SEG.

    Read as PS3.3 C.7.6.3.1.6 lays the data out (and as DCMTK and pydicom read it): 8-bit
    entries one per byte in file order, the last byte padding when the count is odd;
    16-bit entries as little-endian words. Values past the table take its last entry.
    """
    if str(dataset.get("PhotometricInterpretation", "")) != "PALETTE COLOR" or not numbers:
        return {}
    channels = []
    for colour in ("Red", "Green", "Blue"):
        descriptor = dataset.get(f"{colour}PaletteColorLookupTableDescriptor")
        data = dataset.get(f"{colour}PaletteColorLookupTableData")
        if descriptor is None or data is None or len(descriptor) != 3:
            return {}  # segmented or missing palettes carry no per-value table to read
        entries, first, bits = int(descriptor[0]) or 1 << 16, int(descriptor[1]), int(descriptor[2])
        if bits == 8 and len(data) in (entries, entries + 1):
            table = np.frombuffer(data, np.uint8)[:entries].astype(float)
        elif bits == 16 and len(data) == 2 * entries:
            table = np.frombuffer(data, "<u2").astype(float) / 257.0
        else:
            return {}  # a table of another length than its descriptor says: no colours from it
        index = np.clip(np.asarray(numbers) - first, 0, entries - 1)
        channels.append(table[index])
    return {number: [int(round(channel[n])) for channel in channels] for n, number in enumerate(numbers)}


def top_level_metadata(dataset: Dataset) -> dict:
    """The dcmqi metadata fields that describe the SEG as a whole.

    The fields dcmqi's reader always writes are always there, empty when the SEG has none.
    """
    meta: dict = {"@schema": metadata_module.SCHEMA_IDS["seg"]}
    for keyword in ("BodyPartExamined", "ContentCreatorName", "ClinicalTrialSeriesID", "ClinicalTrialTimePointID"):
        meta[keyword] = str(dataset.get(keyword, "") or "")
    for keyword in (
        "ClinicalTrialCoordinatingCenterName",
        "SeriesDescription",
        "SeriesNumber",
        "InstanceNumber",
        "ContentLabel",
        "ContentDescription",
    ):
        value = dataset.get(keyword)
        if value not in (None, ""):
            meta[keyword] = str(value)
    return meta


def segmentation_to_files(
    source: Source,
    prefix: str = "",
    output_type: str = "nrrd",
    merge_segments: bool = False,
    name: str | None = None,
    warnings: list[str] | None = None,
) -> list[ExportedFile]:
    """What ``segimage2itkimage`` writes: ``<prefix>-<N>.<ext>`` images and ``<prefix>-meta.json``
    (``<N>.<ext>`` and ``meta.json`` without a prefix, as dcmqi names them; ``nii`` and
    ``nifti`` both write ``.nii.gz``).

    A LABELMAP SEG gives one file, ``<prefix>-1``, its label map as stored (voxel = segment
    number), with every segment in one metadata group. Otherwise, unmerged, file N holds
    segment N (voxels = N, or probabilities for fractional SEGs); merged, file N holds the
    N-th group of non-overlapping segments. Reading problems that do not stop the export
    are appended to ``warnings`` when a list is given.
    """
    import json

    from qidicom.writers import IMAGE_EXTENSIONS, volumes_bytes

    contents = read_segmentation(source, name)
    extension = IMAGE_EXTENSIONS.get(output_type)
    if extension is None:
        raise InputError(f"output type '{output_type}' is not one of {', '.join(IMAGE_EXTENSIONS)}")
    lead = f"{prefix}-" if prefix else ""
    if warnings is not None:
        warnings.extend(contents.warnings)
    groups, mapping = [], []
    if merge_segments or contents.label_map is not None:
        merged = contents.merged_volumes()
        for index, (members, _) in enumerate(merged, start=1):
            groups.append([segment.attributes for segment in members])
            mapping.append(f"{lead}{index}{extension}")
        volumes = (volume for _, volume in merged)
    else:
        for segment in contents.segments:
            groups.append([segment.attributes])
            mapping.append(f"{lead}{segment.number}{extension}")
        volumes = (volume for _, volume in contents.iter_segment_volumes())
    # Made one at a time and encoded two at a time (zlib runs beside the next volume's making).
    files = [ExportedFile(name, data) for name, data in zip(mapping, volumes_bytes(volumes, output_type))]
    meta = dict(contents.metadata)
    meta["segmentAttributesFileMapping"] = mapping
    meta["segmentAttributes"] = groups
    files.append(ExportedFile(f"{lead}meta.json", (json.dumps(meta, indent=2) + "\n").encode()))
    return files
