"""qidicom.samples: the phantom study is deterministic, self-consistent, and every part of it
converts with qidicom (library and command line) into DICOM that dciodvfy accepts."""

from __future__ import annotations

import dataclasses
import gzip
import os
import subprocess
import sys

import nibabel
import numpy as np
import pydicom
import pytest

from conftest import dciodvfy_errors
from qidicom import metadata
from qidicom.pm import parametric_map_from_files, read_parametric_map
from qidicom.readers import read_dicom_series, read_image
from qidicom.samples import make_sample_study, write_sample_study
from qidicom.seg import read_segmentation, segmentation_from_files
from qidicom.sr import read_report, report_from_files


@pytest.fixture(scope="module")
def study():
    return make_sample_study()


@pytest.fixture(scope="module")
def written(study, tmp_path_factory):
    return write_sample_study(tmp_path_factory.mktemp("sample"), study)


def uids_of(files: list[tuple[str, bytes]]) -> set[str]:
    return {str(pydicom.dcmread(pydicom.filebase.DicomBytesIO(data)).SOPInstanceUID) for _, data in files}


def test_same_arguments_give_the_same_bytes(study):
    again = make_sample_study()
    for field in dataclasses.fields(study):
        assert getattr(again, field.name) == getattr(study, field.name), field.name


DIGEST = """
import hashlib, json
from qidicom.samples import make_sample_study
study = make_sample_study()
digest = hashlib.sha256()
for name, data in study.ct_series + study.mr_series + [study.ct_labels, study.adc_map]:
    digest.update(name.encode() + data)
for document in (study.seg_metadata, study.pm_metadata, study.sr_metadata):
    digest.update(json.dumps(document).encode())
print(digest.hexdigest())
"""


