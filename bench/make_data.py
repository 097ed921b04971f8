#!/usr/bin/env python3
"""Generate (once) the benchmark inputs under bench/work/ (gitignored).

    python3 bench/make_data.py [--work DIR] [--force] [--only seg|pm]

Writes:
  seg/ct/            synthetic 512x512x200 CT series (tests/synthetic.py make_ct_series)
  seg/labels.nii.gz  ten spheres, labels 1..10, on the CT grid (NIfTI, RAS affine)
  seg/labels.nrrd    the same label map as NRRD (LPS)
  seg/seg-meta.json  dcmqi-style seg metadata for the 10 labels (real SNOMED CT codes)
  pm/mr/             synthetic 256x256x200 MR-like series
  pm/map.nii.gz      float32 map on that grid (ADC-like values, m2/s)
  pm/map.nrrd        the same as NRRD
  pm/pm-meta.json    pm metadata (shape of dcmqi's pm-example-float.json)
  pm-example/dcm/    the 20-slice MR series of ../shared/data/dcmqi/paramaps (unzipped)
  pm-example/pm-example.nrrd, pm-example/pm-example.json  (copied)
A stamp file per data set records the parameters, so a second run does nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO / "tests"))

import synthetic  # noqa: E402  (tests/synthetic.py, the shared generator)

SHARED = Path("/work/shared")
for candidate in (REPO.parent / "shared", SHARED):
    if (candidate / "data" / "dcmqi").is_dir():
        SHARED = candidate
        break
PARAMAPS = SHARED / "data" / "dcmqi" / "paramaps"
DCMQI_EXAMPLES = SHARED / "reference" / "dcmqi" / "examples"

SEG_GRID = dict(rows=512, columns=512, slices=200)
PM_GRID = dict(rows=256, columns=256, slices=200)
DATA_VERSION = 1  # bump when the generated data changes

# Ten structures from dcmqi's segContexts/SegmentationCategoryTypeModifier-SlicerGeneralAnatomy.json
# (category "Anatomical Structure", SCT 123037004), with their recommended display colours.
STRUCTURES = [
    ("Liver", "10200004", [221, 130, 101]),
    ("Spleen", "78961009", [157, 108, 162]),
    ("Aorta", "15825003", [224, 97, 76]),
    ("Bladder", "89837001", [222, 154, 132]),
    ("Colon", "71854001", [204, 168, 143]),
    ("Esophagus", "32849002", [211, 171, 143]),
    ("Gallbladder", "28231008", [139, 150, 98]),
    ("Duodenum", "38848004", [255, 253, 229]),
    ("Rib", "113197003", [253, 232, 158]),
    ("Bile Duct", "28273000", [0, 145, 30]),
]


def seg_metadata() -> dict:
    segments = []
    for label, (name, code, rgb) in enumerate(STRUCTURES, start=1):
        segments.append(
            {
                "labelID": label,
                "SegmentDescription": f"Synthetic sphere {label}",
                "SegmentLabel": name,
                "SegmentedPropertyCategoryCodeSequence": {
                    "CodeValue": "123037004",
                    "CodingSchemeDesignator": "SCT",
                    "CodeMeaning": "Anatomical Structure",
                },
                "SegmentedPropertyTypeCodeSequence": {
                    "CodeValue": code,
                    "CodingSchemeDesignator": "SCT",
                    "CodeMeaning": name,
                },
                "SegmentAlgorithmType": "MANUAL",
                "recommendedDisplayRGBValue": rgb,
            }
        )
    return {
        "@schema": "https://raw.githubusercontent.com/qiicr/dcmqi/master/doc/schemas/seg-schema.json#",
        "ContentCreatorName": "Bench^Qidicom",
        "ClinicalTrialSeriesID": "Session1",
        "ClinicalTrialTimePointID": "1",
        "ClinicalTrialCoordinatingCenterName": "Bench",
        "SeriesDescription": "Ten spheres",
        "SeriesNumber": "300",
        "InstanceNumber": "1",
        "segmentAttributes": [segments],
    }


def pm_metadata() -> dict:
    return {
        "@schema": "https://raw.githubusercontent.com/qiicr/dcmqi/master/doc/schemas/pm-schema.json#",
        "SeriesDescription": "Apparent Diffusion Coefficient",
        "SeriesNumber": "701",
        "InstanceNumber": "1",
        "BodyPartExamined": "PROSTATE",
        "QuantityValueCode": {"CodeValue": "113041", "CodingSchemeDesignator": "DCM", "CodeMeaning": "Apparent Diffusion Coefficient"},
        "DerivationCode": {"CodeValue": "113041", "CodingSchemeDesignator": "DCM", "CodeMeaning": "Apparent Diffusion Coefficient"},
        "MeasurementUnitsCode": {"CodeValue": "m2/s", "CodingSchemeDesignator": "UCUM", "CodeMeaning": "m2/s"},
        "MeasurementMethodCode": {"CodeValue": "113250", "CodingSchemeDesignator": "DCM", "CodeMeaning": "Mono-exponential diffusion model"},
        "SourceImageDiffusionBValues": ["0", "1400"],
        "AnatomicRegionSequence": {"CodeValue": "41216001", "CodingSchemeDesignator": "SCT", "CodeMeaning": "Prostate"},
        "FrameLaterality": "U",
        "RealWorldValueSlope": "1",
    }


def _stamp_ok(directory: Path, params: dict) -> bool:
    stamp = directory / "stamp.json"
    return stamp.is_file() and json.loads(stamp.read_text()) == params


def _write_stamp(directory: Path, params: dict) -> None:
    (directory / "stamp.json").write_text(json.dumps(params, indent=1) + "\n")


def _as_mr(datasets):
    """Turn make_ct_series' CT datasets into MR Image Storage datasets (MR-like series)."""
    from pydicom.uid import MRImageStorage

    for ds in datasets:
        ds.SOPClassUID = MRImageStorage
        ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
        ds.Modality = "MR"
        for keyword in ("KVP", "RescaleIntercept", "RescaleSlope"):
            if keyword in ds:
                delattr(ds, keyword)
        ds.ScanningSequence = "SE"
        ds.SequenceVariant = "NONE"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "2D"
        ds.RepetitionTime = "4000"
        ds.EchoTime = "80"
        ds.EchoTrainLength = "1"
        ds.MagneticFieldStrength = "3"
        ds.PixelRepresentation = 0
        ds.PixelData = (np.frombuffer(ds.PixelData, np.int16).astype(np.int32) + 1000).astype(np.uint16).tobytes()
    return datasets


