"""Slice previews of a reference series with its segments and parametric maps, no GUI.

What a viewer needs from the library, computed once and shared by every plane:

- :class:`SeriesVolume`: the series' stored pixels decoded once (``stored[k, j, i]``, the
  slices as DICOM stores them), each slice's rescale slope and intercept, the series' own
  window, and its LPS affine. Any plane is a view of that one array.
- :class:`PlaneGeometry`: axial, coronal and sagittal planes in the *patient* frame. The
  volume axis closest to each patient axis is sliced (no resampling, so an oblique series
  shows its own voxels); flips put the patient's right on the screen's left (radiological
  convention), anterior up in axial, superior up in coronal and sagittal. The orientation
  letters at each edge come from the true direction of that edge, so an oblique or
  flipped series is labelled as it lies (e.g. ``"LA"``).
- :class:`Overlay` and :class:`MapOverlay`: segments (from a SEG or label maps, with the
  SEG's CIELab colours or the form's RGB colours) and a map, placed exactly on the series
  grid (flipped or permuted NIfTI files included), kept as label maps aligned voxel for
  voxel with ``stored``.
- Window/level presets, the series' window, a percentile window for MR; the hover
  readout (position, stored and real value, segments, map value) and "jump to segment".

Reference pixels are decoded by pydicom: uncompressed, deflated and RLE always, JPEG
baseline (and JPEG 2000) where pillow is there, which includes Pyodide. Other transfer
syntaxes raise :class:`PreviewUnavailable`, naming the syntax; conversions do not need
pixels, so they still work.
"""

from __future__ import annotations

import io
import itertools
import os
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from qidicom.errors import GeometryError, InputError
from qidicom.geometry import ORIENTATION_LETTER_THRESHOLD, Volume, covered_ranges, resample_onto
from qidicom.readers import DicomPath, ReferenceSeries, Source, as_named_bytes, iter_dicom_sources, read_dicom_series, tolerant_dicom_values

__all__ = [
    "MapOverlay", "Overlay", "PLANES", "PlaneGeometry", "PreviewUnavailable", "SegmentInfo", "SeriesVolume",
    "WINDOW_PRESETS", "auto_window", "direction_letters", "map_overlay", "overlay_from_label_maps",
    "overlay_from_segmentation", "plane_geometry", "read_series_volume", "label_counts", "readout", "relabelled", "segment_numbering", "series_volume",
]


class PreviewUnavailable(InputError):
    """The series' pixels cannot be decoded here (the conversion does not need them)."""


#: Window presets as (centre, width) in Hounsfield units.
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "CT soft tissue": (40.0, 400.0),
    "CT lung": (-600.0, 1500.0),
    "CT bone": (480.0, 2500.0),
    "CT brain": (40.0, 80.0),
    "CT liver": (90.0, 150.0),
}

#: Distinct colours for segments that have none (Slicer's first generic colours).
DEFAULT_COLOURS: tuple[tuple[int, int, int], ...] = (
    (128, 174, 128), (241, 214, 145), (177, 122, 101), (111, 184, 210), (216, 101, 79),
    (221, 130, 101), (144, 238, 144), (192, 104, 88), (220, 245, 20), (78, 63, 0),
    (255, 250, 220), (230, 220, 70), (200, 200, 235), (250, 250, 210), (244, 214, 49),
)


# --------------------------------------------------------------------------- the series volume


