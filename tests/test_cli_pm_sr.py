"""The PM and SR subcommands, with dcmqi's long options: outputs, one-line errors, no partial files."""

from __future__ import annotations

import json

import numpy as np
import pytest

import synthetic
from conftest import DCMQI_EXAMPLES
from qidicom.cli import main
from qidicom.readers import read_image


@pytest.fixture
def mr_map(tmp_path):
    datasets = synthetic.make_ct_series(rows=10, columns=12, slices=4, modality="MR", seed=2)
    paths = synthetic.write_series(datasets, tmp_path / "mr")
    shape = synthetic.grid_shape(datasets)
    array = np.random.default_rng(3).random(shape).astype(np.float32)
    image = synthetic.save_nifti(array, synthetic.series_affine(datasets), tmp_path / "adc.nii.gz")
    metadata = tmp_path / "pm.json"
    metadata.write_text(json.dumps({
        "QuantityValueCode": {"CodeValue": "113041", "CodingSchemeDesignator": "DCM", "CodeMeaning": "Apparent Diffusion Coefficient"},
        "DerivationCode": {"CodeValue": "113041", "CodingSchemeDesignator": "DCM", "CodeMeaning": "Apparent Diffusion Coefficient"},
        "MeasurementUnitsCode": {"CodeValue": "mm2/s", "CodingSchemeDesignator": "UCUM", "CodeMeaning": "mm2/s"},
        "AnatomicRegionSequence": {"CodeValue": "41216001", "CodingSchemeDesignator": "SCT", "CodeMeaning": "Prostate"},
        "FrameLaterality": "U",
    }))
    return {"series": tmp_path / "mr", "files": paths, "image": image, "metadata": metadata, "array": array}


