"""DICOM Parametric Map: writing from NIfTI/NRRD maps and reading back, on the generated
phantom's ADC map (qidicom.samples) and dcmqi's ADC example, synthetic MR series, and a PM
written by dcmqi (tests/data)."""

from __future__ import annotations

import copy
import json
import zipfile
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest

import synthetic
from conftest import DCMQI_EXAMPLES, TESTS, dciodvfy_errors
from qidicom import metadata as metadata_module
from qidicom.errors import GeometryError, InputError, MetadataError
from qidicom.pm import (
    parametric_map_from_files,
    parametric_map_to_files,
    read_parametric_map,
)
from qidicom.readers import read_image
from qidicom.samples import make_sample_study

DCMQI_PM = TESTS / "data" / "dcmqi-pm-float.dcm"  # written by dcmqi 1.5.7 itkimage2paramap
DCMQI_PM_MAP = TESTS / "data" / "dcmqi-pm-float-map.nrrd"  # the map it was written from


#: A complete ADC document, as dcmqi's pm-example.json is: codes, method, b-values, anatomy.
SAMPLE_PM_METADATA = make_sample_study(rows=8, columns=8, slices=2).pm_metadata


def pm_metadata(**changes) -> dict:
    document = copy.deepcopy(SAMPLE_PM_METADATA)
    document.update(changes)
    return document


@pytest.fixture
def mr_series(tmp_path):
    """A small oblique MR series on disk, its datasets, affine and grid shape."""
    datasets = synthetic.make_ct_series(
        rows=12, columns=10, slices=5, modality="MR", orientation=(1, 0, 0, 0, 0.96, 0.28), seed=7
    )
    directory = tmp_path / "mr"
    synthetic.write_series(datasets, directory)
    return directory, synthetic.series_affine(datasets), synthetic.grid_shape(datasets)


@pytest.fixture(scope="session", params=["phantom", "dcmqi"])
def adc_sample(request, tmp_path_factory):
    """An MR series, an int16 ADC map on its grid and its pm metadata: the generated phantom's
    (its float ADC rounded, as dcmqi's example is stored), then dcmqi's example (skips
    without ../shared)."""
    if request.param == "dcmqi":
        return request.getfixturevalue("adc_example")
    files = request.getfixturevalue("sample_files")
    adc = read_image(files["adc_map"])
    path = synthetic.save_nrrd(np.rint(adc.array).astype(np.int16), adc.affine, tmp_path_factory.mktemp("adc") / "adc-int16.nrrd")
    return {"series": files["mr"], "map": path, "metadata": files["pm_metadata"]}


@pytest.fixture(scope="session")
def adc_example(shared, tmp_path_factory):
    """dcmqi's 20-slice MR ADC series (unzipped), its int16 ADC map and pm-example.json."""
    directory = tmp_path_factory.mktemp("adc")
    with zipfile.ZipFile(shared / "data" / "dcmqi" / "paramaps" / "pm-example-dcm.zip") as archive:
        archive.extractall(directory)
    return {
        "series": directory,
        "map": shared / "data" / "dcmqi" / "paramaps" / "pm-example.nrrd",
        "metadata": DCMQI_EXAMPLES / "pm-example.json",
    }


def functional_group(dataset, keyword: str, frame: int = 0):
    """A frame's functional group item, per-frame or shared, wherever the writer put it."""
    item = dataset.PerFrameFunctionalGroupsSequence[frame]
    if keyword not in item:
        item = dataset.SharedFunctionalGroupsSequence[0]
    return item[keyword][0]


def write_map(array: np.ndarray, affine: np.ndarray, tmp_path: Path, name: str = "map.nrrd") -> Path:
    path = tmp_path / name
    return synthetic.save_nrrd(array, affine, path) if name.endswith(".nrrd") else synthetic.save_nifti(array, affine, path)


# --------------------------------------------------------------------------- ADC maps


def test_adc_map_stays_integer_conformant_and_reads_back_exactly(adc_sample, tmp_path):
    result = parametric_map_from_files(adc_sample["map"], adc_sample["metadata"], adc_sample["series"])
    path = tmp_path / result.filename
    path.write_bytes(result.data)

    assert dciodvfy_errors(path) == []
    dataset = pydicom.dcmread(path)
    assert "PixelData" in dataset and dataset.BitsAllocated == 16 and dataset.PixelRepresentation == 0
    mapping = functional_group(dataset, "RealWorldValueMappingSequence")
    assert (mapping.RealWorldValueSlope, mapping.RealWorldValueIntercept) == (1.0, 0.0)
    assert mapping.MeasurementUnitsCodeSequence[0].CodeValue == "um2/s"
    anatomy = dataset.SharedFunctionalGroupsSequence[0].FrameAnatomySequence[0]
    given = json.loads(adc_sample["metadata"].read_text())
    assert anatomy.AnatomicRegionSequence[0].CodeMeaning == given["AnatomicRegionSequence"]["CodeMeaning"]
    assert anatomy.FrameLaterality == given["FrameLaterality"] == "U"

    original = read_image(adc_sample["map"])
    contents = read_parametric_map(path)
    assert contents.volume.array.dtype == np.int16
    np.testing.assert_array_equal(contents.volume.array, original.array)
    np.testing.assert_allclose(contents.volume.affine, original.affine, atol=1e-3)


