"""Per-segment measurements on a series (and a parametric map), and the TID 1500 report
metadata that records them.

``measure_segments`` takes the preview's objects (``preview.SeriesVolume``, its
``Overlay`` and optionally a ``MapOverlay``), so the voxels measured are the voxels shown.
For each segment: voxel count and volume (mL), and the mean, standard deviation
(population, ddof 0), minimum, maximum and median of the image's real values (Modality
LUT applied) and of the map, in their units.

``report_metadata`` turns them into a dcmqi-style sr-tid1500 document (one measurement
group per segment, referencing the SEG's segment) that ``sr.report_from_files`` writes and
dcmqi's ``tid1500reader`` reads. Codes are PS3.16's, from pydicom's tables.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
from pydicom.sr.codedict import codes

from qidicom.errors import InputError

__all__ = ["SegmentMeasurement", "Statistics", "measure_segments", "measurements_csv", "readable_number",
           "report_metadata"]

SR_SCHEMA = "https://raw.githubusercontent.com/qiicr/dcmqi/master/doc/schemas/sr-tid1500-schema.json#"


@dataclass(frozen=True)
class Statistics:
    mean: float
    std: float
    minimum: float
    maximum: float
    median: float
    count: int

    @classmethod
    def of(cls, values: np.ndarray) -> "Statistics | None":
        values = values[np.isfinite(values)]
        if values.size == 0:
            return None
        return cls(float(values.mean()), float(values.std()), float(values.min()), float(values.max()),
                   float(np.median(values)), int(values.size))


@dataclass
class SegmentMeasurement:
    """One segment's measurements; ``image`` in the series' units, ``map`` in the map's."""

    number: int
    label: str
    voxel_count: int
    volume_ml: float
    image: Statistics | None
    image_units: str = ""
    map: Statistics | None = None
    map_units: str = ""
    attributes: dict = field(default_factory=dict)


def measure_segments(volume, overlay, pmap=None) -> list[SegmentMeasurement]:
    """Measure every segment of ``overlay`` on ``volume`` (a ``preview.SeriesVolume``), and on
    ``pmap`` (a ``preview.MapOverlay``) when given; in segment-number order."""
    voxel_ml = volume.voxel_volume_mm3 / 1000.0
    results = []
    for group, label_map in enumerate(overlay.label_maps):
        flat = label_map.reshape(-1)
        where = np.flatnonzero(flat)
        labels = flat[where]
        order = np.argsort(labels, kind="stable")
        where, labels = where[order], labels[order]
        numbers, starts = np.unique(labels, return_index=True)
        ends = list(starts[1:]) + [len(labels)]
        found = {int(n): where[s:e] for n, s, e in zip(numbers, starts, ends)}
        for number, info in overlay.segments.items():
            if info.group != group:
                continue
            index = found.get(number, np.empty(0, np.intp))
            image = Statistics.of(volume.real_values(index)) if index.size else None
            map_statistics = None
            if pmap is not None and index.size:
                map_statistics = Statistics.of(pmap.values.reshape(-1)[index].astype(np.float64))
            results.append(SegmentMeasurement(
                number, info.label, int(index.size), float(index.size * voxel_ml), image, volume.units,
                map_statistics, pmap.units if pmap is not None else "", dict(info.attributes)))
    return sorted(results, key=lambda m: m.number)


_COLUMNS = ("segment", "label", "voxels", "volume_ml", "mean", "std", "min", "max", "median",
            "units", "map_mean", "map_std", "map_min", "map_max", "map_median", "map_units")


def measurements_table(measurements: Sequence[SegmentMeasurement]) -> list[dict]:
    """One row per segment, for a table or CSV."""
    rows = []
    for m in measurements:
        row = {"segment": m.number, "label": m.label, "voxels": m.voxel_count, "volume_ml": m.volume_ml}
        for prefix, stats in (("", m.image), ("map_", m.map)):
            for name, attribute in (("mean", "mean"), ("std", "std"), ("min", "minimum"), ("max", "maximum"), ("median", "median")):
                row[prefix + name] = getattr(stats, attribute) if stats is not None else None
        row["units"], row["map_units"] = m.image_units, m.map_units
        rows.append(row)
    return rows


