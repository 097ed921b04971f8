"""DICOM Segmentation: label maps plus dcmqi-style metadata to SEG, and SEG back to label maps.

Writing goes through highdicom (BINARY, LABELMAP, FRACTIONAL); reading decodes any SEG
with pydicom and places every frame by its own plane position, so SEGs written by dcmqi,
highdicom or qidicom all come back on their grid.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from qidicom import __version__
from qidicom import metadata as metadata_module
from qidicom.metadata import code_from_json, code_to_json
from qidicom.errors import GeometryError, InputError, QidicomError
from qidicom.geometry import Volume, covered_ranges, patient_orientation, resample_onto
from qidicom.readers import (
    NamedBytes,
    ReferenceSeries,
    Source,
    as_named_bytes,
    frame_grid,
    frame_item,
    read_dicom,
    read_images_and_series,
    source_name,
    tolerant_dicom_values,
)
from qidicom.writers import ExportedFile, dicom_bytes, suggested_filename, transfer_syntax_for

SEGMENTATION_TYPES = ("binary", "labelmap", "fractional")
FRACTIONAL_TYPES = ("PROBABILITY", "OCCUPANCY")
Progress = Callable[[str, float], None]


@dataclass
class SegmentSpec:
    """One segment to write: where its voxels come from and what it means."""

    number: int
    file_index: int
    label_id: int
    attributes: dict


@dataclass
class SegResult:
    """A written SEG: the dataset, its file bytes, a download name and any warnings."""

    dataset: Dataset
    data: bytes
    filename: str
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- writing


def assign_segments(
    metadata: dict,
    label_names: Sequence[str],
    use_label_id_as_segment_number: bool = False,
) -> list[SegmentSpec]:
    """Pair every metadata entry with its input file and give it a segment number.

    ``segmentAttributes`` is one list per input file, by position, or by name when
    ``segmentAttributesFileMapping`` names the files. Segments are numbered as dcmqi numbers
    them: group by group in the metadata's order (whatever the order of the files), and
    within a group by ascending labelID; or by their labelID when asked.
    """
    groups = metadata["segmentAttributes"]
    mapping = metadata.get("segmentAttributesFileMapping")
    if mapping:
        if len(mapping) != len(groups):
            raise InputError(
                f"metadata: segmentAttributesFileMapping has {len(mapping)} names but segmentAttributes "
                f"has {len(groups)} groups"
            )
        basenames = [_basename(name) for name in label_names]
        file_indices = []
        for position, wanted in enumerate(mapping):
            matches = [n for n, name in enumerate(basenames) if name == _basename(wanted)]
            if not matches:
                raise InputError(
                    f"metadata: segmentAttributesFileMapping[{position}] names '{wanted}', "
                    f"which is not among the input images ({', '.join(basenames)})"
                )
            file_indices.append(matches[0])
    else:
        if len(groups) != len(label_names):
            raise InputError(
                f"metadata: segmentAttributes has {len(groups)} group(s) but {len(label_names)} input "
                "image(s) were given; give one group per input image, in the same order"
            )
        file_indices = list(range(len(groups)))
    specs: list[SegmentSpec] = []
    for group_index, (file_index, group) in enumerate(zip(file_indices, groups)):
        seen: dict[int, int] = {}
        for position, attributes in enumerate(group):
            label = int(attributes["labelID"])
            if label in seen:
                raise InputError(
                    f"metadata: segmentAttributes[{group_index}][{position}].labelID {label} is repeated "
                    f"for {label_names[file_index]}"
                )
            seen[label] = position
        for label in sorted(seen):
            number = label if use_label_id_as_segment_number else len(specs) + 1
            specs.append(SegmentSpec(number, file_index, label, group[seen[label]]))
    if use_label_id_as_segment_number:
        numbers = [spec.number for spec in specs]
        repeated = sorted({n for n in numbers if numbers.count(n) > 1})
        if repeated:
            raise InputError(
                f"--useLabelIDAsSegmentNumber: label ID(s) {', '.join(map(str, repeated))} occur in more "
                "than one input image, so they cannot all be segment numbers"
            )
        specs.sort(key=lambda spec: spec.number)
    return specs


def _basename(name: str) -> str:
    return name.replace("\\", "/").rsplit("/", 1)[-1]


def segment_description(spec: SegmentSpec, warnings: list[str]):
    """A highdicom SegmentDescription from one dcmqi segment entry."""
    import highdicom as hd

    attributes = spec.attributes
    label = str(attributes.get("SegmentLabel") or attributes["SegmentedPropertyTypeCodeSequence"]["CodeMeaning"])
    anatomic_regions = None
    if "AnatomicRegionSequence" in attributes:
        anatomic_regions = [code_from_json(attributes["AnatomicRegionSequence"])]
    colour = None
    if "RecommendedDisplayCIELabValue" in attributes:
        colour = hd.color.CIELabColor.from_dicom_value(attributes["RecommendedDisplayCIELabValue"])
    elif "recommendedDisplayRGBValue" in attributes:
        colour = hd.color.CIELabColor.from_rgb(*attributes["recommendedDisplayRGBValue"])
    tracking_id = attributes.get("TrackingIdentifier")
    tracking_uid = attributes.get("TrackingUniqueIdentifier")
    if (tracking_id is None) != (tracking_uid is None):
        # DICOM wants both or neither; make the missing UID rather than drop the ID.
        if tracking_id is not None:
            tracking_uid = hd.UID()
        else:
            tracking_id = label
    # highdicom insists on a full Algorithm Identification Sequence (Type 3) for
    # non-manual segments, and copies the first segment's type to the background segment
    # it adds to a LABELMAP; the standard only needs Segment Algorithm Name (Type 1C),
    # which is what dcmqi's metadata carries. So build as MANUAL and set the real type and
    # name on the finished dataset (see build_segmentation).
    description = hd.seg.SegmentDescription(
        segment_number=spec.number,
        segment_label=label,
        segmented_property_category=code_from_json(attributes["SegmentedPropertyCategoryCodeSequence"]),
        segmented_property_type=code_from_json(attributes["SegmentedPropertyTypeCodeSequence"]),
        algorithm_type="MANUAL",
        tracking_id=tracking_id,
        tracking_uid=tracking_uid,
        anatomic_regions=anatomic_regions,
        display_color=colour,
    )
    if "SegmentedPropertyTypeModifierCodeSequence" in attributes:
        modifier = hd.sr.CodedConcept.from_code(code_from_json(attributes["SegmentedPropertyTypeModifierCodeSequence"]))
        description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [modifier]
    if "AnatomicRegionModifierSequence" in attributes and anatomic_regions:
        modifier = hd.sr.CodedConcept.from_code(code_from_json(attributes["AnatomicRegionModifierSequence"]))
        description.AnatomicRegionSequence[0].AnatomicRegionModifierSequence = [modifier]
    if attributes.get("SegmentDescription"):
        description.SegmentDescription = str(attributes["SegmentDescription"])[:64]
    return description


def _algorithm(spec: SegmentSpec, warnings: list[str]) -> tuple[str, str | None]:
    """Segment Algorithm Type and Name; DICOM needs a name unless the type is MANUAL."""
    attributes = spec.attributes
    algorithm_type = str(attributes.get("SegmentAlgorithmType", "SEMIAUTOMATIC"))
    name = attributes.get("SegmentAlgorithmName")
    if algorithm_type != "MANUAL" and not name:
        name = "Unspecified"
        warnings.append(
            f"segment {spec.number} ('{attributes.get('SegmentLabel', '')}'): SegmentAlgorithmType is "
            f"{algorithm_type} but no SegmentAlgorithmName is given; DICOM requires one, so 'Unspecified' was written"
        )
    return algorithm_type, (str(name) if name else None)


def _background_as_padding(dataset: Dataset) -> None:
    """Mark LABELMAP background with Pixel Padding Value rather than a described segment 0.

    highdicom describes pixel value 0 as a "Background" segment numbered 0; dcmqi (1.5.5
    on) designates the background with Pixel Padding Value instead, which keeps segment
    numbering as the metadata gave it and is what readers of either tool expect.
    """
    dataset.SegmentSequence = [item for item in dataset.SegmentSequence if int(item.SegmentNumber) != 0]
    dataset.PixelPaddingValue = 0


def _label_arrays_on_grid(
    label_maps: Sequence[Volume], reference: ReferenceSeries, check_geometry: bool, warnings: list[str]
) -> list[np.ndarray]:
    """Each label map as [i, j, k] on the reference grid (sorted slices)."""
    arrays = []
    for volume in label_maps:
        if check_geometry:
            arrays.append(resample_onto(volume, reference.affine, reference.shape))
            _warn_partial_coverage(volume, reference, warnings)
            continue
        # Unchecked, as dcmqi's --referencesGeometryCheck 0: trust that the image has the
        # series' size and slice order, and take every position from the series.
        if volume.shape != reference.shape:
            raise GeometryError(
                f"{volume.name} is {'x'.join(map(str, volume.shape))} but the reference series is "
                f"{'x'.join(map(str, reference.shape))}; sizes must agree even without the geometry check"
            )
        arrays.append(np.asarray(volume.array))
    return arrays


def _warn_partial_coverage(volume: Volume, reference: ReferenceSeries, warnings: list[str]) -> None:
    """A label map on part of the series' grid is placed by position; say so, with both sizes."""
    ranges = covered_ranges(volume, reference.affine)
    full = [(0, n - 1) for n in reference.shape]
    if ranges is None or ranges == full:
        return
    parts = [
        f"{name} {low + 1}-{high + 1} of {n}"
        for name, (low, high), n in zip(("columns", "rows", "slices"), ranges, reference.shape)
        if (low, high) != (0, n - 1)
    ]
    warnings.append(
        f"{volume.name} is {'x'.join(map(str, volume.shape))} voxels but the reference series is "
        f"{'x'.join(map(str, reference.shape))}; it covers {', '.join(parts)} and the rest of the series "
        "is treated as empty"
    )


