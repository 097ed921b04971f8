"""Synthetic inputs for tests and benchmarks: small CT series written with pydicom, and
label maps and parametric maps on their grid, saved as NIfTI or NRRD.

Geometry convention (same as qidicom.geometry): arrays are indexed [i, j, k] = [column,
row, slice] and a 4x4 affine maps (i, j, k, 1) to patient LPS millimetres.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Sequence

import nibabel
import nrrd
import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

RAS_FROM_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def make_ct_series(
    rows: int = 32,
    columns: int = 40,
    slices: int = 6,
    pixel_spacing: tuple[float, float] = (0.8, 0.7),
    slice_spacing: float = 2.5,
    origin: Sequence[float] = (-100.0, -120.0, -50.0),
    orientation: Sequence[float] = (1, 0, 0, 0, 1, 0),
    patient_name: str = "Synthetic^Phantom",
    patient_id: str = "QI0001",
    series_description: str = "Synthetic CT",
    study_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    modality: str = "CT",
    seed: int = 0,
) -> list[FileDataset]:
    """A single-frame CT series, one dataset per slice, slices stacked along the normal."""
    rng = np.random.default_rng(seed)
    study_uid = study_uid or generate_uid()
    series_uid = generate_uid()
    frame_of_reference_uid = frame_of_reference_uid or generate_uid()
    row_dir = np.asarray(orientation[:3], float)
    col_dir = np.asarray(orientation[3:], float)
    normal = np.cross(row_dir, col_dir)
    today = datetime.date(2024, 1, 2).strftime("%Y%m%d")
    datasets = []
    for index in range(slices):
        position = np.asarray(origin, float) + index * slice_spacing * normal
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.PatientName = patient_name
        ds.PatientID = patient_id
        ds.PatientBirthDate = "19700101"
        ds.PatientSex = "O"
        ds.StudyInstanceUID = study_uid
        ds.StudyDate = today
        ds.StudyTime = "120000"
        ds.StudyID = "1"
        ds.AccessionNumber = "A1"
        ds.ReferringPhysicianName = ""
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = 2
        ds.SeriesDescription = series_description
        ds.Modality = modality
        ds.Manufacturer = "qidicom-tests"
        ds.FrameOfReferenceUID = frame_of_reference_uid
        ds.PositionReferenceIndicator = ""
        ds.InstanceNumber = index + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [f"{v:.6g}" for v in position]
        ds.ImageOrientationPatient = [f"{v:.6g}" for v in orientation]
        ds.PixelSpacing = [f"{v:.6g}" for v in pixel_spacing]
        ds.SliceThickness = f"{slice_spacing:.6g}"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = rows
        ds.Columns = columns
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = "0"
        ds.RescaleSlope = "1"
        ds.KVP = "120"
        ds.AcquisitionNumber = 1
        pixels = rng.integers(-1000, 1000, size=(rows, columns), dtype=np.int16)
        ds.PixelData = pixels.tobytes()
        datasets.append(ds)
    return datasets


def write_series(datasets: Sequence[pydicom.Dataset], directory: Path, shuffle: bool = True) -> list[Path]:
    """Save datasets as files with names that do not follow slice order."""
    directory.mkdir(parents=True, exist_ok=True)
    order = list(range(len(datasets)))
    if shuffle:
        np.random.default_rng(1).shuffle(order)
    paths = []
    for name_index, ds_index in enumerate(order):
        path = directory / f"IM{name_index:04d}.dcm"
        datasets[ds_index].save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def series_affine(datasets: Sequence[pydicom.Dataset]) -> np.ndarray:
    """The LPS affine of a series made by make_ct_series (first dataset is the first slice)."""
    first, second = datasets[0], datasets[1] if len(datasets) > 1 else None
    iop = np.asarray(first.ImageOrientationPatient, float)
    row_spacing, column_spacing = (float(v) for v in first.PixelSpacing)
    affine = np.eye(4)
    affine[:3, 0] = iop[:3] * column_spacing
    affine[:3, 1] = iop[3:] * row_spacing
    if second is not None:
        affine[:3, 2] = np.asarray(second.ImagePositionPatient, float) - np.asarray(first.ImagePositionPatient, float)
    else:
        affine[:3, 2] = np.cross(iop[:3], iop[3:]) * float(first.SliceThickness)
    affine[:3, 3] = np.asarray(first.ImagePositionPatient, float)
    return affine


def grid_shape(datasets: Sequence[pydicom.Dataset]) -> tuple[int, int, int]:
    return (int(datasets[0].Columns), int(datasets[0].Rows), len(datasets))


def sphere_labels(
    shape: tuple[int, int, int],
    spheres: Sequence[tuple[tuple[float, float, float], float, int]],
    dtype=np.uint16,
) -> np.ndarray:
    """A label map [i, j, k] with each (centre voxel, radius in voxels, label) drawn in order."""
    grid = np.ogrid[: shape[0], : shape[1], : shape[2]]
    labels = np.zeros(shape, dtype)
    for centre, radius, label in spheres:
        distance2 = sum((axis - c) ** 2 for axis, c in zip(grid, centre))
        labels[distance2 <= radius**2] = label
    return labels


def ten_sphere_labels(shape: tuple[int, int, int]) -> np.ndarray:
    """The benchmark label map: ten non-overlapping spheres, labels 1..10."""
    i, j, k = shape
    spheres = []
    for n in range(10):
        centre = ((0.2 + 0.6 * (n % 5) / 4) * i, (0.3 + 0.4 * (n // 5)) * j, (0.2 + 0.06 * n) * k)
        radius = min(i, j) * 0.08
        spheres.append((centre, radius, n + 1))
    return sphere_labels(shape, spheres)


def save_nifti(array: np.ndarray, affine_lps: np.ndarray, path: Path) -> Path:
    """Save [i, j, k] data as NIfTI; NIfTI's world space is RAS, so the affine is flipped."""
    image = nibabel.Nifti1Image(array, RAS_FROM_LPS @ affine_lps)
    image.set_qform(RAS_FROM_LPS @ affine_lps, code=1)
    image.set_sform(RAS_FROM_LPS @ affine_lps, code=1)
    nibabel.save(image, str(path))
    return path


