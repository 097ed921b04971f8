"""A deterministic phantom study to try every conversion on: no download, no real patient.

``make_sample_study()`` draws a small abdomen (liver, spleen, kidneys, spine, aorta) as a
CT-like series, its label map with dcmqi-style seg metadata, an MR-like series of the same
patient with an ADC-like map and its pm metadata, and an sr metadata document measuring
every segment. Everything is made with numpy and pydicom only, so the browser app (Pyodide)
makes it on demand, and tests, notebooks and benchmarks share one source of sample data.

The same arguments give the same bytes: UIDs come from ``generate_uid(entropy_srcs=...)``
over the arguments, dates are fixed, noise comes from ``numpy.random.default_rng(seed)``,
and gzip streams carry no timestamp.

Geometry follows qidicom.geometry: arrays are indexed [i, j, k] = [column, row, slice] and
the affine maps (i, j, k, 1) to patient LPS millimetres.
"""

from __future__ import annotations

import gzip
import io
import os
import pathlib
import struct
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

__all__ = ["SampleStudy", "make_sample_study", "write_sample_study", "ORGANS"]


@dataclass(frozen=True)
class SampleStudy:
    """One phantom study as named file contents and metadata documents."""

    ct_series: list[tuple[str, bytes]]
    ct_labels: tuple[str, bytes]
    seg_metadata: dict
    mr_series: list[tuple[str, bytes]]
    adc_map: tuple[str, bytes]
    pm_metadata: dict
    sr_metadata: dict


@dataclass(frozen=True)
class _Organ:
    label: int
    name: str
    property_type: Code  # PS3.16 CID 7151
    laterality: Code | None  # CID 244, for paired organs
    rgb: tuple[int, int, int]
    hu: float  # CT number inside the organ
    adc: float  # apparent diffusion coefficient, um2/s


# Label values, names and codes (SCT codes of DICOM CID 7151 "Segmentation Property Types",
# category CID 7150 "Anatomical Structure"; laterality from CID 244). Colours are the usual
# display colours of these structures in 3D Slicer's terminology.
ORGANS: tuple[_Organ, ...] = (
    _Organ(1, "Liver", codes.SCT.Liver, None, (221, 130, 101), 60.0, 1100.0),
    _Organ(2, "Spleen", codes.SCT.Spleen, None, (157, 108, 162), 50.0, 800.0),
    _Organ(3, "Left kidney", codes.SCT.Kidney, codes.SCT.Left, (185, 102, 83), 150.0, 2000.0),
    _Organ(4, "Right kidney", codes.SCT.Kidney, codes.SCT.Right, (185, 102, 83), 150.0, 2000.0),
    _Organ(5, "Spine", codes.SCT.Spine, None, (241, 214, 145), 400.0, 450.0),
    _Organ(6, "Aorta", codes.SCT.Aorta, None, (224, 97, 76), 200.0, 3000.0),
)

_BODY_HU, _AIR_HU = 20.0, -1000.0
_BODY_ADC = 1500.0
# The phantom's extent in mm: a 400 mm field of view across, 240 mm from foot to head,
# whatever the grid, so a finer grid draws the same anatomy in more voxels.
_FIELD_OF_VIEW_MM = 400.0
_HEIGHT_MM = 240.0
_STUDY_DATE, _STUDY_TIME = "20240102", "093000"


def _code(code: Code) -> dict:
    return {"CodeValue": code.value, "CodingSchemeDesignator": code.scheme_designator, "CodeMeaning": code.meaning}


class _Uids:
    """Deterministic UIDs: the same study arguments and role always give the same UID."""

    def __init__(self, *study_args: object) -> None:
        self._sources = [repr(arg) for arg in study_args]

    def __call__(self, *role: object) -> str:
        return generate_uid(entropy_srcs=[*self._sources, *map(repr, role)])


# --------------------------------------------------------------------------- anatomy


def _grid(columns: int, rows: int, slices: int) -> tuple[np.ndarray, float, float]:
    """The LPS affine of an axial grid covering the phantom, and its pixel and slice spacing."""
    pixel = _FIELD_OF_VIEW_MM / max(rows, columns)
    spacing = _HEIGHT_MM / slices
    affine = np.diag([pixel, pixel, spacing, 1.0])
    # Voxel centres symmetric about the isocentre.
    affine[:3, 3] = [-(columns - 1) * pixel / 2, -(rows - 1) * pixel / 2, -(slices - 1) * spacing / 2]
    return affine, pixel, spacing


