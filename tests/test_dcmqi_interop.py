"""dcmqi and qidicom read each other's objects.

dcmqi 1.5.7 (the native tools of the ``dcmqi`` pip package, in their own virtual environment:
``bash bench/setup_dcmqi.sh``, which ``tests/run.sh`` runs) reads every SEG (binary, labelmap,
fractional) and every float Parametric Map qidicom writes, and dcmqi's ``tid1500reader`` reads
our SRs; qidicom reads the SEG, PM and SR dcmqi writes from the same inputs. Read-backs are
compared with the inputs voxel for voxel (geometry within 1e-3 mm), and metadata by dcmqi's
comparejson rule.

The inputs are generated (``qidicom.samples``' phantom study), so these tests need no
``../shared``; they skip only when dcmqi cannot be installed. The last ones read dcmqi's own
sample objects (``../shared``) with both tools and compare qidicom's output with dcmqi's.

Known limits of dcmqi 1.5.7, checked here as they are: its ``segimage2itkimage`` writes a
fractional SEG's stored values (0..Maximum Fractional Value), not probabilities; its grid covers
only the slices that have frames; and its ``paramap2itkimage`` reads only Float Pixel Data, so a
float64 map is given to it written with ``--dataType float32`` (qidicom's default keeps float64 as
Double Float Pixel Data, which dcmqi cannot read).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import nibabel
import nrrd
import numpy as np
import pydicom
import pytest

from qidicom.cli import main
from qidicom.samples import make_sample_study, write_sample_study

REPO = Path(__file__).resolve().parents[1]
DCMQI_VERSION = "1.5.7"
SR_IGNORED = ("activitySession", "timePoint", "imageLibrary", "compositeContext", "procedureReported")


def dcmqi_bin_candidates() -> list[Path]:
    """Where dcmqi's virtual environment may be: $DCMQI_VENV, then what tests/run.sh makes."""
    candidates = [Path(os.environ["DCMQI_VENV"]) / "bin"] if os.environ.get("DCMQI_VENV") else []
    return candidates + [REPO / "bench" / ".dcmqi-venv" / "bin", REPO / ".dcmqi-venv" / "bin"]


@pytest.fixture(scope="session")
def dcmqi() -> Path:
    """The bin folder of a dcmqi 1.5.7 virtual environment."""
    for bin_dir in dcmqi_bin_candidates():
        if not (bin_dir / "python").exists():
            continue
        version = subprocess.run(
            [str(bin_dir / "python"), "-c", "import importlib.metadata as m; print(m.version('dcmqi'))"],
            capture_output=True, text=True,
        ).stdout.strip()
        if version == DCMQI_VERSION and (bin_dir / "segimage2itkimage").exists():
            return bin_dir
    pytest.skip(f"dcmqi {DCMQI_VERSION} is not installed (looked in {', '.join(map(str, dcmqi_bin_candidates()))}); "
                "`bash bench/setup_dcmqi.sh` installs it from PyPI, and tests/run.sh runs that")


def run_dcmqi(dcmqi: Path, tool: str, *args: str | Path) -> None:
    """Run a dcmqi tool; its output folders must exist beforehand (dcmqi does not make them)."""
    result = subprocess.run([str(dcmqi / tool), *map(str, args)], capture_output=True, text=True)
    assert result.returncode == 0, f"dcmqi {tool} failed ({result.returncode}): {(result.stdout + result.stderr)[-600:]}"


def run_qidicom(*args: str | Path) -> None:
    assert main([str(a) for a in args]) == 0


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> dict[str, Path]:
    """qidicom's sample phantom on disk: ct/, ct-labels.nii.gz, seg.json, mr/, adc.nrrd, pm.json,
    sr.json and seg.dcm (qidicom's SEG of the labels, which sr.json measures)."""
    return write_sample_study(tmp_path_factory.mktemp("sample"))


# --------------------------------------------------------------------------- comparisons


