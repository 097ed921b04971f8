"""The DICOM files a measurement report names, found among any sources the readers accept.

The files named in ``compositeContext`` (the SEG, the RWVM) and ``imageLibrary`` (the
source images) come from a directory (CLI) or in-memory files (a browser). A name is
matched against the file names, then against SOP Instance UIDs, which is how dcmqi's and
qidicom's readers list them.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from pydicom.dataset import Dataset

from qidicom.errors import InputError
from qidicom.readers import Source, iter_dicom_sources, parse_dicom


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