def _labels(affine: np.ndarray, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The label map [i, j, k] (organs as ellipsoids and cylinders in mm) and the body mask."""
    i, j, k = (np.arange(n, dtype=np.float64) for n in shape)
    x = (affine[0, 3] + affine[0, 0] * i)[:, None, None]
    y = (affine[1, 3] + affine[1, 1] * j)[None, :, None]
    z = (affine[2, 3] + affine[2, 2] * k)[None, None, :]

    def ellipsoid(cx, cy, cz, ax, ay, az):
        return ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 + ((z - cz) / az) ** 2 <= 1.0

    def column(cx, cy, radius):  # the whole height of the grid
        return np.broadcast_to((x - cx) ** 2 + (y - cy) ** 2 <= radius**2, shape)

    # LPS: +x is the patient's left, +y posterior, +z head.
    shapes = {
        1: ellipsoid(-70, -10, 40, 75, 65, 70),  # liver: right, anterior to the right kidney
        2: ellipsoid(95, 45, 50, 28, 32, 45),  # spleen: left, posterior
        3: ellipsoid(60, 62, -25, 20, 26, 48),  # left kidney
        4: ellipsoid(-60, 62, -35, 20, 26, 48),  # right kidney, lower than the left
        5: column(0, 92, 18),  # spine
        6: column(14, 50, 13),  # aorta: left-anterior of the spine
    }
    labels = np.zeros(shape, np.uint8)
    for organ in ORGANS:
        labels[shapes[organ.label]] = organ.label
    body = np.broadcast_to((x / 175.0) ** 2 + (y / 135.0) ** 2 <= 1.0, shape)
    # Organs lie inside the body; anything drawn outside it is cut away.
    labels[~body] = 0
    return labels, body


def _values(labels: np.ndarray, body: np.ndarray, inside: dict[int, float], body_value: float, outside: float) -> np.ndarray:
    values = np.where(body, body_value, outside)
    for label, value in inside.items():
        values[labels == label] = value
    return values


# --------------------------------------------------------------------------- DICOM


def _slice_dataset(
    *,
    sop_class: str,
    sop_instance: str,
    common: dict,
    position: Sequence[float],
    pixel: float,
    spacing: float,
    number: int,
    pixels: np.ndarray,
) -> FileDataset:
    """One single-frame image: the study/series attributes in ``common`` plus this slice's own."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_instance
    for keyword, value in common.items():
        setattr(ds, keyword, value)
    ds.InstanceNumber = number
    ds.ContentDate = _STUDY_DATE
    ds.ContentTime = _STUDY_TIME
    ds.ImagePositionPatient = [f"{v:.6g}" for v in position]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [f"{pixel:.6g}", f"{pixel:.6g}"]
    ds.SliceThickness = f"{spacing:.6g}"
    ds.SliceLocation = f"{position[2]:.6g}"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    ds.PixelData = np.ascontiguousarray(pixels).astype(pixels.dtype.newbyteorder("<")).tobytes()
    return ds


def _common(uids: _Uids, patient_id: str, patient_name: str, modality: str, series: str, series_number: int, description: str, frame_of_reference: str) -> dict:
    return {
        "PatientName": patient_name,
        "PatientID": patient_id,
        "PatientBirthDate": "19700101",
        "PatientSex": "O",
        "StudyInstanceUID": uids("study"),
        "StudyDate": _STUDY_DATE,
        "StudyTime": _STUDY_TIME,
        "StudyID": "1",
        "AccessionNumber": "QIDICOM1",
        "ReferringPhysicianName": "",
        "StudyDescription": "qidicom phantom abdomen",
        "SeriesInstanceUID": series,
        "SeriesNumber": series_number,
        "SeriesDescription": description,
        "SeriesDate": _STUDY_DATE,
        "SeriesTime": _STUDY_TIME,
        "Modality": modality,
        "BodyPartExamined": "ABDOMEN",
        "PatientPosition": "HFS",
        "Manufacturer": "qidicom",
        "ManufacturerModelName": "qidicom.samples phantom",
        "FrameOfReferenceUID": frame_of_reference,
        "PositionReferenceIndicator": "",
        "AcquisitionNumber": 1,
        "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"],
    }


