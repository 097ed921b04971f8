"""dcmqi's sr-tid1500 JSON to a DICOM Comprehensive SR (``tid1500writer``).

The report is built with highdicom's templates (Measurement Report, Volumetric ROI
Measurements, Measurement), plus what dcmqi's JSON holds beyond them: free concept
modifiers, derivation parameters, text evaluations and "nan" values, which are kept with a
Numeric Value Qualifier ("Not a number") rather than dropped. The composite context
decides the report's patient and study; a referenced object of another patient (dcmqi's
own examples measure a SEG with another patient's image library) is a warning naming both.
"""

from __future__ import annotations

import math
from typing import Sequence

from pydicom.dataset import Dataset
from pydicom.sr.coding import Code

from qidicom import __version__
from qidicom import metadata as metadata_module
from qidicom.errors import InputError, QidicomError
from qidicom.metadata import code_from_json
from qidicom.readers import Source, source_name, tolerant_dicom_values
from qidicom.results import Progress, WriteResult
from qidicom.sr.concepts import (
    _MEASUREMENT_METHOD,
    _NO_UNITS,
    DEFAULT_PROCEDURE,
    NOT_A_NUMBER,
    SEGMENTATION_SOP_CLASS,
    _concept,
)
from qidicom.sr.references import ReferencedFiles
from qidicom.writers import dicom_bytes, suggested_filename


COMPRESSIONS = ("none", "deflate")


def report_from_files(
    metadata: Source | dict,
    image_library: Source | Sequence[Source] | None = None,
    composite_context: Source | Sequence[Source] | None = None,
    *,
    compress: str = "none",
    progress: Progress | None = None,
) -> WriteResult:
    """The whole conversion, as ``tid1500writer`` does it: validate, find the files, write.

    ``image_library`` and ``composite_context`` are directories, lists of files, in-memory
    ``(name, bytes)`` pairs or pydicom datasets.
    """
    report = progress or (lambda message, fraction: None)
    report("validating the metadata", 0.0)
    document = metadata if isinstance(metadata, dict) else metadata_module.load_json(metadata)
    metadata_module.check(document, "sr", source_name(metadata, "metadata"))
    report("reading the referenced files", 0.1)
    library = ReferencedFiles.load(image_library, "the image library files")
    context = ReferencedFiles.load(composite_context, "the composite context files")
    return write_report(document, context, library, compress=compress, progress=progress)


def write_report(
    metadata: dict,
    composite_context: ReferencedFiles,
    image_library: ReferencedFiles,
    *,
    compress: str = "none",
    progress: Progress | None = None,
) -> WriteResult:
    """Build the TID 1500 Comprehensive SR from valid sr metadata and the files it names."""
    import highdicom as hd

    report = progress or (lambda message, fraction: None)
    if compress not in COMPRESSIONS:
        raise InputError(f"compression '{compress}' is not one of {', '.join(COMPRESSIONS)} for a measurement report")
    warnings: list[str] = []
    context_datasets = _named_datasets(metadata, "compositeContext", composite_context)
    library_datasets = _named_datasets(metadata, "imageLibrary", image_library)
    evidence = _unique(context_datasets + library_datasets)
    if not evidence:
        raise InputError(
            "no referenced DICOM files: the report takes its patient and study from the files named in "
            "compositeContext (the SEG it measures), so give them"
        )
    warnings.extend(other_patient_warnings(evidence))
    report("building the measurement groups", 0.4)
    groups = [
        _measurement_group(index, group, metadata, context_datasets, warnings)
        for index, group in enumerate(metadata["Measurements"])
    ]
    procedure = code_from_json(metadata["procedureReported"]) if metadata.get("procedureReported") else DEFAULT_PROCEDURE
    from qidicom import highdicom_tables

    highdicom_tables.install()  # highdicom's module table decoded a module at a time
    with tolerant_dicom_values():
        try:
            measurement_report = hd.sr.MeasurementReport(
                observation_context=_observation_context(metadata["observerContext"]),
                procedure_reported=procedure,
                imaging_measurements=groups,
                referenced_images=library_datasets or None,
            )
            verified = metadata.get("VerificationFlag", "UNVERIFIED") == "VERIFIED"
            observer_name, organization = _verifier(metadata["observerContext"])
            document = hd.sr.ComprehensiveSR(
                evidence=evidence,
                content=measurement_report[0],
                series_instance_uid=hd.UID(),
                series_number=metadata_module.integer_field(metadata.get("SeriesNumber", "400"), "SeriesNumber"),
                sop_instance_uid=hd.UID(),
                instance_number=metadata_module.integer_field(metadata.get("InstanceNumber", "1"), "InstanceNumber"),
                manufacturer="qidicom",
                is_complete=metadata.get("CompletionFlag", "PARTIAL") == "COMPLETE",
                is_verified=verified,
                verifying_observer_name=observer_name if verified else None,
                verifying_organization=organization if verified else None,
                series_description=metadata.get("SeriesDescription") or "Measurements",
                software_versions=__version__,
            )
        except (ValueError, TypeError, AttributeError) as error:
            raise QidicomError(f"the measurement report could not be built: {error}") from None
        _drop_not_a_number_values(document.ContentSequence)
        report("writing the file", 0.9)
        data = dicom_bytes(document, compress)
    return WriteResult(document, data, suggested_filename(document, "SR"), warnings)


