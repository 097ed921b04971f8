"""A SEG's RecommendedDisplayCIELabValue read back as dcmqi's recommendedDisplayRGBValue:
qidicom's conversion gives highdicom's result for every colour tried."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pytest

from qidicom.errors import InputError
from qidicom.seg.read import cielab_to_rgb


def highdicoms(value) -> list[int]:
    return list(hd.color.CIELabColor.from_dicom_value([int(v) for v in value]).to_rgb(clip=True))


def test_colours_written_from_rgb_read_back_as_highdicom_reads_them():
    """Every 8-bit RGB colour on a grid (the colours a SEG is written with), as highdicom
    stores it, then read back."""
    steps = list(range(0, 256, 15)) + [1, 127, 128, 254, 255]
    for r in steps:
        for g in steps:
            for b in steps:
                value = hd.color.CIELabColor.from_rgb(r, g, b).value
                assert cielab_to_rgb(value) == highdicoms(value), (r, g, b)


def test_any_stored_value_reads_as_highdicom_reads_it():
    """Random and extreme 16-bit triplets, most of them outside sRGB (clipped)."""
    rng = np.random.default_rng(13)
    values = [tuple(int(v) for v in row) for row in rng.integers(0, 0x10000, size=(20000, 3))]
    edges = (0, 1, 0x8080, 0xFFFE, 0xFFFF)
    values += [(a, b, c) for a in edges for b in edges for c in edges]
    for value in values:
        result = cielab_to_rgb(value)
        assert result == highdicoms(value), value
        assert all(type(c) is int and 0 <= c <= 255 for c in result)


@pytest.mark.parametrize("value", [(1, 2), (0, 70000, 0), (-1, 0, 0)])
def test_a_value_that_is_no_colour_is_a_clear_error(value):
    with pytest.raises(InputError, match="RecommendedDisplayCIELabValue"):
        cielab_to_rgb(value)
