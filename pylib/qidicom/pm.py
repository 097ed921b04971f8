"""DICOM Parametric Map: a NIfTI/NRRD map plus dcmqi-style metadata to a PM, and back.

Writing goes through highdicom and keeps the map's data type: integer maps stay integers
(16-bit, with the real-world value mapping's slope and intercept giving the real values),
float maps are written as 32-bit float and double maps as 64-bit float, unlike dcmqi, which
writes float always. Reading decodes any PM with pydicom and places every frame by its own
plane position (as the SEG reader does), because highdicom cannot read dcmqi's PMs: their
dimension index points at the Real World Value Mapping instead of the Plane Position.

A PM keeps the map's own grid. A full reference series is checked (regular spacing, the
map on its grid, which may be a block of it); fewer files, down to dcmqi's documented one MR
slice for a 20-slice map, give the composite context (patient, study, frame of reference),
and each frame references the reference image whose plane it lies in, if any.

dcmqi 1.5.7's ``paramap2itkimage`` reads only Float Pixel Data; ``data_type="float32"``
writes that for pipelines that must stay readable by dcmqi.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from pydicom.dataset import Dataset

from qidicom import __version__
from qidicom import highdicom_tables
from qidicom import metadata as metadata_module
from qidicom.errors import GeometryError, InputError, QidicomError
from qidicom.geometry import (
    Volume,
    check_regular_spacing,
    describe_grid_difference,
    index_mapping,
    resample_onto,
    slice_normal,
)
from qidicom.readers import (
    ReferenceSeries,
    Source,
    frame_grid,
    frame_item,
    read_dicom,
    read_images_and_series,
    source_name,
    tolerant_dicom_values,
    volume_fits,
)
from qidicom.metadata import code_from_json, code_to_json
from qidicom.results import ReadResult, WriteResult
from qidicom.writers import (
    ExportedFile,
    IMAGE_EXTENSIONS,
    dicom_bytes,
    suggested_filename,
    transfer_syntax_for,
    volume_bytes,
)

#: What ``data_type`` accepts: keep the input's type, or force float like dcmqi does.
DATA_TYPES = ("auto", "float32", "float64")
#: Transfer syntaxes offered: Explicit VR Little Endian, or that deflated. (DICOM has no
#: compression for float pixels, and one choice for every map keeps the frames' order simple.)
COMPRESSIONS = ("none", "deflate")
PARAMETRIC_MAP_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.30"
Progress = Callable[[str, float], None]
#: Shortcuts that give the same PM as the general path, only faster (tests/test_pm_fast_paths.py
#: builds both and compares their bytes); False takes the general path everywhere.
FAST_PATHS = True

# Concept names of the Quantity Definition Sequence items (PS3.3 C.7.6.16.2.11.1), with the
# retired SNOMED-RT codes older writers used.
_QUANTITY = ("246205007", "G-C1C6")
_MEASUREMENT_METHOD = ("370129005", "G-C036")
_MODEL_FITTING = ("113241",)
_DIFFUSION_B_VALUE = ("113240",)
_SECONDS_PER_MM2 = ("s/mm2", "UCUM", "seconds per square millimeter")


#: The PM writer's result, by its name from before the writers shared one type.
PmResult = WriteResult


@dataclass
class StoredValues:
    """The map as the PM stores it: frames, and how stored values become real values."""

    frames: np.ndarray  # (slices, rows, columns): uint16, float32 or float64
    slope: float
    intercept: float


# --------------------------------------------------------------------------- writing


def parametric_map_from_files(
    image: Source,
    metadata: Source | dict,
    references: Source | Sequence[Source],
    *,
    compress: str = "none",
    data_type: str = "auto",
    progress: Progress | None = None,
) -> PmResult:
    """The whole conversion, as ``itkimage2paramap`` does it: validate, read, check, write.

    The metadata is validated before the image is read, so schema problems come first and
    all at once.
    """
    report = progress or (lambda message, fraction: None)
    report("validating the metadata", 0.0)
    document = metadata if isinstance(metadata, dict) else metadata_module.load_json(metadata)
    metadata_module.check(document, "pm", source_name(metadata, "metadata"))
    report("reading the map and the reference series", 0.05)
    # Spacing is checked once it is known whether the files are a full series (see place_map).
    (volume,), reference = read_images_and_series(
        [image], references, check_spacing=False, while_waiting=_prepare_highdicom
    )
    return write_parametric_map(volume, document, reference, compress=compress, data_type=data_type, progress=progress)


def _prepare_highdicom(reference: ReferenceSeries) -> None:
    """What the first ``ParametricMap`` of a process would load (highdicom, its tables for the
    PM's and the references' IODs), loaded while the map is still being read."""
    highdicom_tables.prepare([PARAMETRIC_MAP_SOP_CLASS, reference.datasets[0].get("SOPClassUID", "")])


def write_parametric_map(
    volume: Volume,
    metadata: dict,
    reference: ReferenceSeries,
    *,
    compress: str = "none",
    data_type: str = "auto",
    progress: Progress | None = None,
) -> PmResult:
    """Build a DICOM Parametric Map from a map and the reference images it was derived from.

    ``metadata`` must already be valid against the pm schema (``parametric_map_from_files``
    checks it). See ``place_map`` for how the map's grid relates to the references'.
    """
    import highdicom as hd

    from qidicom import highdicom_luts

    report = progress or (lambda message, fraction: None)
    if data_type not in DATA_TYPES:
        raise InputError(f"data type '{data_type}' is not one of {', '.join(DATA_TYPES)}")
    if compress not in COMPRESSIONS:
        raise InputError(f"compression '{compress}' is not one of {', '.join(COMPRESSIONS)} for a parametric map")
    transfer_syntax = transfer_syntax_for(compress)
    warnings = list(reference.warnings)
    report("placing the map on its grid", 0.25)
    placement = place_map(volume, reference, warnings)
    array = placement.array
    slope = _number(metadata.get("RealWorldValueSlope", "1"), "RealWorldValueSlope")
    intercept = _number(metadata.get("RealWorldValueIntercept", "0"), "RealWorldValueIntercept")
    stored = stored_values(array, slope, intercept, data_type, volume.name, warnings)
    value_range = _finite_range(stored.frames)  # one pass over the map for both uses
    mapping = real_world_value_mapping(metadata, stored, value_range)
    window = _window(stored.frames, value_range)
    contrast = code_string(str(metadata.get("DerivedPixelContrast") or "QUANTITY"), "DerivedPixelContrast", warnings)
    known_contrasts = {item.value for item in hd.pm.DerivedPixelContrastValues}
    report("encoding the parametric map", 0.45)
    highdicom_tables.install()  # highdicom's module table decoded a module at a time
    with tolerant_dicom_values():
        try:
            parametric_map = highdicom_luts.parametric_map_class()(
                source_images=reference.datasets,
                pixel_array=stored.frames,
                **placement.highdicom_geometry(),
                series_instance_uid=hd.UID(),
                series_number=metadata_module.integer_field(metadata.get("SeriesNumber", "300"), "SeriesNumber"),
                sop_instance_uid=hd.UID(),
                instance_number=metadata_module.integer_field(metadata.get("InstanceNumber", "1"), "InstanceNumber"),
                manufacturer="qidicom",
                manufacturer_model_name="qidicom",
                software_versions=__version__,
                device_serial_number="1",
                contains_recognizable_visual_features=False,
                real_world_value_mappings=_Mappings([mapping]),
                voi_lut_transformations=[window],
                transfer_syntax_uid=transfer_syntax,
                content_label=str(metadata.get("ContentLabel") or "PARAMETRIC_MAP"),
                content_description=(metadata.get("ContentDescription") or None),
                content_creator_name=metadata.get("ContentCreatorName") or None,
                derived_pixel_contrast=contrast if contrast in known_contrasts else "QUANTITY",
                derivation=code_from_json(metadata["DerivationCode"]),
                series_description=metadata.get("SeriesDescription") or "Parametric map",
            )
        except (ValueError, TypeError) as error:
            raise QidicomError(f"the parametric map could not be built: {error}") from None
        _reference_frame_sources(parametric_map, placement, code_from_json(metadata["DerivationCode"]))
        _order_frames_along_normal(parametric_map)
        _add_frame_anatomy(parametric_map, metadata)
        _add_series_attributes(parametric_map, metadata, warnings)
        if contrast not in known_contrasts:
            _set_derived_pixel_contrast(parametric_map, contrast)
        report("writing the file", 0.9)
        data = dicom_bytes(parametric_map, compress, workers=2)  # float frames: seconds to deflate on one core
    report("done", 1.0)
    return PmResult(parametric_map, data, suggested_filename(parametric_map, "PM"), warnings)


@dataclass
class MapPlacement:
    """Where a PM's frames lie, and which reference image each was derived from.

    ``array`` is the map's own voxels ``[i, j, k]`` on ``affine``, with its axes turned to
    follow the reference images' rows, columns and normal when they are parallel to them.
    ``sources[k]`` is the reference image in whose plane slice k lies, or None.
    """

    array: np.ndarray
    affine: np.ndarray
    sources: list[Dataset | None]
    positions: np.ndarray  # (slices, 3): each frame's Image Position (Patient)
    on_series_grid: bool  # True: checked against a full reference series, on its grid
    whole_series: bool = False  # True: also every image of that series, whole

    def highdicom_geometry(self) -> dict:
        """Plane positions, orientation and pixel measures for highdicom's constructor
        (needed whenever the frames are not the reference images' own planes and size)."""
        import highdicom as hd

        spacing = np.linalg.norm(self.affine[:3, :3], axis=0)
        directions = self.affine[:3, :3] / spacing
        orientation = [float(v) for v in np.concatenate([directions[:, 0], directions[:, 1]])]
        # Slice thickness is not known from a map: its slice spacing stands in, as in dcmqi.
        thickness = float(spacing[2])
        if self.on_series_grid and self.sources and self.sources[0].get("SliceThickness") not in (None, ""):
            thickness = float(self.sources[0].SliceThickness)
        pixel_spacing = (float(spacing[1]), float(spacing[0]))
        if FAST_PATHS and self._source_planes(orientation, pixel_spacing):
            plane_positions = None  # highdicom takes each image's own, as it would after matching ours
        else:
            plane_positions = [hd.PlanePositionSequence("PATIENT", [float(v) for v in p]) for p in self.positions]
        return {
            "plane_positions": plane_positions,
            "plane_orientation": hd.PlaneOrientationSequence("PATIENT", orientation),
            "pixel_measures": hd.PixelMeasuresSequence(
                pixel_spacing=pixel_spacing,
                slice_thickness=thickness,
                spacing_between_slices=float(spacing[2]),
            ),
        }

    def _source_planes(self, orientation: Sequence[float], pixel_spacing: tuple[float, float]) -> bool:
        """Whether the frames are the reference images' planes, one each, in their order, with
        their orientation, pixel spacing and size: highdicom, given plane positions, matches
        each to its image and then writes that image's own position text instead. Then it
        may as well take the positions from the images, without matching 200 planes to 200
        images. The tolerances are tighter than highdicom's (1e-5 for the cosines, relative
        1e-4 for the spacing), so that highdicom itself would find them preserved."""
        if not self.whole_series or any(source is None for source in self.sources):
            return False
        first = self.sources[0]
        source_spacing = np.asarray(first.get("PixelSpacing") or [0.0, 0.0], float)
        return (
            np.allclose(np.asarray(first.ImageOrientationPatient, float), orientation, rtol=0, atol=1e-6)
            and np.allclose(source_spacing, pixel_spacing, rtol=1e-6, atol=0)
            and all(np.array_equal(np.asarray(s.ImagePositionPatient, float), p) for s, p in zip(self.sources, self.positions))
        )


def place_map(volume: Volume, reference: ReferenceSeries, warnings: list[str]) -> MapPlacement:
    """Decide the PM's grid and each frame's source image.

    A full reference series (more than one image, at least one per slice of the map) gets
    the full check: regular spacing, and the map on the series' grid (a slice subset is
    fine). Fewer reference files, as in dcmqi's documented call with one MR slice for a
    20-slice map, give the composite context only: the map keeps its own grid, each frame
    references the image in whose plane it lies, and frames with none are counted in one
    warning.
    """
    aligned = _aligned_with(volume, reference.stack.orientation)
    count = len(reference.datasets)
    name = volume.name or "the map"
    if count > 1 and count >= aligned.shape[2]:
        check_regular_spacing(reference.stack, reference.names)
        if not volume_fits(aligned, reference):
            raise GeometryError(describe_grid_difference(volume, reference.affine, reference.shape))
        matrix, offset = index_mapping(aligned.affine, reference.affine)
        if not (matrix == np.eye(3, dtype=int)).all():  # aligned axes follow the series' ones
            raise GeometryError(describe_grid_difference(volume, reference.affine, reference.shape))
        start = offset.astype(int)
        affine = reference.affine.copy()
        affine[:3, 3] = reference.affine[:3, :3] @ start + reference.affine[:3, 3]
        sources = [reference.datasets[start[2] + k] for k in range(aligned.shape[2])]
        positions = np.array([affine[:3, 3] + affine[:3, 2] * k for k in range(aligned.shape[2])])
        if start[0] == 0 and start[1] == 0:
            positions = reference.stack.positions[start[2]:start[2] + aligned.shape[2]].copy()
        whole = tuple(aligned.shape) == tuple(reference.shape)
        return MapPlacement(aligned.array, affine, sources, positions, True, whole)
    affine = aligned.affine
    positions = np.array([affine[:3, 3] + affine[:3, 2] * k for k in range(aligned.shape[2])])
    sources = _sources_by_plane(affine, positions, reference)
    for k, source in enumerate(sources):
        # A frame at its source image's position takes that position's text, as a full series does.
        if source is not None and np.allclose(np.asarray(source.ImagePositionPatient, float), positions[k], atol=0.01):
            positions[k] = np.asarray(source.ImagePositionPatient, float)
    found = sum(source is not None for source in sources)
    if found < len(sources):
        shape = "x".join(str(n) for n in aligned.shape)
        spacing = " x ".join(f"{v:.5g}" for v in np.linalg.norm(affine[:3, :3], axis=0))
        warnings.append(
            f"{name}: the reference files are {count} image{'s' if count != 1 else ''}, not a series covering "
            f"its {aligned.shape[2]} slices, so the map keeps its own grid ({shape}, {spacing} mm) and takes only "
            f"patient, study and frame of reference from them; {found} of {len(sources)} frames lie in the plane "
            f"of a reference image and reference it, the other {len(sources) - found} reference no source image"
        )
    return MapPlacement(aligned.array, affine, sources, positions, False)


def _aligned_with(volume: Volume, orientation: Sequence[float]) -> Volume:
    """The volume with its axes permuted and flipped to follow the image rows, columns and
    slice normal of ``orientation``, when they are parallel to them; else unchanged."""
    iop = np.asarray(orientation, float)
    basis = np.stack([iop[:3], iop[3:], slice_normal(iop)], axis=1)
    cosines = basis.T @ volume.directions  # [target axis, source axis]
    rounded = np.round(cosines)
    if np.abs(cosines - rounded).max() > 1e-3 or not (np.abs(rounded).sum(axis=0) == 1).all() \
            or not (np.abs(rounded).sum(axis=1) == 1).all():
        return volume
    source_axis = [int(np.nonzero(rounded[t])[0][0]) for t in range(3)]
    array = np.transpose(volume.array, source_axis)
    affine = np.eye(4)
    affine[:3, :3] = volume.affine[:3, source_axis]
    affine[:3, 3] = volume.affine[:3, 3]
    for t in range(3):
        if rounded[t, source_axis[t]] < 0:
            array = np.flip(array, axis=t)
            affine[:3, 3] += affine[:3, t] * (array.shape[t] - 1)
            affine[:3, t] = -affine[:3, t]
    return Volume(array, affine, volume.name, volume.meta)


def _sources_by_plane(affine: np.ndarray, positions: np.ndarray, reference: ReferenceSeries) -> list[Dataset | None]:
    """For each frame, the reference image whose plane it lies in (parallel, and within 5%
    of a slice, at least 0.01 mm, along the normal), or None."""
    spacing = float(np.linalg.norm(affine[:3, 2]))
    normal = affine[:3, 2] / spacing
    if abs(float(np.dot(normal, reference.stack.normal))) < 1 - 1e-4:
        return [None] * len(positions)
    tolerance = max(0.01, 0.05 * spacing)
    image_distances = reference.stack.positions @ normal
    sources: list[Dataset | None] = []
    for position in positions:
        gaps = np.abs(image_distances - float(position @ normal))
        best = int(np.argmin(gaps))
        sources.append(reference.datasets[best] if gaps[best] <= tolerance else None)
    return sources


def _reference_frame_sources(dataset: Dataset, placement: MapPlacement, derivation) -> None:
    """Each frame's Derivation Image: its source image, when one lies in its plane.

    highdicom references source images only when every frame has one, so this is done
    here for all frames alike. A frame with no source keeps the Derivation Code (how it was
    made) with an empty Source Image Sequence (Type 2), so no derivation reference. As in
    highdicom, the two code items are made once and shared by every frame.
    """
    import highdicom as hd
    from pydicom.dataelem import DataElement

    rows, columns = int(dataset.Rows), int(dataset.Columns)
    pixel_spacing = np.linalg.norm(placement.affine[:3, :3], axis=0)[:2]  # along i (columns), j (rows)
    derivation_code = hd.sr.CodedConcept.from_code(derivation)
    purpose = hd.sr.CodedConcept("121322", "DCM", "Source image for image processing operation")
    for frame in dataset.PerFrameFunctionalGroupsSequence:
        position = np.asarray(frame.PlanePositionSequence[0].ImagePositionPatient, float)
        k = int(np.argmin(np.linalg.norm(placement.positions - position, axis=1)))
        source = placement.sources[k]
        item = Dataset()
        item.add(DataElement(0x00089215, "SQ", [derivation_code]))  # Derivation Code Sequence
        references = []
        if source is not None:
            preserved = (
                (int(source.Rows), int(source.Columns)) == (rows, columns)
                and np.allclose(np.asarray(source.ImagePositionPatient, float), position, atol=0.01)
                and np.allclose(np.asarray(source.get("PixelSpacing", [0, 0]), float)[::-1], pixel_spacing, atol=1e-4)
            )
            reference = Dataset()
            reference.add(DataElement(0x00081150, "UI", source.SOPClassUID))  # Referenced SOP Class UID
            reference.add(DataElement(0x00081155, "UI", source.SOPInstanceUID))  # Referenced SOP Instance UID
            reference.add(DataElement(0x0028135A, "CS", "YES" if preserved else "NO"))  # Spatial Locations Preserved
            reference.add(DataElement(0x0040A170, "SQ", [purpose]))  # Purpose of Reference Code Sequence
            references.append(reference)
        item.add(DataElement(0x00082112, "SQ", references))  # Source Image Sequence
        frame.add(DataElement(0x00089124, "SQ", [item]))  # Derivation Image Sequence


def stored_values(
    array: np.ndarray, slope: float, intercept: float, data_type: str, name: str, warnings: list[str]
) -> StoredValues:
    """The frames to store and the mapping that gives back the real values.

    Floats stay float32 or float64. Integers are stored as 16-bit unsigned values (the only
    integer pixels a PM holds); a map with negative values is shifted up by its minimum and
    the shift is folded into the intercept, so real values are exact. Integers spanning
    more than 65535 values are written as float64, which holds them exactly.
    """
    frames = np.transpose(array, (2, 1, 0))
    if data_type != "auto":
        return StoredValues(np.ascontiguousarray(frames, dtype=data_type), slope, intercept)
    if frames.dtype.kind == "f":
        wanted = np.float64 if frames.dtype == np.float64 else np.float32
        return StoredValues(np.ascontiguousarray(frames, dtype=wanted), slope, intercept)
    if frames.dtype == bool:
        frames = frames.astype(np.uint8)
    low, high = (int(frames.min()), int(frames.max())) if frames.size else (0, 0)
    if high - low > 65535:
        warnings.append(
            f"{name}: integer values span {low}..{high}, more than 16 bits; written as 64-bit float, "
            "which keeps every value exact"
        )
        return StoredValues(np.ascontiguousarray(frames, dtype=np.float64), slope, intercept)
    offset = 0 if low >= 0 and high <= 65535 else low
    shifted = (frames.astype(np.int64) - offset).astype(np.uint16) if offset else frames.astype(np.uint16)
    return StoredValues(np.ascontiguousarray(shifted), slope, intercept + offset * slope)


class _Mappings(list):
    """The mappings handed to highdicom, with a short text form: highdicom writes the
    channel's mappings into a debug message for every frame (even with logging off), and
    pydicom's text of a dataset costs a millisecond or more a frame."""

    def __repr__(self) -> str:
        return f"<{len(self)} real world value mapping(s)>"

    __str__ = __repr__


def real_world_value_mapping(metadata: dict, stored: StoredValues, value_range: tuple[float, float] | None = None):
    """The Real World Value Mapping item: units, value range, slope, intercept and the
    quantity definition (quantity, measurement method, model fitting, diffusion b-values).
    ``value_range`` is the frames' finite range, if already known."""
    import highdicom as hd

    units = metadata["MeasurementUnitsCode"]
    quantity = metadata["QuantityValueCode"]
    low, high = value_range if value_range is not None else _finite_range(stored.frames)
    value_range = (float(low), float(high)) if stored.frames.dtype.kind == "f" else (int(low), int(high))
    try:
        mapping = hd.pm.RealWorldValueMapping(
            lut_label=str(units["CodeValue"])[:16],
            lut_explanation=f"{quantity['CodeMeaning']} ({units['CodeMeaning']})"[:64],
            unit=code_from_json(units),
            value_range=value_range,
            slope=_plain_number(stored.slope),
            intercept=_plain_number(stored.intercept),
            quantity_definition=code_from_json(quantity),
        )
    except (ValueError, TypeError) as error:
        raise QidicomError(f"the real world value mapping could not be built: {error}") from None
    definitions = mapping.QuantityDefinitionSequence
    if metadata.get("MeasurementMethodCode"):
        definitions.append(_code_item(("370129005", "SCT", "Measurement Method"), metadata["MeasurementMethodCode"]))
    if metadata.get("ModelFittingMethodCode"):
        definitions.append(_code_item(("113241", "DCM", "Model fitting method"), metadata["ModelFittingMethodCode"]))
    for b_value in metadata.get("SourceImageDiffusionBValues") or []:
        definitions.append(_b_value_item(b_value))
    return mapping


def _code_item(name: tuple[str, str, str], value: dict) -> Dataset:
    """A CODE item of the Quantity Definition Sequence (Content Item Macro, PS3.3 Table 10-2)."""
    import highdicom as hd
    from pydicom.sr.coding import Code

    item = Dataset()
    item.ValueType = "CODE"
    item.ConceptNameCodeSequence = [hd.sr.CodedConcept.from_code(Code(*name))]
    item.ConceptCodeSequence = [hd.sr.CodedConcept.from_code(code_from_json(value))]
    return item


def _b_value_item(b_value: str) -> Dataset:
    """A NUMERIC item of the Quantity Definition Sequence: one source image's b-value."""
    import highdicom as hd
    from pydicom.sr.coding import Code

    item = Dataset()
    item.ValueType = "NUMERIC"
    item.ConceptNameCodeSequence = [hd.sr.CodedConcept.from_code(Code("113240", "DCM", "Source image diffusion b-value"))]
    item.NumericValue = _format_decimal(_number(b_value, "SourceImageDiffusionBValues"))
    item.MeasurementUnitsCodeSequence = [hd.sr.CodedConcept.from_code(Code(*_SECONDS_PER_MM2))]
    return item


def _order_frames_along_normal(dataset: Dataset) -> None:
    """Put frame 1 at the series' first slice and go up along the slice normal.

    highdicom orders frames the other way; dcmqi's paramap2itkimage (1.5.7) then reads the
    map upside down, so the frames are stored in the order dcmqi itself writes them.
    """
    per_frame = dataset.PerFrameFunctionalGroupsSequence
    orientation = dataset.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient
    normal = slice_normal(orientation)
    distances = [float(np.dot(np.asarray(item.PlanePositionSequence[0].ImagePositionPatient, float), normal)) for item in per_frame]
    order = np.argsort(distances, kind="stable")
    if (order == np.arange(len(order))).all():
        return
    keyword = next(k for k in ("FloatPixelData", "DoubleFloatPixelData", "PixelData") if k in dataset)
    frames = np.frombuffer(dataset[keyword].value, np.uint8).reshape(len(order), -1)
    # Usually exactly the reverse: a view, then one copy, rather than a copy of a copy.
    reverse = (order == np.arange(len(order))[::-1]).all()
    dataset[keyword].value = (frames[::-1] if reverse else frames[order]).tobytes()
    dataset.PerFrameFunctionalGroupsSequence = [per_frame[int(n)] for n in order]


def _add_frame_anatomy(dataset: Dataset, metadata: dict) -> None:
    """Frame Anatomy (mandatory in a PM, and needed by dcmqi's reader): region and laterality."""
    import highdicom as hd

    anatomy = Dataset()
    anatomy.AnatomicRegionSequence = [hd.sr.CodedConcept.from_code(code_from_json(metadata["AnatomicRegionSequence"]))]
    anatomy.FrameLaterality = str(metadata.get("FrameLaterality") or "U")
    dataset.SharedFunctionalGroupsSequence[0].FrameAnatomySequence = [anatomy]


def _add_series_attributes(dataset: Dataset, metadata: dict, warnings: list[str]) -> None:
    if "ContentCreatorName" not in dataset:
        dataset.ContentCreatorName = ""  # Type 2: present, even when unknown
    if metadata.get("BodyPartExamined"):
        dataset.BodyPartExamined = code_string(str(metadata["BodyPartExamined"]), "BodyPartExamined", warnings)
    description = metadata.get("DerivationDescription")
    if description:
        for frame in dataset.PerFrameFunctionalGroupsSequence:
            for item in frame.get("DerivationImageSequence", []):
                item.DerivationDescription = str(description)


def code_string(value: str, field_name: str, warnings: list[str]) -> str:
    """A DICOM CS value (upper case, digits, space, underscore): dcmqi's examples write
    "Prostate", which DICOM does not allow, so it is written "PROSTATE" with a warning."""
    cleaned = "".join(c if c.isalnum() or c in " _" else "_" for c in value.upper())[:16]
    if cleaned != value:
        warnings.append(f"metadata: {field_name} '{value}' is not a valid DICOM code string; written as '{cleaned}'")
    return cleaned


def _set_derived_pixel_contrast(dataset: Dataset, contrast: str) -> None:
    """Value 4 of Image Type and Frame Type, for terms highdicom's list lacks (e.g. ADC)."""
    image_type = list(dataset.ImageType)
    image_type[3] = contrast
    dataset.ImageType = image_type
    dataset.SharedFunctionalGroupsSequence[0].ParametricMapFrameTypeSequence[0].FrameType = image_type


def _window(frames: np.ndarray, value_range: tuple[float, float] | None = None):
    """A window spanning the stored values; LINEAR_EXACT for floats, whose range may be below 1."""
    import highdicom as hd

    low, high = value_range if value_range is not None else _finite_range(frames)
    if frames.dtype.kind == "f":
        width = (high - low) or 1.0
        return hd.VOILUTTransformation(window_center=low + width / 2, window_width=width, voi_lut_function="LINEAR_EXACT")
    width = max(high - low, 1)
    return hd.VOILUTTransformation(window_center=low + width / 2, window_width=width)


def _finite_range(frames: np.ndarray) -> tuple[float, float]:
    if frames.dtype.kind == "f":
        if frames.size and np.isfinite(frames).all():  # the usual case: no masked copy of the map
            return float(frames.min()), float(frames.max())
        finite = frames[np.isfinite(frames)]
        if finite.size == 0:
            return 0.0, 0.0
        return float(finite.min()), float(finite.max())
    return (int(frames.min()), int(frames.max())) if frames.size else (0, 0)


def _number(value, field_name: str) -> float:
    try:
        number = float(str(value).strip())
    except ValueError:
        raise InputError(f"metadata: {field_name} '{value}' is not a number") from None
    if not math.isfinite(number):
        raise InputError(f"metadata: {field_name} '{value}' is not a finite number")
    return number


def _plain_number(value: float) -> int | float:
    """An integral float as int, so DICOM text reads "1" rather than "1.0"."""
    return int(value) if float(value).is_integer() and abs(value) < 2**53 else float(value)



# --------------------------------------------------------------------------- reading


@dataclass
class ParametricMapContents(ReadResult):
    """A PM read back: the real-world values on their grid, and the metadata describing them."""

    volume: Volume
    metadata: dict
    warnings: list[str] = field(default_factory=list)


def read_parametric_map(source: Source | Dataset, name: str | None = None) -> ParametricMapContents:
    """Read any Parametric Map (qidicom's, dcmqi's, highdicom's; a file or a pydicom
    dataset) as real-world values.

    Each frame's stored values go through its Real World Value Mapping (slope and intercept,
    or a lookup table). Integer maps whose mapping is integral come back as integers;
    otherwise as float32 (a float32 PM with slope 1 and intercept 0) or float64.
    """
    dataset = source if isinstance(source, Dataset) else read_dicom(source, name)
    label = getattr(dataset, "filename", None) or name or "the PM"
    if str(dataset.get("SOPClassUID", "")) != PARAMETRIC_MAP_SOP_CLASS:
        raise InputError(f"{label}: not a DICOM Parametric Map (SOP Class {dataset.get('SOPClassUID', 'missing')})")
    warnings: list[str] = []
    try:
        with tolerant_dicom_values():
            frames = np.asarray(dataset.pixel_array)
    except Exception as error:
        raise InputError(f"{label}: its pixel data cannot be decoded ({error})") from None
    frame_count = int(dataset.get("NumberOfFrames", 1) or 1)
    frames = frames.reshape(frame_count, int(dataset.Rows), int(dataset.Columns))
    grid = frame_grid(dataset, label)
    slice_index = grid.slice_index
    if len(set(slice_index.tolist())) != frame_count:
        raise InputError(
            f"{label}: several frames lie at the same position (a multi-channel or time-series PM); "
            "only one map per position is supported"
        )
    mappings = [frame_item(dataset, f, "RealWorldValueMappingSequence") for f in range(frame_count)]
    if any(item is None for item in mappings):
        warnings.append(f"{label}: no Real World Value Mapping; stored values are written as they are")
    real = [_apply_mapping(frames[f], mappings[f], label) for f in range(frame_count)]
    dtype = _output_dtype(frames.dtype, mappings, real)
    columns, rows, slices = grid.shape
    # The frames go into a (slices, rows, columns) stack, whole frames at a time; the volume
    # ([i, j, k], as everywhere) is its transposed view, which is Fortran-ordered as NRRD and
    # NIfTI store voxels: no strided copy here, and none when the image is written.
    unmapped = all(np.may_share_memory(real[f], frames) for f in range(frame_count))  # the stored values as they are
    if FAST_PATHS and unmapped and frames.dtype == dtype and slices == frame_count:
        order = np.argsort(slice_index)
        in_order = (order == np.arange(frame_count)).all()
        stack = frames if in_order else frames[order]  # every slice has its frame: a view, or one copy
    else:
        stack = np.zeros((slices, rows, columns), dtype)
        for f in range(frame_count):
            stack[slice_index[f]] = real[f]
    meta = pm_metadata(dataset, mappings[0], warnings)
    return ParametricMapContents(Volume(stack.transpose(2, 1, 0), grid.affine, label), meta, warnings)


def _apply_mapping(frame: np.ndarray, mapping: Dataset | None, label: str) -> np.ndarray:
    if mapping is None:
        return frame
    if mapping.get("RealWorldValueLUTData") is not None:
        first = int(mapping.RealWorldValueFirstValueMapped)
        table = np.asarray(mapping.RealWorldValueLUTData, np.float64)
        index = frame.astype(np.int64) - first
        if index.min(initial=0) < 0 or index.max(initial=0) >= len(table):
            raise InputError(f"{label}: stored values fall outside the Real World Value LUT")
        return table[index]
    slope = float(mapping.get("RealWorldValueSlope", 1.0))
    intercept = float(mapping.get("RealWorldValueIntercept", 0.0))
    if frame.dtype.kind in "iu" and slope.is_integer() and intercept.is_integer():
        return frame.astype(np.int64) * int(slope) + int(intercept)
    if slope == 1.0 and intercept == 0.0:
        return frame
    return frame.astype(np.float64) * slope + intercept


def _output_dtype(stored: np.dtype, mappings: Sequence[Dataset | None], real: Sequence[np.ndarray]) -> np.dtype:
    kinds = {r.dtype.kind for r in real}
    if kinds <= {"i", "u"}:
        low = min(int(r.min(initial=0)) for r in real)
        high = max(int(r.max(initial=0)) for r in real)
        for candidate in (np.int16, np.uint16, np.int32):
            info = np.iinfo(candidate)
            if info.min <= low and high <= info.max:
                return np.dtype(candidate)
        return np.dtype(np.float64)
    if all(r.dtype == np.float32 for r in real):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def _format_decimal(value: float) -> str:
    """A number as a DICOM decimal string (at most 16 characters)."""
    text = repr(_plain_number(float(value)))
    return text if len(text) <= 16 else f"{float(value):.10g}"


def pm_metadata(dataset: Dataset, mapping: Dataset | None, warnings: list[str]) -> dict:
    """dcmqi-style pm metadata describing a PM; it validates against qidicom's pm schema.

    The map written beside it holds real-world values, so its RealWorldValueSlope is "1"
    (listed, as dcmqi's reader lists it). BodyPartExamined and DerivationDescription are
    always present, empty when the PM has none, as in dcmqi's reader's output.
    """
    meta: dict = {"@schema": metadata_module.SCHEMA_IDS["pm"]}
    for keyword in ("SeriesDescription", "SeriesNumber", "InstanceNumber", "BodyPartExamined",
                    "ContentLabel", "ContentDescription", "ContentCreatorName"):
        value = dataset.get(keyword)
        if value not in (None, ""):
            meta[keyword] = str(value)
    meta.setdefault("BodyPartExamined", "")
    meta["RealWorldValueSlope"] = "1"
    label = getattr(dataset, "filename", None) or "the PM"
    if mapping is not None:
        units = mapping.get("MeasurementUnitsCodeSequence")
        if units:
            meta["MeasurementUnitsCode"] = code_to_json(units[0])
        for item in mapping.get("QuantityDefinitionSequence", []):
            concept = item.ConceptNameCodeSequence[0].CodeValue
            if concept in _QUANTITY and item.get("ConceptCodeSequence"):
                meta["QuantityValueCode"] = code_to_json(item.ConceptCodeSequence[0])
            elif concept in _MEASUREMENT_METHOD and item.get("ConceptCodeSequence"):
                meta["MeasurementMethodCode"] = code_to_json(item.ConceptCodeSequence[0])
            elif concept in _MODEL_FITTING and item.get("ConceptCodeSequence"):
                meta["ModelFittingMethodCode"] = code_to_json(item.ConceptCodeSequence[0])
            elif concept in _DIFFUSION_B_VALUE:
                value = item.get("NumericValue")
                if value is None and item.get("MeasuredValueSequence"):
                    value = item.MeasuredValueSequence[0].get("NumericValue")
                if value not in (None, ""):
                    meta.setdefault("SourceImageDiffusionBValues", []).append(_format_decimal(float(value)))
    # The first frame with a Derivation Image: with one reference image, frame 1 may have none.
    frame_count = int(dataset.get("NumberOfFrames", 1) or 1)
    derivation = next(
        (item for item in (frame_item(dataset, f, "DerivationImageSequence") for f in range(frame_count)) if item is not None),
        None,
    )
    meta["DerivationDescription"] = ""
    if derivation is not None:
        if derivation.get("DerivationCodeSequence"):
            meta["DerivationCode"] = code_to_json(derivation.DerivationCodeSequence[0])
        if derivation.get("DerivationDescription"):
            meta["DerivationDescription"] = str(derivation.DerivationDescription)
    frame_type = frame_item(dataset, 0, "ParametricMapFrameTypeSequence")
    image_type = list(frame_type.FrameType) if frame_type is not None and frame_type.get("FrameType") else list(dataset.get("ImageType", []))
    if len(image_type) >= 4 and image_type[3]:
        meta["DerivedPixelContrast"] = str(image_type[3])
    anatomy = frame_item(dataset, 0, "FrameAnatomySequence")
    if anatomy is not None:
        if anatomy.get("AnatomicRegionSequence"):
            meta["AnatomicRegionSequence"] = code_to_json(anatomy.AnatomicRegionSequence[0])
        if anatomy.get("FrameLaterality"):
            meta["FrameLaterality"] = str(anatomy.FrameLaterality)
    for required in ("QuantityValueCode", "MeasurementUnitsCode", "DerivationCode", "AnatomicRegionSequence", "FrameLaterality"):
        if required not in meta:
            warnings.append(
                f"{label}: has no {required}; the metadata lacks it and must be completed before "
                "the map is written again"
            )
    return meta


#: ``--outputType`` values and the image format written: dcmqi's paramap2itkimage writes
#: gzipped NIfTI (``pmap.nii.gz``) for both "nii" and "nifti".
OUTPUT_TYPES = {"nrrd": "nrrd", "nii": "nii.gz", "nifti": "nii.gz", "nii.gz": "nii.gz"}


def parametric_map_to_files(
    source: Source, prefix: str = "", output_type: str = "nrrd", name: str | None = None
) -> tuple[list[ExportedFile], list[str]]:
    """What ``paramap2itkimage`` writes: ``<prefix>-pmap.<ext>`` and ``<prefix>-meta.json``
    (``pmap.<ext>`` and ``meta.json`` without a prefix, as dcmqi names them), and warnings."""
    image_type = OUTPUT_TYPES.get(output_type)
    if image_type is None:
        raise InputError(f"output type '{output_type}' is not one of {', '.join(OUTPUT_TYPES)}")
    contents = read_parametric_map(source, name)
    stem = f"{prefix}-" if prefix else ""
    files = [
        ExportedFile(f"{stem}pmap{IMAGE_EXTENSIONS[image_type]}", volume_bytes(contents.volume, image_type)),
        ExportedFile(f"{stem}meta.json", (json.dumps(contents.metadata, indent=2) + "\n").encode()),
    ]
    return files, contents.warnings
