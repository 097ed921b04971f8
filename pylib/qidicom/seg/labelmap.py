"""A BINARY SEG as a LABELMAP SEG of the same segments (``bin2labelsegimage``).

The source images are not needed: the SEG describes them (patient, study, frame of
reference, and per frame the instance and position it was derived from) well enough to
derive the new SEG from stand-ins, which it then references as the old one did.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from pydicom.dataset import Dataset

from qidicom.errors import InputError
from qidicom.readers import Source, frame_item, read_dicom, tolerant_dicom_values
from qidicom.results import WriteResult
from qidicom.seg.build import build_segmentation
from qidicom.seg.read import read_segmentation, top_level_metadata
from qidicom.writers import dicom_bytes, suggested_filename, transfer_syntax_for


#: Study- and patient-level attributes a derived object copies from its sources.
_CONTEXT_KEYWORDS = (
    "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex", "PatientAge",
    "PatientWeight", "PatientSize", "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID",
    "AccessionNumber", "ReferringPhysicianName", "StudyDescription", "ClinicalTrialSponsorName",
    "ClinicalTrialProtocolID", "ClinicalTrialProtocolName", "ClinicalTrialSiteID", "ClinicalTrialSiteName",
    "ClinicalTrialSubjectID", "ClinicalTrialSubjectReadingID", "ClinicalTrialTimePointID",
)


def _source_stand_ins(binary: Dataset, label: str) -> list[tuple[Dataset, np.ndarray]]:
    """The source images a SEG references per frame, as far as the SEG describes them.

    A SEG carries the patient and study of its sources, their frame of reference, and,
    per frame, which instance at which position it was derived from: enough to derive a
    new SEG from the same sources without having them.
    """
    series_of = {}
    for series in binary.get("ReferencedSeriesSequence", []):
        for instance in series.get("ReferencedInstanceSequence", []):
            series_of[str(instance.ReferencedSOPInstanceUID)] = str(series.SeriesInstanceUID)
    orientation = frame_item(binary, 0, "PlaneOrientationSequence").ImageOrientationPatient
    measures = frame_item(binary, 0, "PixelMeasuresSequence")
    pixel_spacing = measures.PixelSpacing
    thickness = float(measures.get("SliceThickness") or measures.get("SpacingBetweenSlices") or 1.0)
    stand_ins: dict[str, tuple[Dataset, np.ndarray]] = {}
    for item in binary.PerFrameFunctionalGroupsSequence:
        try:
            source = item.DerivationImageSequence[0].SourceImageSequence[0]
            position = np.asarray(item.PlanePositionSequence[0].ImagePositionPatient, float)
        except (AttributeError, IndexError):
            raise InputError(
                f"{label}: its frames do not say which source image each was derived from, "
                "which bin2labelsegimage needs"
            ) from None
        uid = str(source.ReferencedSOPInstanceUID)
        if uid in stand_ins:
            continue
        image = Dataset()
        for keyword in _CONTEXT_KEYWORDS:
            if keyword in binary:
                setattr(image, keyword, binary.data_element(keyword).value)
        image.SOPClassUID = source.ReferencedSOPClassUID
        image.SOPInstanceUID = uid
        image.SeriesInstanceUID = series_of.get(uid, "")
        image.FrameOfReferenceUID = binary.FrameOfReferenceUID
        image.Modality = "OT"
        image.Rows, image.Columns = binary.Rows, binary.Columns
        image.ImageOrientationPatient = [float(v) for v in orientation]
        image.PixelSpacing = [float(v) for v in pixel_spacing]
        image.ImagePositionPatient = [float(v) for v in position]
        image.SliceThickness = thickness
        stand_ins[uid] = (image, position)
    if not stand_ins:
        raise InputError(f"{label}: has no frames to convert")
    return list(stand_ins.values())


#: Palette entry for pixel values that are neither background nor a segment. None occur;
#: white makes one stand out if it ever did.
_UNUSED_PALETTE_RGB = (255, 255, 255)


def _palette(descriptions: Sequence[Dataset], bits_stored: int):
    """A palette with an entry for every storable pixel value: black background, each
    segment in its recommended colour, and white for values that are not segments.

    Covering the whole range (256 8-bit entries, or 65536 16-bit ones) leaves no pixel
    value to the "clamp to the last entry" rule, and makes every LUT use its full range
    of bits, as dciodvfy checks.
    """
    import highdicom as hd

    entries = 1 << bits_stored
    table = np.empty((entries, 3), np.uint16)
    table[:] = _UNUSED_PALETTE_RGB
    table[0] = (0, 0, 0)
    for item in descriptions:
        lab = item.get("RecommendedDisplayCIELabValue")
        rgb = hd.color.CIELabColor.from_dicom_value([int(v) for v in lab]).to_rgb(clip=True) if lab else (128, 128, 128)
        table[int(item.SegmentNumber)] = rgb
    # 8-bit entries hold at most 256 values; 16-bit entries scale 0..255 to 0..65535.
    data = table.astype(np.uint8) if entries <= 256 else table * 257
    luts = [hd.PaletteColorLUT(0, data[:, n].copy(), colour) for n, colour in enumerate(("red", "green", "blue"))]
    return hd.PaletteColorLUTTransformation(*luts, palette_color_lut_uid=hd.UID())


def binary_to_labelmap(
    source: Source,
    *,
    compress: str = "none",
    use_palette: bool = False,
    force_16_bit: bool = False,
    name: str | None = None,
) -> WriteResult:
    """A BINARY (or FRACTIONAL-free) SEG as a LABELMAP SEG of the same segments, as dcmqi's
    ``bin2labelsegimage`` does. Overlapping segments cannot share one label map: error."""
    import highdicom as hd

    binary = read_dicom(source, name)
    label = getattr(binary, "filename", None) or name or "the SEG"
    contents = read_segmentation(binary, label)
    if contents.segmentation_type != "BINARY":
        raise InputError(f"{label}: is a {contents.segmentation_type} SEG; bin2labelsegimage converts BINARY ones")
    transfer_syntax = transfer_syntax_for(compress)
    merged = np.zeros(contents.segments[0].array.shape, np.uint16)
    for segment in contents.segments:
        mask = segment.array
        clash = merged[mask]
        if clash.any():
            raise InputError(
                f"{label}: segment {segment.number} overlaps segment {int(clash[clash > 0][0])} in "
                f"{int((clash > 0).sum())} voxel(s); overlapping segments cannot be one label map"
            )
        merged[mask] = segment.number
    stand_ins = _source_stand_ins(binary, label)
    inverse = np.linalg.inv(contents.affine)
    slices = [int(round((inverse @ np.append(position, 1.0))[2])) for _, position in stand_ins]
    pixel_array = np.stack([merged[:, :, k].T for k in slices])
    descriptions, algorithms = [], {}
    for item in binary.SegmentSequence:
        description = hd.seg.SegmentDescription.from_dataset(item, copy=True)
        algorithms[int(item.SegmentNumber)] = (str(item.get("SegmentAlgorithmType", "MANUAL")), item.get("SegmentAlgorithmName"))
        description.SegmentAlgorithmType = "MANUAL"  # restored by build_segmentation
        if use_palette and "RecommendedDisplayCIELabValue" in description:
            del description.RecommendedDisplayCIELabValue  # the palette carries the colours
        descriptions.append(description)
    metadata = {key: value for key, value in top_level_metadata(binary).items() if not key.startswith("@")}
    bits = 16 if force_16_bit or max(algorithms) >= 256 else 8
    segmentation = build_segmentation(
        [image for image, _ in stand_ins], pixel_array, "labelmap", descriptions, algorithms, metadata,
        transfer_syntax=transfer_syntax if not force_16_bit else transfer_syntax_for("none"),
        skip_empty=False, palette=_palette(binary.SegmentSequence, bits) if use_palette else None,
    )
    # The stand-ins stood for the real sources; the new SEG references them as the old one did.
    segmentation.ReferencedSeriesSequence = binary.ReferencedSeriesSequence
    if force_16_bit and int(segmentation.BitsAllocated) == 8:
        frames = np.frombuffer(segmentation.PixelData, np.uint8).astype(np.uint16)
        segmentation.BitsAllocated, segmentation.BitsStored, segmentation.HighBit = 16, 16, 15
        segmentation.PixelData = frames.tobytes()
        segmentation["PixelData"].VR = "OW"
        if compress == "rle":
            segmentation.compress(transfer_syntax, encoding_plugin="pydicom")
    with tolerant_dicom_values():
        data = dicom_bytes(segmentation, compress, workers=2)  # deflate on two threads (pieces)
    return WriteResult(segmentation, data, suggested_filename(segmentation, "LABELMAP_SEG"), [])
