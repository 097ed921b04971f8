"""DICOM Segmentation: label maps plus dcmqi-style metadata to SEG, and SEG back to label maps.

One module per direction: ``write`` (label maps to a SEG, through highdicom: BINARY,
LABELMAP, FRACTIONAL), ``read`` (any SEG back to label maps and metadata), ``labelmap``
(a BINARY SEG as a LABELMAP one), and ``build``, the SEG dataset both writers make.
"""

from qidicom.results import Progress, WriteResult
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