def test_another_process_makes_the_same_bytes():
    # Another interpreter with another hash seed: nothing may depend on set or dict order.
    runs = [
        subprocess.run([sys.executable, "-c", DIGEST], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": seed}).stdout
        for seed in ("1", "2")
    ]
    assert runs[0] == runs[1] and len(runs[0].strip()) == 64


def test_other_seeds_and_patients_give_distinct_studies(study):
    other_seed = make_sample_study(seed=1)
    other_patient = make_sample_study(patient_id="QIDICOM-PHANTOM-002")
    for other in (other_seed, other_patient):
        assert not uids_of(other.ct_series) & uids_of(study.ct_series)
        assert not uids_of(other.mr_series) & uids_of(study.mr_series)
    # Another seed draws other noise on the same anatomy.
    assert other_seed.ct_labels == study.ct_labels
    assert other_seed.ct_series[0][1] != study.ct_series[0][1]
    patient = pydicom.dcmread(pydicom.filebase.DicomBytesIO(other_patient.ct_series[0][1]))
    assert patient.PatientID == "QIDICOM-PHANTOM-002"


def test_the_study_has_the_promised_parts(study):
    assert [name for name, _ in study.ct_series] == [f"ct/ct-{n:03d}.dcm" for n in range(1, 25)]
    assert 150_000 < sum(len(data) for _, data in study.ct_series) < 600_000
    first_ct = pydicom.dcmread(pydicom.filebase.DicomBytesIO(study.ct_series[0][1]))
    first_mr = pydicom.dcmread(pydicom.filebase.DicomBytesIO(study.mr_series[0][1]))
    assert (first_ct.Modality, first_mr.Modality) == ("CT", "MR")
    assert (first_ct.Rows, first_ct.Columns) == (64, 64)
    assert first_ct.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    # One patient and study, two series.
    assert first_ct.StudyInstanceUID == first_mr.StudyInstanceUID
    assert first_ct.PatientID == first_mr.PatientID == "QIDICOM-PHANTOM-001"
    assert first_ct.SeriesInstanceUID != first_mr.SeriesInstanceUID
    for kind, document in (("seg", study.seg_metadata), ("pm", study.pm_metadata), ("sr", study.sr_metadata)):
        assert metadata.validate(document, kind) == [], kind
    assert study.sr_metadata["compositeContext"] == ["seg.dcm"]
    assert study.sr_metadata["imageLibrary"] == [name.split("/")[-1] for name, _ in study.ct_series]
    assert study.pm_metadata["MeasurementUnitsCode"]["CodeValue"] == "um2/s"


def test_label_map_lies_on_the_ct_grid_and_holds_the_organs(study):
    labels = read_image(study.ct_labels)
    series = read_dicom_series(study.ct_series)
    assert labels.array.shape == series.shape
    np.testing.assert_allclose(labels.affine, series.affine, atol=1e-4)
    # nibabel, an independent NIfTI reader, agrees with the hand-written header.
    image = nibabel.Nifti1Image.from_bytes(gzip.decompress(study.ct_labels[1]))
    assert image.header["sform_code"] == image.header["qform_code"] == 1
    np.testing.assert_allclose(image.get_qform(), image.get_sform(), atol=1e-4)
    np.testing.assert_array_equal(np.asarray(image.dataobj), labels.array)
    described = {s["labelID"]: s for s in study.seg_metadata["segmentAttributes"][0]}
    assert set(np.unique(labels.array)) - {0} == set(described) == {1, 2, 3, 4, 5, 6}
    assert described[1]["SegmentedPropertyTypeCodeSequence"]["CodeValue"] == "10200004"
    assert described[3]["SegmentedPropertyTypeModifierCodeSequence"]["CodeMeaning"] == "Left"
    assert described[4]["SegmentedPropertyTypeModifierCodeSequence"]["CodeMeaning"] == "Right"
    # The liver is on the patient's right (LPS x < 0), the spleen on the left.
    centre_x = {label: (labels.affine @ np.r_[np.argwhere(labels.array == label).mean(0), 1])[0] for label in (1, 2)}
    assert centre_x[1] < 0 < centre_x[2]


def test_source_series_pass_dciodvfy(written):
    for path in (sorted(written["ct"].iterdir())[0], sorted(written["mr"].iterdir())[0]):
        assert dciodvfy_errors(path) == [], path


def test_seg_converts_and_reads_back_voxel_exact(study, tmp_path):
    result = segmentation_from_files([study.ct_labels], study.seg_metadata, study.ct_series)
    assert result.warnings == []
    path = tmp_path / "seg.dcm"
    path.write_bytes(result.data)
    assert dciodvfy_errors(path) == []
    labels = read_image(study.ct_labels).array
    contents = read_segmentation(path)
    assert [segment.number for segment in contents.segments] == [1, 2, 3, 4, 5, 6]
    for segment in contents.segments:
        np.testing.assert_array_equal(segment.array, labels == segment.number)
    assert contents.segments[0].attributes["recommendedDisplayRGBValue"] == [221, 130, 101]


def test_pm_converts_and_reads_back_the_map(study, tmp_path):
    result = parametric_map_from_files(study.adc_map, study.pm_metadata, study.mr_series)
    assert result.warnings == []
    path = tmp_path / "pm.dcm"
    path.write_bytes(result.data)
    assert dciodvfy_errors(path) == []
    expected = read_image(study.adc_map)
    assert expected.array.dtype == np.float32
    back = read_parametric_map(path)
    np.testing.assert_allclose(back.volume.array, expected.array, rtol=1e-6)
    np.testing.assert_allclose(back.volume.affine, expected.affine, atol=1e-4)
    assert back.metadata["QuantityValueCode"]["CodeValue"] == "113041"


def test_sr_measures_the_segments_it_references(study, written, tmp_path):
    result = report_from_files(written["sr_metadata"], written["ct"], written["seg"].parent)
    assert result.warnings == []
    path = tmp_path / "sr.dcm"
    path.write_bytes(result.data)
    assert dciodvfy_errors(path) == []
    report = read_report(path).metadata
    seg = pydicom.dcmread(written["seg"], stop_before_pixels=True)
    assert report["compositeContext"] == [seg.SOPInstanceUID]
    # Volumes recomputed here from the label map and the CT's own geometry.
    labels = read_image(study.ct_labels)
    voxel_mm3 = abs(np.linalg.det(labels.affine[:3, :3]))
    for number, group in enumerate(report["Measurements"], start=1):
        assert group["ReferencedSegment"] == number
        volume = next(item for item in group["measurementItems"] if item["quantity"]["CodeValue"] == "118565006")
        assert float(volume["value"]) == pytest.approx(np.count_nonzero(labels.array == number) * voxel_mm3, rel=1e-5)


def test_cli_converts_the_written_sample(written):
    root = written["ct"].parent
    commands = [
        ["itkimage2paramap", "--inputImage", written["adc_map"], "--inputDICOMDirectory", written["mr"],
         "--inputMetadata", written["pm_metadata"], "--outputDICOM", root / "pm.dcm"],
        ["itkimage2segimage", "--inputImageList", written["ct_labels"], "--inputDICOMDirectory", written["ct"],
         "--inputMetadata", written["seg_metadata"], "--outputDICOM", root / "seg-cli.dcm"],
        ["tid1500writer", "--inputMetadata", written["sr_metadata"], "--inputImageLibraryDirectory", written["ct"],
         "--inputCompositeContextDirectory", root, "--outputDICOM", root / "sr.dcm"],
    ]
    for command in commands:
        run = subprocess.run([sys.executable, "-m", "qidicom", *map(str, command)], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
    for name in ("pm.dcm", "seg-cli.dcm", "sr.dcm"):
        assert dciodvfy_errors(root / name) == [], name


def test_other_grid_sizes_convert(tmp_path):
    small = make_sample_study(rows=32, columns=48, slices=9, seed=3)
    assert read_image(small.ct_labels).array.shape == (48, 32, 9)
    assert segmentation_from_files([small.ct_labels], small.seg_metadata, small.ct_series).data
    assert parametric_map_from_files(small.adc_map, small.pm_metadata, small.mr_series).data


def test_making_a_study_needs_only_numpy_and_pydicom():
    # The browser app makes the sample in Pyodide: the readers' libraries must not be needed.
    code = (
        "import sys\n"
        "for name in ('nibabel', 'nrrd', 'highdicom', 'jsonschema'): sys.modules[name] = None\n"
        "from qidicom.samples import make_sample_study\n"
        "study = make_sample_study(rows=16, columns=16, slices=4)\n"
        "print(len(study.ct_series))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "4"