def test_adc_metadata_round_trips(adc_sample, tmp_path):
    first = parametric_map_from_files(adc_sample["map"], adc_sample["metadata"], adc_sample["series"])
    files, warnings = parametric_map_to_files(first.data, prefix="adc")
    assert [f.name for f in files] == ["adc-pmap.nrrd", "adc-meta.json"] and warnings == []
    meta = json.loads(files[1].data)
    assert metadata_module.validate(meta, "pm") == []
    given = json.loads(adc_sample["metadata"].read_text())
    for key in ("QuantityValueCode", "DerivationCode", "MeasurementUnitsCode", "MeasurementMethodCode",
                "SourceImageDiffusionBValues", "AnatomicRegionSequence", "FrameLaterality",
                "SeriesDescription", "SeriesNumber", "BodyPartExamined"):
        assert meta[key] == given[key], key

    (tmp_path / "adc-pmap.nrrd").write_bytes(files[0].data)
    second = parametric_map_from_files(tmp_path / "adc-pmap.nrrd", meta, adc_sample["series"])
    again = read_parametric_map(second.data)
    np.testing.assert_array_equal(again.volume.array, read_image(adc_sample["map"]).array)
    assert {k: v for k, v in again.metadata.items()} == meta


def test_highdicom_reads_our_pm(adc_sample):
    result = parametric_map_from_files(adc_sample["map"], adc_sample["metadata"], adc_sample["series"])
    parametric_map = hd.pm.ParametricMap.from_dataset(result.dataset)
    volume = parametric_map.get_volume()
    original = read_image(adc_sample["map"]).array  # [i, j, k]; highdicom's volume is [slice, row, column]
    assert volume.spatial_shape == original.shape[::-1]
    stored = np.asarray(volume.array)
    assert stored.dtype == np.float64  # highdicom applies the real world value mapping
    np.testing.assert_array_equal(np.sort(stored.ravel()), np.sort(original.ravel().astype(np.float64)))
    dimension = result.dataset.DimensionIndexSequence[0]
    assert dimension.DimensionIndexPointer == 0x00200032 and dimension.FunctionalGroupPointer == 0x00209113


def test_every_dcmqi_pm_example_converts_unchanged(adc_example, tmp_path):
    examples = sorted(DCMQI_EXAMPLES.glob("pm-example*.json"))
    assert len(examples) >= 3
    for example in examples:
        document = json.loads(example.read_text())
        before = copy.deepcopy(document)
        assert metadata_module.validate(document, "pm") == [], example.name
        result = parametric_map_from_files(adc_example["map"], document, adc_example["series"])
        assert document == before
        path = tmp_path / f"{example.stem}.dcm"
        path.write_bytes(result.data)
        assert dciodvfy_errors(path) == [], example.name


def test_deflate_is_smaller_and_conformant(adc_sample, tmp_path):
    plain = parametric_map_from_files(adc_sample["map"], adc_sample["metadata"], adc_sample["series"])
    deflated = parametric_map_from_files(adc_sample["map"], adc_sample["metadata"], adc_sample["series"], compress="deflate")
    assert len(deflated.data) < len(plain.data) / 2
    path = tmp_path / "deflated.dcm"
    path.write_bytes(deflated.data)
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == pydicom.uid.DeflatedExplicitVRLittleEndian
    assert dciodvfy_errors(path, tmp_path) == []
    np.testing.assert_array_equal(read_parametric_map(path).volume.array, read_parametric_map(plain.data).volume.array)


# --------------------------------------------------------------------------- data types


@pytest.mark.parametrize(
    "dtype, pixel_keyword, bits",
    [(np.float32, "FloatPixelData", 32), (np.float64, "DoubleFloatPixelData", 64), (np.uint8, "PixelData", 16)],
)
def test_data_type_is_kept(mr_series, tmp_path, dtype, pixel_keyword, bits):
    directory, affine, shape = mr_series
    rng = np.random.default_rng(1)
    array = (rng.random(shape) * 200).astype(dtype)
    result = parametric_map_from_files(write_map(array, affine, tmp_path), pm_metadata(), directory)
    assert pixel_keyword in result.dataset and result.dataset.BitsAllocated == bits
    (tmp_path / "pm.dcm").write_bytes(result.data)
    assert dciodvfy_errors(tmp_path / "pm.dcm") == []
    back = read_parametric_map(result.data).volume
    np.testing.assert_array_equal(back.array, array)
    np.testing.assert_allclose(back.affine, affine, atol=1e-4)


