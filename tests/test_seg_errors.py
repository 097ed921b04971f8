"""Bad inputs to the SEG converter: each gets a clear message naming the file, field or JSON
path and what is wrong, through the library and through the command line."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import nibabel
import numpy as np
import pytest

import synthetic
from qidicom.cli import main
from qidicom.errors import GeometryError, InputError, MetadataError
from qidicom.readers import read_dicom_series, read_image
from qidicom.seg import segmentation_from_files
from test_seg import on_grid, seg_metadata, segment


@pytest.fixture
def case(tmp_path):
    """A valid set of inputs on disk, which each test breaks in one way."""
    datasets = synthetic.make_ct_series(slices=5)
    synthetic.write_series(datasets, tmp_path / "ct")
    shape = synthetic.grid_shape(datasets)
    labels = synthetic.sphere_labels(shape, [((10, 10, 2), 4, 1), ((30, 20, 3), 3, 2)])
    metadata = seg_metadata([segment(1, "Liver"), segment(2, "Spleen", "78961009", "Spleen")])
    (tmp_path / "meta.json").write_text(json.dumps(metadata))
    return {
        "dir": tmp_path,
        "datasets": datasets,
        "series": tmp_path / "ct",
        "labels": labels,
        "label_path": on_grid(datasets, labels, tmp_path, "labels.nii.gz"),
        "metadata": metadata,
        "metadata_path": tmp_path / "meta.json",
    }


def convert(case, **options):
    return segmentation_from_files([case["label_path"]], case["metadata_path"], case["series"], **options)


def test_truncated_dicom_file_is_named(case):
    victim = sorted(case["series"].iterdir())[2]
    victim.write_bytes(victim.read_bytes()[:1500])
    with pytest.raises(InputError, match=rf"{victim.name}: truncated or corrupt DICOM file \(pixel data has \d+ of the 2560 bytes"):
        convert(case)


def test_non_dicom_files_are_skipped_with_a_warning(case):
    (case["series"] / "notes.txt").write_text("not an image")
    (case["series"] / "sub").mkdir()
    (case["series"] / "sub" / "thumbnail.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    result = convert(case)
    assert "notes.txt: not a DICOM file, skipped" in result.warnings
    assert "sub/thumbnail.png: not a DICOM file, skipped" in result.warnings


def test_label_map_on_another_grid_says_what_differs(case):
    wrong = synthetic.series_affine(case["datasets"]).copy()
    wrong[:3, 0] *= 2  # double the column spacing
    path = on_grid(case["datasets"], case["labels"], case["dir"], "wrong.nii.gz", affine=wrong)
    with pytest.raises(GeometryError, match=r"wrong.nii.gz does not lie on the reference series' grid: voxel spacing differs \(image \(1.4, 0.8, 2.5\) mm, series \(0.7, 0.8, 2.5\) mm\)"):
        segmentation_from_files([path], case["metadata_path"], case["series"])


def test_rotated_label_map_says_orientation_differs(case):
    rotated = synthetic.series_affine(case["datasets"]).copy()
    angle = np.deg2rad(10)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    rotated[:3, :3] = rotation @ rotated[:3, :3]
    path = on_grid(case["datasets"], case["labels"], case["dir"], "rotated.nii.gz", affine=rotated)
    with pytest.raises(GeometryError, match="rotated.nii.gz does not lie on the reference series' grid: orientation differs"):
        segmentation_from_files([path], case["metadata_path"], case["series"])


def test_label_without_metadata_entry_is_an_error(case):
    labels = case["labels"].copy()
    labels[0:2, 0:2, 0] = 7
    path = on_grid(case["datasets"], labels, case["dir"], "extra.nii.gz")
    with pytest.raises(InputError, match=r"extra.nii.gz: label value\(s\) 7 have no entry in the metadata \(described: 1, 2\)"):
        segmentation_from_files([path], case["metadata_path"], case["series"])


def test_metadata_entry_whose_label_is_absent_is_a_warning(case):
    metadata = seg_metadata([segment(1, "Liver"), segment(2, "Spleen"), segment(3, "Kidney", "64033007", "Kidney")])
    result = segmentation_from_files([case["label_path"]], metadata, case["series"])
    assert any("labels.nii.gz: metadata describes labelID 3 ('Kidney') but no voxel has that value" in w for w in result.warnings)
    assert len(result.dataset.SegmentSequence) == 2


def test_invalid_json_gives_line_and_column(case):
    case["metadata_path"].write_text('{\n  "SeriesNumber": "300",\n  "segmentAttributes": [[}\n')
    with pytest.raises(MetadataError, match=r"meta.json: invalid JSON at line 3, column 26"):
        convert(case)


def test_schema_violations_are_all_listed_with_their_paths(case):
    metadata = case["metadata"]
    del metadata["segmentAttributes"][0][1]["SegmentedPropertyTypeCodeSequence"]["CodeValue"]
    metadata["segmentAttributes"][0][0]["SegmentAlgorithmType"] = "GUESSED"
    case["metadata_path"].write_text(json.dumps(metadata))
    with pytest.raises(MetadataError) as raised:
        convert(case)
    assert raised.value.problems == [
        "segmentAttributes[0][0].SegmentAlgorithmType: 'GUESSED' is not one of ['MANUAL', 'SEMIAUTOMATIC', 'AUTOMATIC']",
        "segmentAttributes[0][1].SegmentedPropertyTypeCodeSequence: 'CodeValue' is a required property",
    ]
    assert "meta.json" in str(raised.value)


def test_validation_comes_before_reading_any_image(case):
    case["metadata_path"].write_text(json.dumps({"segmentAttributes": []}))
    with pytest.raises(MetadataError, match=r"segmentAttributes"):
        segmentation_from_files([case["dir"] / "missing.nii.gz"], case["metadata_path"], case["series"])


def test_labelmap_with_overlapping_segments_fails(case):
    other = synthetic.sphere_labels(synthetic.grid_shape(case["datasets"]), [((11, 10, 2), 4, 1)])
    second = on_grid(case["datasets"], other, case["dir"], "second.nii.gz")
    metadata = seg_metadata(case["metadata"]["segmentAttributes"][0], [segment(1, "Tumour", "108369006", "Neoplasm")])
    with pytest.raises(InputError, match=r"segment 3 \('Tumour', label 1 of second.nii.gz\) overlaps segment 1 \('Liver'\) in \d+ voxel"):
        segmentation_from_files([case["label_path"], second], metadata, case["series"], segmentation_type="labelmap")


def test_empty_label_map_is_refused(case):
    path = on_grid(case["datasets"], np.zeros_like(case["labels"]), case["dir"], "empty.nii.gz")
    with pytest.raises(InputError, match=r"empty.nii.gz: the label map is empty \(all voxels are 0\)"):
        segmentation_from_files([path], case["metadata_path"], case["series"])


def test_series_with_a_missing_slice_is_refused(case):
    middle = next(p for p in case["series"].iterdir() if "-45" in str(read_dicom_series([p]).datasets[0].ImagePositionPatient[2]))
    middle.unlink()
    with pytest.raises(GeometryError, match=r"uneven slice spacing between \S+ and \S+: 5 mm where the series spacing is 2.5 mm \(1 slice missing\?\)"):
        convert(case)


def test_duplicate_slices_are_refused(case):
    first = sorted(case["series"].iterdir())[0]
    copy = read_dicom_series([first]).datasets[0]
    dataset = case["datasets"][[d.SOPInstanceUID for d in case["datasets"]].index(copy.SOPInstanceUID)]
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.5.6"
    dataset.save_as(case["series"] / "copy.dcm", enforce_file_format=True)
    with pytest.raises(GeometryError, match="lie at the same position .*duplicate slices"):
        convert(case)


def test_two_series_in_one_folder(case):
    other = synthetic.make_ct_series(slices=5, columns=24, series_description="Other series",
                                     study_uid=case["datasets"][0].StudyInstanceUID)
    synthetic.write_series(other, case["series"] / "other")
    # The label map matches the first series: that one is chosen.
    result = convert(case)
    assert result.dataset.ReferencedSeriesSequence[0].SeriesInstanceUID == case["datasets"][0].SeriesInstanceUID
    # A label map matching neither: the error lists both candidates.
    misfit = on_grid(case["datasets"], case["labels"][:, :, :3], case["dir"], "misfit.nii.gz",
                     affine=np.diag([0.5, 0.5, 1.0, 1.0]))
    with pytest.raises(InputError, match=r"hold 2 series and none of them matches the grid of misfit.nii.gz: series .*'Synthetic CT', 40x32, 5 slices.*'Other series', 24x32, 5 slices"):
        segmentation_from_files([misfit], case["metadata_path"], case["series"])


def test_nifti_with_a_fourth_dimension_is_refused(case):
    four_d = np.stack([case["labels"], case["labels"]], axis=-1)
    image = nibabel.Nifti1Image(four_d, np.eye(4))
    nibabel.save(image, str(case["dir"] / "timeseries.nii.gz"))
    with pytest.raises(InputError, match=r"timeseries.nii.gz: has 4 dimensions \(shape 40x32x5x2\); one 3-D volume is needed"):
        segmentation_from_files([case["dir"] / "timeseries.nii.gz"], case["metadata_path"], case["series"])


def test_fewer_metadata_groups_than_files(case):
    with pytest.raises(InputError, match=r"segmentAttributes has 1 group\(s\) but 2 input image\(s\) were given"):
        segmentation_from_files([case["label_path"], case["label_path"]], case["metadata_path"], case["series"])


def test_corrupt_label_map(case):
    broken = case["dir"] / "broken.nrrd"
    broken.write_bytes(b"NRRD0004\ntype: short\ndimension: 3\nsizes: 4 4 4\nencoding: raw\n\n" + bytes(10))
    with pytest.raises(InputError, match="broken.nrrd: "):
        segmentation_from_files([broken], case["metadata_path"], case["series"])


# --------------------------------------------------------------------------- command line


def cli(*args: str) -> int:
    return main([str(a) for a in args])


def test_cli_error_is_one_line_and_leaves_no_output(case, capsys):
    output = case["dir"] / "out.dcm"
    labels = case["labels"].copy()
    labels[0, 0, 0] = 9
    bad = on_grid(case["datasets"], labels, case["dir"], "bad.nii.gz")
    code = cli("itkimage2segimage", "--inputImageList", bad, "--inputDICOMDirectory", case["series"],
               "--inputMetadata", case["metadata_path"], "--outputDICOM", output)
    captured = capsys.readouterr()
    assert code == 1
    assert captured.err.strip().splitlines() == [
        "error: bad.nii.gz: label value(s) 9 have no entry in the metadata (described: 1, 2)"
    ]
    assert "Traceback" not in captured.err
    assert not output.exists()
    assert not list(case["dir"].glob(".out.dcm*"))


def test_cli_metadata_problems_are_all_printed(case, capsys):
    case["metadata_path"].write_text(json.dumps({"segmentAttributes": [[{"labelID": "one"}]]}))
    code = cli("itkimage2segimage", "--inputImageList", case["label_path"], "--inputDICOMList",
               ",".join(str(p) for p in case["series"].iterdir()), "--inputMetadata", case["metadata_path"],
               "--outputDICOM", case["dir"] / "out.dcm")
    err = capsys.readouterr().err
    assert code == 1
    assert "segmentAttributes[0][0].labelID: 'one' is not of type 'integer'" in err
    assert "segmentAttributes[0][0]: 'SegmentAlgorithmType' is a required property" in err


def test_cli_missing_input_file(case, capsys):
    code = cli("itkimage2segimage", "--inputImageList", case["dir"] / "nope.nii.gz", "--inputDICOMDirectory",
               case["series"], "--inputMetadata", case["metadata_path"], "--outputDICOM", case["dir"] / "o.dcm")
    assert code == 1
    assert capsys.readouterr().err.strip() == f"error: {case['dir'] / 'nope.nii.gz'}: file not found"


def test_cli_segimage2itkimage_on_a_non_seg(case, capsys):
    some_ct = next(case["series"].iterdir())
    code = cli("segimage2itkimage", "--inputDICOM", some_ct, "--outputDirectory", case["dir"] / "out")
    assert code == 1
    assert "not a DICOM Segmentation (Modality is 'CT')" in capsys.readouterr().err
    assert not (case["dir"] / "out").exists() or not any((case["dir"] / "out").iterdir())


def test_cli_round_trip_like_dcmqi(case, tmp_path, capsys):
    seg = tmp_path / "liver.dcm"
    assert cli("itkimage2segimage", "--inputImageList", case["label_path"], "--inputDICOMDirectory", case["series"],
               "--inputMetadata", case["metadata_path"], "--outputDICOM", seg, "--compress", "deflate") == 0
    assert cli("segimage2itkimage", "--inputDICOM", seg, "--outputDirectory", tmp_path / "out", "--prefix", "liver",
               "--outputType", "nifti") == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["liver-1.nii.gz", "liver-2.nii.gz", "liver-meta.json"]
    spleen = read_image(tmp_path / "out" / "liver-2.nii.gz")
    assert np.array_equal(spleen.array == 2, case["labels"] == 2)
    meta = json.loads((tmp_path / "out" / "liver-meta.json").read_text())
    assert meta["segmentAttributes"][1][0]["SegmentLabel"] == "Spleen"


def test_cli_help_lists_dcmqi_options(capsys):
    with pytest.raises(SystemExit):
        cli("itkimage2segimage", "--help")
    text = capsys.readouterr().out
    for option in ("--inputImageList", "--inputDICOMDirectory", "--inputDICOMList", "--inputMetadata", "--outputDICOM",
                   "--skip", "--useLabelIDAsSegmentNumber", "--segmentationType", "--compress", "--referencesGeometryCheck"):
        assert option in text


def test_cli_installed_entry_point_runs():
    # pip puts the console script beside the interpreter; the virtual environment's bin
    # folder need not be on PATH (tests/run.sh calls .venv/bin/python directly).
    beside = Path(sys.executable).with_name("qidicom")
    command = str(beside) if beside.exists() else shutil.which("qidicom")
    if command is None:
        pytest.skip("the qidicom console script is not installed in this environment")
    import subprocess

    result = subprocess.run([command, "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("qidicom ")


def test_cli_output_gets_ordinary_file_permissions(case, tmp_path):
    import os

    old = os.umask(0o022)
    try:
        assert cli("itkimage2segimage", "--inputImageList", case["label_path"], "--inputDICOMDirectory", case["series"],
                   "--inputMetadata", case["metadata_path"], "--outputDICOM", tmp_path / "seg.dcm") == 0
    finally:
        os.umask(old)
    assert (tmp_path / "seg.dcm").stat().st_mode & 0o777 == 0o644


def test_orientation_text_rounded_differently_per_slice_is_accepted(tmp_path):
    """Scanners round the last digit of ImageOrientationPatient differently per slice."""
    datasets = synthetic.make_ct_series(slices=4)
    datasets[2].ImageOrientationPatient = ["1", "0", "0", "0", "0.99999999", "0"]
    synthetic.write_series(datasets, tmp_path / "ct")
    labels = synthetic.sphere_labels(synthetic.grid_shape(datasets), [((10, 10, 2), 3, 1)])
    path = on_grid(datasets, labels, tmp_path)
    result = segmentation_from_files([path], seg_metadata([segment(1, "Lesion")]), tmp_path / "ct")
    assert len(result.dataset.SegmentSequence) == 1


def test_cli_segimage2itkimage_names_files_like_dcmqi_without_a_prefix(case, tmp_path):
    seg = tmp_path / "s.dcm"
    assert cli("itkimage2segimage", "--inputImageList", case["label_path"], "--inputDICOMDirectory", case["series"],
               "--inputMetadata", case["metadata_path"], "--outputDICOM", seg) == 0
    assert cli("segimage2itkimage", "--inputDICOM", seg, "--outputDirectory", tmp_path / "out", "-t", "nii") == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["1.nii.gz", "2.nii.gz", "meta.json"]


def test_written_files_stay_readable_under_pyodides_umask(tmp_path):
    """Pyodide starts with umask 0o777; files must still be readable by their owner."""
    import os

    from qidicom.writers import write_file_atomically

    old = os.umask(0o777)
    try:
        write_file_atomically(tmp_path / "out.json", b"{}")
    finally:
        os.umask(old)
    assert (tmp_path / "out.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "out.json").read_bytes() == b"{}"