@dataclass
class SeriesVolume:
    """A series' stored pixels, decoded once, and how to turn them into real values.

    ``stored`` is ``[k, j, i]`` (slice, row, column), C-contiguous: DICOM's own order, so
    an axial slice is one block of memory. ``array`` is the same memory as ``[i, j, k]``.
    Real value = stored * ``slope[k]`` + ``intercept[k]`` (the Modality LUT of slice k).
    """

    stored: np.ndarray
    affine: np.ndarray
    slope: np.ndarray
    intercept: np.ndarray
    modality: str = ""
    units: str = ""
    window: tuple[float, float] | None = None  # (centre, width) from the series, in real values
    name: str = ""
    inverted: bool = False  # MONOCHROME1: low values are shown bright
    series: ReferenceSeries | None = None
    warnings: list[str] = field(default_factory=list)
    is_blank: bool = False  # no image: the grid of an object opened without its series

    @property
    def array(self) -> np.ndarray:
        return self.stored.transpose(2, 1, 0)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.stored.shape[::-1])  # type: ignore[return-value]

    @property
    def spacing(self) -> np.ndarray:
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def directions(self) -> np.ndarray:
        return self.affine[:3, :3] / self.spacing

    @property
    def voxel_volume_mm3(self) -> float:
        return float(abs(np.linalg.det(self.affine[:3, :3])))

    @property
    def uniform_rescale(self) -> bool:
        return bool(np.all(self.slope == self.slope[0]) and np.all(self.intercept == self.intercept[0]))

    def real_at(self, ijk: Sequence[int]) -> float:
        i, j, k = (int(v) for v in ijk)
        return float(self.stored[k, j, i]) * float(self.slope[k]) + float(self.intercept[k])

    def real_values(self, flat_index: np.ndarray) -> np.ndarray:
        """Real values (float64) at flat indices into ``stored``."""
        values = self.stored.reshape(-1)[flat_index].astype(np.float64)
        if self.uniform_rescale:
            if self.slope[0] != 1 or self.intercept[0] != 0:
                values = values * self.slope[0] + self.intercept[0]
            return values
        k = flat_index // (self.stored.shape[1] * self.stored.shape[2])
        return values * self.slope[k] + self.intercept[k]

    def position_mm(self, ijk: Sequence[float]) -> np.ndarray:
        """LPS position of a voxel centre."""
        return self.affine[:3, :3] @ np.asarray(ijk, float) + self.affine[:3, 3]

    @classmethod
    def blank(cls, affine: np.ndarray, shape: Sequence[int], name: str = "no series") -> "SeriesVolume":
        """A zero image on a grid, to show a SEG or map read without its series."""
        i, j, k = (int(n) for n in shape)
        return cls(np.zeros((k, j, i), np.uint8), np.asarray(affine, float), np.ones(k), np.zeros(k), name=name,
                   is_blank=True)


def _syntax_problem(syntax: str) -> str | None:
    """Why pixels in this transfer syntax cannot be decoded here, or None."""
    from pydicom.pixels import get_decoder

    uid = pydicom.uid.UID(syntax)
    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        return f"preview unavailable for transfer syntax {uid.name} ({uid}): pydicom has no decoder for it"
    if not decoder.is_available:
        return (f"preview unavailable for transfer syntax {uid.name} ({uid}): no decoder for it is installed "
                "in this environment (the conversion itself does not need the pixels)")
    return None


#: Header elements needed to decode pixel data (everything else is already in the series).
_PIXEL_TAGS = [0x00280002, 0x00280004, 0x00280006, 0x00280008, 0x00280010, 0x00280011, 0x00280100,
               0x00280101, 0x00280102, 0x00280103, 0x7FE00010]


def series_volume(series: ReferenceSeries, sources: Source | Sequence[Source] | Mapping[str, bytes]) -> SeriesVolume:
    """Decode the pixels of an already parsed series from the bytes it was read from.

    ``sources`` are what ``read_dicom_series`` was given (or a mapping of name -> bytes or
    path); each dataset is found by its file name. A file on disk is read when its slice is
    decoded, so one file's bytes at a time are held beside the volume (the browser's worker
    passes the chosen files so: the pixel data is then held once). Raises
    :class:`PreviewUnavailable` for a transfer syntax that cannot be decoded here.
    """
    if isinstance(sources, Mapping):
        by_name = dict(sources)
    else:
        by_name = {item.name: (item.path if isinstance(item, DicomPath) else item.data)
                   for item in iter_dicom_sources(sources, read=False)}
    datasets = series.datasets
    for dataset in datasets:
        syntax = str(getattr(dataset, "file_meta", {}).get("TransferSyntaxUID", pydicom.uid.ImplicitVRLittleEndian))
        problem = _syntax_problem(syntax)
        if problem:
            raise PreviewUnavailable(f"{dataset.filename}: {problem}")
    columns, rows, slices = series.shape
    stored: np.ndarray | None = None
    for k, dataset in enumerate(datasets):
        data = by_name.get(str(dataset.filename))
        if data is None:
            raise InputError(f"{dataset.filename}: its bytes were not given, so its pixels cannot be shown")
        if isinstance(data, (str, os.PathLike)):
            data = as_named_bytes(data, str(dataset.filename)).data
        try:
            with tolerant_dicom_values():
                pixels = _native_pixels(dataset, data)
                if pixels is None:
                    pixels = _decode(data, deflated=syntax_of(dataset) == pydicom.uid.DeflatedExplicitVRLittleEndian)
        except Exception as error:  # pydicom's decoders raise many kinds
            raise PreviewUnavailable(f"{dataset.filename}: its pixel data cannot be decoded ({error})") from None
        if pixels.ndim != 2 or pixels.shape != (rows, columns):
            raise PreviewUnavailable(
                f"{dataset.filename}: pixel data of shape {pixels.shape} where {rows}x{columns} grey values were expected"
            )
        if stored is None:
            stored = np.empty((slices, rows, columns), pixels.dtype)
        elif not np.can_cast(pixels.dtype, stored.dtype, "safe"):
            stored = stored.astype(np.result_type(stored.dtype, pixels.dtype))
        stored[k] = pixels
    slope = np.array([float(ds.get("RescaleSlope", 1) or 1) for ds in datasets])
    intercept = np.array([float(ds.get("RescaleIntercept", 0) or 0) for ds in datasets])
    first = datasets[0]
    modality = str(first.get("Modality", ""))
    units = "HU" if modality == "CT" else str(first.get("RescaleType", "") or "")
    return SeriesVolume(stored, series.affine, slope, intercept, modality, units, _dicom_window(first),
                        series.describe(), str(first.get("PhotometricInterpretation", "")) == "MONOCHROME1",
                        series, list(series.warnings))