def _named_datasets(metadata: dict, key: str, files: ReferencedFiles) -> list[Dataset]:
    names = metadata.get(key)
    if names is None:
        if key == "compositeContext":
            return _unique(list(files.by_uid.values()))  # not named: every given file is context
        return []
    return [files.find(name, f"{key}[{index}]") for index, name in enumerate(names)]


def _unique(datasets: Sequence[Dataset]) -> list[Dataset]:
    seen, result = set(), []
    for dataset in datasets:
        uid = str(dataset.get("SOPInstanceUID", id(dataset)))
        if uid not in seen:
            seen.add(uid)
            result.append(dataset)
    return result


def other_patient_warnings(datasets: Sequence[Dataset]) -> list[str]:
    """A warning per other patient among the referenced objects, naming both patients.

    The first dataset (the composite context) decides the report's patient. dcmqi's own
    examples measure a SEG of one patient with an image library of another, and dcmqi
    writes them; so this is said, not refused.
    """
    first = datasets[0]
    patient = _patient(first)
    others: dict[str, list[str]] = {}
    for dataset in datasets[1:]:
        if _patient(dataset) != patient:
            others.setdefault(_patient(dataset), []).append(_label(dataset))
    warnings = []
    for other, labels in others.items():
        listing = ", ".join(labels[:5]) + (f" and {len(labels) - 5} more" if len(labels) > 5 else "")
        verb = "belongs" if len(labels) == 1 else "belong"
        warnings.append(
            f"{listing} {verb} to patient {other}, but the report is for patient {patient} (from its composite "
            f"context, {_label(first)}); referenced all the same"
        )
    return warnings


def _patient(dataset: Dataset) -> str:
    """A patient as a person recognises them: ID, and name when there is one."""
    identifier = str(dataset.get("PatientID", "") or "")
    name = str(dataset.get("PatientName", "") or "")
    return f"'{identifier}'" + (f" ({name})" if name and name != identifier else "")


def _label(dataset: Dataset) -> str:
    return str(getattr(dataset, "filename", "") or dataset.get("SOPInstanceUID", "a file"))


def _observation_context(observer: dict):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    if observer["ObserverType"] == "PERSON":
        person = hd.sr.ObserverContext(
            observer_type=codes.DCM.Person,
            observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(name=observer["PersonObserverName"]),
        )
        return hd.sr.ObservationContext(observer_person_context=person)
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=observer.get("DeviceObserverUID") or hd.UID(),
            name=observer.get("DeviceObserverName"),
            manufacturer_name=observer.get("DeviceObserverManufacturer"),
            model_name=observer.get("DeviceObserverModelName"),
            serial_number=observer.get("DeviceObserverSerialNumber"),
        ),
    )
    return hd.sr.ObservationContext(observer_device_context=device)


