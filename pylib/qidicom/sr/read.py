"""A TID 1500 measurement report back to dcmqi's sr-tid1500 JSON (``tid1500reader``).

The content tree is walked with pydicom, so SRs from dcmqi (with retired SNOMED-RT codes)
and highdicom read as well as qidicom's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from qidicom import metadata as metadata_module
from qidicom.errors import InputError
from qidicom.metadata import code_to_json
from qidicom.readers import Source, read_dicom
from qidicom.results import ReadResult
from qidicom.sr.concepts import (
    _ALGORITHM_NAME,
    _ALGORITHM_PARAMETERS,
    _ALGORITHM_VERSION,
    _DERIVATION,
    _DEVICE_FIELDS,
    _FINDING,
    _FINDING_SITE,
    _GROUP_STRUCTURE,
    _IMAGE_LIBRARY,
    _IMAGING_MEASUREMENTS,
    _LATERALITY,
    _MEASUREMENT_GROUP,
    _MEASUREMENT_METHOD,
    _NO_UNITS,
    _OBSERVER_TYPE,
    _PERSON_NAME,
    _POPULATION_DESCRIPTION,
    _PROCEDURE_REPORTED,
    _REFERENCED_SEGMENT,
    _RWVM_USED,
    _SESSION,
    _SOURCE_SERIES,
    _TIME_POINT,
    _TRACKING_ID,
    _TRACKING_UID,
    NOT_A_NUMBER,
    _concept,
)


@dataclass
class ReportContents(ReadResult):
    """A TID 1500 report read back as sr metadata, and anything that could not be kept."""

    metadata: dict
    warnings: list[str] = field(default_factory=list)


def read_report(source: Source | Dataset, name: str | None = None) -> ReportContents:
    """Read a TID 1500 measurement report (qidicom's, dcmqi's, highdicom's) as sr metadata.

    ``compositeContext`` and ``imageLibrary`` list the SOP Instance UIDs the report refers
    to, as dcmqi's reader does; the writer accepts them in place of file names.
    """
    dataset = source if isinstance(source, Dataset) else read_dicom(source, name, keep_pixels=False)
    label = getattr(dataset, "filename", None) or name or "the SR"
    if str(dataset.get("Modality", "")) != "SR" or "ContentSequence" not in dataset:
        raise InputError(f"{label}: not a DICOM Structured Report (Modality is '{dataset.get('Modality', '')}')")
    title = dataset.get("ConceptNameCodeSequence")
    if not title or title[0].CodeValue != "126000":
        meaning = title[0].CodeMeaning if title else "none"
        raise InputError(f"{label}: not a TID 1500 Imaging Measurement Report (document title: {meaning})")
    warnings: list[str] = []
    meta: dict = {"@schema": metadata_module.SCHEMA_IDS["sr"]}
    for keyword in ("SeriesDescription", "SeriesNumber", "InstanceNumber"):
        if dataset.get(keyword) not in (None, ""):
            meta[keyword] = str(dataset.get(keyword))
    context: list[str] = []
    library: list[str] = []
    observer: dict = {}
    groups: list[dict] = []
    for item in dataset.ContentSequence:
        concept = _concept(item)
        if concept in _OBSERVER_TYPE:
            observer["ObserverType"] = "DEVICE" if item.ConceptCodeSequence[0].CodeValue == "121007" else "PERSON"
        elif concept in _PERSON_NAME:
            observer["PersonObserverName"] = str(item.PersonName)
        elif concept in _DEVICE_FIELDS:
            observer[_DEVICE_FIELDS[concept]] = _text(item)
        elif concept in _PROCEDURE_REPORTED:
            meta.setdefault("procedureReported", code_to_json(item.ConceptCodeSequence[0]))
        elif concept in _IMAGE_LIBRARY:
            library.extend(_image_references(item))
        elif concept in _IMAGING_MEASUREMENTS:
            for child in item.get("ContentSequence", []):
                if _concept(child) in _MEASUREMENT_GROUP:
                    groups.append(_read_group(child, len(groups), context, warnings))
    if context:
        meta["compositeContext"] = sorted(set(context))  # sorted, as dcmqi lists them: stable on re-reading
    if library:
        meta["imageLibrary"] = library
    if observer.get("ObserverType") == "DEVICE":
        observer = {k: v for k, v in observer.items() if k != "PersonObserverName"}
    meta["observerContext"] = observer or {"ObserverType": "DEVICE"}
    meta["VerificationFlag"] = str(dataset.get("VerificationFlag", "UNVERIFIED"))
    meta["CompletionFlag"] = str(dataset.get("CompletionFlag", "PARTIAL"))
    if not groups:
        warnings.append(f"{label}: holds no measurement groups")
    meta["Measurements"] = groups
    _shared_session_and_time_point(meta)
    return ReportContents(meta, warnings)


def _text(item: Dataset) -> str:
    for keyword in ("TextValue", "UID", "PersonName"):
        if keyword in item:
            return str(item[keyword].value)
    return ""


def _image_references(container: Dataset) -> list[str]:
    uids = []
    for item in container.get("ContentSequence", []):
        if item.get("ValueType") == "IMAGE" and item.get("ReferencedSOPSequence"):
            uids.append(str(item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID))
        elif item.get("ValueType") == "CONTAINER":
            uids.extend(_image_references(item))
    return uids


def _read_group(container: Dataset, index: int, context: list[str], warnings: list[str]) -> dict:
    group: dict = {}
    measurements: list[dict] = []
    evaluations: list[dict] = []
    algorithm: dict = {}
    for item in container.get("ContentSequence", []):
        concept = _concept(item)
        value_type = item.get("ValueType")
        if concept in _TRACKING_ID:
            group["TrackingIdentifier"] = _text(item)
        elif concept in _TRACKING_UID:
            group["TrackingUniqueIdentifier"] = _text(item)
        elif concept in _SESSION:
            group["activitySession"] = _text(item)
        elif concept in _TIME_POINT:
            group["timePoint"] = _text(item)
        elif concept in _FINDING and value_type == "CODE":
            group["Finding"] = code_to_json(item.ConceptCodeSequence[0])
        elif concept in _REFERENCED_SEGMENT:
            reference = item.ReferencedSOPSequence[0]
            group["segmentationSOPInstanceUID"] = str(reference.ReferencedSOPInstanceUID)
            numbers = reference.get("ReferencedSegmentNumber")
            if numbers is not None:
                group["ReferencedSegment"] = int(numbers[0] if isinstance(numbers, (list, MultiValue)) else numbers)
            context.append(group["segmentationSOPInstanceUID"])
        elif concept in _SOURCE_SERIES:
            group["SourceSeriesForImageSegmentation"] = _text(item)
        elif concept in _RWVM_USED:
            group["rwvmMapUsedForMeasurement"] = str(item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
            context.append(group["rwvmMapUsedForMeasurement"])
        elif concept in _MEASUREMENT_METHOD and value_type == "CODE":
            group["MeasurementMethod"] = code_to_json(item.ConceptCodeSequence[0])
        elif concept in _FINDING_SITE and value_type == "CODE":
            group["FindingSite"] = code_to_json(item.ConceptCodeSequence[0])
            for modifier in item.get("ContentSequence", []):
                if _concept(modifier) in _LATERALITY:
                    group["Laterality"] = code_to_json(modifier.ConceptCodeSequence[0])
        elif concept in _ALGORITHM_NAME | _ALGORITHM_VERSION | _ALGORITHM_PARAMETERS:
            _read_algorithm_item(item, algorithm)
        elif value_type == "NUM":
            measurements.append(_read_measurement(item, f"Measurements[{index}].measurementItems[{len(measurements)}]", warnings))
        elif value_type == "CODE" and item.get("RelationshipType") == "CONTAINS":
            evaluations.append({"conceptCode": code_to_json(item.ConceptNameCodeSequence[0]), "conceptValue": code_to_json(item.ConceptCodeSequence[0])})
        elif value_type == "TEXT" and item.get("RelationshipType") == "CONTAINS":
            evaluations.append({"conceptCode": code_to_json(item.ConceptNameCodeSequence[0]), "conceptValue": str(item.TextValue)})
        elif concept not in _GROUP_STRUCTURE:
            warnings.append(
                f"Measurements[{index}]: content item '{_meaning(item)}' ({value_type}) has no place in the "
                "metadata and was left out"
            )
    if algorithm:
        group["measurementAlgorithmIdentification"] = algorithm
    if measurements:
        group["measurementItems"] = measurements
    if evaluations:
        group["qualitativeEvaluations"] = evaluations
    return group


def _meaning(item: Dataset) -> str:
    names = item.get("ConceptNameCodeSequence")
    return str(names[0].CodeMeaning) if names else "(unnamed)"


def _read_algorithm_item(item: Dataset, algorithm: dict) -> None:
    concept = _concept(item)
    if concept in _ALGORITHM_NAME:
        algorithm["AlgorithmName"] = _text(item)
    elif concept in _ALGORITHM_VERSION:
        algorithm["AlgorithmVersion"] = _text(item)
    else:
        algorithm.setdefault("AlgorithmParameters", []).append(_text(item))


def _numeric(item: Dataset, path: str, warnings: list[str]) -> tuple[str, dict | None]:
    """(value text, units) of a NUM item; "nan" when the value is absent with a qualifier."""
    measured = item.get("MeasuredValueSequence")
    if measured:
        value = measured[0]
        units = value.get("MeasurementUnitsCodeSequence")
        text = str(value.NumericValue).strip() if value.get("NumericValue") is not None else "nan"
        return text, (code_to_json(units[0]) if units else None)
    qualifier = item.get("NumericValueQualifierCodeSequence")
    if qualifier and qualifier[0].CodeValue != NOT_A_NUMBER.value:
        warnings.append(f"{path}: no value ({qualifier[0].CodeMeaning}); read as \"nan\"")
    return "nan", None


def _read_measurement(item: Dataset, path: str, warnings: list[str]) -> dict:
    text, units = _numeric(item, path, warnings)
    measurement: dict = {"value": text, "quantity": code_to_json(item.ConceptNameCodeSequence[0])}
    if units is not None:
        measurement["units"] = units
    modifiers, parameters, properties, algorithm = [], [], [], {}
    for child in item.get("ContentSequence", []):
        concept = _concept(child)
        relationship = child.get("RelationshipType")
        value_type = child.get("ValueType")
        if concept in _DERIVATION and value_type == "CODE":
            measurement["derivationModifier"] = code_to_json(child.ConceptCodeSequence[0])
        elif concept in _ALGORITHM_NAME | _ALGORITHM_VERSION | _ALGORITHM_PARAMETERS:
            _read_algorithm_item(child, algorithm)
        elif concept in _POPULATION_DESCRIPTION:
            measurement["measurementPopulationDescription"] = _text(child)
        elif value_type == "CODE" and relationship == "HAS CONCEPT MOD":
            modifiers.append({"modifier": code_to_json(child.ConceptNameCodeSequence[0]), "modifierValue": code_to_json(child.ConceptCodeSequence[0])})
        elif value_type == "NUM" and relationship == "INFERRED FROM":
            value, units = _numeric(child, path, warnings)
            entry = {"derivationParameter": code_to_json(child.ConceptNameCodeSequence[0]), "derivationParameterValue": value}
            entry["derivationParameterUnits"] = units or code_to_json(_NO_UNITS)
            parameters.append(entry)
        elif value_type == "NUM" and relationship == "HAS PROPERTIES":
            value, units = _numeric(child, path, warnings)
            properties.append({"numProperty": code_to_json(child.ConceptNameCodeSequence[0]), "numPropertyValue": value,
                               "numPropertyUnits": units or code_to_json(_NO_UNITS)})
        else:
            warnings.append(f"{path}: content item '{_meaning(child)}' ({value_type}) has no place in the metadata and was left out")
    if modifiers:
        measurement["measurementModifiers"] = modifiers
    if parameters:
        measurement["measurementDerivationParameters"] = parameters
    if properties:
        measurement["measurementNumProperties"] = properties
    if algorithm:
        measurement["measurementAlgorithmIdentification"] = algorithm
    return measurement





def _shared_session_and_time_point(meta: dict) -> None:
    """Each group keeps its activitySession and timePoint, as dcmqi's tid1500reader writes
    them; when every group shares one, it is also put at the top, where the metadata dcmqi's
    writer takes has it."""
    groups = meta["Measurements"]
    for key in ("activitySession", "timePoint"):
        values = {group.get(key) for group in groups}
        if groups and len(values) == 1 and None not in values:
            meta[key] = values.pop()


def report_to_json(source: Source, name: str | None = None) -> tuple[bytes, list[str]]:
    """What ``tid1500reader`` writes: the report's metadata as JSON text, and warnings."""
    contents = read_report(source, name)
    return (json.dumps(contents.metadata, indent=2) + "\n").encode(), contents.warnings