def _file_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def _series(volume: np.ndarray, affine: np.ndarray, pixel: float, spacing: float, common: dict, sop_class: str, extra: dict, uids: _Uids, prefix: str) -> list[tuple[str, bytes]]:
    files = []
    for k in range(volume.shape[2]):
        position = affine[:3, 3] + k * affine[:3, 2]
        ds = _slice_dataset(
            sop_class=sop_class,
            sop_instance=uids(prefix, "instance", k),
            common=common,
            position=position,
            pixel=pixel,
            spacing=spacing,
            number=k + 1,
            # Rows are j and columns i: a DICOM frame is the [i, j] plane transposed.
            pixels=volume[:, :, k].T,
        )
        for keyword, value in extra.items():
            setattr(ds, keyword, value)
        files.append((f"{prefix}/{prefix}-{k + 1:03d}.dcm", _file_bytes(ds)))
    return files


# --------------------------------------------------------------------------- images


def _nifti_bytes(array: np.ndarray, affine_lps: np.ndarray) -> bytes:
    """A gzipped NIfTI-1 file (RAS world, q- and s-form set), written with struct: no nibabel.

    Only axis-aligned affines occur here, so the quaternion is the one for a diagonal
    rotation; the s-form carries the full matrix either way.
    """
    datatypes = {np.dtype(np.uint8): (2, 8), np.dtype(np.int16): (4, 16), np.dtype(np.float32): (16, 32)}
    code, bitpix = datatypes[array.dtype]
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine_lps
    spacing = np.linalg.norm(ras[:3, :3], axis=0)
    rotation = ras[:3, :3] / spacing
    if not np.allclose(np.abs(rotation), np.eye(3)):
        raise ValueError("only axis-aligned sample grids are written")
    qfac = 1.0
    if np.linalg.det(rotation) < 0:
        qfac, rotation = -1.0, rotation @ np.diag([1.0, 1.0, -1.0])
    # Quaternion (b, c, d) of a diagonal rotation with entries +-1.
    signs = tuple(int(round(v)) for v in np.diag(rotation))
    quaternion = {(1, 1, 1): (0, 0, 0), (1, -1, -1): (1, 0, 0), (-1, 1, -1): (0, 1, 0), (-1, -1, 1): (0, 0, 1)}[signs]
    header = bytearray(352)
    struct.pack_into("<i", header, 0, 348)
    struct.pack_into("<8h", header, 40, 3, *array.shape, 1, 1, 1, 1)
    struct.pack_into("<hh", header, 70, code, bitpix)
    struct.pack_into("<8f", header, 76, qfac, *spacing, 0, 0, 0, 0)
    struct.pack_into("<fff", header, 108, 352.0, 1.0, 0.0)  # vox_offset, scl_slope, scl_inter
    header[123] = 2  # xyzt_units: millimetres
    struct.pack_into("<hh", header, 252, 1, 1)  # qform_code, sform_code: scanner anatomical
    struct.pack_into("<6f", header, 256, *quaternion, *ras[:3, 3])
    struct.pack_into("<12f", header, 280, *ras[0], *ras[1], *ras[2])
    header[344:348] = b"n+1\0"
    data = bytes(header) + np.asarray(array).astype(array.dtype.newbyteorder("<")).tobytes(order="F")
    return gzip.compress(data, compresslevel=6, mtime=0)


def _nrrd_bytes(array: np.ndarray, affine_lps: np.ndarray) -> bytes:
    """A gzip-encoded NRRD in LPS space, written by hand: no pynrrd."""
    types = {np.dtype(np.float32): "float", np.dtype(np.uint8): "uint8", np.dtype(np.int16): "short"}
    directions = " ".join("(" + ",".join(f"{v:.10g}" for v in affine_lps[:3, n]) + ")" for n in range(3))
    origin = "(" + ",".join(f"{v:.10g}" for v in affine_lps[:3, 3]) + ")"
    header = (
        "NRRD0004\n"
        "# qidicom.samples phantom\n"
        f"type: {types[array.dtype]}\n"
        "dimension: 3\n"
        "space: left-posterior-superior\n"
        f"sizes: {' '.join(map(str, array.shape))}\n"
        f"space directions: {directions}\n"
        "kinds: domain domain domain\n"
        "endian: little\n"
        "encoding: gzip\n"
        f"space origin: {origin}\n"
        "\n"
    )
    raw = np.asarray(array).astype(array.dtype.newbyteorder("<")).tobytes(order="F")
    return header.encode("ascii") + gzip.compress(raw, compresslevel=6, mtime=0)