def _verifier(observer: dict) -> tuple[str, str]:
    """Verifying Observer Name and Organization for a VERIFIED report (both Type 1)."""
    if observer["ObserverType"] == "PERSON":
        return observer["PersonObserverName"], "Unknown"
    name = observer.get("DeviceObserverName") or "Unknown"
    return f"{name}"[:64], (observer.get("DeviceObserverManufacturer") or "Unknown")[:64]


def _measurement_group(index: int, group: dict, metadata: dict, context: Sequence[Dataset], warnings: list[str]):
    """One TID 1411 Volumetric ROI Measurements group."""
    import highdicom as hd

    path = f"Measurements[{index}]"
    tracking = hd.sr.TrackingIdentifier(
        uid=group.get("TrackingUniqueIdentifier") or hd.UID(),
        identifier=group.get("TrackingIdentifier") or f"Measurement group {index + 1}",
    )
    referenced_segment = _referenced_segment(path, group, context)
    rwvm = None
    if group.get("rwvmMapUsedForMeasurement"):
        uid = group["rwvmMapUsedForMeasurement"]
        if not any(str(ds.get("SOPInstanceUID", "")) == uid for ds in context):
            raise InputError(
                f"{path}.rwvmMapUsedForMeasurement: no compositeContext file has SOP Instance UID {uid}; "
                "give the Real World Value Mapping object it names"
            )
        rwvm = hd.sr.RealWorldValueMap(referenced_sop_instance_uid=uid)
    finding_sites = None
    if group.get("FindingSite"):
        laterality = code_from_json(group["Laterality"]) if group.get("Laterality") else None
        finding_sites = [hd.sr.FindingSite(anatomic_location=code_from_json(group["FindingSite"]), laterality=laterality)]
    elif group.get("Laterality"):
        raise InputError(f"{path}.Laterality: a laterality qualifies a FindingSite, and this group has none")
    method = group.get("MeasurementMethod") or metadata.get("measurementMethod")
    measurements = [
        _measurement(f"{path}.measurementItems[{n}]", item) for n, item in enumerate(group.get("measurementItems") or [])
    ]
    session = group.get("activitySession", metadata.get("activitySession"))
    time_point = group.get("timePoint", metadata.get("timePoint"))
    try:
        built = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=tracking,
            referenced_segment=referenced_segment,
            referenced_real_world_value_map=rwvm,
            time_point_context=hd.sr.TimePointContext(time_point=str(time_point)) if time_point else None,
            finding_type=code_from_json(group["Finding"]) if group.get("Finding") else None,
            method=code_from_json(method) if method else None,
            algorithm_id=_algorithm(group.get("measurementAlgorithmIdentification"), f"{path}.measurementAlgorithmIdentification", warnings),
            finding_sites=finding_sites,
            session=str(session) if session else None,
            measurements=measurements or None,
        )
    except (ValueError, TypeError) as error:
        raise InputError(f"{path}: {error}") from None
    container = built[0]
    for item in container.ContentSequence:
        # TID 1411 qualifies the group with its Measurement Method (HAS CONCEPT MOD, as dcmqi
        # writes and reads it); highdicom 0.28 relates it with CONTAINS.
        if _concept(item) in _MEASUREMENT_METHOD:
            item.RelationshipType = "HAS CONCEPT MOD"
    # Evaluations in the metadata's order; highdicom's template takes coded ones only, and
    # TID 1411 allows text ones too.
    for item in group.get("qualitativeEvaluations") or []:
        name = code_from_json(item["conceptCode"])
        if isinstance(item["conceptValue"], str):
            container.ContentSequence.append(
                hd.sr.TextContentItem(name=name, value=item["conceptValue"], relationship_type="CONTAINS")
            )
        else:
            container.ContentSequence.extend(hd.sr.QualitativeEvaluation(name=name, value=code_from_json(item["conceptValue"])))
    return built


