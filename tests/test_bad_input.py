"""Hostile and careless inputs: images whose headers lie about their size (gzip bombs),
reference folders holding more than one series, and empty folders. Each gets a clear
message, and memory stays bounded."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import nibabel
import numpy as np
import pydicom
import pytest

import synthetic
from qidicom.cli import main
from qidicom.errors import InputError
from qidicom.readers import MAX_IMAGE_BYTES, MAX_IMAGE_VOXELS, read_dicom_series, read_image
from qidicom.seg import segmentation_from_files

ROOT = Path(__file__).resolve().parents[1]
GIB = 2**30
BOMB_BYTES = 8 * 10**9  # what every bomb below inflates to
#: Peak memory allowed for refusing a bomb, in bytes.
PEAK_LIMIT = 10**9


# --------------------------------------------------------------------------- making bombs


def gzip_member(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip framing
    return compressor.compress(data) + compressor.flush()


def zeros_member(size: int) -> bytes:
    """One gzip member of ``size`` zero bytes, compressed in steps so that making it
    needs no more than a few megabytes."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = bytes(2**24)
    parts = [compressor.compress(chunk) for _ in range(size // len(chunk))]
    parts.append(compressor.compress(bytes(size % len(chunk))))
    return b"".join(parts) + compressor.flush()


@pytest.fixture(scope="module")
def zero_members():
    """256 MiB, and 16 MiB, of zeros as gzip members (about 250 kB and 16 kB). A gzip file
    may hold several members one after another, which readers inflate as one stream, so
    repeating these makes a stream of gigabytes in a few megabytes."""
    return {2**28: zeros_member(2**28), 2**24: zeros_member(2**24)}


def bomb_stream(head: bytes, zeros: dict[int, bytes], total: int = BOMB_BYTES) -> bytes:
    """A gzip stream of ``head`` then zeros, ``total`` bytes once inflated."""
    parts, rest = [gzip_member(head)], total - len(head)
    for size, member in zeros.items():
        count, rest = divmod(rest, size)
        parts.append(member * count)
    return b"".join(parts) + zeros_member(rest)


def bzip2_zeros(total: int) -> bytes:
    """``total`` zero bytes as bzip2 streams one after another (a reader inflates them as one)."""
    import bz2

    step = 2**24
    member = bz2.compress(bytes(step))
    return member * (total // step) + bz2.compress(bytes(total % step))


def nifti_header(shape: tuple[int, ...], dtype=np.uint8) -> bytes:
    """A single-file NIfTI-1 header (348 bytes, then 4 bytes of no extensions)."""
    header = nibabel.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header.set_qform(np.eye(4), code=1)
    header["vox_offset"] = 352
    return header.binaryblock + bytes(4)


def nrrd_header(sizes: tuple[int, ...], encoding: str) -> bytes:
    return (
        "NRRD0004\ntype: uint8\ndimension: 3\n"
        f"sizes: {' '.join(map(str, sizes))}\n"
        "space: left-posterior-superior\nspace directions: (1,0,0) (0,1,0) (0,0,1)\n"
        f"space origin: (0,0,0)\nencoding: {encoding}\n\n"
    ).encode()


@pytest.fixture(scope="module")
def bombs(tmp_path_factory, zero_members):
    """Small files that claim, or inflate to, 8 GB; and the message each must get."""
    folder = tmp_path_factory.mktemp("bombs")
    huge, modest = (2000, 2000, 2000), (64, 64, 64)
    limit = rf"over qidicom's limit of {MAX_IMAGE_VOXELS:,} voxels and {MAX_IMAGE_BYTES / GIB:g} GiB of voxel data; " \
        "refused before reading its voxel data"
    declares_huge = rf"header declares 2000x2000x2000 voxels of 1 byte\(s\) \(8,000,000,000 voxels, 7.5 GiB\), {limit}"
    files = {
        # The header declares 8 GB, and the stream holds them.
        "huge.nii.gz": (bomb_stream(nifti_header(huge), zero_members), declares_huge),
        # The header declares 262 kB, but the stream goes on to 8 GB.
        "modest.nii.gz": (
            bomb_stream(nifti_header(modest), zero_members),
            r"gzip stream holds more than the 262,496 bytes its header declares; it was not inflated further",
        ),
        # Not compressed: 352 bytes that claim 8 GB of voxels.
        "huge.nii": (nifti_header(huge) + bytes(1000), declares_huge),
        # NRRD with gzip-encoded voxel data, both ways.
        "huge.nrrd": (nrrd_header(huge, "gzip") + bomb_stream(b"", zero_members), declares_huge),
        "modest.nrrd": (
            nrrd_header(modest, "gzip") + bomb_stream(b"", zero_members),
            r"NRRD gzip data holds more than the 262,144 bytes its header declares; it was not inflated further",
        ),
        "modest-bzip2.nrrd": (
            nrrd_header(modest, "bzip2") + bzip2_zeros(BOMB_BYTES),
            r"NRRD bzip2 data holds more than the 262,144 bytes its header declares; it was not inflated further",
        ),
        # A whole gzip-compressed NRRD of text values that goes on and on.
        "modest-text.nrrd.gz": (
            bomb_stream(nrrd_header(modest, "ascii"), zero_members),
            r"NRRD text data holds more than the 25,165,824 bytes its 262,144 values can take; it was not inflated further",
        ),
        # A whole gzip-compressed NRRD whose "header" never ends: no line to wait for.
        "endless.nrrd.gz": (
            bomb_stream(b"NRRD0004\ntype: uint8\n# ", zero_members),
            r"NRRD header has no blank line ending it within 16,777,216 bytes",
        ),
    }
    paths = {}
    for name, (data, message) in files.items():
        (folder / name).write_bytes(data)
        assert len(data) < 20 * 2**20  # each is small on disk
        paths[name] = (folder / name, message)
    return paths


BOMB_NAMES = ["huge.nii.gz", "modest.nii.gz", "huge.nii", "huge.nrrd", "modest.nrrd", "modest-bzip2.nrrd",
              "modest-text.nrrd.gz", "endless.nrrd.gz"]


@pytest.mark.parametrize("name", BOMB_NAMES)
def test_bomb_is_refused_with_the_reason(bombs, name):
    path, message = bombs[name]
    with pytest.raises(InputError, match=rf"^{name.replace('.', '[.]')}: {message}"):
        read_image(path)


@pytest.mark.parametrize("name", BOMB_NAMES)
def test_bomb_as_bytes_is_refused_too(bombs, name):
    """The browser app hands the library (name, bytes) pairs, never paths."""
    path, message = bombs[name]
    with pytest.raises(InputError, match=rf"^{name.replace('.', '[.]')}: {message}"):
        read_image((name, path.read_bytes()))


# --------------------------------------------------------------------------- a real CT study passes


def test_a_512x512x1000_ct_label_map_is_within_the_limits(tmp_path, zero_members):
    """The limits leave room for a large CT grid: a 512x512x1000 label map reads (and would
    even as float64)."""
    shape = (512, 512, 1000)
    path = tmp_path / "ct-labels.nii.gz"
    path.write_bytes(bomb_stream(nifti_header(shape), zero_members, total=352 + 512 * 512 * 1000))
    volume = read_image(path)
    assert volume.array.shape == shape and volume.array.dtype == np.uint8
    del volume
    # As float64 (2.1 GB) the header passes the limits too; this file then lacks the voxels.
    path = tmp_path / "ct-map.nii"
    path.write_bytes(nifti_header(shape, np.float64) + bytes(1000))
    with pytest.raises(InputError, match=r"^ct-map.nii: NIfTI voxel data is truncated or corrupt \(Expected 2097152000 bytes"):
        read_image(path)
    assert math.prod(shape) * 8 <= MAX_IMAGE_BYTES


def test_gzip_stream_shorter_than_its_header_declares(tmp_path):
    path = tmp_path / "short.nii.gz"
    path.write_bytes(gzip_member(nifti_header((64, 64, 64)) + bytes(1000)))
    with pytest.raises(InputError, match=r"short.nii.gz: NIfTI voxel data is truncated or corrupt"):
        read_image(path)


def test_gzip_encoded_nrrd_shorter_than_its_header_declares(tmp_path):
    path = tmp_path / "short.nrrd"
    path.write_bytes(nrrd_header((64, 64, 64), "gzip") + gzip_member(bytes(1000)))
    with pytest.raises(InputError, match=r"short.nrrd: NRRD voxel data is truncated or corrupt "
                                         r"\(the data holds 1,000 bytes, but the header declares 262,144\)"):
        read_image(path)


def test_truncated_gzip_stream_keeps_its_message(tmp_path):
    data = gzip_member(nifti_header((8, 8, 8)) + bytes(512))
    path = tmp_path / "cut.nii.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"cut.nii.gz: gzip data is corrupt or truncated \(Compressed file ended"):
        read_image(path)


# --------------------------------------------------------------------------- peak memory, CPython


MEASURE = """
import json, resource, subprocess, sys
run = subprocess.run(sys.argv[1:], capture_output=True, text=True)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # Linux reports KiB
print(json.dumps({"returncode": run.returncode, "stderr": run.stderr, "peak": peak}))
"""


def seg_metadata() -> dict:
    return {
        "ContentCreatorName": "Doe^Jane", "SeriesDescription": "Bomb SEG", "SeriesNumber": "300", "InstanceNumber": "1",
        "segmentAttributes": [[{
            "labelID": 1, "SegmentLabel": "Liver", "SegmentAlgorithmType": "MANUAL",
            "SegmentedPropertyCategoryCodeSequence": {"CodeValue": "85756007", "CodingSchemeDesignator": "SCT", "CodeMeaning": "Tissue"},
            "SegmentedPropertyTypeCodeSequence": {"CodeValue": "10200004", "CodingSchemeDesignator": "SCT", "CodeMeaning": "Liver"},
        }]],
    }


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("study")
    synthetic.write_series(synthetic.make_ct_series(slices=4), folder / "ct")
    (folder / "meta.json").write_text(json.dumps(seg_metadata()))
    return folder


@pytest.mark.parametrize("name", BOMB_NAMES)
def test_cli_refuses_a_bomb_in_bounded_memory(bombs, study, tmp_path, name):
    """The command line, in its own process: one line naming the file and the reason, and a
    peak resident size under 1 GB (the bombs inflate to 8 GB)."""
    path, message = bombs[name]
    output = tmp_path / "out.dcm"
    run = subprocess.run(
        [sys.executable, "-c", MEASURE, sys.executable, "-m", "qidicom", "itkimage2segimage",
         "--inputImageList", str(path), "--inputDICOMDirectory", str(study / "ct"),
         "--inputMetadata", str(study / "meta.json"), "--outputDICOM", str(output)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    report = json.loads(run.stdout)
    print(f"{name}: peak resident size {report['peak'] / 1e6:.0f} MB")
    assert report["returncode"] == 1
    lines = report["stderr"].strip().splitlines()
    assert len(lines) == 1 and re.match(rf"error: .*{name.replace('.', '[.]')}: {message}", lines[0]), lines
    assert report["peak"] < PEAK_LIMIT
    assert not output.exists()


# --------------------------------------------------------------------------- peak memory, browser runtime

# Loads the built site's Pyodide under Node, as tests/node/smoke.mjs does, and hands each
# file to read_image as the browser app does: as a (name, bytes) pair. Peak memory is the
# process's high-water resident size (VmHWM) and the size of the WebAssembly heap, which
# only ever grows.
NODE_SCRIPT = r"""
import { readFileSync } from "node:fs";
import { basename, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const [dist, ...files] = process.argv.slice(2);
const peakRss = () => Number(/VmHWM:\s+(\d+)/.exec(readFileSync("/proc/self/status", "utf8"))[1]) * 1024;
const { loadPyodide } = await import(pathToFileURL(resolve(dist, "pyodide/pyodide.mjs")).href);
const pyodide = await loadPyodide({ indexURL: resolve(dist, "pyodide") + "/" });
await pyodide.loadPackage(["qidicom"], { messageCallback: () => {} });
pyodide.runPython("import qidicom.readers, nibabel, nrrd");
const heap = () => pyodide._module.HEAPU8.length;
const loaded = { peakRss: peakRss(), heap: heap() };
const results = [];
for (const path of files) {
  pyodide.FS.mkdirTree("/input");
  pyodide.FS.writeFile(`/input/${basename(path)}`, readFileSync(path));
  pyodide.globals.set("name", basename(path));
  const message = pyodide.runPython(`
from pathlib import Path
from qidicom.errors import QidicomError
from qidicom.readers import read_image
data = Path("/input", name).read_bytes()
Path("/input", name).unlink()
try:
    read_image((name, data))
    message = None
except QidicomError as error:
    message = str(error)
del data
message
`);
  results.push({ name: basename(path), message, peakRss: peakRss(), heap: heap() });
}
console.log(JSON.stringify({ loaded, results }));
"""


@pytest.fixture(scope="module")
def site() -> Path:
    """The built site (dist/), built or found up to date."""
    build = subprocess.run([sys.executable, str(ROOT / "build" / "site.py"), "build", "--if-needed"],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stdout + build.stderr
    return ROOT / "dist"


@pytest.mark.node
def test_browser_runtime_refuses_bombs_in_bounded_memory(site, bombs, tmp_path):
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    script = tmp_path / "bombs.mjs"
    script.write_text(NODE_SCRIPT)
    run = subprocess.run(["node", str(script), str(site), *(str(bombs[name][0]) for name in BOMB_NAMES)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    loaded = report["loaded"]
    print(f"Pyodide loaded: peak resident size {loaded['peakRss'] / 1e6:.0f} MB, heap {loaded['heap'] / 1e6:.0f} MB")
    for name, result in zip(BOMB_NAMES, report["results"], strict=True):
        print(f"{name}: peak resident size {result['peakRss'] / 1e6:.0f} MB, heap {result['heap'] / 1e6:.0f} MB")
        assert result["message"] is not None and re.match(rf"{name.replace('.', '[.]')}: {bombs[name][1]}", result["message"])
        assert result["peakRss"] < PEAK_LIMIT and result["heap"] < PEAK_LIMIT


# --------------------------------------------------------------------------- reference folders


@pytest.fixture
def two_series(tmp_path):
    """One folder holding the phantom's CT and MR series; its label map lies on the CT's
    grid and its ADC map on the MR's."""
    from qidicom.samples import make_sample_study

    study = make_sample_study(slices=16)  # 16 CT slices, 8 MR slices
    folder = tmp_path / "study"
    for name, data in study.ct_series + study.mr_series:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    for name, data in (study.ct_labels, study.adc_map):
        (tmp_path / name).write_bytes(data)
    (tmp_path / "seg.json").write_text(json.dumps(study.seg_metadata))
    (tmp_path / "pm.json").write_text(json.dumps(study.pm_metadata))
    return {"dir": tmp_path, "folder": folder, "ct": sorted((folder / "ct").iterdir()), "mr": sorted((folder / "mr").iterdir())}


def described(files: list[Path]) -> str:
    """How a series is named in the warnings, from its first file's own attributes."""
    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    return (f"series {first.SeriesNumber} '{first.SeriesDescription}' "
            f"({first.Modality}, UID {first.SeriesInstanceUID}, {len(files)} file(s))")


def names(files: list[Path], root: Path) -> list[str]:
    return [str(path.relative_to(root)) for path in files]


def test_seg_says_which_of_two_series_was_used_and_which_files_were_left_out(two_series):
    ct, mr, folder = two_series["ct"], two_series["mr"], two_series["folder"]
    result = segmentation_from_files([two_series["dir"] / "ct-labels.nii.gz"], two_series["dir"] / "seg.json", folder)
    assert result.warnings[:2] == [
        f"the reference files hold 2 series; used {described(ct)}, the one ct-labels.nii.gz lies on",
        f"left out {described(mr)}, as ct-labels.nii.gz does not lie on its grid: {', '.join(names(mr, folder))}",
    ]
    assert len(mr) <= 10  # every left-out file is named
    referenced = {item.ReferencedSOPInstanceUID for item in result.dataset.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced <= {pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID for path in ct}


def test_pm_says_which_of_two_series_was_used_and_which_files_were_left_out(two_series):
    from qidicom.pm import parametric_map_from_files

    ct, mr, folder = two_series["ct"], two_series["mr"], two_series["folder"]
    result = parametric_map_from_files(two_series["dir"] / "adc.nrrd", two_series["dir"] / "pm.json", folder)
    shown = names(ct, folder)[:10]
    assert result.warnings[:2] == [
        f"the reference files hold 2 series; used {described(mr)}, the one adc.nrrd lies on",
        f"left out {described(ct)}, as adc.nrrd does not lie on its grid: "
        f"{', '.join(shown)} and {len(ct) - 10} more",
    ]


def test_cli_prints_the_series_choice(two_series, capsys):
    output = two_series["dir"] / "out.dcm"
    code = main(["itkimage2segimage", "--inputImageList", str(two_series["dir"] / "ct-labels.nii.gz"),
                 "--inputDICOMDirectory", str(two_series["folder"]), "--inputMetadata", str(two_series["dir"] / "seg.json"),
                 "--outputDICOM", str(output)])
    assert code == 0 and output.exists()
    lines = capsys.readouterr().err.splitlines()
    assert f"warning: the reference files hold 2 series; used {described(two_series['ct'])}, " \
        "the one ct-labels.nii.gz lies on" in lines
    assert any(line.startswith(f"warning: left out {described(two_series['mr'])}") for line in lines)


def test_empty_reference_folder_is_named(two_series, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match=rf"^{re.escape(str(empty))}: the folder is empty; the reference DICOM series was expected there$"):
        read_dicom_series(empty)
    code = main(["itkimage2segimage", "--inputImageList", str(two_series["dir"] / "ct-labels.nii.gz"),
                 "--inputDICOMDirectory", str(empty), "--inputMetadata", str(two_series["dir"] / "seg.json"),
                 "--outputDICOM", str(tmp_path / "out.dcm")])
    assert code == 1
    assert capsys.readouterr().err == f"error: {empty}: the folder is empty; the reference DICOM series was expected there\n"
    (empty / ".DS_Store").write_bytes(b"Bud1")
    with pytest.raises(InputError, match=rf"^{re.escape(str(empty))}: the folder holds only hidden files \(names starting "
                                         r"with '.'\), which are not read; the reference DICOM series was expected there$"):
        read_dicom_series(empty)


def test_folder_without_dicom_files_is_named(two_series, tmp_path, capsys):
    folder = tmp_path / "exports"
    (folder / "notes").mkdir(parents=True)
    (folder / "notes" / "readme.txt").write_text("the scans are elsewhere")
    (folder / "labels.nii.gz").write_bytes((two_series["dir"] / "ct-labels.nii.gz").read_bytes())
    message = (f"{folder}: no DICOM images in the folder (2 file(s) skipped: labels.nii.gz: not a DICOM file, skipped ...)")
    code = main(["itkimage2segimage", "--inputImageList", str(two_series["dir"] / "ct-labels.nii.gz"),
                 "--inputDICOMDirectory", str(folder), "--inputMetadata", str(two_series["dir"] / "seg.json"),
                 "--outputDICOM", str(tmp_path / "out.dcm")])
    assert code == 1
    assert capsys.readouterr().err == f"error: {message}\n"
    with pytest.raises(InputError, match=rf"^{re.escape(message)}$"):
        read_dicom_series([folder])


def test_truncated_reference_file_keeps_its_message(two_series):
    victim = two_series["ct"][3]
    victim.write_bytes(victim.read_bytes()[:2000])
    with pytest.raises(InputError, match=rf"^ct/{victim.name}: truncated or corrupt DICOM file \(pixel data has \d+ of the 8192 bytes"):
        read_dicom_series(two_series["folder"])


def test_reading_a_series_keeps_no_pixel_data(tmp_path):
    """The reference series is kept for its attributes only: after reading, memory holds a
    small fraction of the files (pydicom would otherwise keep each file's bytes)."""
    import gc
    import tracemalloc

    synthetic.write_series(synthetic.make_ct_series(rows=512, columns=512, slices=20), tmp_path / "ct")
    on_disk = sum(path.stat().st_size for path in tmp_path.joinpath("ct").iterdir())
    tracemalloc.start()
    try:
        series = read_dicom_series(tmp_path / "ct")
        gc.collect()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(series.datasets) == 20
    print(f"series of {on_disk / 1e6:.1f} MB read; {held / 1e6:.1f} MB held")
    assert held < on_disk / 4


@pytest.mark.parametrize("option, value, message", [
    ("--inputDICOMDirectory", "", "--inputDICOMDirectory: no folder was given"),
    ("--inputDICOMList", "", "--inputDICOMList: no file names were given"),
    ("--inputDICOMList", ",,", "--inputDICOMList: no file names were given"),
])
def test_cli_reference_option_without_a_value(two_series, tmp_path, capsys, option, value, message):
    for command, image, metadata in (("itkimage2segimage", "--inputImageList", "seg.json"), ("itkimage2paramap", "--inputImage", "pm.json")):
        code = main([command, image, str(two_series["dir"] / "ct-labels.nii.gz"), option, value,
                     "--inputMetadata", str(two_series["dir"] / metadata), "--outputDICOM", str(tmp_path / "out.dcm")])
        assert code == 1
        assert capsys.readouterr().err == f"error: {message}\n"


# --------------------------------------------------------------------------- deflated DICOM


def deflated_dicom_bomb(total: int) -> bytes:
    """A DICOM file in Deflated Explicit VR Little Endian whose deflated data inflates to
    ``total`` zero bytes. After a full flush the compressor starts afresh, so one flushed
    block of zeros can be repeated; the file stays a few megabytes."""
    import io

    from pydicom.filewriter import write_file_meta_info

    meta = pydicom.dataset.FileMetaDataset()
    meta.MediaStorageSOPClassUID = pydicom.uid.CTImageStorage
    meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
    stream = io.BytesIO()
    stream.write(bytes(128) + b"DICM")
    write_file_meta_info(stream, meta)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    step = 2**24
    first = compressor.compress(bytes(step)) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(bytes(step)) + compressor.flush(zlib.Z_FULL_FLUSH)
    return stream.getvalue() + first + block * (total // step - 1) + compressor.flush()


def test_deflated_dicom_bomb_in_the_reference_folder(study, tmp_path):
    """A reference file that inflates to 3 GB is refused while it is measured, in bounded memory."""
    from qidicom.readers import MAX_DEFLATED_DICOM_BYTES

    folder = tmp_path / "ct"
    shutil.copytree(study / "ct", folder)
    victim = sorted(folder.iterdir())[1]
    victim.write_bytes(deflated_dicom_bomb(3 * GIB))
    assert victim.stat().st_size < 5 * 2**20
    message = (f"{victim.name}: its deflated data inflates to more than {MAX_DEFLATED_DICOM_BYTES:,} bytes, "
               "more than any object qidicom reads; it was not inflated further")
    with pytest.raises(InputError, match=rf"^{re.escape(message)}$"):
        read_dicom_series(folder)
    labels = tmp_path / "labels.nii.gz"
    datasets = [pydicom.dcmread(path) for path in sorted((study / "ct").iterdir())]
    synthetic.save_nifti(np.ones(synthetic.grid_shape(datasets), np.uint8), synthetic.series_affine(datasets), labels)
    run = subprocess.run(
        [sys.executable, "-c", MEASURE, sys.executable, "-m", "qidicom", "itkimage2segimage",
         "--inputImageList", str(labels), "--inputDICOMDirectory", str(folder),
         "--inputMetadata", str(study / "meta.json"), "--outputDICOM", str(tmp_path / "out.dcm")],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    report = json.loads(run.stdout)
    print(f"deflated DICOM: peak resident size {report['peak'] / 1e6:.0f} MB")
    assert report["returncode"] == 1 and report["stderr"] == f"error: {message}\n"
    assert report["peak"] < PEAK_LIMIT


def test_deflated_seg_cut_short_is_named(study, tmp_path, capsys):
    """A deflated SEG cut off mid-stream (an interrupted copy) is a clear error naming the
    file, not zlib's bare message as an unexpected error."""
    whole, labels = tmp_path / "seg.dcm", tmp_path / "labels.nii.gz"
    datasets = [pydicom.dcmread(path) for path in sorted((study / "ct").iterdir())]
    synthetic.save_nifti(np.ones(synthetic.grid_shape(datasets), np.uint8), synthetic.series_affine(datasets), labels)
    assert main(["itkimage2segimage", "--inputImageList", str(labels),
                 "--inputDICOMDirectory", str(study / "ct"), "--inputMetadata", str(study / "meta.json"),
                 "--outputDICOM", str(whole), "--compress", "deflate"]) == 0
    data = whole.read_bytes()
    for keep in (len(data) // 2, len(data) - 200):
        cut = tmp_path / f"cut-{keep}.dcm"
        cut.write_bytes(data[:keep])
        capsys.readouterr()
        assert main(["segimage2itkimage", "--inputDICOM", str(cut), "--outputDirectory", str(tmp_path / "out")]) == 1
        error = capsys.readouterr().err
        assert error.startswith(f"error: {cut.name}: truncated or corrupt DICOM file ("), error
        assert "unexpected" not in error
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