_NATIVE_LITTLE_ENDIAN = {pydicom.uid.ExplicitVRLittleEndian, pydicom.uid.ImplicitVRLittleEndian}


def _native_pixels(dataset: Dataset, data: bytes) -> np.ndarray | None:
    """Uncompressed little-endian grey pixels straight from the file's bytes (no second
    parse), or None where pydicom's decoder is needed (other syntaxes, packed or partial
    bits, colour, an element that is not where it should be)."""
    syntax = getattr(dataset, "file_meta", {}).get("TransferSyntaxUID")
    if syntax not in _NATIVE_LITTLE_ENDIAN:
        return None
    bits = int(dataset.get("BitsAllocated", 0) or 0)
    if bits not in (8, 16, 32) or int(dataset.get("BitsStored", 0) or 0) != bits:
        return None
    if int(dataset.get("SamplesPerPixel", 1) or 1) != 1 or int(dataset.get("NumberOfFrames", 1) or 1) != 1:
        return None
    if str(dataset.get("PhotometricInterpretation", "")) not in ("MONOCHROME1", "MONOCHROME2"):
        return None
    rows, columns = int(dataset.Rows), int(dataset.Columns)
    size = rows * columns * bits // 8
    tag = b"\xe0\x7f\x10\x00"
    start = data.rfind(tag)
    while start >= 0:
        if syntax == pydicom.uid.ExplicitVRLittleEndian and data[start + 4:start + 6] in (b"OW", b"OB"):
            offset, length = start + 12, int.from_bytes(data[start + 8:start + 12], "little")
        elif syntax == pydicom.uid.ImplicitVRLittleEndian:
            offset, length = start + 8, int.from_bytes(data[start + 4:start + 8], "little")
        else:
            offset, length = -1, -1
        if length >= size and (length - size) <= 1 and offset + size <= len(data):
            signed = int(dataset.get("PixelRepresentation", 0) or 0) == 1
            dtype = np.dtype(f"<{'i' if signed else 'u'}{bits // 8}")
            return np.frombuffer(data, dtype, rows * columns, offset).reshape(rows, columns)
        start = data.rfind(tag, 0, start)
    return None


def syntax_of(dataset: Dataset) -> str:
    return str(getattr(dataset, "file_meta", {}).get("TransferSyntaxUID", pydicom.uid.ImplicitVRLittleEndian))


def _decode(data: bytes, deflated: bool = False) -> np.ndarray:
    from pydicom.pixels import pixel_array

    if not deflated:
        try:
            # Reads only the pixel module's elements: the rest of the header is parsed already.
            return pixel_array(io.BytesIO(data), specific_tags=_PIXEL_TAGS)
        except (AttributeError, KeyError, ValueError, TypeError, NotImplementedError, OverflowError):
            pass
    # Deflated files (whose partial read overflows under 32-bit Pyodide), files without a preamble.
    return pydicom.dcmread(io.BytesIO(data), force=True).pixel_array


def read_series_volume(sources: Source | Sequence[Source], match: Volume | None = None) -> SeriesVolume:
    """``read_dicom_series`` and ``series_volume`` in one call (the files are read once)."""
    items = list(iter_dicom_sources(sources))
    series = read_dicom_series(items, match=match)
    return series_volume(series, {item.name: item.data for item in items})


