"""The PM writer's shortcut gives the same file as highdicom's general path, byte for byte.

When the map is the whole reference series (every image, whole, on its grid), qidicom lets
highdicom take each frame's plane position from its source image instead of handing it
positions that highdicom would match to the 200 images one by one and then replace by those
images' own. ``qidicom.pm.FAST_PATHS = False`` takes the general path; each case here is
written both ways and the files compared, with only the UIDs and time stamps made when
writing (different in any two runs) set alike.
"""

from __future__ import annotations

import copy
import io

import numpy as np
import pydicom
import pytest

import synthetic
from synthetic import written_alike
from qidicom import pm
from qidicom.geometry import Volume
from qidicom.readers import read_image
from qidicom.samples import make_sample_study
from qidicom.writers import volume_bytes

STUDY = make_sample_study(rows=24, columns=20, slices=12)  # an MR series of 6 slices
#: UIDs made while writing start with highdicom's root; those of the inputs do not.


def map_file(volume: Volume, name: str) -> tuple[str, bytes]:
    return name, volume_bytes(volume)


def part_of(volume: Volume, start: tuple[int, int, int], stop: tuple[int, int, int], name: str) -> tuple[str, bytes]:
    """A block of the map, on the same grid."""
    block = [slice(a, b) for a, b in zip(start, stop)]
    affine = volume.affine.copy()
    affine[:3, 3] = volume.affine[:3, :3] @ np.asarray(start, float) + volume.affine[:3, 3]
    return map_file(Volume(np.ascontiguousarray(volume.array[tuple(block)]), affine, name), name)


def oblique_case() -> tuple:
    datasets = synthetic.make_ct_series(
        rows=12, columns=10, slices=5, modality="MR", orientation=(1, 0, 0, 0, 0.96, 0.28), seed=7
    )
    files = []
    for n, dataset in enumerate(datasets):
        buffer = io.BytesIO()
        pydicom.dcmwrite(buffer, dataset, enforce_file_format=True)
        files.append((f"mr{n}.dcm", buffer.getvalue()))
    values = np.random.default_rng(2).random(synthetic.grid_shape(datasets)).astype(np.float32)
    return map_file(Volume(values, synthetic.series_affine(datasets), "oblique"), "oblique.nrrd"), files


def cases() -> dict[str, tuple]:
    adc = read_image(STUDY.adc_map[1], STUDY.adc_map[0])
    integers = Volume(np.rint(adc.array * 1000).astype(np.int16) - 50, adc.affine, "adc-int16")
    described = copy.deepcopy(STUDY.pm_metadata)
    described.update(DerivationDescription="mono-exponential fit", DerivedPixelContrast="ADC")
    oblique_map, oblique_series = oblique_case()
    slices = adc.array.shape[2]
    return {
        # the whole series: the shortcut applies
        "float32": (STUDY.adc_map, STUDY.pm_metadata, STUDY.mr_series, {}, True),
        "float64": (STUDY.adc_map, STUDY.pm_metadata, STUDY.mr_series, {"data_type": "float64"}, True),
        "deflate": (STUDY.adc_map, STUDY.pm_metadata, STUDY.mr_series, {"compress": "deflate"}, True),
        "int16 shifted to unsigned": (map_file(integers, "adc-int16.nrrd"), STUDY.pm_metadata, STUDY.mr_series, {}, True),
        "derivation description, ADC contrast": (STUDY.adc_map, described, STUDY.mr_series, {}, True),
        "oblique series": (oblique_map, STUDY.pm_metadata, oblique_series, {}, True),
        "series given in reverse": (STUDY.adc_map, STUDY.pm_metadata, STUDY.mr_series[::-1], {}, True),
        # not the whole series: the general path
        "some slices": (part_of(adc, (0, 0, 1), (*adc.array.shape[:2], slices - 2), "slab"),
                        STUDY.pm_metadata, STUDY.mr_series, {}, False),
        "a block of the grid": (part_of(adc, (2, 1, 0), (8, 9, slices), "block"),
                                STUDY.pm_metadata, STUDY.mr_series, {}, False),
        "one reference image": (STUDY.adc_map, STUDY.pm_metadata, STUDY.mr_series[:1], {}, False),
    }


CASES = cases()


@pytest.mark.parametrize("name", list(CASES))
def test_shortcut_writes_the_general_paths_file(name, monkeypatch):
    image, metadata, series, options, shortcut = CASES[name]
    taken = []
    geometry = pm.MapPlacement.highdicom_geometry

    def spy(self):
        result = geometry(self)
        taken.append(result["plane_positions"] is None)
        return result

    monkeypatch.setattr(pm.MapPlacement, "highdicom_geometry", spy)
    fast = pm.parametric_map_from_files(image, metadata, series, **options)
    monkeypatch.setattr(pm, "FAST_PATHS", False)
    general = pm.parametric_map_from_files(image, metadata, series, **options)
    assert taken == [shortcut, False]
    assert fast.warnings == general.warnings
    assert written_alike(fast.dataset) == written_alike(general.dataset)
    # The files as written differ only where the UIDs and times do: same length but for
    # the lengths of those values.
    assert int(fast.dataset.NumberOfFrames) == int(general.dataset.NumberOfFrames) > 0


def test_comparison_sees_a_difference_in_any_frame(monkeypatch):
    """The check above is not blind: one frame's position written differently is caught."""
    image, metadata, series, options, _ = CASES["float32"]
    first = pm.parametric_map_from_files(image, metadata, series, **options).dataset
    second = copy.deepcopy(first)
    position = second.PerFrameFunctionalGroupsSequence[2].PlanePositionSequence[0]
    position.ImagePositionPatient = [float(v) + 1e-3 for v in position.ImagePositionPatient]
    assert written_alike(first) != written_alike(second)
    assert written_alike(first) == written_alike(copy.deepcopy(first))
