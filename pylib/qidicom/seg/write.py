"""Label maps plus dcmqi seg metadata to a DICOM SEG (``itkimage2segimage``).

The metadata's segments are paired with the label maps' values, the label maps are placed
on the reference series' grid and checked (finite, described, not empty), and the frames
are arranged as highdicom takes them; ``qidicom.seg.build`` makes the dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np

from qidicom import metadata as metadata_module
from qidicom.errors import GeometryError, InputError
from qidicom.geometry import Volume, covered_ranges, resample_onto
from qidicom.metadata import code_from_json
from qidicom.readers import ReferenceSeries, Source, read_images_and_series, source_name, tolerant_dicom_values
from qidicom.results import Progress, WriteResult
from qidicom.seg.build import build_segmentation
from qidicom.writers import dicom_bytes, suggested_filename, transfer_syntax_for


SEGMENTATION_TYPES = ("binary", "labelmap", "fractional")
FRACTIONAL_TYPES = ("PROBABILITY", "OCCUPANCY")


@dataclass
class SegmentSpec:
    """One segment to write: where its voxels come from and what it means."""

    number: int
    file_index: int
    label_id: int
    attributes: dict


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


def _label_bits_by_slice(array: np.ndarray) -> list[int] | None:
    """For each slice ``array[:, :, k]`` of an integer label map with labels 0..63, one bit
    per label value present in it (bit v: value v); None for any other map.

    Each slice is flattened in memory order ("A": a slice of a Fortran-ordered volume, as
    NRRD and NIfTI files are read, is then a view) and its values OR-ed as one bit each, a
    pass numpy vectorises.
    """
    if not (np.issubdtype(array.dtype, np.integer) and array.size and 0 <= array.min()):
        return None
    high = int(array.max())
    if high >= 64:
        return None
    bits_type = np.uint32 if high < 32 else np.uint64
    one = bits_type(1)
    buffer = np.empty(array.shape[0] * array.shape[1], bits_type)
    slices = []
    for k in range(array.shape[2]):
        np.left_shift(one, array[:, :, k].reshape(-1, order="A"), out=buffer, dtype=bits_type, casting="unsafe")
        slices.append(int(np.bitwise_or.reduce(buffer)))
    return slices


def _label_values(array: np.ndarray) -> set[int]:
    """The distinct values of a label map, without sorting it as unique does: from
    ``_label_bits_by_slice`` for labels below 64, the usual case, else ``_counted_values``."""
    slice_bits = _label_bits_by_slice(array)
    return _values_in(slice_bits) if slice_bits is not None else _counted_values(array)


def _values_in(slice_bits: list[int]) -> set[int]:
    """The label values whose bits are set in any slice's bits."""
    seen = 0
    for bits in slice_bits:
        seen |= bits
    return {value for value in range(64) if seen >> value & 1}


def _counted_values(array: np.ndarray) -> set[int]:
    """The distinct values of a label map with labels of 64 or more (bincount slice by slice,
    which casts each to intp first), or of any other map (numpy's unique)."""
    if not (np.issubdtype(array.dtype, np.integer) and array.size and 0 <= array.min()):
        return set(int(v) for v in np.unique(array))
    high = int(array.max())
    if high >= 1 << 20:
        return set(int(v) for v in np.unique(array))
    counts = np.zeros(high + 1, np.int64)
    for k in range(array.shape[2]):
        counts += np.bincount(array[:, :, k].reshape(-1, order="A"), minlength=counts.size)
    return set(int(v) for v in np.flatnonzero(counts))


class CheckedLabels(NamedTuple):
    """``_check_labels``' answer: the segments kept, and each input's labels slice by slice
    (``_label_bits_by_slice``; None where not known)."""

    specs: list[SegmentSpec]
    slice_bits: list[list[int] | None]


def _check_labels(
    arrays: Sequence[np.ndarray], specs: Sequence[SegmentSpec], names: Sequence[str], fractional: bool, warnings: list[str]
) -> CheckedLabels:
    """Fail on labels with no metadata; warn about (and drop) described labels with no voxels.

    The segments kept stay in the order given (``assign_segments``': the metadata's group
    order), whatever the order of the input files.
    """
    present_in: dict[int, set[int] | None] = {}
    slice_bits: list[list[int] | None] = [None] * len(arrays)
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
        bits = slice_bits[file_index] = _label_bits_by_slice(array)
        present = (_values_in(bits) if bits is not None else _counted_values(array)) - {0}
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
    return CheckedLabels(kept, slice_bits)


def _segments_by_frame(slice_bits: Sequence[list[int] | None], specs: Sequence[SegmentSpec]) -> np.ndarray | None:
    """Which segment has voxels in which frame of ``_pixel_array``'s label frames (frame k is
    slice k of every input): a (frames, largest number + 1) boolean table; None unless every
    input's labels are known slice by slice.
    """
    if not specs or any(slice_bits[spec.file_index] is None for spec in specs):
        return None
    frame_count = len(slice_bits[specs[0].file_index])
    table = np.zeros((frame_count, max(spec.number for spec in specs) + 1), bool)
    for spec in specs:
        bits = slice_bits[spec.file_index]
        table[:, spec.number] = [bool(slice_ >> spec.label_id & 1) for slice_ in bits]
    return table


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
) -> WriteResult:
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
) -> WriteResult:
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
    specs, slice_bits = _check_labels(arrays, specs, names, segmentation_type == "fractional", warnings)
    if not specs:
        raise InputError("no described segment has any voxels; there is nothing to write")
    specs = _renumber(specs, use_label_id_as_segment_number, segmentation_type)
    descriptions = [segment_description(spec, warnings) for spec in specs]
    report("arranging frames", 0.3)
    pixel_array = _pixel_array(arrays, specs, segmentation_type, names)
    del arrays
    # Label frames (not a stack of overlapping segments): which segment is in which frame.
    segments_by_frame = _segments_by_frame(slice_bits, specs) if pixel_array.ndim == 3 else None
    report("encoding the segmentation", 0.45)
    algorithms = {spec.number: _algorithm(spec, warnings) for spec in specs}
    segmentation = build_segmentation(
        reference.datasets, pixel_array, segmentation_type, descriptions, algorithms, metadata,
        fractional_type=fractional_type, transfer_syntax=transfer_syntax, skip_empty=skip_empty,
        segments_by_frame=segments_by_frame,
    )
    del pixel_array  # encoded into the dataset's Pixel Data by now
    report("writing the file", 0.9)
    with tolerant_dicom_values():
        data = dicom_bytes(segmentation, compress, workers=2)  # deflate on two threads (pieces)
    report("done", 1.0)
    return WriteResult(segmentation, data, suggested_filename(segmentation, "SEG"), warnings)


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
) -> WriteResult:
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