def test_signed_integers_are_shifted_into_the_intercept_exactly(mr_series, tmp_path):
    directory, affine, shape = mr_series
    array = np.arange(np.prod(shape), dtype=np.int16).reshape(shape) - 300
    document = pm_metadata(RealWorldValueSlope="2", RealWorldValueIntercept="0.5")
    result = parametric_map_from_files(write_map(array, affine, tmp_path, "map.nii.gz"), document, directory)
    mapping = functional_group(result.dataset, "RealWorldValueMappingSequence")
    assert result.dataset.PixelRepresentation == 0
    assert mapping.RealWorldValueSlope == 2.0 and mapping.RealWorldValueIntercept == 0.5 - 600
    back = read_parametric_map(result.data).volume.array
    np.testing.assert_array_equal(back, array * 2.0 + 0.5)
    (tmp_path / "pm.dcm").write_bytes(result.data)
    assert dciodvfy_errors(tmp_path / "pm.dcm") == []


def test_float32_option_writes_float_like_dcmqi(mr_series, tmp_path):
    directory, affine, shape = mr_series
    array = np.arange(np.prod(shape), dtype=np.int16).reshape(shape)
    result = parametric_map_from_files(write_map(array, affine, tmp_path), pm_metadata(), directory, data_type="float32")
    assert "FloatPixelData" in result.dataset
    np.testing.assert_array_equal(read_parametric_map(result.data).volume.array, array.astype(np.float32))


def test_metadata_codes_land_in_the_pm(mr_series, tmp_path):
    directory, affine, shape = mr_series
    document = pm_metadata(
        DerivedPixelContrast="ADC",
        DerivationDescription="fitted with b 0 and 1400",
        ModelFittingMethodCode={"CodeValue": "113250", "CodingSchemeDesignator": "DCM", "CodeMeaning": "Mono-exponential diffusion model"},
        FrameLaterality="L",
        ContentCreatorName="Doe^Jane",
    )
    result = parametric_map_from_files(write_map(np.ones(shape, np.float32), affine, tmp_path), document, directory)
    dataset = result.dataset
    assert list(dataset.ImageType)[3] == "ADC"
    assert list(dataset.SharedFunctionalGroupsSequence[0].ParametricMapFrameTypeSequence[0].FrameType)[3] == "ADC"
    derivation = functional_group(dataset, "DerivationImageSequence")
    assert derivation.DerivationDescription == "fitted with b 0 and 1400"
    assert derivation.DerivationCodeSequence[0].CodeValue == "113041"
    mapping = functional_group(dataset, "RealWorldValueMappingSequence")
    concepts = [item.ConceptNameCodeSequence[0].CodeValue for item in mapping.QuantityDefinitionSequence]
    assert concepts == ["246205007", "370129005", "113241", "113240", "113240"]
    meta = read_parametric_map(result.data).metadata
    assert metadata_module.validate(meta, "pm") == []
    for key in ("DerivedPixelContrast", "DerivationDescription", "ModelFittingMethodCode", "FrameLaterality", "ContentCreatorName"):
        assert meta[key] == document[key]
    (tmp_path / "pm.dcm").write_bytes(result.data)
    assert dciodvfy_errors(tmp_path / "pm.dcm") == []


def test_frames_go_up_the_slice_normal_as_dcmqi_expects(mr_series, tmp_path):
    directory, affine, shape = mr_series
    result = parametric_map_from_files(write_map(np.ones(shape, np.float32), affine, tmp_path), pm_metadata(), directory)
    normal = np.cross([1, 0, 0], [0, 0.96, 0.28])
    distances = [np.dot(np.asarray(item.PlanePositionSequence[0].ImagePositionPatient, float), normal)
                 for item in result.dataset.PerFrameFunctionalGroupsSequence]
    assert distances == sorted(distances)


def test_writer_takes_in_memory_files(mr_series, tmp_path):
    directory, affine, shape = mr_series
    map_path = write_map(np.ones(shape, np.float32), affine, tmp_path)
    series = [(p.name, p.read_bytes()) for p in sorted(directory.iterdir())]
    metadata = ("meta.json", json.dumps(pm_metadata()).encode())
    result = parametric_map_from_files(("map.nrrd", map_path.read_bytes()), metadata, series)
    assert int(result.dataset.NumberOfFrames) == shape[2]


