"""Node smoke test of the built site: dist/'s own Pyodide and wheels convert the dcmqi sample
to a SEG equal to what the CPython library writes from the same files."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from conftest import dciodvfy_errors
from test_site_build import dist  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "tests" / "node" / "smoke.mjs"

pytestmark = pytest.mark.node


def cpython_segmentation(labelmap: Path, metadata: Path, series: list[Path], **options):
    from qidicom.seg import segmentation_from_files

    pair = lambda path: (path.name, path.read_bytes())  # noqa: E731
    return segmentation_from_files([pair(labelmap)], pair(metadata), [pair(p) for p in series], **options)


def frame_references(dataset) -> list[str]:
    return [
        str(frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
        for frame in dataset.PerFrameFunctionalGroupsSequence
    ]


def assert_same_segmentation(made: pydicom.Dataset, expected: pydicom.Dataset) -> None:
    """Same segments, same frames on the same source images, same pixels (UIDs and times differ)."""
    assert made.SOPClassUID == expected.SOPClassUID
    assert made.SegmentationType == expected.SegmentationType
    assert made.get("SegmentationFractionalType") == expected.get("SegmentationFractionalType")
    assert made.file_meta.TransferSyntaxUID == expected.file_meta.TransferSyntaxUID
    for made_segment, expected_segment in zip(made.SegmentSequence, expected.SegmentSequence, strict=True):
        assert made_segment.to_json_dict() == expected_segment.to_json_dict()
    assert frame_references(made) == frame_references(expected)
    assert np.array_equal(made.pixel_array, expected.pixel_array)
    assert made.PatientID == expected.PatientID
    assert made.StudyInstanceUID == expected.StudyInstanceUID


def test_node_converts_the_sample_with_the_built_site(dist, liver_sample, tmp_path):  # noqa: F811
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    series = sorted(liver_sample["series"].glob("*.dcm"))
    out = tmp_path / "node.dcm"
    result = subprocess.run(
        ["node", str(SMOKE), str(dist), str(out), str(liver_sample["labels"]), str(liver_sample["metadata"]),
         *map(str, series)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["progressSteps"] >= 3
    assert out.stat().st_size == report["bytes"]

    made = pydicom.dcmread(out)
    expected = cpython_segmentation(liver_sample["labels"], liver_sample["metadata"], series).dataset
    assert report["filename"].endswith(".dcm")
    assert_same_segmentation(made, expected)

    import highdicom

    segmentation = highdicom.seg.segread(out)
    assert segmentation.number_of_segments == len(expected.SegmentSequence)
    assert dciodvfy_errors(out) == []


def test_node_converts_a_nifti_label_map_with_the_built_site(dist, liver_sample, tmp_path):  # noqa: F811
    """The NIfTI path (nibabel under Pyodide) on a small synthetic series."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    import synthetic

    datasets = synthetic.make_ct_series(rows=32, columns=40, slices=6)
    series = synthetic.write_series(datasets, tmp_path / "ct")
    shape = synthetic.grid_shape(datasets)
    labels = synthetic.sphere_labels(shape, [((20, 16, 3), 6, 1)])
    labelmap = synthetic.save_nifti(labels, synthetic.series_affine(datasets), tmp_path / "labels.nii.gz")
    out = tmp_path / "node.dcm"
    result = subprocess.run(
        ["node", str(SMOKE), str(dist), str(out), str(labelmap), str(liver_sample["metadata"]), *map(str, series)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    expected = cpython_segmentation(labelmap, liver_sample["metadata"], series).dataset
    made = pydicom.dcmread(out)
    assert_same_segmentation(made, expected)
    assert made.pixel_array.any()
