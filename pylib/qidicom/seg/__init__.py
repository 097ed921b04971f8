"""DICOM Segmentation: label maps plus dcmqi-style metadata to SEG, and SEG back to label maps.

One module per direction: ``write`` (label maps to a SEG, through highdicom: BINARY,
LABELMAP, FRACTIONAL), ``read`` (any SEG back to label maps and metadata), ``labelmap``
(a BINARY SEG as a LABELMAP one), and ``build``, the SEG dataset both writers make.

The names below are imported from their module when first used, so a command that only
reads a SEG does not import the writers (PEP 562).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from qidicom.results import Progress, WriteResult

#: Public name -> the module (of this package) that defines it.
_MODULE_OF = {
    "build_segmentation": "build", "pack_bits": "build",
    "binary_to_labelmap": "labelmap",
    "Segment": "read", "SegmentationContents": "read", "read_segmentation": "read", "segment_attributes": "read",
    "segmentation_to_files": "read", "top_level_metadata": "read",
    "FRACTIONAL_TYPES": "write", "SEGMENTATION_TYPES": "write", "SegmentSpec": "write", "assign_segments": "write",
    "segment_description": "write", "segmentation_from_files": "write", "write_segmentation": "write",
}
_SUBMODULES = ("build", "labelmap", "read", "write")

if TYPE_CHECKING:
    from qidicom.seg.build import build_segmentation, pack_bits
    from qidicom.seg.labelmap import binary_to_labelmap
    from qidicom.seg.read import (
        Segment,
        SegmentationContents,
        read_segmentation,
        segment_attributes,
        segmentation_to_files,
        top_level_metadata,
    )
    from qidicom.seg.write import (
        FRACTIONAL_TYPES,
        SEGMENTATION_TYPES,
        SegmentSpec,
        assign_segments,
        segment_description,
        segmentation_from_files,
        write_segmentation,
    )

#: The SEG writers' result, by its name from before the writers shared one type.
SegResult = WriteResult

__all__ = [
    "FRACTIONAL_TYPES", "SEGMENTATION_TYPES", "Progress", "SegResult", "Segment", "SegmentSpec",
    "SegmentationContents", "WriteResult", "assign_segments", "binary_to_labelmap", "build_segmentation",
    "pack_bits", "read_segmentation", "segment_attributes", "segment_description", "segmentation_from_files",
    "segmentation_to_files", "top_level_metadata", "write_segmentation",
]


def __getattr__(name: str) -> Any:
    if name in _MODULE_OF:
        value = getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
        globals()[name] = value  # once: later look-ups find it directly
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | set(_SUBMODULES))