# --------------------------------------------------------------------------- reading dcmqi's PMs


def test_reads_a_pm_written_by_dcmqi_which_highdicom_cannot():
    contents = read_parametric_map(DCMQI_PM)
    original = read_image(DCMQI_PM_MAP)
    np.testing.assert_array_equal(contents.volume.array, original.array)
    np.testing.assert_allclose(contents.volume.affine, original.affine, atol=1e-4)
    assert metadata_module.validate(contents.metadata, "pm") == []
    assert contents.metadata["MeasurementUnitsCode"]["CodeValue"] == "m2/s"
    with pytest.raises(Exception):
        hd.pm.ParametricMap.from_file(DCMQI_PM).get_volume()


def test_reads_a_pm_written_by_plain_highdicom(mr_series, tmp_path):
    directory, affine, shape = mr_series
    datasets = [pydicom.dcmread(p) for p in sorted(directory.iterdir())]
    datasets.sort(key=lambda ds: float(np.dot(np.asarray(ds.ImagePositionPatient, float), [0, -0.28, 0.96])))
    array = np.arange(np.prod(shape), dtype=np.uint16).reshape(shape)
    mapping = hd.pm.RealWorldValueMapping(
        lut_label="ADC", lut_explanation="ADC", unit=pydicom.sr.coding.Code("um2/s", "UCUM", "um2/s"),
        value_range=(0, int(array.max())), slope=0.5, intercept=-3,
    )
    written = hd.pm.ParametricMap(
        datasets, np.transpose(array, (2, 1, 0)), hd.UID(), 10, hd.UID(), 1, "test", "test", "1", "1", False, [mapping],
        voi_lut_transformations=[hd.VOILUTTransformation(window_center=100.0, window_width=200.0)],
    )
    contents = read_parametric_map(written)
    np.testing.assert_array_equal(contents.volume.array, array * 0.5 - 3)
    np.testing.assert_allclose(contents.volume.affine, affine, atol=1e-4)
    assert contents.metadata["MeasurementUnitsCode"]["CodeValue"] == "um2/s"
    # highdicom wrote no Frame Anatomy (which the PM IOD requires): the reader says so.
    assert any("AnatomicRegionSequence" in warning for warning in contents.warnings)


def test_nifti_export(tmp_path):
    files, _ = parametric_map_to_files(DCMQI_PM, output_type="nifti")
    assert [f.name for f in files] == ["pmap.nii.gz", "meta.json"]
    (tmp_path / files[0].name).write_bytes(files[0].data)
    np.testing.assert_array_equal(read_image(tmp_path / files[0].name).array, read_image(DCMQI_PM_MAP).array)


# --------------------------------------------------------------------------- bad inputs


def test_map_on_another_grid_is_refused_saying_what_differs(mr_series, tmp_path):
    directory, affine, shape = mr_series
    shifted = affine.copy()
    shifted[:3, 3] += [0.3, 0, 0]
    with pytest.raises(GeometryError, match=r"map\.nrrd does not lie on the reference series' grid: origin"):
        parametric_map_from_files(write_map(np.ones(shape, np.float32), shifted, tmp_path), pm_metadata(), directory)


def test_missing_units_code_is_named(mr_series, tmp_path):
    directory, affine, shape = mr_series
    document = pm_metadata()
    del document["MeasurementUnitsCode"]
    with pytest.raises(MetadataError, match="'MeasurementUnitsCode' is a required property"):
        parametric_map_from_files(write_map(np.ones(shape, np.float32), affine, tmp_path), document, directory)


def test_unknown_code_scheme_field_is_named_with_a_suggestion(mr_series, tmp_path):
    directory, affine, shape = mr_series
    document = pm_metadata()
    document["QuantityValueCode"] = {"CodeValue": "113041", "CodingSchemeDesignatr": "DCM", "CodeMeaning": "ADC"}
    with pytest.raises(MetadataError) as caught:
        parametric_map_from_files(write_map(np.ones(shape, np.float32), affine, tmp_path), document, directory)
    assert "QuantityValueCode.CodingSchemeDesignatr: unknown property (did you mean 'CodingSchemeDesignator'?)" in caught.value.problems


def test_non_numeric_slope_is_refused(mr_series, tmp_path):
    directory, affine, shape = mr_series
    with pytest.raises(MetadataError, match="RealWorldValueSlope: 'one' is not a valid FD"):
        parametric_map_from_files(write_map(np.ones(shape, np.float32), affine, tmp_path), pm_metadata(RealWorldValueSlope="one"), directory)


def test_reading_something_that_is_not_a_pm(sample_files):
    with pytest.raises(InputError, match="not a DICOM Parametric Map"):
        read_parametric_map(sorted(sample_files["mr"].iterdir())[0])
