"""The slice preview's pixel decoding under Pyodide (dist/'s own build, in Node): plain,
deflated, RLE and JPEG baseline (pillow) series read to the same pixels as in CPython; a
JPEG Lossless series says the preview is unavailable."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.uid import DeflatedExplicitVRLittleEndian, JPEGBaseline8Bit, JPEGLossless, RLELossless

import synthetic
from qidicom import preview

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.node


@pytest.fixture(scope="module")
def dist() -> Path:
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    result = subprocess.run([sys.executable, str(ROOT / "build" / "site.py"), "build", "--if-needed"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return ROOT / "dist"


def jpeg_series():
    datasets = synthetic.make_ct_series(rows=16, columns=16, slices=3)
    gradient = (np.add.outer(np.arange(16), np.arange(16)) * 8).astype(np.uint8)
    for n, ds in enumerate(datasets):
        frame = io.BytesIO()
        Image.fromarray(gradient + n, "L").save(frame, "JPEG", quality=95)
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.PixelData = encapsulate([frame.getvalue()])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    return datasets


def test_pyodide_decodes_what_cpython_decodes(dist, tmp_path):
    series = {"plain": synthetic.make_ct_series(rows=32, columns=30, slices=4, seed=1)}
    series["deflated"] = synthetic.make_ct_series(rows=32, columns=30, slices=4, seed=2)
    for ds in series["deflated"]:
        ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    series["rle"] = synthetic.make_ct_series(rows=32, columns=30, slices=4, seed=3)
    for ds in series["rle"]:
        ds.compress(RLELossless, encoding_plugin="pydicom")
    series["jpeg"] = jpeg_series()
    series["lossless"] = synthetic.make_ct_series(rows=8, columns=8, slices=2)
    for ds in series["lossless"]:
        ds.PixelData = encapsulate([b"\xff\xd8\xff\xd9"])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = JPEGLossless
    expected = {}
    for name, datasets in series.items():
        synthetic.write_series(datasets, tmp_path / name)
        if name != "lossless":
            volume = preview.read_series_volume(tmp_path / name)
            expected[name] = {"shape": list(volume.shape), "dtype": str(volume.stored.dtype),
                              "sum": int(volume.stored.astype(np.int64).sum()),
                              "values": volume.array[::5, ::7, :].astype(np.int64).ravel().tolist()}
    run = subprocess.run(["node", str(ROOT / "tests" / "node" / "preview.mjs"), str(dist), str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    found = json.loads(run.stdout.strip().splitlines()[-1])
    assert "preview unavailable for transfer syntax JPEG Lossless" in found.pop("lossless")["unavailable"]
    assert found == expected
