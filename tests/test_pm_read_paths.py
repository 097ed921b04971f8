"""Reading a PM: the stack of frames and its transposed view give the map that was written.

``read_parametric_map`` stacks the frames as they are stored (slices, rows, columns) and
returns its transposed view, without a copy when the frames hold the stored values in slice
order. ``qidicom.pm.FAST_PATHS = False`` copies every frame into a new stack. Each case is
read both ways: the same volume, the same metadata, the same NIfTI and NRRD files, and the
map the PM was written from.
"""

from __future__ import annotations

import copy
import io

import numpy as np
import pydicom
import pytest

from qidicom import pm
from qidicom.dicom_encoding import write_part10
from qidicom.geometry import Volume
from qidicom.readers import read_image
from qidicom.samples import make_sample_study
from qidicom.writers import volume_bytes

STUDY = make_sample_study(rows=24, columns=20, slices=12)
MAP = read_image(STUDY.adc_map[1], STUDY.adc_map[0])


def written(image=STUDY.adc_map, **options) -> bytes:
    return pm.parametric_map_from_files(image, STUDY.pm_metadata, STUDY.mr_series, **options).data


def frames_reordered(data: bytes, order) -> bytes:
    """The same PM with its frames (pixels and per-frame items) stored in another order."""
    dataset = pydicom.dcmread(io.BytesIO(data))
    frames = np.frombuffer(dataset.FloatPixelData, np.uint8).reshape(int(dataset.NumberOfFrames), -1)
    dataset.FloatPixelData = frames[list(order)].tobytes()
    per_frame = dataset.PerFrameFunctionalGroupsSequence
    dataset.PerFrameFunctionalGroupsSequence = [per_frame[n] for n in order]
    return write_part10(dataset)


def frame_left_out(data: bytes, left_out: int) -> bytes:
    dataset = pydicom.dcmread(io.BytesIO(data))
    count = int(dataset.NumberOfFrames)
    frames = np.frombuffer(dataset.FloatPixelData, np.uint8).reshape(count, -1)
    kept = [n for n in range(count) if n != left_out]
    dataset.FloatPixelData = frames[kept].tobytes()
    dataset.PerFrameFunctionalGroupsSequence = [dataset.PerFrameFunctionalGroupsSequence[n] for n in kept]
    dataset.NumberOfFrames = count - 1
    return write_part10(dataset)


FLOAT32 = written(data_type="float32")
SLICES = MAP.array.shape[2]
INTEGERS = Volume(np.rint(MAP.array * 1000).astype(np.int16) - 50, MAP.affine, "adc-int16")
CASES = {
    # (the PM, the map it must read back as)
    "float32": (FLOAT32, MAP.array.astype(np.float32)),
    "float64": (written(data_type="float64"), MAP.array.astype(np.float64)),
    "deflated": (written(data_type="float32", compress="deflate"), MAP.array.astype(np.float32)),
    "frames stored top down": (frames_reordered(FLOAT32, range(SLICES - 1, -1, -1)), MAP.array.astype(np.float32)),
    "frames shuffled": (frames_reordered(FLOAT32, np.random.default_rng(4).permutation(SLICES)),
                        MAP.array.astype(np.float32)),
    "integers with slope and intercept": (written(("adc-int16.nrrd", volume_bytes(INTEGERS)), data_type="auto"),
                                          INTEGERS.array),
}


def read_both_ways(data: bytes, monkeypatch) -> tuple[pm.ParametricMapContents, pm.ParametricMapContents]:
    fast = pm.read_parametric_map(data)
    monkeypatch.setattr(pm, "FAST_PATHS", False)
    general = pm.read_parametric_map(data)
    monkeypatch.setattr(pm, "FAST_PATHS", True)
    return fast, general


def without_date(nrrd: bytes) -> bytes:
    """pynrrd writes the time of writing into a comment line; the rest must be equal."""
    return b"\n".join(line for line in nrrd.split(b"\n") if not line.startswith(b"# on "))


@pytest.mark.parametrize("name", list(CASES))
def test_both_ways_read_the_map_that_was_written(name, monkeypatch):
    data, expected = CASES[name]
    fast, general = read_both_ways(data, monkeypatch)
    for contents in (fast, general):
        assert contents.volume.array.dtype == expected.dtype
        np.testing.assert_array_equal(contents.volume.array, expected)
        np.testing.assert_allclose(contents.volume.affine, MAP.affine, rtol=1e-5, atol=1e-3)  # DICOM decimal text
    np.testing.assert_array_equal(fast.volume.affine, general.volume.affine)
    assert fast.metadata == general.metadata and fast.warnings == general.warnings
    assert volume_bytes(fast.volume, "nii") == volume_bytes(general.volume, "nii")
    assert without_date(volume_bytes(fast.volume, "nrrd")) == without_date(volume_bytes(general.volume, "nrrd"))
    # Both are views of a stack of whole frames: Fortran-ordered [i, j, k], as images store them.
    for contents in (fast, general):
        assert contents.volume.array.flags.f_contiguous and not contents.volume.array.flags.owndata


def test_a_missing_frame_leaves_its_slice_empty(monkeypatch):
    left_out = 2
    fast, general = read_both_ways(frame_left_out(FLOAT32, left_out), monkeypatch)
    expected = MAP.array.astype(np.float32).copy()
    expected[:, :, left_out] = 0
    for contents in (fast, general):
        np.testing.assert_array_equal(contents.volume.array, expected)


def test_a_changed_frame_shows(monkeypatch):
    """The comparison above is not blind: one changed value in one frame differs."""
    dataset = pydicom.dcmread(io.BytesIO(FLOAT32))
    values = np.frombuffer(dataset.FloatPixelData, np.float32).copy()
    values[values.size // 2] += 1
    dataset.FloatPixelData = values.tobytes()
    changed = pm.read_parametric_map(write_part10(copy.deepcopy(dataset)))
    assert not np.array_equal(changed.volume.array, MAP.array.astype(np.float32))
