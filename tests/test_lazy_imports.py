"""What a fresh ``qidicom`` process loads, and when: the image is read while the DICOM
libraries are imported, and pydicom's download helpers stay out. Each is checked for the
same results as the ordinary way."""

from __future__ import annotations

import gc
import importlib.util
import io
import json
import subprocess
import sys
import threading
import weakref

import numpy as np
import pytest

from qidicom import conversions
from qidicom.errors import InputError
from qidicom.readers import PendingImage, read_image, read_images_and_series


def run_python(code: str) -> dict:
    """Run code in a fresh interpreter; it prints one JSON line, returned here."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_conversion_imports_no_download_helpers_and_leaves_them_importable(sample_files, tmp_path):
    helpers = [name for name in ("requests", "tqdm") if importlib.util.find_spec(name) is not None]
    if not helpers:
        pytest.skip("neither requests nor tqdm is installed: pydicom has nothing to import here")
    output = tmp_path / "seg.dcm"
    command = ["itkimage2segimage", "--inputImageList", str(sample_files["ct_labels"]), "--inputDICOMDirectory",
               str(sample_files["ct"]), "--inputMetadata", str(sample_files["seg_metadata"]), "--outputDICOM", str(output)]
    seen = run_python(f"""
import json, sys
from qidicom.cli import main
status = main({command!r})
loaded = sorted(name for name in {helpers!r} if sys.modules.get(name) is not None)
hidden = sorted(name for name in {helpers!r} if name in sys.modules and sys.modules[name] is None)
import pydicom.data.download as download
later = [__import__(name).__name__ for name in {helpers!r}]  # still importable afterwards
print(json.dumps({{"status": status, "loaded": loaded, "hidden": hidden, "later": later,
                  "fallback": not download.HAVE_REQUESTS}}))
""")
    assert seen == {"status": 0, "loaded": [], "hidden": [], "later": helpers, "fallback": True}
    import pydicom

    written = pydicom.dcmread(output)
    assert written.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"  # a Segmentation, written whole
    assert int(written.NumberOfFrames) > 0


def test_image_readers_need_no_pydicom(sample_files):
    # (nibabel imports pydicom when it is installed, for NIfTI's DICOM extension; NRRD needs none.)
    seen = run_python(f"""