def _check_finite(volume: Volume) -> None:
    """NaN or infinite voxels have no label or probability: refuse them, saying where."""
    array = volume.array
    if not np.issubdtype(array.dtype, np.floating):
        return
    found: dict[str, list] = {"NaN": [0, None], "infinite": [0, None]}
    # Slice by slice: a whole-volume mask of a large float map is a large copy.
    for k in range(array.shape[2]):
        plane = array[:, :, k]
        if np.isfinite(plane).all():
            continue
        for what, test in (("NaN", np.isnan), ("infinite", np.isinf)):
            bad = test(plane)
            count = int(np.count_nonzero(bad))
            if count:
                found[what][0] += count
                if found[what][1] is None:
                    found[what][1] = [*(int(v) for v in np.argwhere(bad)[0]), k]
    for what, (count, first) in found.items():
        if count:
            raise InputError(
                f"{volume.name}: {count} voxel(s) are {what}, the first at voxel index [{', '.join(map(str, first))}]; "
                "a label map or probability map must hold finite numbers"
            )


def _label_values(array: np.ndarray) -> set[int]:
    """The distinct values of an integer label map, without sorting it as unique does.

    Slice by slice, each flattened in memory order ("A": a slice of a Fortran-ordered
    volume, as NRRD and NIfTI files are read, is then a view). Labels below 64, the usual
    case, are found by OR-ing one bit per voxel value, a pass numpy vectorises; larger
    ones by bincount, which casts each slice to intp first.
    """
    if not (np.issubdtype(array.dtype, np.integer) and array.size and 0 <= array.min()):
        return set(int(v) for v in np.unique(array))
    high = int(array.max())
    if high >= 1 << 20:
        return set(int(v) for v in np.unique(array))
    if high < 64:
        bits_type = np.uint32 if high < 32 else np.uint64
        one = bits_type(1)
        seen = 0
        buffer = np.empty(array.shape[0] * array.shape[1], bits_type)
        for k in range(array.shape[2]):
            np.left_shift(one, array[:, :, k].reshape(-1, order="A"), out=buffer, dtype=bits_type, casting="unsafe")
            seen |= int(np.bitwise_or.reduce(buffer))
        return {value for value in range(high + 1) if seen >> value & 1}
    counts = np.zeros(high + 1, np.int64)
    for k in range(array.shape[2]):
        counts += np.bincount(array[:, :, k].reshape(-1, order="A"), minlength=counts.size)
    return set(int(v) for v in np.flatnonzero(counts))


