"""What conversions give back: one result type for the writers, one base for the readers.

Every writer (SEG, labelmap SEG, Parametric Map, TID 1500 SR) returns a ``WriteResult``,
so the CLI, the batch and the app save any of them the same way. Every reader returns a
``ReadResult`` subclass: the dcmqi metadata it recovered and what it could not keep, plus
whatever the object holds (a SEG's segments, a PM's volume).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from pydicom.dataset import Dataset

#: A progress callback: what is being done, and the fraction done so far (0 to 1).
Progress = Callable[[str, float], None]


@dataclass
class WriteResult:
    """A written DICOM object: the dataset, its file bytes, a download name and any warnings."""

    dataset: Dataset
    data: bytes
    filename: str
    warnings: list[str] = field(default_factory=list)


class ReadResult:
    """What every reader's result holds: dcmqi-style ``metadata`` and ``warnings``.

    The readers' dataclasses subclass it and declare these fields in their own order.
    """

    metadata: dict
    warnings: list[str]