def _dicom_window(dataset: Dataset) -> tuple[float, float] | None:
    centre, width = dataset.get("WindowCenter"), dataset.get("WindowWidth")
    if centre in (None, "") or width in (None, ""):
        return None
    first = lambda value: float(value[0] if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else value)  # noqa: E731
    try:
        centre, width = first(centre), first(width)
    except (TypeError, ValueError, IndexError):
        return None
    return (centre, width) if width > 0 else None


def auto_window(volume: SeriesVolume, low: float = 1.0, high: float = 99.0, samples: int = 1 << 18) -> tuple[float, float]:
    """(centre, width) spanning the ``low``..``high`` percentiles of the real values, from
    an even sample of voxels (MR has no fixed scale; the extremes are usually noise)."""
    flat = volume.stored.reshape(-1)
    step = max(1, flat.size // samples)
    index = np.arange(0, flat.size, step)
    values = volume.real_values(index)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(values, [low, high])
    if hi <= lo:
        lo, hi = float(values.min()), float(values.max())
    width = max(float(hi - lo), 1e-6)
    return float(lo) + width / 2, width


def default_window(volume: SeriesVolume) -> tuple[float, float]:
    """The series' own window, else soft tissue for CT, else the percentile window."""
    if volume.window is not None:
        return volume.window
    if volume.modality == "CT":
        return WINDOW_PRESETS["CT soft tissue"]
    return auto_window(volume)


# --------------------------------------------------------------------------- planes


#: (sliced patient axis, screen-right direction, screen-down direction) in LPS, as
#: (axis, sign): radiological views (patient's right on screen left; anterior up in
#: axial; superior up in coronal and sagittal, anterior on the left in sagittal).
PLANES: dict[str, tuple[int, tuple[int, int], tuple[int, int]]] = {
    "axial": (2, (0, 1), (1, 1)),
    "coronal": (1, (0, 1), (2, -1)),
    "sagittal": (0, (1, 1), (2, -1)),
}


def direction_letters(direction: Sequence[float]) -> str:
    """Patient directions a vector points along, principal first: L/R, P/A, S/I."""
    vector = np.asarray(direction, float)
    letters = []
    for axis in np.argsort(-np.abs(vector), kind="stable"):
        if abs(vector[axis]) < ORIENTATION_LETTER_THRESHOLD * np.linalg.norm(vector):
            break
        letters.append(("LPS" if vector[axis] > 0 else "RAI")[axis])
    return "".join(letters)


def axis_assignment(directions: np.ndarray) -> tuple[int, int, int]:
    """For each patient axis (x, y, z), the volume axis (i, j, k) closest to it, each used once."""
    weights = np.abs(np.asarray(directions, float))  # [patient axis, volume axis]
    best = max(itertools.permutations(range(3)), key=lambda p: sum(weights[a, p[a]] for a in range(3)))
    return tuple(int(v) for v in best)  # type: ignore[return-value]


@dataclass(frozen=True)
class PlaneGeometry:
    """How one patient plane is cut out of a volume and laid on the screen.

    ``take(array, index)`` is the 2-D view ``[row, column]`` of slice ``index``, row 0 at
    the top of the screen; ``voxel`` and ``locate`` convert between ``(index, row,
    column)`` and voxel indices ``(i, j, k)``.
    """

    name: str
    slice_axis: int
    row_axis: int
    row_flip: bool
    column_axis: int
    column_flip: bool
    count: int
    rows: int
    columns: int
    row_spacing: float
    column_spacing: float
    letters: dict

    def take(self, array: np.ndarray, index: int) -> np.ndarray:
        """The slice as a view of ``array`` (indexed ``[i, j, k]``)."""
        key: list = [slice(None)] * 3
        key[self.slice_axis] = int(index)
        image = array[tuple(key)]
        remaining = [axis for axis in range(3) if axis != self.slice_axis]
        if remaining[0] != self.row_axis:
            image = image.T
        if self.row_flip:
            image = image[::-1]
        if self.column_flip:
            image = image[:, ::-1]
        return image

    def voxel(self, index: int, row: int, column: int) -> tuple[int, int, int]:
        ijk = [0, 0, 0]
        ijk[self.slice_axis] = int(index)
        ijk[self.row_axis] = self.rows - 1 - int(row) if self.row_flip else int(row)
        ijk[self.column_axis] = self.columns - 1 - int(column) if self.column_flip else int(column)
        return tuple(ijk)  # type: ignore[return-value]

    def locate(self, ijk: Sequence[int]) -> tuple[int, int, int]:
        """(index, row, column) of a voxel in this plane."""
        row = int(ijk[self.row_axis])
        column = int(ijk[self.column_axis])
        return (int(ijk[self.slice_axis]),
                self.rows - 1 - row if self.row_flip else row,
                self.columns - 1 - column if self.column_flip else column)


def plane_geometry(affine: np.ndarray, shape: Sequence[int], plane: str) -> PlaneGeometry:
    """The axial, coronal or sagittal plane of a volume with this LPS affine and shape."""
    if plane not in PLANES:
        raise ValueError(f"plane {plane!r} is not one of {', '.join(PLANES)}")
    affine = np.asarray(affine, float)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    directions = affine[:3, :3] / spacing
    assignment = axis_assignment(directions)
    normal_axis, (right_axis, right_sign), (down_axis, down_sign) = PLANES[plane]
    column_axis, row_axis = assignment[right_axis], assignment[down_axis]
    column_flip = bool(np.sign(directions[right_axis, column_axis]) != right_sign)
    row_flip = bool(np.sign(directions[down_axis, row_axis]) != down_sign)
    right = directions[:, column_axis] * (-1 if column_flip else 1)
    down = directions[:, row_axis] * (-1 if row_flip else 1)
    letters = {"right": direction_letters(right), "left": direction_letters(-right),
               "bottom": direction_letters(down), "top": direction_letters(-down)}
    return PlaneGeometry(plane, assignment[normal_axis], row_axis, row_flip, column_axis, column_flip,
                         int(shape[assignment[normal_axis]]), int(shape[row_axis]), int(shape[column_axis]),
                         float(spacing[row_axis]), float(spacing[column_axis]), letters)


def real_slice(volume: SeriesVolume, plane: PlaneGeometry, index: int) -> np.ndarray:
    """One slice's real values, float32, a new contiguous array (what is sent to the page)."""
    stored = plane.take(volume.array, index)
    if volume.uniform_rescale:
        return (stored.astype(np.float32) * np.float32(volume.slope[0]) + np.float32(volume.intercept[0]))
    # The k axis runs along the slice (sagittal, coronal) or is the slice (axial).
    slope = plane.take(np.broadcast_to(volume.slope[None, None, :], volume.shape), index)
    intercept = plane.take(np.broadcast_to(volume.intercept[None, None, :], volume.shape), index)
    return (stored * slope + intercept).astype(np.float32)


# --------------------------------------------------------------------------- overlays


@dataclass
class SegmentInfo:
    number: int
    label: str
    colour: tuple[int, int, int]
    group: int  # which of the overlay's label maps holds it
    attributes: dict = field(default_factory=dict)


@dataclass
class Overlay:
    """Segments on the series grid: label maps ``[k, j, i]`` aligned with ``SeriesVolume.stored``
    (voxel = segment number, 0 = none); overlapping segments go to separate label maps."""

    label_maps: list[np.ndarray]
    segments: dict[int, SegmentInfo]
    #: For label maps from files: segment number -> (file index, label value), and whether
    #: the seg metadata numbered them (``relabelled`` compares these to a new metadata's).
    sources: dict[int, tuple[int, int]] = field(default_factory=dict)
    numbered_by_metadata: bool = False

    def arrays(self) -> list[np.ndarray]:
        """The label maps as ``[i, j, k]`` views."""
        return [label_map.transpose(2, 1, 0) for label_map in self.label_maps]

    def segments_at(self, ijk: Sequence[int]) -> list[SegmentInfo]:
        i, j, k = (int(v) for v in ijk)
        found = []
        for label_map in self.label_maps:
            number = int(label_map[k, j, i])
            if number and number in self.segments:
                found.append(self.segments[number])
        return found

    def voxel_indices(self, number: int) -> np.ndarray:
        """Flat indices (into ``stored``) of the segment's voxels."""
        label_map = self.label_maps[self.segments[number].group]
        return np.flatnonzero(label_map.reshape(-1) == number)

    def centre(self, number: int) -> tuple[int, int, int]:
        """The segment's voxel nearest its centroid, as (i, j, k): the slices through its centre."""
        if number not in self.segments:
            raise InputError(f"there is no segment {number}; segments are {', '.join(map(str, self.segments))}")
        label_map = self.label_maps[self.segments[number].group]
        kji = np.argwhere(label_map == number)
        if kji.size == 0:
            raise InputError(f"segment {number} ({self.segments[number].label}) has no voxels on the series grid")
        centroid = kji.mean(axis=0)
        nearest = kji[int(np.argmin(((kji - centroid) ** 2).sum(axis=1)))]
        return int(nearest[2]), int(nearest[1]), int(nearest[0])


def _grid_of(target: SeriesVolume) -> tuple[np.ndarray, tuple[int, int, int]]:
    return target.affine, target.shape


def _on_grid(volume: Volume, target: SeriesVolume) -> np.ndarray:
    """The volume's voxels on the series grid as ``[k, j, i]`` (exact; flips and permutations
    of axes and a subset of slices allowed, GeometryError otherwise)."""
    affine, shape = _grid_of(target)
    placed = resample_onto(volume, affine, shape)
    return np.ascontiguousarray(placed.transpose(2, 1, 0))


def _colour(attributes: Mapping, number: int) -> tuple[int, int, int]:
    rgb = attributes.get("recommendedDisplayRGBValue")
    if rgb and len(rgb) == 3:
        return tuple(int(max(0, min(255, v))) for v in rgb)  # type: ignore[return-value]
    lab = attributes.get("RecommendedDisplayCIELabValue")
    if lab and len(lab) == 3:
        import highdicom as hd

        return tuple(int(v) for v in hd.color.CIELabColor.from_dicom_value([int(v) for v in lab]).to_rgb(clip=True))  # type: ignore[return-value]
    return DEFAULT_COLOURS[(number - 1) % len(DEFAULT_COLOURS)]


def _label(attributes: Mapping, number: int) -> str:
    label = attributes.get("SegmentLabel") or attributes.get("SegmentDescription")
    if not label:
        code = attributes.get("SegmentedPropertyTypeCodeSequence") or {}
        label = code.get("CodeMeaning")
    return str(label or f"Segment {number}")


def label_counts(array: np.ndarray, chunk: int = 1 << 22) -> dict[int, int]:
    """Voxel count of each value of a label array ({value: count}, zero included). Small
    unsigned integers are counted a few million at a time (np.unique sorts a copy of the
    whole volume, and bincount of all of it at once converts it to intp)."""
    array = np.asarray(array)
    if array.dtype not in (np.uint8, np.uint16, np.bool_):
        values, counts = np.unique(array, return_counts=True)
        return {v.item(): int(c) for v, c in zip(values, counts)}
    flat = np.ravel(array, order="K")  # in memory order: a view, also of a Fortran-ordered volume
    flat = flat.view(np.uint8) if flat.dtype == np.bool_ else flat
    counts = np.zeros(256 if flat.dtype == np.uint8 else 65536, np.int64)
    for start in range(0, flat.size, chunk):
        part = np.bincount(flat[start:start + chunk])
        counts[:part.size] += part
    return {int(v): int(counts[v]) for v in np.flatnonzero(counts)}


def _values_present(array: np.ndarray) -> list:
    """The distinct values of a label array."""
    return list(label_counts(array))


def _segment_dtype(largest: int):
    return np.uint8 if largest < 256 else np.uint16


def overlay_from_segmentation(contents, target: SeriesVolume) -> Overlay:
    """The segments of a SEG read by ``seg.read_segmentation``, on the series grid.

    Binary and labelmap SEGs as stored; a fractional segment shows where it is at least 0.5.
    """
    segments: dict[int, SegmentInfo] = {}
    label_maps: list[np.ndarray] = []
    if contents.label_map is not None:
        groups = [(list(contents.segments), Volume(contents.label_map, contents.affine, "label map"))]
    elif contents.segmentation_type == "FRACTIONAL":
        groups = []
        for segment in contents.segments:
            mask = np.asarray(segment.array) >= 0.5
            groups.append(([segment], Volume(mask.astype(_segment_dtype(segment.number)) * segment.number,
                                             contents.affine, f"segment {segment.number}")))
    else:
        groups = contents.merged_volumes()
    for members, volume in groups:
        placed = _on_grid(volume, target)
        numbers = {segment.number for segment in members}
        present = set(_values_present(placed)) - {0}
        if present - numbers:  # e.g. a label map's padding value: not a segment
            placed = np.where(np.isin(placed, list(numbers)), placed, 0).astype(placed.dtype)
        label_maps.append(placed)
        for segment in members:
            segments[segment.number] = SegmentInfo(segment.number, _label(segment.attributes, segment.number),
                                                   _colour(segment.attributes, segment.number), len(label_maps) - 1,
                                                   dict(segment.attributes))
    return Overlay(label_maps, segments)


def segment_numbering(volumes: Sequence[Volume], metadata: Mapping | None = None,
                      use_label_id_as_segment_number: bool = False) -> dict[int, list[tuple[int, int, dict]]] | None:
    """For each label map (by position): its (label value, segment number, attributes), as the
    SEG writer (``seg.write.assign_segments``) numbers them from the same files and metadata,
    so the preview and its measurements use the numbers of the SEG written afterwards. None
    without seg metadata, or when the metadata does not fit the files (the conversion says why)."""
    if not (metadata or {}).get("segmentAttributes"):
        return None
    from qidicom.seg.write import assign_segments

    try:
        specs = assign_segments(dict(metadata), [str(v.name or "") for v in volumes], use_label_id_as_segment_number)
    except (InputError, KeyError, TypeError, ValueError):
        return None
    numbering: dict[int, list[tuple[int, int, dict]]] = {}
    for spec in specs:
        numbering.setdefault(spec.file_index, []).append((spec.label_id, spec.number, dict(spec.attributes)))
    return numbering


def overlay_from_label_maps(volumes: Sequence[Volume], target: SeriesVolume, metadata: Mapping | None = None,
                            use_label_id_as_segment_number: bool = False) -> Overlay:
    """Label maps (NIfTI/NRRD, as the SEG writer takes them) on the series grid.

    With seg metadata, segments are numbered as the SEG writer numbers them
    (``segment_numbering``), with the metadata's labels and colours; without (or when the
    metadata does not fit the files), each distinct value of each file is a segment,
    numbered in order.
    """
    numbering = segment_numbering(volumes, metadata, use_label_id_as_segment_number)
    segments: dict[int, SegmentInfo] = {}
    sources: dict[int, tuple[int, int]] = {}
    label_maps: list[np.ndarray] = []
    number = 0
    for index, volume in enumerate(volumes):
        placed = _on_grid(volume, target)
        values = [int(v) for v in _values_present(placed) if v != 0]
        if numbering is not None:
            wanted = numbering.get(index, [])
        else:
            wanted = [(value, number + n, {}) for n, value in enumerate(values, start=1)]
        if not wanted:
            continue
        top = max(n for _, n, _ in wanted)
        number = max(number, top)
        lut = np.zeros(int(max(max(values, default=0), max(v for v, _, _ in wanted))) + 1, _segment_dtype(top))
        for value, segment, attributes in wanted:
            segments[segment] = SegmentInfo(segment, _label(attributes, segment), _colour(attributes, segment),
                                            len(label_maps), attributes)
            sources[segment] = (index, int(value))
            lut[value] = segment
        if not np.issubdtype(placed.dtype, np.integer):
            placed = np.rint(placed).astype(np.int32)
        if np.issubdtype(placed.dtype, np.signedinteger) and placed.min() < 0:
            placed = np.maximum(placed, 0)  # negative values are no label
        identity = all(value == segment for value, segment, _ in wanted) and set(values) <= {v for v, _, _ in wanted}
        if identity and placed.dtype == lut.dtype and placed.flags.c_contiguous:
            shared = placed.view()  # values already are segment numbers: the label map itself, no copy,
            shared.flags.writeable = False  # and read-only, so nothing here can change the input
            label_maps.append(shared)
        else:
            label_maps.append(lut[placed])
    return Overlay(label_maps, dict(sorted(segments.items())), dict(sorted(sources.items())), numbering is not None)


def relabelled(overlay: Overlay, volumes: Sequence[Volume], metadata: Mapping | None = None,
               use_label_id_as_segment_number: bool = False) -> Overlay | None:
    """``overlay`` (from ``overlay_from_label_maps`` of the same ``volumes``) with the labels,
    colours and attributes of new seg metadata, sharing its label maps: for an edit of the
    segments' descriptions, without placing the label maps on the grid again. None when the
    new metadata numbers the label values differently (the overlay must be made again)."""
    numbering = segment_numbering(volumes, metadata, use_label_id_as_segment_number)
    if numbering is None:  # numbered by the values present: as before only if it was so before
        return overlay if not overlay.numbered_by_metadata and overlay.sources else None
    wanted = {number: (index, int(value), attributes)
              for index, entries in numbering.items() for value, number, attributes in entries}
    if not overlay.sources or {n: (i, v) for n, (i, v, _) in wanted.items()} != overlay.sources:
        return None
    segments = {number: SegmentInfo(number, _label(attributes, number), _colour(attributes, number),
                                    overlay.segments[number].group, attributes)
                for number, (_, _, attributes) in sorted(wanted.items())}
    return Overlay(overlay.label_maps, segments, dict(overlay.sources), True)


@dataclass
class MapOverlay:
    """A parametric map on the series grid, ``[k, j, i]`` float32, NaN where it has no value."""

    values: np.ndarray
    units: str = ""
    quantity: str = ""
    metadata: dict = field(default_factory=dict)

    def arrays(self) -> np.ndarray:
        return self.values.transpose(2, 1, 0)

    def value_range(self) -> tuple[float, float]:
        finite = self.values[np.isfinite(self.values)]
        if finite.size == 0:
            return 0.0, 1.0
        return float(finite.min()), float(finite.max())

    def value_at(self, ijk: Sequence[int]) -> float:
        i, j, k = (int(v) for v in ijk)
        return float(self.values[k, j, i])


def map_overlay(source, target: SeriesVolume, metadata: Mapping | None = None) -> MapOverlay:
    """A map (``pm.read_parametric_map``'s contents, or a Volume with pm metadata) on the
    series grid. Units and quantity come from the metadata's codes."""
    if hasattr(source, "volume"):
        volume, metadata = source.volume, metadata or source.metadata
    else:
        volume = source
    metadata = dict(metadata or {})
    affine, shape = _grid_of(target)
    ranges = covered_ranges(volume, affine)
    if ranges is None:
        raise GeometryError(f"{volume.name or 'the map'} does not lie on the series' grid, so it cannot be shown over it")
    floats = Volume(volume.array.astype(np.float32, copy=False), volume.affine, volume.name)
    values = _on_grid(floats, target)
    covered = np.zeros(values.shape, bool)
    (i0, i1), (j0, j1), (k0, k1) = ranges
    covered[k0:k1 + 1, j0:j1 + 1, i0:i1 + 1] = True
    values[~covered] = np.nan
    units = (metadata.get("MeasurementUnitsCode") or {}).get("CodeValue", "")
    quantity = (metadata.get("QuantityValueCode") or {}).get("CodeMeaning", "")
    return MapOverlay(values, str(units), str(quantity), metadata)


def outline(label_slice: np.ndarray) -> np.ndarray:
    """Keep only the voxels of a 2-D label slice that touch a different label (4-neighbours)."""
    edge = np.zeros(label_slice.shape, bool)
    edge[1:, :] |= label_slice[1:, :] != label_slice[:-1, :]
    edge[:-1, :] |= label_slice[:-1, :] != label_slice[1:, :]
    edge[:, 1:] |= label_slice[:, 1:] != label_slice[:, :-1]
    edge[:, :-1] |= label_slice[:, :-1] != label_slice[:, 1:]
    edge[0, :] = edge[-1, :] = True
    edge[:, 0] = edge[:, -1] = True
    return np.where(edge, label_slice, 0)


# --------------------------------------------------------------------------- readout


def readout(volume: SeriesVolume, ijk: Sequence[int], overlay: Overlay | None = None,
            pmap: MapOverlay | None = None) -> dict:
    """What the hover readout shows at a voxel: position (LPS mm), stored and real value,
    the segments there (number and label), the map value and its units."""
    i, j, k = (int(v) for v in ijk)
    if not all(0 <= v < n for v, n in zip((i, j, k), volume.shape)):
        raise IndexError(f"voxel {(i, j, k)} is outside the {volume.shape} grid")
    result = {
        "voxel": (i, j, k),
        "position_mm": tuple(float(v) for v in volume.position_mm((i, j, k))),
        "stored": int(volume.stored[k, j, i]) if np.issubdtype(volume.stored.dtype, np.integer) else float(volume.stored[k, j, i]),
        "real": volume.real_at((i, j, k)),
        "units": volume.units,
        "segments": [(s.number, s.label) for s in overlay.segments_at((i, j, k))] if overlay else [],
        "blank": volume.is_blank,
    }
    if pmap is not None:
        result["map"] = pmap.value_at((i, j, k))
        result["map_units"] = pmap.units
    return result


def format_readout(values: dict) -> str:
    """The readout as one line of text."""
    x, y, z = values["position_mm"]
    text = f"({x:.1f}, {y:.1f}, {z:.1f}) mm LPS · voxel {values['voxel']}"
    if not values.get("blank"):
        text += f" · stored {values['stored']} · value {values['real']:.6g}{(' ' + values['units']) if values['units'] else ''}"
    if values["segments"]:
        text += " · " + ", ".join(f"segment {n} {label}" for n, label in values["segments"])
    if "map" in values:
        value = values["map"]
        text += " · map " + ("none" if not np.isfinite(value) else f"{value:.6g} {values['map_units']}".rstrip())
    return text


def source_pairs(sources: Iterable[Source]) -> dict[str, bytes]:
    """name -> bytes of in-memory or on-disk sources (what ``series_volume`` looks names up in)."""
    return {item.name: item.data for item in (as_named_bytes(s) for s in sources)}