def _check_labels(
    arrays: Sequence[np.ndarray], specs: Sequence[SegmentSpec], names: Sequence[str], fractional: bool, warnings: list[str]
) -> list[SegmentSpec]:
    """Fail on labels with no metadata; warn about (and drop) described labels with no voxels.

    The segments kept stay in the order given (``assign_segments``': the metadata's group
    order), whatever the order of the input files.
    """
    present_in: dict[int, set[int] | None] = {}
    for file_index, (array, name) in enumerate(zip(arrays, names)):
        file_specs = [spec for spec in specs if spec.file_index == file_index]
        if fractional:
            if len(file_specs) != 1:
                raise InputError(
                    f"{name}: a fractional segmentation takes one segment per input image, "
                    f"but the metadata describes {len(file_specs)} for it"
                )
            if not np.issubdtype(array.dtype, np.floating) and array.max(initial=0) > 1:
                raise InputError(
                    f"{name}: fractional input must hold values from 0 to 1 (probabilities or occupancy); "
                    f"found integer values up to {array.max()}"
                )
            low, high = float(np.min(array)), float(np.max(array))
            if low < 0 or high > 1:
                raise InputError(f"{name}: fractional values must lie in 0..1; found {low:g}..{high:g}")
            if high == 0:
                warnings.append(f"{name}: all values are zero; segment {file_specs[0].number} is empty")
            present_in[file_index] = None
            continue
        if np.issubdtype(array.dtype, np.floating):
            if not np.all(np.equal(np.mod(array, 1), 0)):
                raise InputError(
                    f"{name}: holds non-integer values; for probabilities use --segmentationType fractional"
                )
        present = _label_values(array) - {0}
        described = {spec.label_id for spec in file_specs}
        missing = sorted(present - described)
        if missing:
            raise InputError(
                f"{name}: label value(s) {', '.join(map(str, missing))} have no entry in the metadata "
                f"(described: {', '.join(map(str, sorted(described))) or 'none'})"
            )
        if not present:
            raise InputError(f"{name}: the label map is empty (all voxels are 0); there is nothing to segment")
        present_in[file_index] = present
    kept = []
    for spec in specs:
        present = present_in[spec.file_index]
        if present is None or spec.label_id in present:
            kept.append(spec)
        else:
            warnings.append(
                f"{names[spec.file_index]}: metadata describes labelID {spec.label_id} "
                f"('{spec.attributes.get('SegmentLabel', '')}') but no voxel has that value; "
                "the segment is left out"
            )
    return kept


