"""qidicom.measurements: per-segment numbers equal a plain numpy computation on the same
voxels; the TID 1500 document they pre-fill validates, is written by the SR writer and
read back by qidicom's and dcmqi's readers with the same numbers."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

import synthetic
from qidicom import measurements, metadata, preview, readers
from qidicom.seg import read_segmentation
from qidicom.sr import read_report, report_from_files

TESTS = Path(__file__).parent


def hounsfield_by_position(files) -> np.ndarray:
    """The series' real values [i, j, k] by plain pydicom: pixel_array * slope + intercept,
    slices sorted along the normal."""
    datasets = [pydicom.dcmread(io.BytesIO(data)) for _, data in files]
    normal = np.cross(*np.reshape(np.asarray(datasets[0].ImageOrientationPatient, float), (2, 3)))
    datasets.sort(key=lambda ds: np.dot(np.asarray(ds.ImagePositionPatient, float), normal))
    return np.stack([ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept) for ds in datasets],
                    axis=-1).transpose(1, 0, 2)


def numpy_statistics(values: np.ndarray) -> dict:
    return {"mean": values.mean(), "std": values.std(), "minimum": values.min(), "maximum": values.max(),
            "median": np.median(values), "count": values.size}


def test_segment_numbers_equal_numpy_on_the_same_voxels(sample_study, sample_files):
    volume = preview.read_series_volume(sample_study.ct_series)
    overlay = preview.overlay_from_segmentation(read_segmentation(sample_files["seg"]), volume)
    found = measurements.measure_segments(volume, overlay)
    hu = hounsfield_by_position(sample_study.ct_series)
    labels = np.asarray(readers.read_image(sample_files["ct_labels"]).array)
    label_ids = {a["SegmentLabel"]: a["labelID"] for a in sample_study.seg_metadata["segmentAttributes"][0]}
    voxel_ml = float(np.prod([6.25, 6.25, 10.0])) / 1000  # the phantom's 6.25 mm pixels, 10 mm slices
    assert [m.label for m in found] and len(found) == len(label_ids)
    for m in found:
        inside = labels == label_ids[m.label]
        assert m.voxel_count == int(inside.sum())
        assert m.volume_ml == pytest.approx(inside.sum() * voxel_ml, rel=1e-12)
        expected = numpy_statistics(hu[inside])
        assert {k: getattr(m.image, k) for k in expected} == pytest.approx(expected, rel=1e-12), m.label
        assert m.image_units == "HU" and m.map is None


def test_map_statistics_in_the_maps_units(sample_study, tmp_path):
    mr = preview.read_series_volume(sample_study.mr_series)
    adc = readers.read_image(sample_study.adc_map)
    labels = synthetic.sphere_labels(mr.shape, [((10, 15, 4), 4, 1), ((22, 15, 8), 3, 2)], dtype=np.uint8)
    path = synthetic.save_nifti(labels, mr.affine, tmp_path / "mr-labels.nii.gz")
    overlay = preview.overlay_from_label_maps([readers.read_image(path)], mr)
    pmap = preview.map_overlay(adc, mr, sample_study.pm_metadata)
    found = measurements.measure_segments(mr, overlay, pmap)
    signal = np.asarray(mr.array, float) * mr.slope[0] + mr.intercept[0]
    for m in found:
        inside = labels == m.number
        expected = numpy_statistics(np.asarray(adc.array, np.float64)[inside])
        assert {k: getattr(m.map, k) for k in expected} == pytest.approx(expected, rel=1e-6)  # the map is float32
        assert m.map_units == "um2/s"
        assert m.image.mean == pytest.approx(signal[inside].mean(), rel=1e-12)
    table = list(csv.DictReader(io.StringIO(measurements.measurements_csv(found).decode())))
    assert [int(row["segment"]) for row in table] == [1, 2]
    assert float(table[0]["map_median"]) == pytest.approx(found[0].map.median)


def test_overlapping_segments_are_measured_each_whole():
    datasets = synthetic.make_ct_series(rows=10, columns=10, slices=3)
    files = []
    for n, ds in enumerate(datasets):
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        files.append((f"{n}.dcm", buffer.getvalue()))
    volume = preview.read_series_volume(files)
    first = np.zeros(volume.shape, np.uint8)
    first[2:6, 2:6, 1] = 1
    second = np.zeros(volume.shape, np.uint8)
    second[4:8, 4:8, 1] = 1  # overlaps the first
    overlay = preview.overlay_from_label_maps([readers.Volume(first, volume.affine), readers.Volume(second, volume.affine)], volume)
    found = measurements.measure_segments(volume, overlay)
    assert [m.voxel_count for m in found] == [16, 16]
    assert found[1].image.maximum == float(volume.array[second.astype(bool)].max())


def dcmqi_tool(name: str) -> Path:
    for directory in (os.environ.get("QIDICOM_DCMQI_BIN", ""), str(TESTS.parent / "bench" / ".dcmqi-venv" / "bin")):
        if directory and (Path(directory) / name).is_file():
            return Path(directory) / name
    pytest.skip("dcmqi's tools are not installed (bench/setup_dcmqi.sh, or set QIDICOM_DCMQI_BIN)")


@pytest.fixture
def prefilled(sample_study, sample_files):
    volume = preview.read_series_volume(sample_study.ct_series)
    seg = pydicom.dcmread(sample_files["seg"])
    overlay = preview.overlay_from_segmentation(read_segmentation(sample_files["seg"]), volume)
    found = measurements.measure_segments(volume, overlay)
    document = measurements.report_metadata(
        found, segmentation_file="seg.dcm", segmentation_uid=str(seg.SOPInstanceUID),
        source_series_uid=volume.series.series_uid, image_library=[Path(n).name for n in volume.series.names],
        modality=volume.modality)
    return found, document


def test_prefilled_report_validates_and_uses_standard_codes(prefilled):
    found, document = prefilled
    assert metadata.validate(document, "sr") == []
    group = document["Measurements"][0]
    assert group["ReferencedSegment"] == found[0].number
    items = group["measurementItems"]
    assert items[0]["quantity"]["CodeValue"] == "118565006" and items[0]["units"]["CodeValue"] == "mL"
    assert [i["derivationModifier"]["CodeMeaning"] for i in items[1:]] == ["Mean", "Standard Deviation", "Minimum", "Maximum", "Median"]
    assert {i["units"]["CodeValue"] for i in items[1:]} == {"[hnsf'U]"}
    assert float(items[1]["value"]) == pytest.approx(found[0].image.mean, rel=1e-12)


def test_prefilled_report_is_written_and_read_back_by_qidicom_and_dcmqi(prefilled, sample_files, tmp_path):
    found, document = prefilled
    result = report_from_files(document, sample_files["ct"], [sample_files["seg"]])
    path = tmp_path / "sr.dcm"
    path.write_bytes(result.data)
    ours = read_report(result.data).metadata["Measurements"]
    reader = dcmqi_tool("tid1500reader")
    run = subprocess.run([str(reader), "--inputDICOM", str(path), "--outputMetadata", str(tmp_path / "dcmqi.json")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    theirs = json.loads((tmp_path / "dcmqi.json").read_text())["Measurements"]
    for back in (ours, theirs):
        assert [g["ReferencedSegment"] for g in back] == [m.number for m in found]
        for group, m in zip(back, found):
            values = [float(item["value"]) for item in group["measurementItems"]]
            expected = [m.volume_ml, m.image.mean, m.image.std, m.image.minimum, m.image.maximum, m.image.median]
            assert values == pytest.approx(expected, rel=1e-9)
            assert group["measurementItems"][0]["units"]["CodeValue"] == "mL"


def test_report_with_a_map_references_it_and_codes_its_quantity(sample_study):
    mr = preview.read_series_volume(sample_study.mr_series)
    labels = np.zeros(mr.shape, np.uint8)
    labels[10:20, 10:20, 3:6] = 1  # inside the phantom
    overlay = preview.overlay_from_label_maps([readers.Volume(labels, mr.affine)], mr,
                                              {"segmentAttributes": [[{"labelID": 1, "SegmentLabel": "Lesion"}]]})
    pmap = preview.map_overlay(readers.read_image(sample_study.adc_map), mr, sample_study.pm_metadata)
    found = measurements.measure_segments(mr, overlay, pmap)
    document = measurements.report_metadata(found, segmentation_file="seg.dcm", source_series_uid=mr.series.series_uid,
                                            image_library=["mr-001.dcm"], modality="MR", map_metadata=sample_study.pm_metadata,
                                            map_file="pm.dcm", map_uid="1.2.3.4")
    assert metadata.validate(document, "sr") == []
    group = document["Measurements"][0]
    assert group["rwvmMapUsedForMeasurement"] == "1.2.3.4" and document["compositeContext"] == ["seg.dcm", "pm.dcm"]
    map_items = [i for i in group["measurementItems"] if i["units"]["CodeValue"] == "um2/s"]
    assert [i["quantity"]["CodeMeaning"] for i in map_items] == ["Apparent Diffusion Coefficient"] * 5
    assert float(map_items[4]["value"]) == pytest.approx(found[0].map.median, rel=1e-9)
    with pytest.raises(measurements.InputError, match="nothing to measure"):
        measurements.report_metadata([], segmentation_file="s.dcm", source_series_uid="1.2", image_library=[])
