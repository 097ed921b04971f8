"""highdicom's frame look-up tables, built when first used instead of in every construction.

At the end of building a multi-frame image (``Segmentation``, ``ParametricMap``) highdicom
indexes its frames into an in-memory SQLite database (``_build_luts``): which source frame
and dimension index values each frame has, for its readers' queries (``get_volume``,
``get_source_image_uids`` and the like). None of it is part of the DICOM object, and a
conversion that only writes the object never queries it: for the bench case's BINARY SEG
(810 frames) it is ~0.05 s of CPU per conversion, for nothing.

:class:`DeferredLuts`, put before highdicom's class, keeps the construction exactly as it is
but for that last step, and builds the tables with highdicom's own ``_build_luts`` the first
time one of the attributes it sets is asked for (so every query, pickling and copying work
as on highdicom's class). The tables then describe the object as it is when first asked,
which for a PM is after the writer has put its frames in order: highdicom's class answered
from the frames' order before that. ``tests/test_highdicom_luts.py`` proves the objects
written the same and the queries answered as for the file read back.
"""

from __future__ import annotations

import threading
from typing import Any

import highdicom as hd

#: What highdicom's ``_build_luts`` sets (``_coordinate_system`` too, which the constructor
#: has already set to the same value).
LUT_ATTRIBUTES = frozenset({
    "_db_con", "_dim_ind_col_names", "_dim_ind_pointers", "_file_reader", "_has_frame_references",
    "_is_tiled_full", "_missing_reference_instances",
})

_LOCK = threading.RLock()


class DeferredLuts:
    """Mixin for a highdicom image class: its frame look-up tables built on first use."""

    def _build_luts(self) -> None:
        # Called by highdicom's constructor as its last step: only noted here.
        object.__setattr__(self, "_luts_deferred", True)

    @property
    def luts_built(self) -> bool:
        """Whether highdicom's look-up tables have been built (for tests and measurements)."""
        return not self.__dict__.get("_luts_deferred", False)

    def build_luts(self) -> None:
        """highdicom's ``_build_luts``, once, if it has not run yet."""
        if self.__dict__.get("_luts_deferred"):
            with _LOCK:
                if self.__dict__.pop("_luts_deferred", False):
                    # (highdicom's _build_luts asks for some of the attributes it sets first)
                    try:
                        super()._build_luts()  # type: ignore[misc]
                    except BaseException:
                        object.__setattr__(self, "_luts_deferred", True)
                        raise

    def __getattr__(self, name: str) -> Any:
        if name in LUT_ATTRIBUTES and self.__dict__.get("_luts_deferred"):
            self.build_luts()
            return object.__getattribute__(self, name)
        return super().__getattr__(name)  # type: ignore[misc]

    def __getstate__(self) -> dict[str, Any]:
        self.build_luts()  # highdicom's state holds the tables' database
        return super().__getstate__()  # type: ignore[misc]


class Segmentation(DeferredLuts, hd.seg.Segmentation):
    """highdicom's ``Segmentation``, its frame look-up tables built on first use."""


class ParametricMap(DeferredLuts, hd.pm.ParametricMap):
    """highdicom's ``ParametricMap``, its frame look-up tables built on first use."""


#: False: the writers build with highdicom's own classes (for tests comparing the two).
DEFER = True


def segmentation_class() -> type:
    """The class the SEG writers build with."""
    return Segmentation if DEFER else hd.seg.Segmentation


def parametric_map_class() -> type:
    """The class the PM writer builds with."""
    return ParametricMap if DEFER else hd.pm.ParametricMap


__all__ = [
    "DEFER", "DeferredLuts", "LUT_ATTRIBUTES", "ParametricMap", "Segmentation", "parametric_map_class",
    "segmentation_class",
]