def measurements_csv(measurements: Sequence[SegmentMeasurement]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, _COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in measurements_table(measurements):
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return buffer.getvalue().encode()


def readable_number(value, digits: int = 6) -> str:
    """A number as a person reads it in a table: ``digits`` significant digits, but never an
    exponent for large values (1432810.4 -> "1,432,810"; 0.00123456789 -> "0.00123457"),
    thousands grouped; an exponent only below 1e-4. Text that is not a number is returned
    as it is. (Files keep full precision: this is for display only.)"""
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
    elif value is None:
        return ""
    else:
        number = float(value)
    if not np.isfinite(number):
        return str(number)
    if number == 0:
        return "0"
    magnitude = abs(number)
    if magnitude < 1e-4:
        return f"{number:.{digits}g}"
    if magnitude < 1:
        return f"{number:.{digits}g}"
    integer_digits = len(str(int(magnitude)))
    decimals = max(0, digits - integer_digits)
    text = f"{number:,.{decimals}f}"
    if decimals:
        text = text.rstrip("0").rstrip(".")
    return text


# --------------------------------------------------------------------------- the SR document


def _code(code) -> dict:
    return {"CodeValue": code.value, "CodingSchemeDesignator": code.scheme_designator, "CodeMeaning": code.meaning}


#: Volume in millilitres: UCUM "mL" (CID 7181 lists cubic millimetres and others; UCUM
#: allows any valid unit).
MILLILITRE = {"CodeValue": "mL", "CodingSchemeDesignator": "UCUM", "CodeMeaning": "milliliter"}

_DERIVATIONS = (
    ("mean", codes.SCT.Mean), ("std", codes.SCT.StandardDeviation), ("minimum", codes.SCT.Minimum),
    ("maximum", codes.SCT.Maximum), ("median", codes.SCT.Median),
)

#: The quantity and units of image values, by modality: CT numbers are attenuation in HU;
#: MR signal has no units.
IMAGE_QUANTITIES: dict[str, tuple[dict, dict]] = {
    "CT": (_code(codes.DCM.AttenuationCoefficient), _code(codes.UCUM.HounsfieldUnit)),
    "MR": (_code(codes.DCM.MRSignalIntensity), _code(codes.UCUM.NoUnits)),
}


def decimal_text(value: float) -> str:
    """The most precise decimal that fits a DICOM DS value (16 characters)."""
    for digits in range(15, 4, -1):
        text = f"{value:.{digits}g}"
        if len(text) <= 16:
            return text
    return f"{value:.4g}"


def _statistics_items(stats, quantity: dict, units: dict) -> list[dict]:
    return [{"value": decimal_text(getattr(stats, name)), "quantity": quantity, "units": units,
             "derivationModifier": _code(code)} for name, code in _DERIVATIONS]


def report_metadata(
    measurements: Sequence[SegmentMeasurement],
    *,
    segmentation_file: str,
    source_series_uid: str,
    image_library: Sequence[str],
    segmentation_uid: str | None = None,
    modality: str = "",
    map_metadata: Mapping | None = None,
    map_file: str | None = None,
    map_uid: str | None = None,
    series_description: str = "Segment measurements",
    algorithm: str = "qidicom voxel statistics",
    version: str = "1",
) -> dict:
    """A dcmqi-style sr-tid1500 document with one measurement group per segment.

    ``segmentation_file`` is the SEG's file name (``compositeContext``), its segments are
    referenced by number; ``image_library`` are the source series' file names. Image
    statistics are coded by ``modality`` (CT: attenuation in HU; MR: signal, no units) and
    left out for other modalities; map statistics use the pm metadata's quantity and units
    and, with ``map_file`` and ``map_uid``, reference the map as the Real World Value Map used.
    """
    context = [segmentation_file] + ([map_file] if map_file and map_uid else [])
    image_codes = IMAGE_QUANTITIES.get(modality)
    map_codes = None
    if map_metadata is not None:
        quantity, units = map_metadata.get("QuantityValueCode"), map_metadata.get("MeasurementUnitsCode")
        if not quantity or not units:
            raise InputError("the map's metadata has no QuantityValueCode or MeasurementUnitsCode to code its measurements with")
        map_codes = (dict(quantity), dict(units))
    groups = []
    for m in measurements:
        if m.voxel_count == 0:
            continue  # nothing measured: TID 1411 needs at least a volume
        attributes = m.attributes
        group: dict = {
            "TrackingIdentifier": m.label,
            "ReferencedSegment": m.number,
            "SourceSeriesForImageSegmentation": source_series_uid,
            "Finding": dict(attributes.get("SegmentedPropertyTypeCodeSequence") or _code(codes.SCT.Tissue)),
        }
        if segmentation_uid:
            group["segmentationSOPInstanceUID"] = segmentation_uid
        if attributes.get("AnatomicRegionSequence"):
            group["FindingSite"] = dict(attributes["AnatomicRegionSequence"])
        if map_codes is not None and map_file and map_uid:
            group["rwvmMapUsedForMeasurement"] = map_uid
        group["measurementAlgorithmIdentification"] = {"AlgorithmName": algorithm, "AlgorithmVersion": version}
        items = [{"value": decimal_text(m.volume_ml), "quantity": _code(codes.SCT.Volume), "units": MILLILITRE}]
        if image_codes is not None and m.image is not None:
            items += _statistics_items(m.image, *image_codes)
        if map_codes is not None and m.map is not None:
            items += _statistics_items(m.map, *map_codes)
        group["measurementItems"] = items
        groups.append(group)
    if not groups:
        raise InputError("no segment has voxels on the series, so there is nothing to measure")
    return {
        "@schema": SR_SCHEMA,
        "SeriesDescription": series_description,
        "SeriesNumber": "1001",
        "InstanceNumber": "1",
        "compositeContext": context,
        "imageLibrary": list(image_library),
        "observerContext": {"ObserverType": "DEVICE", "DeviceObserverName": "qidicom",
                            "DeviceObserverManufacturer": "qidicom"},
        "VerificationFlag": "UNVERIFIED",
        "CompletionFlag": "COMPLETE",
        "activitySession": "1",
        "timePoint": "1",
        "Measurements": groups,
    }