def _renumber(specs: list[SegmentSpec], use_label_id: bool, segmentation_type: str) -> list[SegmentSpec]:
    """Consecutive numbers from 1 after dropping empty segments, unless label IDs are kept.

    Kept label IDs are the segment numbers, in number order (the Segment Sequence is
    written in that order): any IDs for a LABELMAP, 1..N (spread over the files in any
    order) for BINARY and FRACTIONAL.
    """
    if not use_label_id:
        return [SegmentSpec(n + 1, s.file_index, s.label_id, s.attributes) for n, s in enumerate(specs)]
    specs = sorted(specs, key=lambda spec: spec.number)
    numbers = [spec.number for spec in specs]
    if segmentation_type != "labelmap" and numbers != list(range(1, len(numbers) + 1)):
        raise InputError(
            f"--useLabelIDAsSegmentNumber: label IDs {', '.join(map(str, numbers))} are not 1, 2, 3, ...; "
            f"a {segmentation_type} SEG must number its segments consecutively from 1 (DICOM PS3.3 C.8.20.2). "
            "Use --segmentationType labelmap to keep gapped numbers."
        )
    return specs


def _pixel_array(
    arrays: Sequence[np.ndarray], specs: Sequence[SegmentSpec], segmentation_type: str, names: Sequence[str]
) -> np.ndarray:
    """The array highdicom takes: (frames, rows, columns[, segments])."""
    shape = arrays[0].shape
    if segmentation_type == "fractional":
        stack = np.zeros((shape[2], shape[1], shape[0], len(specs)), np.float32)
        for n, spec in enumerate(specs):
            stack[..., n] = np.transpose(arrays[spec.file_index], (2, 1, 0))
        return stack
    label_dtype = np.uint8 if max(s.number for s in specs) < 256 else np.uint16
    # Built plane by plane, straight into the (frames, rows, columns) layout highdicom
    # reads frame by frame; whole-volume fancy indexing would copy the volume as intp.
    frames = np.zeros((shape[2], shape[1], shape[0]), label_dtype)
    for position, file_index in enumerate(sorted({spec.file_index for spec in specs})):
        file_specs = [spec for spec in specs if spec.file_index == file_index]
        array = arrays[file_index]
        table = np.zeros(max(int(array.max()), max(s.label_id for s in file_specs)) + 1, label_dtype)
        for spec in file_specs:
            table[spec.label_id] = spec.number
        # Label i becoming segment i (the usual case) needs no lookup: a cast copies it.
        identity = np.array_equal(table, np.arange(table.size))
        for k in range(shape[2]):
            # Through the slice's transpose (a view): a frame is (rows, columns).
            labels = array[:, :, k].T
            if not np.issubdtype(labels.dtype, np.integer):
                labels = labels.astype(np.intp)  # integer-valued floats, booleans
            if not position:
                # The first file fills the empty frames: straight into them.
                np.copyto(frames[k], labels if identity else table[labels], casting="unsafe")
                continue
            plane = labels.astype(label_dtype) if identity else table[labels]
            target = frames[k]
            if np.any((target != 0) & (plane != 0)):
                if segmentation_type == "labelmap":
                    _raise_overlap(arrays, specs, file_specs, names, frames, k, plane)
                return _binary_stack(arrays, specs, shape)
            np.maximum(target, plane, out=target)
    return frames


def _raise_overlap(arrays, specs, file_specs, names, frames, k, plane) -> None:
    clash = (frames[k] != 0) & (plane != 0)
    row, column = (int(v) for v in np.argwhere(clash)[0])
    mine = next(s for s in file_specs if s.number == int(plane[row, column]))
    other = next(s for s in specs if s.number == int(frames[k][row, column]))
    overlap = int(np.count_nonzero((arrays[mine.file_index] == mine.label_id) & (arrays[other.file_index] == other.label_id)))
    raise InputError(
        f"a LABELMAP segmentation cannot hold overlapping segments: segment {mine.number} "
        f"('{mine.attributes.get('SegmentLabel', '')}', label {mine.label_id} of {names[mine.file_index]}) "
        f"overlaps segment {other.number} ('{other.attributes.get('SegmentLabel', '')}') in "
        f"{overlap} voxel(s); use --segmentationType binary"
    )


def _binary_stack(arrays: Sequence[np.ndarray], specs: Sequence[SegmentSpec], shape) -> np.ndarray:
    """Overlapping segments: one boolean channel per segment."""
    stack = np.zeros((shape[2], shape[1], shape[0], len(specs)), bool)
    for n, spec in enumerate(specs):
        stack[..., n] = np.transpose(arrays[spec.file_index] == spec.label_id, (2, 1, 0))
    return stack