def make_seg(work: Path, force: bool) -> None:
    out = work / "seg"
    params = {"version": DATA_VERSION, **SEG_GRID}
    if not force and _stamp_ok(out, params):
        print(f"seg data cached in {out}")
        return
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    print(f"writing {SEG_GRID['rows']}x{SEG_GRID['columns']}x{SEG_GRID['slices']} CT series ...", flush=True)
    datasets = synthetic.make_ct_series(
        **SEG_GRID,
        pixel_spacing=(0.8, 0.8),
        slice_spacing=1.5,
        origin=(-204.8, -204.8, -150.0),
        series_description="Synthetic CT 512x512x200",
        patient_id="QIBENCH1",
    )
    affine = synthetic.series_affine(datasets)
    shape = synthetic.grid_shape(datasets)
    synthetic.write_series(datasets, out / "ct")
    del datasets
    labels = synthetic.ten_sphere_labels(shape)
    counts = {int(v): int(c) for v, c in zip(*np.unique(labels, return_counts=True)) if v}
    synthetic.save_nifti(labels, affine, out / "labels.nii.gz")
    synthetic.save_nrrd(labels, affine, out / "labels.nrrd")
    (out / "seg-meta.json").write_text(json.dumps(seg_metadata(), indent=2) + "\n")
    (out / "labels-info.json").write_text(
        json.dumps({"shape": list(shape), "dtype": str(labels.dtype), "voxels_per_label": counts,
                    "affine_lps": affine.tolist()}, indent=1) + "\n")
    _write_stamp(out, params)
    print(f"seg data written to {out}: labels {sorted(counts)}")


def make_pm(work: Path, force: bool) -> None:
    out = work / "pm"
    params = {"version": DATA_VERSION, **PM_GRID}
    if not force and _stamp_ok(out, params):
        print(f"pm data cached in {out}")
    else:
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        print(f"writing {PM_GRID['rows']}x{PM_GRID['columns']}x{PM_GRID['slices']} MR-like series ...", flush=True)
        datasets = _as_mr(synthetic.make_ct_series(
            **PM_GRID,
            pixel_spacing=(0.9, 0.9),
            slice_spacing=1.0,
            origin=(-115.2, -115.2, -100.0),
            series_description="Synthetic MR 256x256x200",
            patient_id="QIBENCH2",
            seed=2,
        ))
        affine = synthetic.series_affine(datasets)
        shape = synthetic.grid_shape(datasets)
        synthetic.write_series(datasets, out / "mr")
        del datasets
        # ADC-like float32 map: smooth background + a few blobs + noise, in m2/s.
        rng = np.random.default_rng(3)
        i, j, k = np.ogrid[: shape[0], : shape[1], : shape[2]]
        adc = 0.8e-3 + 0.4e-3 * np.sin(i / 23.0) * np.cos(j / 31.0) + 0.2e-3 * np.cos(k / 17.0)
        for n in range(6):
            c = (shape[0] * (0.2 + 0.12 * n), shape[1] * (0.3 + 0.08 * n), shape[2] * (0.15 + 0.13 * n))
            r2 = ((i - c[0]) ** 2 + (j - c[1]) ** 2 + (k - c[2]) ** 2) / (0.07 * shape[0]) ** 2
            adc = adc + 1.5e-3 * np.exp(-r2)
        adc = (adc + rng.normal(0, 0.05e-3, shape)).astype(np.float32)
        synthetic.save_nifti(adc, affine, out / "map.nii.gz")
        synthetic.save_nrrd(adc, affine, out / "map.nrrd")
        (out / "pm-meta.json").write_text(json.dumps(pm_metadata(), indent=2) + "\n")
        _write_stamp(out, params)
        print(f"pm data written to {out}")

    example = work / "pm-example"
    params = {"version": DATA_VERSION, "source": str(PARAMAPS)}
    if not force and _stamp_ok(example, params):
        print(f"pm example cached in {example}")
        return
    if example.exists():
        shutil.rmtree(example)
    (example / "dcm").mkdir(parents=True)
    with zipfile.ZipFile(PARAMAPS / "pm-example-dcm.zip") as archive:
        archive.extractall(example / "dcm")
    shutil.copyfile(PARAMAPS / "pm-example.nrrd", example / "pm-example.nrrd")
    shutil.copyfile(DCMQI_EXAMPLES / "pm-example.json", example / "pm-example.json")
    _write_stamp(example, params)
    print(f"pm example unpacked to {example}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=BENCH / "work")
    parser.add_argument("--force", action="store_true", help="regenerate even if cached")
    parser.add_argument("--only", choices=["seg", "pm"])
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.only in (None, "seg"):
        make_seg(args.work, args.force)
    if args.only in (None, "pm"):
        make_pm(args.work, args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