import json, sys
import qidicom.readers
imported = "pydicom" in sys.modules
volume = qidicom.readers.read_image({str(sample_files["adc_map"])!r})
print(json.dumps({{"imported": imported, "read": "pydicom" in sys.modules, "shape": list(volume.shape)}}))
""")
    assert seen == {"imported": False, "read": False, "shape": list(read_image(sample_files["adc_map"]).shape)}


@pytest.mark.parametrize("role", ["ct_labels", "adc_map"])
def test_a_pending_image_is_the_image_read(sample_files, role):
    path = sample_files[role]
    expected = read_image(path)
    pending = PendingImage(path)
    volume = pending.take()
    assert volume.name == expected.name
    assert volume.array.dtype == expected.array.dtype
    np.testing.assert_array_equal(volume.array, expected.array)
    np.testing.assert_array_equal(volume.affine, expected.affine)
    # Taken, it holds no reference to the voxels: a writer that drops them frees them.
    voxels = weakref.ref(volume.array)
    del volume
    gc.collect()
    assert voxels() is None
    # Taken again, the file is read again.
    np.testing.assert_array_equal(pending.take().array, expected.array)
    # read_image and read_images_and_series take it as a source.
    np.testing.assert_array_equal(read_image(PendingImage(path)).array, expected.array)


def test_a_pending_image_fails_when_taken_with_read_images_message(tmp_path):
    missing = tmp_path / "absent.nii.gz"
    damaged = tmp_path / "damaged.nii.gz"
    damaged.write_bytes(b"\x1f\x8b\x08\x00not gzip at all")
    for path in (missing, damaged):
        pending = PendingImage(path)  # no error yet: it is reported where the image is needed
        with pytest.raises(InputError) as direct:
            read_image(path)
        with pytest.raises(InputError) as taken:
            pending.take()
        assert str(taken.value) == str(direct.value)


def test_the_cli_starts_reading_the_images_given_by_path_only(sample_files):
    seg = conversions.get("itkimage2segimage")
    sources = {"labelmaps": [sample_files["ct_labels"]], "series": sample_files["ct"], "metadata": sample_files["seg_metadata"]}
    started = conversions.start_reading_images(seg, sources)
    assert [type(item) for item in started["labelmaps"]] == [PendingImage]
    assert started["series"] is sources["series"] and started["metadata"] is sources["metadata"]
    assert sources["labelmaps"] == [sample_files["ct_labels"]]  # the caller's dict is left alone
    pm = conversions.get("itkimage2paramap")
    pending = conversions.start_reading_images(pm, {"map": sample_files["adc_map"], "metadata": None, "series": None})["map"]
    assert isinstance(pending, PendingImage)
    volumes, _ = read_images_and_series([pending], sample_files["mr"], check_spacing=False)
    np.testing.assert_array_equal(volumes[0].array, read_image(sample_files["adc_map"]).array)
    # In memory (the app's bytes), nothing is started.
    data = ("labels.nii.gz", sample_files["ct_labels"].read_bytes())
    assert conversions.start_reading_images(seg, {"labelmaps": [data]})["labelmaps"] == [data]
    started["labelmaps"][0].take()


def test_reading_beside_the_series_restores_the_switch_interval(sample_files):
    before = sys.getswitchinterval()
    read_images_and_series([sample_files["ct_labels"]], sample_files["ct"])
    assert sys.getswitchinterval() == before


class HeldBack(io.BytesIO):
    """An image file whose bytes arrive only once ``release`` is set, as from a slow disk."""

    def __init__(self, data: bytes, name: str, release: threading.Event):
        super().__init__(data)
        self.name, self.release = name, release

    def read(self, *args):
        assert self.release.wait(timeout=60), "never released"
        return super().read(*args)


def test_while_the_image_is_still_read_the_caller_works_beside_it(sample_files):
    path = sample_files["adc_map"]
    release, calls = threading.Event(), []

    def meanwhile(series):
        calls.append((series, threading.current_thread()))
        release.set()  # the image arrives only now, so it was still being read

    held = HeldBack(path.read_bytes(), path.name, release)
    (volume,), series = read_images_and_series([held], sample_files["mr"], check_spacing=False, while_waiting=meanwhile)
    assert calls == [(series, threading.current_thread())]
    np.testing.assert_array_equal(volume.array, read_image(path).array)
    # Two series given: the image is needed (and waited for) to choose one, so once the
    # series is parsed, it has been read and nothing is left to do beside it.
    references = sorted(sample_files["mr"].iterdir()) + sorted(sample_files["ct"].iterdir())
    _, chosen = read_images_and_series([path], references, check_spacing=False, while_waiting=calls.append)
    assert len(calls) == 1 and chosen.datasets[0].Modality == "MR"


def test_the_images_problem_comes_before_one_of_the_work_beside_it(sample_files):
    release = threading.Event()

    def meanwhile(series):
        release.set()
        raise RuntimeError("the work beside the image failed")

    damaged = HeldBack(b"\x1f\x8b\x08\x00not gzip at all", "damaged.nii.gz", release)
    with pytest.raises(InputError) as raised:
        read_images_and_series([damaged], sample_files["mr"], check_spacing=False, while_waiting=meanwhile)
    with pytest.raises(InputError) as direct:
        read_image(b"\x1f\x8b\x08\x00not gzip at all", "damaged.nii.gz")
    assert str(raised.value) == str(direct.value)
    release.clear()
    fine = HeldBack(sample_files["adc_map"].read_bytes(), "map.nii.gz", release)
    with pytest.raises(RuntimeError, match="beside the image failed"):
        read_images_and_series([fine], sample_files["mr"], check_spacing=False, while_waiting=meanwhile)