# --------------------------------------------------------------------------- metadata


def _seg_metadata(uids: _Uids, present: Sequence[_Organ]) -> dict:
    segments = []
    for organ in present:
        segment = {
            "labelID": organ.label,
            "SegmentLabel": organ.name,
            "SegmentDescription": f"{organ.name} of the qidicom phantom",
            "SegmentAlgorithmType": "AUTOMATIC",
            "SegmentAlgorithmName": "qidicom.samples phantom",
            "SegmentedPropertyCategoryCodeSequence": _code(codes.SCT.AnatomicalStructure),
            "SegmentedPropertyTypeCodeSequence": _code(organ.property_type),
        }
        if organ.laterality is not None:
            segment["SegmentedPropertyTypeModifierCodeSequence"] = _code(organ.laterality)
        segment["recommendedDisplayRGBValue"] = list(organ.rgb)
        segment["TrackingIdentifier"] = organ.name
        segment["TrackingUniqueIdentifier"] = uids("tracking", organ.label)
        segments.append(segment)
    return {
        "@schema": "https://raw.githubusercontent.com/qiicr/dcmqi/master/doc/schemas/seg-schema.json#",
        "ContentCreatorName": "Phantom^Generator",
        "ClinicalTrialSeriesID": "Session1",
        "ClinicalTrialTimePointID": "1",
        "ClinicalTrialCoordinatingCenterName": "qidicom",
        "SeriesDescription": "Organ segmentation",
        "SeriesNumber": "300",
        "InstanceNumber": "1",
        "BodyPartExamined": "ABDOMEN",
        "segmentAttributes": [segments],
    }


def _pm_metadata() -> dict:
    return {
        "@schema": "https://raw.githubusercontent.com/qiicr/dcmqi/master/doc/schemas/pm-schema.json#",
        "SeriesDescription": "Apparent Diffusion Coefficient",
        "SeriesNumber": "701",
        "InstanceNumber": "1",
        "BodyPartExamined": "ABDOMEN",
        "QuantityValueCode": _code(codes.DCM.ApparentDiffusionCoefficient),
        "DerivationCode": _code(codes.DCM.ApparentDiffusionCoefficient),
        "MeasurementUnitsCode": _code(codes.UCUM.SquareMicrometerPerSecond),
        "MeasurementMethodCode": _code(codes.DCM.MonoExponentialDiffusionModel),
        "SourceImageDiffusionBValues": ["0", "800"],
        "AnatomicRegionSequence": _code(codes.SCT.Abdomen),
        "FrameLaterality": "U",
        "RealWorldValueSlope": "1",
    }


def _number(value: float) -> str:
    return f"{value:.6g}"