def write_segmentation(
    label_maps: Sequence[Volume],
    metadata: dict,
    reference: ReferenceSeries,
    *,
    segmentation_type: str = "binary",
    fractional_type: str = "PROBABILITY",
    compress: str = "none",
    skip_empty: bool = True,
    use_label_id_as_segment_number: bool = False,
    check_geometry: bool = True,
    progress: Progress | None = None,
) -> SegResult:
    """Build a DICOM SEG from label maps on the reference series' grid.

    ``metadata`` must already be valid against the seg schema (see ``segmentation_from_files``
    for the whole path from files).
    """
    return _write_segmentation(
        list(label_maps), metadata, reference, segmentation_type=segmentation_type, fractional_type=fractional_type,
        compress=compress, skip_empty=skip_empty, use_label_id_as_segment_number=use_label_id_as_segment_number,
        check_geometry=check_geometry, progress=progress,
    )


def _write_segmentation(
    label_maps: list[Volume],
    metadata: dict,
    reference: ReferenceSeries,
    *,
    segmentation_type: str,
    fractional_type: str,
    compress: str,
    skip_empty: bool,
    use_label_id_as_segment_number: bool,
    check_geometry: bool,
    progress: Progress | None,
) -> SegResult:
    """``write_segmentation``, emptying ``label_maps`` once their voxels are in frames.

    The label maps are the largest arrays of a conversion; a caller that hands its own
    list over lets them go before highdicom encodes the frames, which lowers the peak memory.
    """
    report = progress or (lambda message, fraction: None)
    if segmentation_type not in SEGMENTATION_TYPES:
        raise InputError(f"segmentation type '{segmentation_type}' is not one of {', '.join(SEGMENTATION_TYPES)}")
    if fractional_type.upper() not in FRACTIONAL_TYPES:
        raise InputError(f"fractional type '{fractional_type}' is not one of {', '.join(FRACTIONAL_TYPES)}")
    transfer_syntax = transfer_syntax_for(compress)
    if compress == "rle" and segmentation_type == "binary":
        raise InputError(
            "RLE Lossless does not apply to BINARY segmentations (1 bit per pixel); "
            "use --compress deflate, or --segmentationType labelmap with rle"
        )
    warnings = list(reference.warnings)
    names = [volume.name for volume in label_maps]
    specs = assign_segments(metadata, names, use_label_id_as_segment_number)
    for index in range(len(label_maps)):  # no loop variable left holding a volume
        _check_finite(label_maps[index])
    report("placing label maps on the reference grid", 0.15)
    arrays = _label_arrays_on_grid(label_maps, reference, check_geometry, warnings)
    label_maps.clear()  # from here on, ``arrays`` holds the only references to the voxels
    specs = _check_labels(arrays, specs, names, segmentation_type == "fractional", warnings)
    if not specs:
        raise InputError("no described segment has any voxels; there is nothing to write")
    specs = _renumber(specs, use_label_id_as_segment_number, segmentation_type)
    descriptions = [segment_description(spec, warnings) for spec in specs]
    report("arranging frames", 0.3)
    pixel_array = _pixel_array(arrays, specs, segmentation_type, names)
    del arrays
    report("encoding the segmentation", 0.45)
    algorithms = {spec.number: _algorithm(spec, warnings) for spec in specs}
    segmentation = build_segmentation(
        reference.datasets, pixel_array, segmentation_type, descriptions, algorithms, metadata,
        fractional_type=fractional_type, transfer_syntax=transfer_syntax, skip_empty=skip_empty,
    )
    del pixel_array  # encoded into the dataset's Pixel Data by now
    report("writing the file", 0.9)
    with tolerant_dicom_values():
        data = dicom_bytes(segmentation, compress)
    report("done", 1.0)
    return SegResult(segmentation, data, suggested_filename(segmentation, "SEG"), warnings)


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
    if arr.dtype == np.uint8 and arr.size and int(arr.max()) > 1:
        return utils.pack_bits(arr, pad=pad)  # raises pydicom's error
    flat = arr.reshape(-1)  # pydicom pads to a whole byte with zero bits, as packbits does
    packed = np.packbits(flat, bitorder="little").tobytes()
    return packed + b"\x00" if pad and len(packed) % 2 else packed


_PACKING_LOCK = threading.Lock()
_packing_users = 0


