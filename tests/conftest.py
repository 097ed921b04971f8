"""Shared fixtures: the dcmqi sample data, the generated phantom study, synthetic series, and
DICOM conformance checks.

``../shared`` (dcmqi's data and examples) is only on developers' machines. Set
``QIDICOM_HIDE_SHARED=1`` to run the suite as a fresh machine would: every path below then
points nowhere, the ``shared`` fixture skips, and only comparisons with dcmqi's own files
may skip; everything else runs on generated data (``qidicom.samples``, tests/synthetic.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))

#: True when the environment asks to behave as if ../shared were absent.
SHARED_HIDDEN = os.environ.get("QIDICOM_HIDE_SHARED", "").strip() not in ("", "0")
SHARED = TESTS.parents[1] / ("shared-hidden-by-QIDICOM_HIDE_SHARED" if SHARED_HIDDEN else "shared")
DCMQI_DATA = SHARED / "data" / "dcmqi"
DCMQI_EXAMPLES = SHARED / "reference" / "dcmqi" / "examples"


@pytest.fixture(scope="session")
def shared() -> Path:
    if SHARED_HIDDEN:
        pytest.skip("../shared is hidden (QIDICOM_HIDE_SHARED=1): this compares with dcmqi's own files")
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


@pytest.fixture(scope="session")
def sample_study():
    """qidicom.samples' phantom study, in memory: present on every machine."""
    from qidicom.samples import make_sample_study

    return make_sample_study()


@pytest.fixture(scope="session")
def sample_files(sample_study, tmp_path_factory) -> dict[str, Path]:
    """The phantom study on disk (ct/, mr/, ct-labels.nii.gz, adc.nrrd, seg/pm/sr JSON and
    seg.dcm made by qidicom), as ``write_sample_study`` returns it. Treat as read-only."""
    from qidicom.samples import write_sample_study

    return write_sample_study(tmp_path_factory.mktemp("phantom"), sample_study)


@pytest.fixture(scope="session", params=["phantom", "dcmqi-liver"])
def seg_sample(request) -> dict:
    """A CT series, its label map and seg metadata, and a binary SEG of them: the generated
    phantom (six organs; its SEG written by qidicom), then dcmqi's liver sample (its SEG
    written by dcmqi; skips without ../shared)."""
    if request.param == "dcmqi-liver":
        liver = request.getfixturevalue("liver_sample")
        return {**liver, "binary_seg": liver["dcmqi_seg"], "source": request.param}
    files = request.getfixturevalue("sample_files")
    return {
        "series": files["ct"],
        "labels": files["ct_labels"],
        "metadata": files["seg_metadata"],
        "binary_seg": files["seg"],
        "source": request.param,
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