def _sr_metadata(uids: _Uids, present: Sequence[_Organ], labels: np.ndarray, hu: np.ndarray, voxel_mm3: float, ct_series_uid: str, image_library: list[str]) -> dict:
    hounsfield = {"quantity": _code(codes.DCM.AttenuationCoefficient), "units": _code(codes.UCUM.HounsfieldUnit)}
    groups = []
    for number, organ in enumerate(present, start=1):
        inside = labels == organ.label
        values = hu[inside].astype(np.float64)
        volume_mm3 = float(inside.sum()) * voxel_mm3
        group = {
            "TrackingIdentifier": organ.name,
            "TrackingUniqueIdentifier": uids("sr-group", organ.label),
            "ReferencedSegment": number,
            "SourceSeriesForImageSegmentation": ct_series_uid,
            "Finding": _code(codes.SCT.Organ),
            "FindingSite": _code(organ.property_type),
        }
        if organ.laterality is not None:
            group["Laterality"] = _code(organ.laterality)
        group["measurementAlgorithmIdentification"] = {
            "AlgorithmName": "qidicom.samples voxel statistics",
            "AlgorithmVersion": "1",
        }
        group["measurementItems"] = [
            {"value": _number(volume_mm3), "quantity": _code(codes.SCT.Volume), "units": _code(codes.UCUM.CubicMillimeter)},
            {"value": _number(values.mean()), **hounsfield, "derivationModifier": _code(codes.SCT.Mean)},
            {"value": _number(values.std()), **hounsfield, "derivationModifier": _code(codes.SCT.StandardDeviation)},
            {"value": _number(values.min()), **hounsfield, "derivationModifier": _code(codes.SCT.Minimum)},
            {"value": _number(values.max()), **hounsfield, "derivationModifier": _code(codes.SCT.Maximum)},
        ]
        groups.append(group)
    return {
        "@schema": "https://raw.githubusercontent.com/qiicr/dcmqi/master/doc/schemas/sr-tid1500-schema.json#",
        "SeriesDescription": "Organ measurements",
        "SeriesNumber": "1001",
        "InstanceNumber": "1",
        "compositeContext": ["seg.dcm"],
        "imageLibrary": image_library,
        "observerContext": {
            "ObserverType": "DEVICE",
            "DeviceObserverName": "qidicom.samples",
            "DeviceObserverManufacturer": "qidicom",
            "DeviceObserverUID": uids("observer"),
        },
        "VerificationFlag": "UNVERIFIED",
        "CompletionFlag": "COMPLETE",
        "activitySession": "1",
        "timePoint": "1",
        "Measurements": groups,
    }


# --------------------------------------------------------------------------- the study


