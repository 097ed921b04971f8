"""Shared fixtures: the dcmqi sample data, synthetic series, and DICOM conformance checks."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))

SHARED = TESTS.parents[1] / "shared"
DCMQI_DATA = SHARED / "data" / "dcmqi"
DCMQI_EXAMPLES = SHARED / "reference" / "dcmqi" / "examples"


@pytest.fixture(scope="session")
def shared() -> Path:
    if not DCMQI_DATA.is_dir():
        pytest.skip(f"the shared sample data is not at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def liver_sample(shared):
    """dcmqi's 3-slice CT, its liver label map, metadata, and the SEG dcmqi made from them."""
    segmentations = shared / "data" / "dcmqi" / "segmentations"
    return {
        "series": segmentations / "ct-3slice",
        "labels": segmentations / "liver_seg.nrrd",
        "metadata": shared / "reference" / "dcmqi" / "examples" / "seg-example.json",
        "dcmqi_seg": segmentations / "liver.dcm",
    }


def dciodvfy_errors(path: Path, tmp_dir: Path | None = None) -> list[str]:
    """dciodvfy's error lines for a file.

    Debian's dicom3tools cannot read the Deflated transfer syntax, so a deflated file is
    first inflated by DCMTK's dcmconv (an independent reader, and the toolkit dcmqi uses).
    """
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed")
    syntax = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
    if syntax == pydicom.uid.DeflatedExplicitVRLittleEndian:
        if shutil.which("dcmconv") is None:
            pytest.skip("dcmconv (Debian package dcmtk) is needed to inflate deflated files for dciodvfy")
        inflated = (tmp_dir or path.parent) / (path.stem + "-inflated.dcm")
        subprocess.run(["dcmconv", "+te", str(path), str(inflated)], check=True, capture_output=True)
        path = inflated
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    lines = (result.stdout + result.stderr).splitlines()
    return [line for line in lines if line.startswith("Error")]


UNKNOWN_IOD = "Error - Information Object Not found"


@pytest.fixture
def synthetic_ct(tmp_path):
    """A small synthetic CT series on disk, and its datasets (sorted)."""
    import synthetic

    datasets = synthetic.make_ct_series()
    directory = tmp_path / "ct"
    synthetic.write_series(datasets, directory)
    return directory, datasets