def _referenced_segment(path: str, group: dict, context: Sequence[Dataset]):
    """The SEG segment the group measures: it must be given, and have that segment."""
    import highdicom as hd

    if "ReferencedSegment" not in group:
        return None
    number = int(group["ReferencedSegment"])
    segmentations = [ds for ds in context if str(ds.get("SOPClassUID", "")) == SEGMENTATION_SOP_CLASS]
    wanted = group.get("segmentationSOPInstanceUID")
    if wanted:
        matching = [ds for ds in segmentations if str(ds.SOPInstanceUID) == wanted]
        if not matching:
            given = ", ".join(f"{_label(ds)} ({ds.SOPInstanceUID})" for ds in segmentations) or "none"
            raise InputError(
                f"{path}.segmentationSOPInstanceUID: no SEG in compositeContext has SOP Instance UID {wanted} "
                f"(SEGs given: {given})"
            )
        segmentation = matching[0]
    elif len(segmentations) == 1:
        segmentation = segmentations[0]
    else:
        raise InputError(
            f"{path}.ReferencedSegment: {len(segmentations)} SEGs are in compositeContext; "
            "name the one meant with segmentationSOPInstanceUID"
        )
    numbers = sorted(int(item.SegmentNumber) for item in segmentation.get("SegmentSequence", []))
    if number not in numbers:
        raise InputError(
            f"{path}.ReferencedSegment: segment {number} is not in {_label(segmentation)}, which has "
            f"segment(s) {', '.join(map(str, numbers)) or 'none'}"
        )
    referenced_series = [str(item.SeriesInstanceUID) for item in segmentation.get("ReferencedSeriesSequence", [])]
    source_series = group.get("SourceSeriesForImageSegmentation")
    if source_series and referenced_series and source_series not in referenced_series:
        raise InputError(
            f"{path}.SourceSeriesForImageSegmentation: {source_series} is not a series {_label(segmentation)} was "
            f"made from ({', '.join(referenced_series)})"
        )
    source_series = source_series or (referenced_series[0] if referenced_series else None)
    if not source_series:
        raise InputError(f"{path}: {_label(segmentation)} names no source series; give SourceSeriesForImageSegmentation")
    return hd.sr.ReferencedSegment(
        sop_class_uid=SEGMENTATION_SOP_CLASS,
        sop_instance_uid=str(segmentation.SOPInstanceUID),
        segment_number=number,
        source_series=hd.sr.SourceSeriesForSegmentation(source_series),
    )


def _algorithm(entry: dict | None, path: str, warnings: list[str]):
    import highdicom as hd

    if not entry:
        return None
    name = entry.get("AlgorithmName")
    if not name:
        raise InputError(f"{path}.AlgorithmName: an algorithm identification needs the algorithm's name")
    version = entry.get("AlgorithmVersion")
    if not version:
        version = "unknown"
        warnings.append(f"{path}: no AlgorithmVersion (DICOM requires one); 'unknown' was written")
    return hd.sr.AlgorithmIdentification(name=str(name), version=str(version), parameters=entry.get("AlgorithmParameters") or None)


def _is_nan(text: str) -> bool:
    return str(text).strip().lower().lstrip("+-") == "nan"


def _number(text: str, path: str) -> int | float:
    """A measurement value as highdicom takes it: int when written as one, so "2" stays "2"."""
    cleaned = str(text).strip()
    try:
        if cleaned.lstrip("+-").isdigit():
            return int(cleaned)
        value = float(cleaned)
    except ValueError:
        raise InputError(f"{path}: '{text}' is not a number") from None
    if not math.isfinite(value):
        raise InputError(f"{path}: '{text}' is not a finite number (only \"nan\" is accepted, as not a number)")
    return value


def _num_item(name: Code, text: str, unit: Code | None, relationship: str | None, path: str):
    """A NUM content item; "nan" becomes an empty measured value with the qualifier Not a number."""
    import highdicom as hd

    if _is_nan(text):
        item = hd.sr.NumContentItem(name=name, value=0, unit=unit or _NO_UNITS, relationship_type=relationship)
        _mark_not_a_number(item)
        return item
    if unit is None:
        raise InputError(f"{path}: units are needed for a numeric value")
    item = hd.sr.NumContentItem(name=name, value=_number(text, path), unit=unit, relationship_type=relationship)
    _keep_text(item, text)
    return item


