"""DICOM objects back to research files, for the app's "Open a DICOM object" mode.

The files are what the CLI's readers write (``segimage2itkimage``, ``paramap2itkimage``,
``tid1500reader``), made by the same functions; this module only says which kind an
object is, bundles several files into one zip, and lays an SR's measurement groups out as
a table (with a CSV).
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from typing import Sequence

from qidicom.errors import InputError
from qidicom.readers import Source, as_named_bytes, read_dicom
from qidicom.writers import ExportedFile

__all__ = ["KINDS", "object_kind", "files_zip", "reader_files", "report_table", "report_csv"]

SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.4"
PARAMETRIC_MAP = "1.2.840.10008.5.1.4.1.1.30"

#: kind -> the CLI reader that writes its files.
KINDS = {"seg": "segimage2itkimage", "pm": "paramap2itkimage", "sr": "tid1500reader"}


def object_kind(source: Source) -> str:
    """"seg", "pm" or "sr" for a DICOM object qidicom can read back; InputError otherwise."""
    dataset = read_dicom(source, keep_pixels=False)
    label = getattr(dataset, "filename", None) or "the file"
    sop_class = str(dataset.get("SOPClassUID", ""))
    if sop_class == SEGMENTATION:
        return "seg"
    if sop_class == PARAMETRIC_MAP:
        return "pm"
    if str(dataset.get("Modality", "")) == "SR":
        return "sr"
    import pydicom

    name = pydicom.uid.UID(sop_class).name if sop_class else "no SOP Class"
    raise InputError(f"{label}: a {name} object; qidicom reads back Segmentations, Parametric Maps and TID 1500 SRs")


def reader_files(source: Source, kind: str | None = None, *, output_type: str = "nrrd", merge_segments: bool = False,
                 prefix: str = "") -> tuple[list[ExportedFile], list[str]]:
    """What the CLI's reader writes for this object, and its warnings."""
    from qidicom import pm, seg, sr

    item = as_named_bytes(source)
    kind = kind or object_kind(item)
    warnings: list[str] = []
    if kind == "seg":
        files = seg.segmentation_to_files(item, prefix=prefix, output_type=output_type, merge_segments=merge_segments,
                                          warnings=warnings)
    elif kind == "pm":
        files, warnings = pm.parametric_map_to_files(item, prefix=prefix, output_type=output_type)
    elif kind == "sr":
        data, warnings = sr.report_to_json(item)
        files = [ExportedFile(f"{prefix}-meta.json" if prefix else "meta.json", data)]
    else:
        raise ValueError(f"unknown kind {kind!r}")
    return list(files), list(warnings)


def files_zip(files: Sequence[ExportedFile]) -> bytes:
    """Several files as one zip, stored (NRRD/NIfTI outputs are gzip'd already) with fixed
    times, so the same files give the same bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for file in files:
            info = zipfile.ZipInfo(file.name, date_time=(1980, 1, 1, 0, 0, 0))
            compressed = file.name.endswith((".gz", ".nii.gz")) or file.name.endswith(".nrrd") and file.data[:200].find(b"encoding: gzip") >= 0
            info.compress_type = zipfile.ZIP_STORED if compressed else zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, file.data)
    return buffer.getvalue()


_TABLE_COLUMNS = ("group", "tracking_identifier", "finding", "finding_site", "segment", "quantity", "derivation",
                  "value", "units")


def _meaning(code) -> str:
    return str((code or {}).get("CodeMeaning", "")) if isinstance(code, dict) else ""


def report_table(metadata: dict | bytes | str) -> list[dict]:
    """One row per measurement of an sr-tid1500 document (as ``tid1500reader`` writes it):
    group number, tracking identifier, finding, finding site, referenced segment,
    quantity, derivation, value and units."""
    if not isinstance(metadata, dict):
        metadata = json.loads(metadata)
    rows = []
    for number, group in enumerate(metadata.get("Measurements") or [], start=1):
        site = _meaning(group.get("FindingSite"))
        if group.get("Laterality"):
            site = f"{site} ({_meaning(group['Laterality'])})"
        for item in group.get("measurementItems") or []:
            rows.append({
                "group": number,
                "tracking_identifier": str(group.get("TrackingIdentifier", "")),
                "finding": _meaning(group.get("Finding")),
                "finding_site": site,
                "segment": group.get("ReferencedSegment", ""),
                "quantity": _meaning(item.get("quantity")),
                "derivation": _meaning(item.get("derivationModifier")),
                "value": str(item.get("value", "")),
                "units": str((item.get("units") or {}).get("CodeValue", "")),
            })
    return rows


def report_csv(metadata: dict | bytes | str) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, _TABLE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(report_table(metadata))
    return buffer.getvalue().encode()
