"""Image grids in patient space: volumes, DICOM slice stacks, and how to match the two.

Convention (as in nibabel, but in DICOM's patient space): a volume's array is indexed
``[i, j, k]`` = [column, row, slice], and a 4x4 ``affine`` maps ``(i, j, k, 1)`` to LPS
millimetres. NIfTI's RAS world is converted once, when a file is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from qidicom.errors import GeometryError

#: Flips x and y: converts an affine between RAS (NIfTI) and LPS (DICOM, NRRD default).
LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

#: Default tolerance, in millimetres, for positions to count as equal.
POSITION_TOLERANCE_MM = 0.01
#: Default tolerance for direction cosines to count as equal.
DIRECTION_TOLERANCE = 1e-4


@dataclass
class Volume:
    """Voxel data on a grid: ``array[i, j, k]`` and its LPS ``affine``."""

    array: np.ndarray
    affine: np.ndarray
    name: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.array.shape[:3])  # type: ignore[return-value]

    @property
    def spacing(self) -> np.ndarray:
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def directions(self) -> np.ndarray:
        """Unit vectors of the i, j, k axes, as columns."""
        return self.affine[:3, :3] / self.spacing

    @property
    def origin(self) -> np.ndarray:
        return self.affine[:3, 3].copy()


def affine_from_planes(
    orientation: Sequence[float],
    pixel_spacing: Sequence[float],
    first_position: Sequence[float],
    slice_step: Sequence[float],
) -> np.ndarray:
    """LPS affine of a stack of DICOM planes.

    ``orientation`` is ImageOrientationPatient (row direction, then column direction),
    ``pixel_spacing`` is PixelSpacing (between rows, then between columns), and
    ``slice_step`` the vector from one plane's position to the next.
    """
    iop = np.asarray(orientation, float)
    affine = np.eye(4)
    affine[:3, 0] = iop[:3] * float(pixel_spacing[1])
    affine[:3, 1] = iop[3:] * float(pixel_spacing[0])
    affine[:3, 2] = np.asarray(slice_step, float)
    affine[:3, 3] = np.asarray(first_position, float)
    return affine


def slice_normal(orientation: Sequence[float]) -> np.ndarray:
    iop = np.asarray(orientation, float)
    normal = np.cross(iop[:3], iop[3:])
    return normal / np.linalg.norm(normal)


@dataclass
class PlaneStack:
    """Parallel image planes sorted along their normal, with the regular grid they form."""

    orientation: np.ndarray
    pixel_spacing: np.ndarray
    positions: np.ndarray  # (n, 3), sorted along the normal
    rows: int
    columns: int

    @property
    def normal(self) -> np.ndarray:
        return slice_normal(self.orientation)

    @property
    def distances(self) -> np.ndarray:
        return self.positions @ self.normal

    def slice_step(self) -> np.ndarray:
        """The vector between consecutive planes (the normal times the slice thickness for one plane)."""
        if len(self.positions) > 1:
            return (self.positions[-1] - self.positions[0]) / (len(self.positions) - 1)
        return self.normal

    @property
    def affine(self) -> np.ndarray:
        return affine_from_planes(self.orientation, self.pixel_spacing, self.positions[0], self.slice_step())

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.columns, self.rows, len(self.positions))


def check_regular_spacing(stack: PlaneStack, names: Sequence[str], tolerance_mm: float = POSITION_TOLERANCE_MM) -> None:
    """Fail on duplicate planes, gaps (a missing slice) or uneven spacing, naming the planes."""
    distances = stack.distances
    if len(distances) < 2:
        return
    steps = np.diff(distances)
    for index, step in enumerate(steps):
        if abs(step) <= tolerance_mm:
            raise GeometryError(
                f"{names[index]} and {names[index + 1]} lie at the same position "
                f"({_format_point(stack.positions[index])}): duplicate slices in the series"
            )
    typical = float(np.median(steps))
    for index, step in enumerate(steps):
        if abs(step - typical) > max(tolerance_mm, 0.01 * typical):
            missing = round(step / typical) - 1
            hint = f" ({missing} slice{'s' if missing != 1 else ''} missing?)" if missing >= 1 else ""
            raise GeometryError(
                f"uneven slice spacing between {names[index]} and {names[index + 1]}: "
                f"{step:.4g} mm where the series spacing is {typical:.4g} mm{hint}"
            )
    # Planes must also lie on one straight line along the normal (no sideways shift).
    expected = stack.positions[0] + np.outer(np.arange(len(distances)), stack.slice_step())
    offsets = np.linalg.norm(stack.positions - expected, axis=1)
    worst = int(np.argmax(offsets))
    if offsets[worst] > max(tolerance_mm * 10, 0.01 * abs(typical)):
        raise GeometryError(
            f"{names[worst]} is {offsets[worst]:.3g} mm off the line of the other slices' positions"
        )


def index_mapping(source_affine: np.ndarray, target_affine: np.ndarray, tolerance: float = 1e-3) -> tuple[np.ndarray, np.ndarray] | None:
    """How source voxel indices map to target voxel indices, if the grids align exactly.

    Returns ``(permutation_with_signs, offset)`` such that target index =
    ``M @ source index + offset`` where M is a signed permutation matrix, or ``None``
    when the grids differ by anything but axis order, flips and whole-voxel shifts.
    """
    transform = np.linalg.inv(target_affine) @ source_affine
    matrix = transform[:3, :3]
    rounded = np.round(matrix)
    if np.abs(matrix - rounded).max() > tolerance:
        return None
    if not (np.abs(rounded).sum(axis=0) == 1).all() or not (np.abs(rounded).sum(axis=1) == 1).all():
        return None
    offset = transform[:3, 3]
    rounded_offset = np.round(offset)
    if np.abs(offset - rounded_offset).max() > tolerance:
        return None
    return rounded.astype(int), rounded_offset.astype(int)


def resample_onto(volume: Volume, target_affine: np.ndarray, target_shape: tuple[int, int, int], tolerance: float = 1e-3) -> np.ndarray:
    """The volume's voxels on the target grid, exactly (no interpolation).

    Handles axis permutations, flips (e.g. NIfTI written in RAS+ order) and a volume that
    covers only some of the target's slices (the rest are zero). Raises GeometryError
    saying what differs otherwise.
    """
    mapping = index_mapping(volume.affine, target_affine, tolerance)
    if mapping is None:
        raise GeometryError(describe_grid_difference(volume, target_affine, target_shape))
    matrix, offset = mapping
    data = volume.array
    # Target axis t takes source axis s where matrix[t, s] != 0.
    source_axis_for_target = [int(np.nonzero(matrix[t])[0][0]) for t in range(3)]
    data = np.transpose(data, source_axis_for_target + list(range(3, data.ndim)))
    starts = []
    for t in range(3):
        s = source_axis_for_target[t]
        sign = matrix[t, s]
        if sign < 0:
            data = np.flip(data, axis=t)
            # After the flip, source index 0 lands at offset - (n - 1).
            starts.append(int(offset[t]) - (volume.shape[s] - 1))
        else:
            starts.append(int(offset[t]))
    ends = [start + data.shape[t] for t, start in enumerate(starts)]
    for t in range(3):
        if starts[t] < 0 or ends[t] > target_shape[t]:
            raise GeometryError(
                f"{volume.name or 'the image'} extends beyond the reference series along "
                f"{'ijk'[t]} (covers indices {starts[t]}..{ends[t] - 1} of 0..{target_shape[t] - 1}); "
                + describe_grid_difference(volume, target_affine, target_shape)
            )
    if starts == [0, 0, 0] and list(data.shape[:3]) == list(target_shape):
        return data  # a view: no copy of a large label map
    result = np.zeros(tuple(target_shape) + data.shape[3:], data.dtype)
    result[starts[0]:ends[0], starts[1]:ends[1], starts[2]:ends[2]] = data
    return result


def describe_grid_difference(volume: Volume, target_affine: np.ndarray, target_shape: Sequence[int]) -> str:
    """A sentence saying how a volume's grid differs from the reference series' grid."""
    name = volume.name or "the image"
    target = Volume(np.empty((0, 0, 0)), target_affine)
    problems = []
    if not np.allclose(np.abs(volume.directions.T @ target.directions), np.abs(np.round(volume.directions.T @ target.directions)), atol=DIRECTION_TOLERANCE):
        problems.append(
            f"orientation differs (image axes {_format_axes(volume.directions)}, series axes {_format_axes(target.directions)})"
        )
    else:
        mine = sorted(np.round(volume.spacing, 4))
        theirs = sorted(np.round(target.spacing, 4))
        if not np.allclose(mine, theirs, atol=1e-3):
            problems.append(
                f"voxel spacing differs (image {_format_point(volume.spacing)} mm, series {_format_point(target.spacing)} mm)"
            )
        else:
            problems.append(
                f"origin {_format_point(volume.origin)} is not on the series grid starting at {_format_point(target.origin)}"
            )
    if sorted(volume.shape) != sorted(int(n) for n in target_shape):
        problems.append(f"size {_format_shape(volume.shape)} vs series {_format_shape(target_shape)}")
    return f"{name} does not lie on the reference series' grid: " + "; ".join(problems)


def _format_point(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{float(v):.4g}" for v in values) + ")"


def _format_axes(directions: np.ndarray) -> str:
    return " ".join(_format_point(directions[:, n]) for n in range(3))


def _format_shape(shape: Sequence[int]) -> str:
    return "x".join(str(int(n)) for n in shape)


#: Smallest direction-cosine component that still earns a letter in Patient Orientation:
#: rounding in ImageOrientationPatient text must not turn an axial image "oblique".
ORIENTATION_LETTER_THRESHOLD = 1e-3


def patient_orientation(image_orientation: Sequence[float]) -> list[str]:
    """Patient Orientation (0020,0020) for planes of the given Image Orientation (Patient).

    One value for the row direction and one for the column direction, each the letters
    (L/R, P/A, H/F) of the patient axes the direction points along, the principal axis
    first and at most three letters (PS3.3 C.7.6.1.1.1). LPS: +x is L, +y is P, +z is H.
    """
    iop = np.asarray(image_orientation, float)
    return [_direction_letters(iop[:3]), _direction_letters(iop[3:])]


def _direction_letters(direction: np.ndarray) -> str:
    positive, negative = "LPH", "RAF"
    letters = []
    for axis in np.argsort(-np.abs(direction), kind="stable"):
        if abs(direction[axis]) < ORIENTATION_LETTER_THRESHOLD:
            break
        letters.append(positive[axis] if direction[axis] > 0 else negative[axis])
    return "".join(letters)


def covered_ranges(volume: Volume, target_affine: np.ndarray, tolerance: float = 1e-3) -> list[tuple[int, int]] | None:
    """The index range ``(first, last)`` along i, j and k of the target grid that the
    volume covers, or None if its grid is not aligned with the target's."""
    mapping = index_mapping(volume.affine, target_affine, tolerance)
    if mapping is None:
        return None
    matrix, offset = mapping
    corners = np.array([[0, 0, 0], [n - 1 for n in volume.shape]]) @ matrix.T + offset
    return [(int(low), int(high)) for low, high in zip(corners.min(axis=0), corners.max(axis=0))]
