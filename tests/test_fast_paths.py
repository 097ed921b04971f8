"""The speed-ups of conversions give exactly what the plain path gives.

Each test runs a fast path and the straightforward one on the same input and compares
bytes or arrays: two volumes encoded at a time equal one after another, in order.
"""

from __future__ import annotations

import numpy as np

from qidicom.geometry import Volume
from qidicom.writers import volume_bytes, volumes_bytes


def _volumes() -> list[Volume]:
    rng = np.random.default_rng(7)
    affine = np.diag([0.8, 0.8, 1.5, 1.0])
    shapes = [(40, 30, 12), (17, 23, 5), (64, 64, 9)]
    volumes = []
    for n, shape in enumerate(shapes):
        array = np.asfortranarray((rng.random(shape) > 0.7).astype(np.uint8) * (n + 1))
        volumes.append(Volume(array, affine, f"segment {n + 1}"))
    volumes.append(Volume(rng.random((20, 20, 4)).astype(np.float32), affine, "probabilities"))
    return volumes


def test_volumes_encoded_two_at_a_time_equal_one_after_another():
    for image_type in ("nrrd", "nii"):
        volumes = _volumes()
        serial = [volume_bytes(volume, image_type) for volume in volumes]
        assert volumes_bytes(iter(volumes), image_type, workers=2) == serial
        assert volumes_bytes(volumes, image_type, workers=1) == serial
        assert len(set(serial)) == len(serial)  # distinct files, so order is checked too