def save_nrrd(array: np.ndarray, affine_lps: np.ndarray, path: Path) -> Path:
    header = {
        "space": "left-posterior-superior",
        "space directions": affine_lps[:3, :3].T,
        "space origin": affine_lps[:3, 3],
        "kinds": ["domain", "domain", "domain"],
        "encoding": "gzip",
    }
    nrrd.write(str(path), array, header)
    return path


#: highdicom's UID root for the UIDs it makes while writing (SOP instance, series, ...).
WRITTEN_UID_ROOT = "1.2.826.0.1.3680043.10.511.3."


def written_alike(dataset: pydicom.Dataset) -> bytes:
    """The file, with the UIDs and time stamps made while writing replaced in order of
    appearance (the same UID in two places stays the same): two writes of the same object
    then compare byte for byte."""
    import copy

    from qidicom.dicom_encoding import write_part10

    dataset = copy.deepcopy(dataset)
    replaced: dict[str, str] = {}

    def walk(items: pydicom.Dataset) -> None:
        for element in items:
            if element.VR == "SQ":
                for item in element.value:
                    walk(item)
            elif element.VR in ("DA", "DT", "TM"):
                element.value = {"DA": "20000101", "DT": "20000101000000", "TM": "000000"}[element.VR]
            elif element.VR == "UI" and str(element.value).startswith(WRITTEN_UID_ROOT):
                element.value = replaced.setdefault(str(element.value), f"2.25.{len(replaced) + 1}")

    walk(dataset.file_meta)
    walk(dataset)
    return write_part10(dataset)