def make_sample_study(
    *,
    rows: int = 64,
    columns: int = 64,
    slices: int = 24,
    seed: int = 0,
    patient_id: str = "QIDICOM-PHANTOM-001",
    patient_name: str = "Phantom^Sample",
) -> SampleStudy:
    """Make the phantom study in memory; the same arguments always give the same bytes.

    The CT grid is ``columns`` x ``rows`` x ``slices``; the MR grid has half the in-plane
    and slice resolution over the same field of view (at least 2 voxels along each axis).
    ``seed`` changes the image noise; every argument changes the UIDs, so studies made
    with different arguments can sit side by side in one archive.
    """
    if min(rows, columns) < 8 or slices < 2:
        raise ValueError("the phantom needs at least 8 x 8 pixels and 2 slices")
    uids = _Uids("qidicom.samples", 1, rows, columns, slices, seed, patient_id, patient_name)
    rng = np.random.default_rng(seed)

    # CT: organs at their CT numbers, with noise, stored as signed 16-bit Hounsfield units.
    shape = (columns, rows, slices)
    ct_affine, ct_pixel, ct_spacing = _grid(columns, rows, slices)
    labels, body = _labels(ct_affine, shape)
    hu = _values(labels, body, {o.label: o.hu for o in ORGANS}, _BODY_HU, _AIR_HU)
    hu = np.clip(np.rint(hu + rng.normal(0.0, 12.0, shape)), -1024, 3071).astype(np.int16)
    ct_series_uid = uids("ct-series")
    ct_common = _common(uids, patient_id, patient_name, "CT", ct_series_uid, 2, "Phantom CT abdomen", uids("ct-frame-of-reference"))
    ct_extra = {"RescaleIntercept": "0", "RescaleSlope": "1", "RescaleType": "HU", "KVP": "120",
                "WindowCenter": "40", "WindowWidth": "400"}
    ct_series = _series(hu, ct_affine, ct_pixel, ct_spacing, ct_common, CTImageStorage, ct_extra, uids, "ct")

    present = [organ for organ in ORGANS if np.any(labels == organ.label)]
    ct_labels = ("ct-labels.nii.gz", _nifti_bytes(labels, ct_affine))
    seg_metadata = _seg_metadata(uids, present)

    # MR: a diffusion-weighted-looking series (b = 0 signal) on a coarser grid, and the ADC
    # map on that grid, in um2/s as float32.
    mr_shape = (max(columns // 2, 2), max(rows // 2, 2), max(slices // 2, 2))
    mr_affine, mr_pixel, mr_spacing = _grid(*mr_shape)
    mr_labels, mr_body = _labels(mr_affine, mr_shape)
    adc = _values(mr_labels, mr_body, {o.label: o.adc for o in ORGANS}, _BODY_ADC, 0.0)
    adc = np.where(mr_body, np.clip(adc + rng.normal(0.0, 40.0, mr_shape), 0.0, None), 0.0).astype(np.float32)
    # T2-like b=0 signal: fluid-rich tissue (high ADC) is brighter.
    signal = np.where(mr_body, 200.0 + 0.25 * adc + rng.normal(0.0, 8.0, mr_shape), 0.0)
    signal = np.clip(np.rint(signal), 0, 4095).astype(np.uint16)
    mr_common = _common(uids, patient_id, patient_name, "MR", uids("mr-series"), 7, "Phantom DWI b0", uids("mr-frame-of-reference"))
    mr_extra = {
        "ScanningSequence": ["SE", "EP"],
        "SequenceVariant": ["SK", "SP"],
        "ScanOptions": "",
        "MRAcquisitionType": "2D",
        "RepetitionTime": "4000",
        "EchoTime": "70",
        "EchoTrainLength": "1",
        "MagneticFieldStrength": "1.5",
        "ImagingFrequency": "63.9",
        "ImagedNucleus": "1H",
        "SpacingBetweenSlices": f"{mr_spacing:.6g}",
        "ImageType": ["ORIGINAL", "PRIMARY", "OTHER"],
        "WindowCenter": "600",
        "WindowWidth": "1200",
    }
    mr_series = _series(signal, mr_affine, mr_pixel, mr_spacing, mr_common, MRImageStorage, mr_extra, uids, "mr")
    adc_map = ("adc.nrrd", _nrrd_bytes(adc, mr_affine))

    voxel_mm3 = ct_pixel * ct_pixel * ct_spacing
    image_library = [name.rsplit("/", 1)[-1] for name, _ in ct_series]
    sr_metadata = _sr_metadata(uids, present, labels, hu, voxel_mm3, ct_series_uid, image_library)
    return SampleStudy(ct_series, ct_labels, seg_metadata, mr_series, adc_map, _pm_metadata(), sr_metadata)


def write_sample_study(
    directory: str | os.PathLike, study: SampleStudy | None = None, *, with_seg: bool = True
) -> dict[str, pathlib.Path]:
    """Write a sample study (the default one unless given) into ``directory``.

    Writes ct/, ct-labels.nii.gz, seg.json, mr/, adc.nrrd, pm.json, sr.json and, with
    ``with_seg``, seg.dcm made by qidicom's own SEG writer, so that sr.json's
    compositeContext resolves (and sr.json then names that SEG's SOP Instance UID in each
    measurement group, as dcmqi's writer requires). Returns the paths by role.
    """
    import json

    study = study or make_sample_study()
    root = pathlib.Path(directory)
    root.mkdir(parents=True, exist_ok=True)

    def write(name: str, data: bytes) -> pathlib.Path:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def write_json(name: str, document: dict) -> pathlib.Path:
        return write(name, (json.dumps(document, indent=2) + "\n").encode("utf-8"))

    for name, data in study.ct_series + study.mr_series:
        write(name, data)
    paths = {
        "ct": root / "ct",
        "ct_labels": write(*study.ct_labels),
        "seg_metadata": write_json("seg.json", study.seg_metadata),
        "mr": root / "mr",
        "adc_map": write(*study.adc_map),
        "pm_metadata": write_json("pm.json", study.pm_metadata),
        "sr_metadata": write_json("sr.json", study.sr_metadata),
    }
    if with_seg:
        from qidicom.seg import segmentation_from_files

        result = segmentation_from_files([study.ct_labels], study.seg_metadata, study.ct_series)
        paths["seg"] = write("seg.dcm", result.data)
        # dcmqi's tid1500writer needs the SEG's UID in every group (qidicom's finds the SEG
        # through compositeContext); the SEG's UID is new each time, so it is filled in here.
        report = json.loads(json.dumps(study.sr_metadata))
        for group in report["Measurements"]:
            group["segmentationSOPInstanceUID"] = str(result.dataset.SOPInstanceUID)
        write_json("sr.json", report)
    return paths
