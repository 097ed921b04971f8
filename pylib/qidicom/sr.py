"""TID 1500 measurement reports: dcmqi's sr-tid1500 JSON to a DICOM Comprehensive SR, and back.

Writing builds the report with highdicom's templates (Measurement Report, Volumetric ROI
Measurements, Measurement) and adds what dcmqi's JSON holds beyond them: free concept
modifiers, derivation parameters, text evaluations and "nan" values, which are kept with a
Numeric Value Qualifier ("Not a number") rather than dropped.

The files named in ``compositeContext`` (the SEG, the RWVM) and ``imageLibrary`` (the source
images) come from any sources the readers accept: a directory (CLI), or in-memory files (a
browser). A name is matched against the file names, then against SOP Instance UIDs, which is
how dcmqi's and qidicom's readers list them. The composite context decides the report's
patient and study; a referenced object of another patient (dcmqi's own examples measure a
SEG with another patient's image library) is a warning naming both. Reading walks the
content tree with pydicom, so SRs from dcmqi (with retired SNOMED-RT codes) read as well as
ours.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sr.coding import Code

from qidicom import __version__
from qidicom import metadata as metadata_module
from qidicom.errors import InputError, QidicomError
from qidicom.readers import Source, iter_dicom_sources, parse_dicom, read_dicom, tolerant_dicom_values
from qidicom.readers import source_name
from qidicom.metadata import code_from_json, code_to_json
from qidicom.writers import suggested_filename
from qidicom.writers import dicom_bytes

Progress = Callable[[str, float], None]

SEGMENTATION_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
RWVM_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.67"
COMPRESSIONS = ("none", "deflate")

#: Numeric Value Qualifier (CID 42) for a measurement that could not be computed.
NOT_A_NUMBER = Code("114000", "DCM", "Not a number")
#: Procedure Reported when the metadata names none (TID 1500 requires one).
DEFAULT_PROCEDURE = Code("363679005", "SCT", "Imaging procedure")
_NO_UNITS = Code("1", "UCUM", "no units")

# Concept names read from the content tree; retired SNOMED-RT codes as older SRs carry them.
_OBSERVER_TYPE = {"121005"}
_PERSON_NAME = {"121008"}
_DEVICE_FIELDS = {
    "121012": "DeviceObserverUID",
    "121013": "DeviceObserverName",
    "121014": "DeviceObserverManufacturer",
    "121015": "DeviceObserverModelName",
    "121016": "DeviceObserverSerialNumber",
}
_PROCEDURE_REPORTED = {"121058"}
_IMAGE_LIBRARY = {"111028"}
_IMAGING_MEASUREMENTS = {"126010"}
_MEASUREMENT_GROUP = {"125007"}
_TRACKING_ID = {"112039"}
_TRACKING_UID = {"112040"}
_SESSION = {"C67447"}
_TIME_POINT = {"C2348792"}
_FINDING = {"121071"}
_REFERENCED_SEGMENT = {"121191"}
_SOURCE_SERIES = {"121232"}
_RWVM_USED = {"126100"}
_MEASUREMENT_METHOD = {"370129005", "G-C036"}
_FINDING_SITE = {"363698007", "G-C0E3"}
_LATERALITY = {"272741003", "G-C171"}
_DERIVATION = {"121401"}
_ALGORITHM_NAME = {"111001"}
_ALGORITHM_VERSION = {"111003"}
_ALGORITHM_PARAMETERS = {"111002"}
_POPULATION_DESCRIPTION = {"121405"}
_GROUP_STRUCTURE = (
    _TRACKING_ID | _TRACKING_UID | _SESSION | _TIME_POINT | _FINDING | _REFERENCED_SEGMENT | _SOURCE_SERIES
    | _RWVM_USED | _MEASUREMENT_METHOD | _FINDING_SITE | _ALGORITHM_NAME | _ALGORITHM_VERSION | _ALGORITHM_PARAMETERS
)


@dataclass
class SrResult:
    """A written SR: the dataset, its file bytes, a download name and any warnings."""

    dataset: Dataset
    data: bytes
    filename: str
    warnings: list[str] = field(default_factory=list)


@dataclass
class ReferencedFiles:
    """DICOM objects a report may name, found by file name or by SOP Instance UID."""

    by_name: dict[str, Dataset]
    by_uid: dict[str, Dataset]
    where: str  # e.g. "--inputCompositeContextDirectory", for messages

    @classmethod
    def load(cls, sources: Source | Sequence[Source] | None, where: str) -> "ReferencedFiles":
        """Read every DICOM file among ``sources`` (headers only; non-DICOM files skipped)."""
        by_name: dict[str, Dataset] = {}
        by_uid: dict[str, Dataset] = {}
        if sources is None:
            return cls(by_name, by_uid, where)
        if isinstance(sources, Dataset):
            sources = [sources]
        items = list(sources) if isinstance(sources, (list, tuple)) and not _is_pair(sources) else [sources]
        for item in items:
            if isinstance(item, Dataset):
                datasets = [(str(getattr(item, "filename", "") or item.SOPInstanceUID), item)]
            else:
                datasets = []
                with _quiet_pydicom():
                    for named in iter_dicom_sources(item):
                        dataset = parse_dicom(named)
                        if dataset is not None:
                            datasets.append((named.name, dataset))
            for name, dataset in datasets:
                by_name[_basename(name)] = dataset
                by_name[name.replace("\\", "/")] = dataset
                if "SOPInstanceUID" in dataset:
                    by_uid[str(dataset.SOPInstanceUID)] = dataset
        return cls(by_name, by_uid, where)

    def find(self, name: str, path: str) -> Dataset:
        """The dataset a metadata entry names; a clear error if none is given."""
        key = name.replace("\\", "/")
        dataset = self.by_name.get(key) or self.by_name.get(_basename(key))
        if dataset is None:
            uid = key[:-4] if key.lower().endswith(".dcm") else key
            dataset = self.by_uid.get(_basename(uid))
        if dataset is None:
            known = sorted({_basename(n) for n in self.by_name})
            listing = ", ".join(known[:8]) + (" ..." if len(known) > 8 else "") if known else "no DICOM files"
            raise InputError(
                f"{path}: '{name}' was not found among {self.where} ({listing}); "
                "give the file, by this name or with this SOP Instance UID"
            )
        return dataset


@contextlib.contextmanager
def _quiet_pydicom() -> Iterator[None]:
    """Silence pydicom's log while probing files that may not be DICOM (e.g. a NRRD beside
    the SEG), which it otherwise reports as unknown tags."""
    logger = logging.getLogger("pydicom")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _is_pair(value: Any) -> bool:
    return isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], (bytes, bytearray))


def _basename(name: str) -> str:
    return name.replace("\\", "/").rsplit("/", 1)[-1]


# --------------------------------------------------------------------------- writing


def report_from_files(
    metadata: Source | dict,
    image_library: Source | Sequence[Source] | None = None,
    composite_context: Source | Sequence[Source] | None = None,
    *,
    compress: str = "none",
    progress: Progress | None = None,
) -> SrResult:
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
) -> SrResult:
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
    return SrResult(document, data, suggested_filename(document, "SR"), warnings)


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



# --------------------------------------------------------------------------- reading


@dataclass
class ReportContents:
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


def _concept(item: Dataset) -> str:
    names = item.get("ConceptNameCodeSequence")
    return str(names[0].CodeValue) if names else ""


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