def test_itkimage2paramap_then_paramap2itkimage(mr_map, tmp_path, capsys):
    output = tmp_path / "pm.dcm"
    assert main(["itkimage2paramap", "--inputImage", str(mr_map["image"]), "--inputMetadata", str(mr_map["metadata"]),
                 "--inputDICOMDirectory", str(mr_map["series"]), "--outputDICOM", str(output)]) == 0
    assert main(["paramap2itkimage", "--inputDICOM", str(output), "--outputDirectory", str(tmp_path / "out"),
                 "--prefix", "adc", "--outputType", "nifti"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["adc-meta.json", "adc-pmap.nii.gz"]
    np.testing.assert_array_equal(read_image(tmp_path / "out" / "adc-pmap.nii.gz").array, mr_map["array"])
    assert json.loads((tmp_path / "out" / "adc-meta.json").read_text())["MeasurementUnitsCode"]["CodeValue"] == "mm2/s"
    assert capsys.readouterr().err == ""


def test_itkimage2paramap_with_a_file_list_deflate_and_float(mr_map, tmp_path):
    output = tmp_path / "pm.dcm"
    assert main(["itkimage2paramap", "--inputImage", str(mr_map["image"]), "--inputMetadata", str(mr_map["metadata"]),
                 "--inputDICOMList", ",".join(str(p) for p in mr_map["files"]), "--outputDICOM", str(output),
                 "--compress", "deflate", "--dataType", "float64"]) == 0
    assert main(["paramap2itkimage", "--inputDICOM", str(output), "--outputDirectory", str(tmp_path)]) == 0
    assert read_image(tmp_path / "pmap.nrrd").array.dtype == np.float64


def test_paramap_error_is_one_line_and_leaves_no_file(mr_map, tmp_path, capsys):
    output = tmp_path / "pm.dcm"
    wrong = synthetic.save_nifti(mr_map["array"][:, :, :2].copy(), np.diag([2.0, 2.0, 2.0, 1.0]), tmp_path / "wrong.nii.gz")
    assert main(["itkimage2paramap", "--inputImage", str(wrong), "--inputMetadata", str(mr_map["metadata"]),
                 "--inputDICOMDirectory", str(mr_map["series"]), "--outputDICOM", str(output)]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: wrong.nii.gz does not lie on the reference series' grid")
    assert not output.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["adc.nii.gz", "mr", "pm.json", "wrong.nii.gz"]


def test_tid1500writer_then_tid1500reader_on_the_phantom(sample_files, tmp_path, capsys):
    root = sample_files["seg"].parent
    output = tmp_path / "sr.dcm"
    assert main(["tid1500writer", "--inputMetadata", str(sample_files["sr_metadata"]), "--outputDICOM", str(output),
                 "--inputImageLibraryDirectory", str(sample_files["ct"]), "--inputCompositeContextDirectory", str(root)]) == 0
    assert main(["tid1500reader", "--inputDICOM", str(output), "--outputMetadata", str(tmp_path / "sr.json")]) == 0
    document = json.loads((tmp_path / "sr.json").read_text())
    given = json.loads(sample_files["sr_metadata"].read_text())
    assert [[item["value"] for item in group["measurementItems"]] for group in document["Measurements"]] == [
        [item["value"] for item in group["measurementItems"]] for group in given["Measurements"]]
    assert len(document["imageLibrary"]) == len(given["imageLibrary"])
    assert capsys.readouterr().err == ""


def test_tid1500writer_then_tid1500reader_on_dcmqis_example(shared, tmp_path, capsys):
    segmentations = shared / "data" / "dcmqi" / "segmentations"
    output = tmp_path / "sr.dcm"
    assert main(["tid1500writer", "--inputMetadata", str(DCMQI_EXAMPLES / "sr-tid1500-ct-liver-example.json"),
                 "--outputDICOM", str(output), "--inputImageLibraryDirectory", str(segmentations / "ct-3slice"),
                 "--inputCompositeContextDirectory", str(segmentations)]) == 0
    assert main(["tid1500reader", "--inputDICOM", str(output), "--outputMetadata", str(tmp_path / "sr.json")]) == 0
    document = json.loads((tmp_path / "sr.json").read_text())
    assert [item["value"] for item in document["Measurements"][0]["measurementItems"]] == [
        "37.3289", "-778", "221", "59.1691", "70361.9", "70.3619"]
    assert capsys.readouterr().err == ""


def test_tid1500writer_missing_file_is_one_line_and_leaves_no_file(sample_files, tmp_path, capsys):
    output = tmp_path / "sr.dcm"
    # The CT folder given as the composite context: seg.dcm is not in it.
    assert main(["tid1500writer", "--inputMetadata", str(sample_files["sr_metadata"]), "--outputDICOM", str(output),
                 "--inputImageLibraryDirectory", str(sample_files["ct"]),
                 "--inputCompositeContextDirectory", str(sample_files["ct"])]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert error == ["error: compositeContext[0]: 'seg.dcm' was not found among the composite context files "
                     "(ct-001.dcm, ct-002.dcm, ct-003.dcm, ct-004.dcm, ct-005.dcm, ct-006.dcm, ct-007.dcm, ct-008.dcm ...); "
                     "give the file, by this name or with this SOP Instance UID"]
    assert not output.exists()


def test_tid1500reader_refuses_a_non_report(sample_files, tmp_path, capsys):
    assert main(["tid1500reader", "--inputDICOM", str(sample_files["seg"]),
                 "--outputMetadata", str(tmp_path / "out.json")]) == 1
    assert "not a DICOM Structured Report" in capsys.readouterr().err
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize("command, options", [
    ("itkimage2paramap", ["--inputImage", "--inputMetadata", "--inputDICOMDirectory", "--inputDICOMList", "--outputDICOM"]),
    ("paramap2itkimage", ["--inputDICOM", "--outputDirectory", "--prefix", "--outputType"]),
    ("tid1500writer", ["--inputMetadata", "--outputDICOM", "--inputImageLibraryDirectory", "--inputCompositeContextDirectory"]),
    ("tid1500reader", ["--inputDICOM", "--outputMetadata"]),
])
def test_help_lists_dcmqis_long_options(command, options, capsys):
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for option in options:
        assert option in text
