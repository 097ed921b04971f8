"""The "load sample" data when the dcmqi sample (../shared) is not beside the checkout.

A user's machine has no ../shared, and the dcmqi files are not ours to commit, so the build
writes a small stand-in instead: a 3-slice CT-like series, a matching NRRD label map and a
metadata document, made with numpy and pydicom. When even those are missing the page simply
offers no sample.
"""

from __future__ import annotations

import json
from pathlib import Path

ROWS = COLUMNS = 64
SLICES = 3
SPACING = (0.8, 0.8, 2.5)  # mm: row, column, slice


def write_synthetic_sample(sample_dir: Path) -> dict:
    try:
        import numpy as np
        from pydicom.dataset import FileMetaDataset, Dataset
        from pydicom.uid import ExplicitVRLittleEndian, generate_uid, CTImageStorage
    except ImportError:
        return {"source": None, "series": [], "labelmap": [], "metadata": []}

    series_dir = sample_dir / "synthetic-ct"
    series_dir.mkdir()
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    yy, xx = np.mgrid[0:ROWS, 0:COLUMNS]
    disc = (yy - ROWS / 2) ** 2 + (xx - COLUMNS / 2) ** 2
    names = []
    for index in range(SLICES):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Synthetic^Phantom", "QIDICOM-SAMPLE", "", "O"
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240101", "120000", "1", ""
        ds.ReferringPhysicianName = ""
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 1, index + 1
        ds.SeriesDescription = "Synthetic phantom (qidicom sample)"
        ds.Manufacturer = "qidicom"
        ds.ImagePositionPatient = [0.0, 0.0, index * SPACING[2]]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [SPACING[0], SPACING[1]]
        ds.SliceThickness = SPACING[2]
        ds.Rows, ds.Columns = ROWS, COLUMNS
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        pixels = np.where(disc < (ROWS / 3) ** 2, 1064, 24).astype(np.int16)
        ds.PixelData = pixels.tobytes()
        name = f"{index + 1:02d}.dcm"
        ds.save_as(series_dir / name, enforce_file_format=True)
        names.append(f"{series_dir.name}/{name}")

    # Label 1 on the middle slice's central disc, axes ordered (column, row, slice) as NRRD stores them.
    labels = np.zeros((SLICES, ROWS, COLUMNS), np.uint8)
    labels[1][disc < (ROWS / 6) ** 2] = 1
    header = (
        "NRRD0004\ntype: unsigned char\ndimension: 3\nspace: left-posterior-superior\n"
        f"sizes: {COLUMNS} {ROWS} {SLICES}\n"
        f"space directions: ({SPACING[1]},0,0) (0,{SPACING[0]},0) (0,0,{SPACING[2]})\n"
        "kinds: domain domain domain\nendian: little\nencoding: raw\nspace origin: (0,0,0)\n\n"
    )
    (sample_dir / "phantom_seg.nrrd").write_bytes(header.encode() + labels.tobytes())

    metadata = {
        "ContentCreatorName": "qidicom sample",
        "ClinicalTrialSeriesID": "Session1",
        "ClinicalTrialTimePointID": "1",
        "SeriesDescription": "Segmentation",
        "SeriesNumber": "300",
        "InstanceNumber": "1",
        "BodyPartExamined": "",
        "segmentAttributes": [[{
            "labelID": 1,
            "SegmentDescription": "Phantom core",
            "SegmentAlgorithmType": "MANUAL",
            "SegmentedPropertyCategoryCodeSequence": {
                "CodeValue": "91723000", "CodingSchemeDesignator": "SCT", "CodeMeaning": "Anatomical Structure"},
            "SegmentedPropertyTypeCodeSequence": {
                "CodeValue": "85756007", "CodingSchemeDesignator": "SCT", "CodeMeaning": "Tissue"},
            "recommendedDisplayRGBValue": [221, 130, 101],
        }]],
        "ContentLabel": "SEGMENTATION",
        "ContentDescription": "Synthetic sample",
    }
    (sample_dir / "phantom-metadata.json").write_text(json.dumps(metadata, indent=2))
    return {
        "source": "synthetic phantom made by the build (no ../shared found)",
        "series": names, "labelmap": ["phantom_seg.nrrd"], "metadata": ["phantom-metadata.json"],
    }