def _keep_text(item: Dataset, text: str) -> None:
    """Store the value as the metadata wrote it ("2", not highdicom's "2.0")."""
    item.MeasuredValueSequence[0].NumericValue = str(text).strip()


def _mark_not_a_number(item: Dataset) -> None:
    """Qualify a NUM item as Not a number; its placeholder value goes once the document is
    built (highdicom cannot parse a NUM item without a value, which DICOM allows)."""
    import highdicom as hd

    item.NumericValueQualifierCodeSequence = [hd.sr.CodedConcept.from_code(NOT_A_NUMBER)]


def _drop_not_a_number_values(items: Sequence[Dataset]) -> None:
    """Empty the Measured Value Sequence of every NUM item qualified as Not a number."""
    for item in items:
        qualifier = item.get("NumericValueQualifierCodeSequence")
        if item.get("ValueType") == "NUM" and qualifier and qualifier[0].CodeValue == NOT_A_NUMBER.value:
            item.MeasuredValueSequence = []
        _drop_not_a_number_values(item.get("ContentSequence", []))


def _measurement(path: str, item: dict):
    """One TID 300 measurement with its derivation, modifiers, parameters and properties."""
    import highdicom as hd

    units = code_from_json(item["units"]) if item.get("units") else None
    text = item["value"]
    nan = _is_nan(text)
    if not nan and units is None:
        raise InputError(f"{path}.units: units are needed for the value {text}")
    properties = None
    if item.get("measurementNumProperties"):
        values = [
            _num_item(
                code_from_json(p["numProperty"]), p["numPropertyValue"], code_from_json(p["numPropertyUnits"]),
                "HAS PROPERTIES", f"{path}.measurementNumProperties[{n}]",
            )
            for n, p in enumerate(item["measurementNumProperties"])
        ]
        properties = hd.sr.MeasurementProperties(
            measurement_statistical_properties=hd.sr.MeasurementStatisticalProperties(
                values=values, description=item.get("measurementPopulationDescription")
            )
        )
    try:
        measurement = hd.sr.Measurement(
            name=code_from_json(item["quantity"]),
            value=0 if nan else _number(text, f"{path}.value"),
            unit=units or _NO_UNITS,
            derivation=code_from_json(item["derivationModifier"]) if item.get("derivationModifier") else None,
            algorithm_id=_algorithm(item.get("measurementAlgorithmIdentification"), f"{path}.measurementAlgorithmIdentification", []),
            properties=properties,
        )
    except (ValueError, TypeError) as error:
        raise InputError(f"{path}: {error}") from None
    num = measurement[0]
    if nan:
        _mark_not_a_number(num)
    else:
        _keep_text(num, text)
    children = num.ContentSequence if "ContentSequence" in num else hd.sr.ContentSequence(is_root=False)
    extra = []
    for modifier in item.get("measurementModifiers") or []:
        extra.append(
            hd.sr.CodeContentItem(
                name=code_from_json(modifier["modifier"]), value=code_from_json(modifier["modifierValue"]),
                relationship_type="HAS CONCEPT MOD",
            )
        )
    for n, parameter in enumerate(item.get("measurementDerivationParameters") or []):
        extra.append(
            _num_item(
                code_from_json(parameter["derivationParameter"]), parameter["derivationParameterValue"],
                code_from_json(parameter["derivationParameterUnits"]), "INFERRED FROM",
                f"{path}.measurementDerivationParameters[{n}]",
            )
        )
    if item.get("measurementPopulationDescription") and not item.get("measurementNumProperties"):
        extra.append(
            hd.sr.TextContentItem(
                name=Code("121405", "DCM", "Population description"),
                value=item["measurementPopulationDescription"], relationship_type="HAS PROPERTIES",
            )
        )
    if extra:
        for content_item in extra:
            children.append(content_item)
        num.ContentSequence = children
    return measurement
