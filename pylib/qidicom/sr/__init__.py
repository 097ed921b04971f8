"""TID 1500 measurement reports: dcmqi's sr-tid1500 JSON to a DICOM Comprehensive SR, and back.

One module per direction: ``write`` (the JSON and the files it names to an SR) and
``read`` (an SR, qidicom's, dcmqi's or highdicom's, back to the JSON); ``references``
finds the named files among what was given, and ``concepts`` holds the codes both share.
"""

from qidicom.results import Progress, WriteResult
from qidicom.sr.concepts import DEFAULT_PROCEDURE, NOT_A_NUMBER, RWVM_SOP_CLASS, SEGMENTATION_SOP_CLASS
from qidicom.sr.read import ReportContents, read_report, report_to_json
from qidicom.sr.references import ReferencedFiles
from qidicom.sr.write import COMPRESSIONS, other_patient_warnings, report_from_files, write_report

#: The SR writer's result, by its name from before the writers shared one type.
SrResult = WriteResult

__all__ = [
    "COMPRESSIONS", "DEFAULT_PROCEDURE", "NOT_A_NUMBER", "Progress", "RWVM_SOP_CLASS", "ReferencedFiles",
    "ReportContents", "SEGMENTATION_SOP_CLASS", "SrResult", "WriteResult", "other_patient_warnings", "read_report",
    "report_from_files", "report_to_json", "write_report",
]
