"""TID 1500 content: the SOP classes, codes and concept names the writer and reader share.

Concept names are matched by code value, with the retired SNOMED-RT codes older SRs
(dcmqi's among them) carry.
"""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.sr.coding import Code


SEGMENTATION_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
RWVM_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.67"


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


def _concept(item: Dataset) -> str:
    names = item.get("ConceptNameCodeSequence")
    return str(names[0].CodeValue) if names else ""