def image_and_lps_affine(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Voxels [i, j, k] and the index-to-LPS affine of a NRRD (pynrrd) or NIfTI (nibabel) file."""
    if path.name.endswith(".nrrd"):
        data, header = nrrd.read(str(path))
        affine = np.eye(4)
        affine[:3, :3] = np.asarray(header["space directions"], float).T
        affine[:3, 3] = np.asarray(header.get("space origin", (0, 0, 0)), float)
        if header.get("space") in ("right-anterior-superior", "RAS"):
            affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
        return data, affine
    image = nibabel.load(str(path))
    return np.asanyarray(image.dataobj), np.diag([-1.0, -1.0, 1.0, 1.0]) @ image.affine


def assert_matches_input(expected: np.ndarray, expected_affine: np.ndarray, actual_path: Path) -> None:
    """``actual_path`` holds ``expected``'s voxels exactly, on the same grid (1e-3 mm) or on a run
    of whole slices of it (dcmqi's readers keep only slices that have frames); voxels outside
    that run must be zero in ``expected``."""
    actual, affine = image_and_lps_affine(actual_path)
    np.testing.assert_allclose(affine[:3, :3], expected_affine[:3, :3], atol=1e-3, err_msg=f"{actual_path.name}: spacing/direction")
    offset = np.linalg.solve(expected_affine, affine[:, 3])[:3]
    assert np.allclose(offset, np.round(offset), atol=1e-3), f"{actual_path.name}: origin {affine[:3, 3]} is off the input grid"
    start = np.round(offset).astype(int)
    assert start[0] == 0 and start[1] == 0 and actual.shape[:2] == expected.shape[:2], f"{actual_path.name}: in-plane grid differs"
    k0, k1 = start[2], start[2] + actual.shape[2]
    assert 0 <= k0 and k1 <= expected.shape[2], f"{actual_path.name}: slices {k0}..{k1 - 1} outside 0..{expected.shape[2] - 1}"
    different = np.count_nonzero(actual != expected[:, :, k0:k1])
    assert different == 0, f"{actual_path.name}: {different} voxels differ from the input"
    outside = np.count_nonzero(expected[:, :, :k0]) + np.count_nonzero(expected[:, :, k1:])
    assert outside == 0, f"{actual_path.name}: {outside} non-zero input voxels lie outside slices {k0}..{k1 - 1}"


def comparejson_problems(expected, actual, ignored: tuple[str, ...] = (), where: str = "$") -> list[str]:
    """dcmqi's comparejson rule: every key of ``expected`` is in ``actual`` with an equal value of
    the same JSON type, through dicts and lists (lists match item by item and in length); keys
    in ``ignored`` and ``@schema`` are skipped."""
    ignored = ("@schema", *ignored)
    if type(expected) is not type(actual):
        return [f"{where}: expected {type(expected).__name__} {expected!r}, got {type(actual).__name__} {actual!r}"]
    if isinstance(expected, dict):
        problems = []
        for key, value in expected.items():
            if key in ignored:
                continue
            problems += (comparejson_problems(value, actual[key], ignored, f"{where}.{key}") if key in actual
                         else [f"{where}.{key}: missing"])
        return problems
    if isinstance(expected, list):
        if len(expected) != len(actual):
            return [f"{where}: {len(actual)} items, expected {len(expected)}"]
        return [p for i, (e, a) in enumerate(zip(expected, actual)) for p in comparejson_problems(e, a, ignored, f"{where}[{i}]")]
    return [] if expected == actual else [f"{where}: expected {expected!r}, got {actual!r}"]


def assert_seg_meta_matches(expected: dict, actual: dict, ignored: tuple[str, ...] = ()) -> None:
    """The top-level fields and every segment's attributes by comparejson; the grouping of
    segments into files is the reader's (dcmqi: one file per segment), so segments are
    compared by labelID."""
    problems = comparejson_problems(expected, actual, ("segmentAttributes",))
    actual_segments = {s["labelID"]: s for group in actual["segmentAttributes"] for s in group}
    for segment in (s for group in expected["segmentAttributes"] for s in group):
        if segment["labelID"] not in actual_segments:
            problems.append(f"segment {segment['labelID']}: missing")
        else:
            problems += comparejson_problems(segment, actual_segments[segment["labelID"]], ignored, f"segment {segment['labelID']}")
    assert problems == [], "\n".join(problems)


def labels_of(study) -> tuple[np.ndarray, np.ndarray, dict]:
    labels, affine = image_and_lps_affine(study["ct_labels"])
    return labels, affine, json.loads(study["seg_metadata"].read_text())


def label_ids(metadata: dict) -> list[int]:
    return [s["labelID"] for group in metadata["segmentAttributes"] for s in group]


# --------------------------------------------------------------------------- dcmqi reads ours


@pytest.mark.parametrize("skip, compress", [("1", "none"), ("0", "none"), ("1", "deflate")])
def test_dcmqi_reads_our_binary_seg(dcmqi, study, tmp_path, skip, compress):
    labels, affine, metadata = labels_of(study)
    seg = tmp_path / "seg.dcm"
    run_qidicom("itkimage2segimage", "--inputImageList", study["ct_labels"], "--inputDICOMDirectory", study["ct"],
                "--inputMetadata", study["seg_metadata"], "--outputDICOM", seg, "--skip", skip, "--compress", compress)
    out = tmp_path / "dcmqi"
    out.mkdir()
    run_dcmqi(dcmqi, "segimage2itkimage", "--inputDICOM", seg, "--outputDirectory", out, "--prefix", "x")
    ids = label_ids(metadata)
    assert sorted(p.name for p in out.iterdir()) == sorted([f"x-{n}.nrrd" for n in ids] + ["x-meta.json"])
    for number in ids:  # dcmqi writes segment N as a map of value N
        assert_matches_input(np.where(labels == number, number, 0), affine, out / f"x-{number}.nrrd")
    assert_seg_meta_matches(metadata, json.loads((out / "x-meta.json").read_text()))


@pytest.mark.parametrize("compress", ["none", "rle", "deflate"])
def test_dcmqi_reads_our_labelmap_seg(dcmqi, study, tmp_path, compress):
    labels, affine, metadata = labels_of(study)
    seg = tmp_path / "seg.dcm"
    run_qidicom("itkimage2segimage", "--inputImageList", study["ct_labels"], "--inputDICOMDirectory", study["ct"],
                "--inputMetadata", study["seg_metadata"], "--outputDICOM", seg, "--segmentationType", "labelmap",
                "--compress", compress)
    out = tmp_path / "dcmqi"
    out.mkdir()
    run_dcmqi(dcmqi, "segimage2itkimage", "--inputDICOM", seg, "--outputDirectory", out, "--prefix", "x")
    assert sorted(p.name for p in out.iterdir()) == ["x-1.nrrd", "x-meta.json"]  # one label map for all segments
    assert_matches_input(labels, affine, out / "x-1.nrrd")
    assert_seg_meta_matches(metadata, json.loads((out / "x-meta.json").read_text()))


@pytest.mark.parametrize("options", [(), ("--usePalette",), ("--usePalette", "--force16Bit"), ("--compress", "rle")],
                         ids=["mono8", "palette8", "palette16", "rle"])
def test_dcmqi_reads_our_bin2labelsegimage_output(dcmqi, study, tmp_path, options):
    labels, affine, metadata = labels_of(study)
    labelmap = tmp_path / "labelmap.dcm"
    run_qidicom("bin2labelsegimage", "--inputDICOM", study["seg"], "--outputDICOM", labelmap, *options)
    out = tmp_path / "dcmqi"
    out.mkdir()
    run_dcmqi(dcmqi, "segimage2itkimage", "--inputDICOM", labelmap, "--outputDirectory", out, "--prefix", "x")
    assert sorted(p.name for p in out.iterdir()) == ["x-1.nrrd", "x-meta.json"]
    assert_matches_input(labels, affine, out / "x-1.nrrd")
    # A palette SEG's colours are its palette (no CIELab values); dcmqi 1.5.7 does not read
    # palettes and reports a default colour, for its own palette SEGs too.
    ignored = ("recommendedDisplayRGBValue",) if "--usePalette" in options else ()
    assert_seg_meta_matches(metadata, json.loads((out / "x-meta.json").read_text()), ignored)


def test_dcmqi_reads_our_fractional_seg(dcmqi, study, tmp_path):
    """dcmqi 1.5.7 reads FRACTIONAL SEGs, writing the stored values (probability x Maximum
    Fractional Value) rather than probabilities: they must be our probabilities, quantized."""
    labels, affine, metadata = labels_of(study)
    ramp = np.linspace(0.2, 1.0, labels.shape[0], dtype=np.float32)[:, None, None]
    probability = np.where(labels == 1, ramp, 0.0).astype(np.float32)  # the liver, fading along i
    image = nibabel.Nifti1Image(probability, np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine)
    image.set_qform(image.affine, code=1)
    nibabel.save(image, str(tmp_path / "liver-probability.nii.gz"))
    liver_only = dict(metadata, segmentAttributes=[[metadata["segmentAttributes"][0][0]]])
    (tmp_path / "liver.json").write_text(json.dumps(liver_only))
    seg = tmp_path / "seg.dcm"
    run_qidicom("itkimage2segimage", "--inputImageList", tmp_path / "liver-probability.nii.gz", "--inputDICOMDirectory",
                study["ct"], "--inputMetadata", tmp_path / "liver.json", "--outputDICOM", seg, "--segmentationType", "fractional")
    maximum = int(pydicom.dcmread(seg, stop_before_pixels=True).MaximumFractionalValue)
    out = tmp_path / "dcmqi"
    out.mkdir()
    run_dcmqi(dcmqi, "segimage2itkimage", "--inputDICOM", seg, "--outputDirectory", out, "--prefix", "x")
    assert_matches_input(np.round(probability * maximum).astype(np.int64), affine, out / "x-1.nrrd")
    assert_seg_meta_matches(liver_only, json.loads((out / "x-meta.json").read_text()))


@pytest.mark.parametrize("dtype, options", [("float32", ()), ("float32", ("--compress", "deflate")),
                                            ("float64", ("--dataType", "float32"))])
def test_dcmqi_reads_our_float_parametric_map(dcmqi, study, tmp_path, dtype, options):
    adc, affine = image_and_lps_affine(study["adc_map"])
    source = tmp_path / f"adc-{dtype}.nrrd"
    nrrd.write(str(source), adc.astype(dtype), {"space": "left-posterior-superior", "space directions": affine[:3, :3].T,
                                                 "space origin": affine[:3, 3], "kinds": ["domain"] * 3})
    pm = tmp_path / "pm.dcm"
    run_qidicom("itkimage2paramap", "--inputImage", source, "--inputDICOMDirectory", study["mr"],
                "--inputMetadata", study["pm_metadata"], "--outputDICOM", pm, *options)
    out = tmp_path / "dcmqi"
    out.mkdir()
    run_dcmqi(dcmqi, "paramap2itkimage", "--inputDICOM", pm, "--outputDirectory", out, "--prefix", "x")
    assert_matches_input(adc.astype(np.float32), affine, out / "x-pmap.nrrd")
    problems = comparejson_problems(json.loads(study["pm_metadata"].read_text()), json.loads((out / "x-meta.json").read_text()))
    assert problems == [], "\n".join(problems)


def test_dcmqi_reads_our_sr(dcmqi, study, tmp_path):
    sr = tmp_path / "sr.dcm"
    run_qidicom("tid1500writer", "--inputMetadata", study["sr_metadata"], "--inputImageLibraryDirectory", study["ct"],
                "--inputCompositeContextDirectory", study["seg"].parent, "--outputDICOM", sr)
    run_dcmqi(dcmqi, "tid1500reader", "--inputDICOM", sr, "--outputMetadata", tmp_path / "dcmqi.json")
    expected = json.loads(study["sr_metadata"].read_text())
    actual = json.loads((tmp_path / "dcmqi.json").read_text())
    problems = comparejson_problems(expected, actual, SR_IGNORED)
    assert problems == [], "\n".join(problems)


# --------------------------------------------------------------------------- qidicom reads dcmqi's


@pytest.mark.parametrize("segmentation_type", ["binary", "labelmap"])
def test_qidicom_reads_dcmqis_seg(dcmqi, study, tmp_path, segmentation_type):
    labels, affine, metadata = labels_of(study)
    seg = tmp_path / "dcmqi-seg.dcm"
    run_dcmqi(dcmqi, "itkimage2segimage", "--inputImageList", study["ct_labels"], "--inputDICOMDirectory", study["ct"],
              "--inputMetadata", study["seg_metadata"], "--outputDICOM", seg, "--segmentationType", segmentation_type)
    out = tmp_path / "qidicom"
    run_qidicom("segimage2itkimage", "--inputDICOM", seg, "--outputDirectory", out, "--prefix", "x")
    ids = label_ids(metadata)
    if segmentation_type == "labelmap":  # one label map holding every segment, as dcmqi reads it
        assert sorted(p.name for p in out.iterdir()) == ["x-1.nrrd", "x-meta.json"]
        assert_matches_input(labels, affine, out / "x-1.nrrd")
    else:
        assert sorted(p.name for p in out.iterdir()) == sorted([f"x-{n}.nrrd" for n in ids] + ["x-meta.json"])
        for number in ids:
            assert_matches_input(np.where(labels == number, number, 0), affine, out / f"x-{number}.nrrd")
    assert_seg_meta_matches(metadata, json.loads((out / "x-meta.json").read_text()))


@pytest.mark.parametrize("options", [(), ("--usePalette",), ("--usePalette", "--force16Bit"), ("--compress", "rle")],
                         ids=["mono8", "palette8", "palette16", "rle"])
def test_qidicom_reads_dcmqis_bin2labelsegimage_output(dcmqi, study, tmp_path, options):
    """dcmqi's own binary SEG turned into a LABELMAP by dcmqi; from a palette one each segment's
    colour is its palette entry."""
    labels, affine, metadata = labels_of(study)
    binary, labelmap = tmp_path / "dcmqi-binary.dcm", tmp_path / "dcmqi-labelmap.dcm"
    run_dcmqi(dcmqi, "itkimage2segimage", "--inputImageList", study["ct_labels"], "--inputDICOMDirectory", study["ct"],
              "--inputMetadata", study["seg_metadata"], "--outputDICOM", binary)
    run_dcmqi(dcmqi, "bin2labelsegimage", "--inputDICOM", binary, "--outputDICOM", labelmap, *options)
    out = tmp_path / "qidicom"
    run_qidicom("segimage2itkimage", "--inputDICOM", labelmap, "--outputDirectory", out, "--prefix", "x")
    assert sorted(p.name for p in out.iterdir()) == ["x-1.nrrd", "x-meta.json"]
    assert_matches_input(labels, affine, out / "x-1.nrrd")
    # dcmqi's bin2labelsegimage does not carry the clinical trial attributes over; what is not
    # in the file cannot be read back.
    dataset = pydicom.dcmread(labelmap, stop_before_pixels=True)
    dropped = tuple(k for k in ("ClinicalTrialSeriesID", "ClinicalTrialTimePointID", "ClinicalTrialCoordinatingCenterName")
                    if k in metadata and k not in dataset)
    meta = json.loads((out / "x-meta.json").read_text())
    if "--usePalette" not in options:
        assert_seg_meta_matches({k: v for k, v in metadata.items() if k not in dropped}, meta)
        return
    # A palette SEG's colours are its palette entries: each segment reports the entry of its
    # number, read as PS3.3 C.7.6.3.1.5 stores it (and as DCMTK's dcm2pnm renders it).
    assert_seg_meta_matches({k: v for k, v in metadata.items() if k not in dropped}, meta, ("recommendedDisplayRGBValue",))
    entries = palette_entries(pydicom.dcmread(labelmap))
    colours = {s["labelID"]: s.get("recommendedDisplayRGBValue") for group in meta["segmentAttributes"] for s in group}
    for number in label_ids(metadata):
        assert colours[number] == entries[number].tolist(), f"segment {number}"
    if "--force16Bit" in options:
        # dcmqi's 16-bit palette holds the metadata's colours (within 1: it makes them from CIELab).
        for segment in (s for group in metadata["segmentAttributes"] for s in group):
            assert np.abs(entries[segment["labelID"]] - segment["recommendedDisplayRGBValue"]).max() <= 1
    # dcmqi 1.5.7's 8-bit palette is off by one byte in each pair: read as stored, the background
    # gets the first segment's colour and that segment a near-black one (DCMTK shows it so too).


def palette_entries(dataset: pydicom.Dataset) -> np.ndarray:
    """A PALETTE COLOR image's lookup table as 8-bit RGB rows, indexed by stored value: 8-bit
    entries are one byte each in order, 16-bit ones little-endian words (scaled to 8 bits)."""
    first = int(dataset.RedPaletteColorLookupTableDescriptor[1])
    channels = []
    for colour in ("Red", "Green", "Blue"):
        count, _, bits = (int(v) for v in getattr(dataset, f"{colour}PaletteColorLookupTableDescriptor"))
        count = count or 65536
        data = getattr(dataset, f"{colour}PaletteColorLookupTableData")
        values = np.frombuffer(data, np.uint8 if bits == 8 else "<u2")[:count].astype(float)
        channels.append(values if bits == 8 else values / 257.0)
    table = np.rint(np.stack(channels, axis=1)).astype(int)
    return np.concatenate([np.repeat(table[:1], first, axis=0), table])  # values below the first mapped take entry 0


def test_qidicom_reads_dcmqis_parametric_map(dcmqi, study, tmp_path):
    adc, affine = image_and_lps_affine(study["adc_map"])
    pm = tmp_path / "dcmqi-pm.dcm"
    run_dcmqi(dcmqi, "itkimage2paramap", "--inputImage", study["adc_map"], "--inputDICOMDirectory", study["mr"],
              "--inputMetadata", study["pm_metadata"], "--outputDICOM", pm)
    out = tmp_path / "qidicom"
    run_qidicom("paramap2itkimage", "--inputDICOM", pm, "--outputDirectory", out, "--prefix", "x")
    assert_matches_input(adc, affine, out / "x-pmap.nrrd")
    problems = comparejson_problems(json.loads(study["pm_metadata"].read_text()), json.loads((out / "x-meta.json").read_text()))
    assert problems == [], "\n".join(problems)


def test_dcmqi_accepts_the_sample_sr_metadata(dcmqi, study, tmp_path):
    """The sample's sr JSON is dcmqi-style, so dcmqi's own writer must take it unchanged."""
    run_dcmqi(dcmqi, "tid1500writer", "--inputMetadata", study["sr_metadata"], "--inputImageLibraryDirectory", study["ct"],
              "--inputCompositeContextDirectory", study["seg"].parent, "--outputDICOM", tmp_path / "sr.dcm")


def test_qidicom_reads_dcmqis_sr(dcmqi, study, tmp_path):
    """dcmqi's tid1500writer needs each measurement's segmentationSOPInstanceUID (it aborts
    without one); it is filled in from the SEG when the document lacks it."""
    document = json.loads(study["sr_metadata"].read_text())
    seg_uid = str(pydicom.dcmread(study["seg"], stop_before_pixels=True).SOPInstanceUID)
    for measurement in document["Measurements"]:
        measurement.setdefault("segmentationSOPInstanceUID", seg_uid)
    (tmp_path / "sr.json").write_text(json.dumps(document))
    sr = tmp_path / "dcmqi-sr.dcm"
    run_dcmqi(dcmqi, "tid1500writer", "--inputMetadata", tmp_path / "sr.json", "--inputImageLibraryDirectory", study["ct"],
              "--inputCompositeContextDirectory", study["seg"].parent, "--outputDICOM", sr)
    run_qidicom("tid1500reader", "--inputDICOM", sr, "--outputMetadata", tmp_path / "qidicom.json")
    problems = comparejson_problems(document, json.loads((tmp_path / "qidicom.json").read_text()), SR_IGNORED)
    assert problems == [], "\n".join(problems)


def test_a_second_study_with_another_grid_reads_the_same_in_dcmqi(dcmqi, tmp_path):
    """A non-square, thinner phantom (another patient): the binary SEG still reads back exactly."""
    paths = write_sample_study(tmp_path / "study", make_sample_study(rows=40, columns=56, slices=9, seed=4,
                                                                      patient_id="QIDICOM-PHANTOM-002"), with_seg=False)
    labels, affine, metadata = labels_of(paths)
    seg = tmp_path / "seg.dcm"
    run_qidicom("itkimage2segimage", "--inputImageList", paths["ct_labels"], "--inputDICOMDirectory", paths["ct"],
                "--inputMetadata", paths["seg_metadata"], "--outputDICOM", seg)
    out = tmp_path / "dcmqi"
    out.mkdir()
    run_dcmqi(dcmqi, "segimage2itkimage", "--inputDICOM", seg, "--outputDirectory", out, "--prefix", "x")
    for number in label_ids(metadata):
        assert_matches_input(np.where(labels == number, number, 0), affine, out / f"x-{number}.nrrd")


# --------------------------------------------------------------------------- dcmqi's own files, read by both

DCMQI_SEGS = {
    "liver": ("segmentations/liver.dcm", ()),
    "partial_overlaps": ("segmentations/partial_overlaps.dcm", ()),
    "partial_overlaps_merged": ("segmentations/partial_overlaps.dcm", ("--mergeSegments",)),
    "sr_example_seg": ("sr-example/seg.dcm", ()),
    "phantom_24x38x3": ("segmentations/24x38x3/seg/label.seg", ()),
    "phantom_23x38x3": ("segmentations/23x38x3/seg/label.seg", ()),
}


@pytest.mark.parametrize("case", DCMQI_SEGS)
def test_qidicom_reads_dcmqis_sample_segs_as_dcmqi_does(dcmqi, shared, tmp_path, case):
    """dcmqi's own SEGs (made by older dcmqi releases and other tools), read by dcmqi 1.5.7 and by
    qidicom: the same files with the same voxels, and every key of dcmqi's meta JSON in ours
    with the same value (a script written against dcmqi's output must work on ours)."""
    source, options = DCMQI_SEGS[case]
    path = shared / "data" / "dcmqi" / source
    theirs, ours = tmp_path / "dcmqi", tmp_path / "qidicom"
    theirs.mkdir()
    run_dcmqi(dcmqi, "segimage2itkimage", "--inputDICOM", path, "--outputDirectory", theirs, "--prefix", "x", *options)
    run_qidicom("segimage2itkimage", "--inputDICOM", path, "--outputDirectory", ours, "--prefix", "x", *options)
    assert sorted(p.name for p in ours.iterdir()) == sorted(p.name for p in theirs.iterdir())
    for image in sorted(theirs.glob("*.nrrd")):
        expected, affine = image_and_lps_affine(image)
        assert image_and_lps_affine(ours / image.name)[0].shape == expected.shape
        assert_matches_input(expected, affine, ours / image.name)
    problems = comparejson_problems(json.loads((theirs / "x-meta.json").read_text()), json.loads((ours / "x-meta.json").read_text()))
    assert problems == [], "\n".join(problems)


def test_qidicom_reads_dcmqis_sample_sr_as_dcmqi_does(dcmqi, shared, tmp_path):
    path = shared / "data" / "dcmqi" / "sr-example" / "sr.dcm"
    run_dcmqi(dcmqi, "tid1500reader", "--inputDICOM", path, "--outputMetadata", tmp_path / "dcmqi.json")
    run_qidicom("tid1500reader", "--inputDICOM", path, "--outputMetadata", tmp_path / "qidicom.json")
    problems = comparejson_problems(json.loads((tmp_path / "dcmqi.json").read_text()), json.loads((tmp_path / "qidicom.json").read_text()))
    assert problems == [], "\n".join(problems)