@contextlib.contextmanager
def _packing_bits_directly() -> Iterator[None]:
    """highdicom packs BINARY frames with qidicom's ``pack_bits`` while this is entered.

    highdicom.image binds pydicom's function by name; it is swapped for the equivalent one
    above and put back when the last user leaves (counted, so concurrent conversions on
    threads never leave it swapped or restore it under each other).
    """
    global _packing_users
    import highdicom.image as image

    with _PACKING_LOCK:
        if not _packing_users:
            _packing_bits_directly.original = image.pack_bits
            image.pack_bits = pack_bits
        _packing_users += 1
    try:
        yield
    finally:
        with _PACKING_LOCK:
            _packing_users -= 1
            if not _packing_users:
                image.pack_bits = _packing_bits_directly.original


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
) -> Dataset:
    """The highdicom Segmentation, with the dcmqi-level details highdicom does not set."""
    import highdicom as hd

    with tolerant_dicom_values(), _packing_bits_directly():
        try:
            segmentation = hd.seg.Segmentation(
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


def segmentation_from_files(
    label_maps: Sequence[Source],
    metadata: Source | dict,
    references: Source | Sequence[Source],
    *,
    segmentation_type: str = "binary",
    fractional_type: str = "PROBABILITY",
    compress: str = "none",
    skip_empty: bool = True,
    use_label_id_as_segment_number: bool = False,
    check_geometry: bool = True,
    progress: Progress | None = None,
) -> SegResult:
    """The whole conversion, as ``itkimage2segimage`` does it: validate, read, check, write.

    Metadata is validated before any image is read, so schema problems come first and all
    at once.
    """
    report = progress or (lambda message, fraction: None)
    report("validating the metadata", 0.0)
    document = metadata if isinstance(metadata, dict) else metadata_module.load_json(metadata)
    metadata_module.check(document, "seg", source_name(metadata, "metadata"))
    if not label_maps:
        raise InputError("no label map was given")
    report("reading label maps and the reference series", 0.03)
    volumes, reference = read_images_and_series(label_maps, references)
    return _write_segmentation(
        volumes,  # handed over: emptied once its voxels are in frames
        document,
        reference,
        segmentation_type=segmentation_type,
        fractional_type=fractional_type,
        compress=compress,
        skip_empty=skip_empty,
        use_label_id_as_segment_number=use_label_id_as_segment_number,
        check_geometry=check_geometry,
        progress=progress,
    )


# --------------------------------------------------------------------------- reading


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

    frames: np.ndarray
    indices: list[int]
    slices: np.ndarray
    shape: tuple[int, int, int]
    scale: float | None = None  # FRACTIONAL: the Maximum Fractional Value
    one_bit: bool = False  # 1-bit frames: every value is 0 or 1 already

    def volume(self, dtype=None, value: int = 1) -> np.ndarray:
        """bool (float32 0..1 if fractional), or ``value`` as ``dtype`` where the segment is."""
        if dtype is None:
            dtype = np.float32 if self.scale is not None else bool
        # Fortran order: a slice [:, :, k] is contiguous, and so is writing NRRD/NIfTI.
        array = np.zeros(self.shape, dtype, order="F")
        for f in self.indices:
            values = self.frames[f].T
            if self.scale is not None:
                array[:, :, self.slices[f]] = values / self.scale
            elif value == 1:
                array[:, :, self.slices[f]] = values != 0
            else:
                np.multiply(values if self.one_bit else values != 0, value, out=array[:, :, self.slices[f]], dtype=dtype)
        return array


@dataclass
class SegmentationContents:
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
        groups: list[tuple[list[Segment], np.ndarray]] = []
        for segment in self.segments:
            mask = segment.array
            for members, occupied in groups:
                if not np.any(occupied & mask):
                    members.append(segment)
                    occupied |= mask
                    break
            else:
                groups.append(([segment], mask.copy()))
        result = []
        for members, occupied in groups:
            array = np.zeros(occupied.shape, _label_dtype([s.number for s in members]), order="F")
            for segment in members:
                array[segment.array] = segment.number
            result.append((members, Volume(array, self.affine, "merged segments")))
        return result


def _label_dtype(numbers: Sequence[int]):
    return np.uint8 if max(numbers) < 256 else np.uint16


def read_segmentation(source: Source | Dataset, name: str | None = None) -> SegmentationContents:
    """Read any SEG (binary, fractional or labelmap; from dcmqi, highdicom or qidicom)."""
    if isinstance(source, Dataset):
        dataset = source
    else:
        item = as_named_bytes(source, name)
        try:
            dataset = read_dicom(item)
        except InputError:
            # A short Pixel Data reads as "truncated"; when it is a frame-count mismatch, say so.
            problem = _frame_count_problem(item)
            if problem:
                raise InputError(f"{item.name}: {problem}") from None
            raise
    label = getattr(dataset, "filename", None) or name or "the SEG"
    if str(dataset.get("Modality", "")) != "SEG" or "SegmentSequence" not in dataset:
        raise InputError(f"{label}: not a DICOM Segmentation (Modality is '{dataset.get('Modality', '')}')")
    segmentation_type = str(dataset.get("SegmentationType", "BINARY")).upper()
    frame_count = int(dataset.get("NumberOfFrames", 1) or 1)
    problem = _frame_count_mismatch(dataset)
    if problem:
        raise InputError(f"{label}: {problem}")
    try:
        with tolerant_dicom_values():
            frames = dataset.pixel_array
    except Exception as error:
        raise InputError(f"{label}: its pixel data cannot be decoded ({error})") from None
    frames = np.asarray(frames).reshape(frame_count, int(dataset.Rows), int(dataset.Columns))
    grid = frame_grid(dataset, label)
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
    segment_of_frame = _frame_segment_numbers(dataset, frame_count)
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
    # Fortran order: a slice [:, :, k] is contiguous, and so is writing NRRD/NIfTI.
    label_map = np.full(shape, fill, np.result_type(frames.dtype, np.min_scalar_type(fill)), order="F")
    for f in range(len(frames)):
        label_map[:, :, slice_index[f]] = frames[f].T
    missing = shape[2] - len(set(int(k) for k in slice_index))
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
    import io

    try:
        with tolerant_dicom_values():
            dataset = pydicom.dcmread(io.BytesIO(item.data), force=True)
            if str(dataset.get("Modality", "")) != "SEG":
                return None
            return _frame_count_mismatch(dataset)
    except Exception:
        return None


def _frame_segment_numbers(dataset: Dataset, frame_count: int) -> list[int | None]:
    numbers = []
    for f in range(frame_count):
        identification = frame_item(dataset, f, "SegmentIdentificationSequence")
        numbers.append(int(identification.ReferencedSegmentNumber) if identification is not None else None)
    return numbers


def segment_attributes(item: Dataset, palette_rgb: Sequence[int] | None = None) -> dict:
    """dcmqi-style attributes of one SegmentSequence item; labelID is the segment number.

    A PALETTE COLOR label map shows each segment in its palette entry, so that entry is
    its recommendedDisplayRGBValue (``palette_rgb``); otherwise the colour comes from
    RecommendedDisplayCIELabValue.
    """
    import highdicom as hd

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
        attributes["recommendedDisplayRGBValue"] = list(hd.color.CIELabColor.from_dicom_value(lab_values).to_rgb(clip=True))
        attributes["RecommendedDisplayCIELabValue"] = lab_values
    if palette_rgb is not None:
        attributes["recommendedDisplayRGBValue"] = [int(v) for v in palette_rgb]
    if item.get("TrackingID"):
        attributes["TrackingIdentifier"] = str(item.TrackingID)
    if item.get("TrackingUID"):
        attributes["TrackingUniqueIdentifier"] = str(item.TrackingUID)
    return attributes


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


# --------------------------------------------------------------------------- binary to labelmap

#: Study- and patient-level attributes a derived object copies from its sources.
_CONTEXT_KEYWORDS = (
    "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex", "PatientAge",
    "PatientWeight", "PatientSize", "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID",
    "AccessionNumber", "ReferringPhysicianName", "StudyDescription", "ClinicalTrialSponsorName",
    "ClinicalTrialProtocolID", "ClinicalTrialProtocolName", "ClinicalTrialSiteID", "ClinicalTrialSiteName",
    "ClinicalTrialSubjectID", "ClinicalTrialSubjectReadingID", "ClinicalTrialTimePointID",
)


def _source_stand_ins(binary: Dataset, label: str) -> list[tuple[Dataset, np.ndarray]]:
    """The source images a SEG references per frame, as far as the SEG describes them.

    A SEG carries the patient and study of its sources, their frame of reference, and,
    per frame, which instance at which position it was derived from: enough to derive a
    new SEG from the same sources without having them.
    """
    series_of = {}
    for series in binary.get("ReferencedSeriesSequence", []):
        for instance in series.get("ReferencedInstanceSequence", []):
            series_of[str(instance.ReferencedSOPInstanceUID)] = str(series.SeriesInstanceUID)
    orientation = frame_item(binary, 0, "PlaneOrientationSequence").ImageOrientationPatient
    measures = frame_item(binary, 0, "PixelMeasuresSequence")
    pixel_spacing = measures.PixelSpacing
    thickness = float(measures.get("SliceThickness") or measures.get("SpacingBetweenSlices") or 1.0)
    stand_ins: dict[str, tuple[Dataset, np.ndarray]] = {}
    for item in binary.PerFrameFunctionalGroupsSequence:
        try:
            source = item.DerivationImageSequence[0].SourceImageSequence[0]
            position = np.asarray(item.PlanePositionSequence[0].ImagePositionPatient, float)
        except (AttributeError, IndexError):
            raise InputError(
                f"{label}: its frames do not say which source image each was derived from, "
                "which bin2labelsegimage needs"
            ) from None
        uid = str(source.ReferencedSOPInstanceUID)
        if uid in stand_ins:
            continue
        image = Dataset()
        for keyword in _CONTEXT_KEYWORDS:
            if keyword in binary:
                setattr(image, keyword, binary.data_element(keyword).value)
        image.SOPClassUID = source.ReferencedSOPClassUID
        image.SOPInstanceUID = uid
        image.SeriesInstanceUID = series_of.get(uid, "")
        image.FrameOfReferenceUID = binary.FrameOfReferenceUID
        image.Modality = "OT"
        image.Rows, image.Columns = binary.Rows, binary.Columns
        image.ImageOrientationPatient = [float(v) for v in orientation]
        image.PixelSpacing = [float(v) for v in pixel_spacing]
        image.ImagePositionPatient = [float(v) for v in position]
        image.SliceThickness = thickness
        stand_ins[uid] = (image, position)
    if not stand_ins:
        raise InputError(f"{label}: has no frames to convert")
    return list(stand_ins.values())


#: Palette entry for pixel values that are neither background nor a segment. None occur;
#: white makes one stand out if it ever did.
_UNUSED_PALETTE_RGB = (255, 255, 255)


def _palette(descriptions: Sequence[Dataset], bits_stored: int):
    """A palette with an entry for every storable pixel value: black background, each
    segment in its recommended colour, and white for values that are not segments.

    Covering the whole range (256 8-bit entries, or 65536 16-bit ones) leaves no pixel
    value to the "clamp to the last entry" rule, and makes every LUT use its full range
    of bits, as dciodvfy checks.
    """
    import highdicom as hd

    entries = 1 << bits_stored
    table = np.empty((entries, 3), np.uint16)
    table[:] = _UNUSED_PALETTE_RGB
    table[0] = (0, 0, 0)
    for item in descriptions:
        lab = item.get("RecommendedDisplayCIELabValue")
        rgb = hd.color.CIELabColor.from_dicom_value([int(v) for v in lab]).to_rgb(clip=True) if lab else (128, 128, 128)
        table[int(item.SegmentNumber)] = rgb
    # 8-bit entries hold at most 256 values; 16-bit entries scale 0..255 to 0..65535.
    data = table.astype(np.uint8) if entries <= 256 else table * 257
    luts = [hd.PaletteColorLUT(0, data[:, n].copy(), colour) for n, colour in enumerate(("red", "green", "blue"))]
    return hd.PaletteColorLUTTransformation(*luts, palette_color_lut_uid=hd.UID())


def binary_to_labelmap(
    source: Source,
    *,
    compress: str = "none",
    use_palette: bool = False,
    force_16_bit: bool = False,
    name: str | None = None,
) -> SegResult:
    """A BINARY (or FRACTIONAL-free) SEG as a LABELMAP SEG of the same segments, as dcmqi's
    ``bin2labelsegimage`` does. Overlapping segments cannot share one label map: error."""
    import highdicom as hd

    binary = read_dicom(source, name)
    label = getattr(binary, "filename", None) or name or "the SEG"
    contents = read_segmentation(binary, label)
    if contents.segmentation_type != "BINARY":
        raise InputError(f"{label}: is a {contents.segmentation_type} SEG; bin2labelsegimage converts BINARY ones")
    transfer_syntax = transfer_syntax_for(compress)
    merged = np.zeros(contents.segments[0].array.shape, np.uint16)
    for segment in contents.segments:
        mask = segment.array
        clash = merged[mask]
        if clash.any():
            raise InputError(
                f"{label}: segment {segment.number} overlaps segment {int(clash[clash > 0][0])} in "
                f"{int((clash > 0).sum())} voxel(s); overlapping segments cannot be one label map"
            )
        merged[mask] = segment.number
    stand_ins = _source_stand_ins(binary, label)
    inverse = np.linalg.inv(contents.affine)
    slices = [int(round((inverse @ np.append(position, 1.0))[2])) for _, position in stand_ins]
    pixel_array = np.stack([merged[:, :, k].T for k in slices])
    descriptions, algorithms = [], {}
    for item in binary.SegmentSequence:
        description = hd.seg.SegmentDescription.from_dataset(item, copy=True)
        algorithms[int(item.SegmentNumber)] = (str(item.get("SegmentAlgorithmType", "MANUAL")), item.get("SegmentAlgorithmName"))
        description.SegmentAlgorithmType = "MANUAL"  # restored by build_segmentation
        if use_palette and "RecommendedDisplayCIELabValue" in description:
            del description.RecommendedDisplayCIELabValue  # the palette carries the colours
        descriptions.append(description)
    metadata = {key: value for key, value in top_level_metadata(binary).items() if not key.startswith("@")}
    bits = 16 if force_16_bit or max(algorithms) >= 256 else 8
    segmentation = build_segmentation(
        [image for image, _ in stand_ins], pixel_array, "labelmap", descriptions, algorithms, metadata,
        transfer_syntax=transfer_syntax if not force_16_bit else transfer_syntax_for("none"),
        skip_empty=False, palette=_palette(binary.SegmentSequence, bits) if use_palette else None,
    )
    # The stand-ins stood for the real sources; the new SEG references them as the old one did.
    segmentation.ReferencedSeriesSequence = binary.ReferencedSeriesSequence
    if force_16_bit and int(segmentation.BitsAllocated) == 8:
        frames = np.frombuffer(segmentation.PixelData, np.uint8).astype(np.uint16)
        segmentation.BitsAllocated, segmentation.BitsStored, segmentation.HighBit = 16, 16, 15
        segmentation.PixelData = frames.tobytes()
        segmentation["PixelData"].VR = "OW"
        if compress == "rle":
            segmentation.compress(transfer_syntax, encoding_plugin="pydicom")
    with tolerant_dicom_values():
        data = dicom_bytes(segmentation, compress)
    return SegResult(segmentation, data, suggested_filename(segmentation, "LABELMAP_SEG"), [])
