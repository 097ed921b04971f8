"""One case of a batch: a pure function of its row.

``run_case`` reads the inputs, converts with the library function the conversion's
description names (``qidicom.conversions``, which the CLI's subcommands read too), and writes the output whole or not at
all, then records a content hash beside it. Running a case twice, or on two workers at
once after a retry, writes the same thing, which is what makes Dask's retries and work
stealing safe. Nothing here imports Dask: workers need only qidicom itself.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

from qidicom import __version__, conversions
from qidicom.batch import storage
from qidicom.batch.storage import SIDECAR_SUFFIX
from qidicom.errors import QidicomError


@dataclass(frozen=True)
class Case:
    """What a worker needs to run one manifest row; plain data, so it pickles anywhere."""

    id: str
    row: int
    conversion: str  # the CLI subcommand, e.g. "itkimage2segimage"
    inputs: dict  # column -> location, or list of locations for list columns
    directories: tuple[str, ...]  # the input columns that are folders
    options: dict  # column -> value as the CLI's parser gives it (defaults filled in)
    output: str  # file or folder location
    output_is_directory: bool = False
    force: bool = False
    timeout: float | None = None
    bookkeeping: tuple[str, ...] = ()  # files the batch writes besides outputs (the report)


STATUSES = ("ok", "skipped", "failed", "timeout", "not run")


@dataclass
class CaseResult:
    """One line of the report."""

    case: str
    row: int
    conversion: str
    status: str  # one of STATUSES; "skipped" = output already up to date
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # of the thread that ran it: the case's own cost, whatever the load
    output: str = ""
    output_bytes: int | None = None
    warnings: list[str] = field(default_factory=list)
    error: str = ""
    worker: str = ""

    @classmethod
    def of(cls, case: Case, status: str, **values) -> "CaseResult":
        return cls(case=case.id, row=case.row, conversion=case.conversion, status=status, output=case.output, **values)

    def as_dict(self) -> dict:
        return asdict(self)


class CaseTimeout(BaseException):
    """Raised inside a case that ran past --case-timeout. A BaseException, so that no
    ``except Exception`` in the conversion swallows it."""


class Deadline:
    """When a case must be done by; ``check`` raises CaseTimeout once it has passed."""

    def __init__(self, seconds: float | None):
        self.at = time.monotonic() + seconds if seconds else None

    def check(self) -> None:
        if self.at is not None and time.monotonic() > self.at:
            raise CaseTimeout


@contextmanager
def time_limit(seconds: float | None) -> Iterator[Deadline]:
    """Interrupt this thread with CaseTimeout after ``seconds``.

    Works on a process pool's worker and on a Dask worker thread alike. The exception is
    delivered between Python steps, so a case stuck inside one long C call, or waiting on
    another thread (the readers decode images on a second thread), ends when that returns;
    the yielded deadline lets the case check once more before it writes anything.
    """
    deadline = Deadline(seconds)
    if not seconds:
        yield deadline
        return
    thread = threading.get_ident()
    lock = threading.Lock()
    finished = False

    def interrupt() -> None:
        with lock:
            if not finished:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread), ctypes.py_object(CaseTimeout))

    timer = threading.Timer(seconds, interrupt)
    timer.daemon = True
    timer.start()
    try:
        yield deadline
    finally:
        with lock:
            finished = True
        timer.cancel()


# --------------------------------------------------------------------------- inputs


class Inputs:
    """The case's inputs as the library takes them, and a hash of their bytes.

    Local files are handed over as paths, exactly as the CLI does, so the output cannot
    differ from a CLI run; URLs are read once (for the hash) and handed over as
    ``(name, bytes)`` pairs, which every reader of the library accepts.
    """

    def __init__(self, case: Case):
        self.case = case
        self._remote: dict[str, object] = {}

    def digest(self) -> str:
        """sha256 of the inputs' bytes, the options and the qidicom version."""
        hasher = hashlib.sha256()
        header = {"qidicom": __version__, "conversion": self.case.conversion, "options": self.case.options}
        hasher.update(json.dumps(header, sort_keys=True, default=str).encode())
        for column in sorted(self.case.inputs):
            hasher.update(f"\0column {column}\0".encode())
            directory = column in self.case.directories
            for location in self._locations(column):
                for name, chunks in self._contents(location, directory):
                    hasher.update(f"\0file {name}\0".encode())
                    for chunk in chunks:
                        hasher.update(chunk)
        return hasher.hexdigest()

    def _locations(self, column: str) -> list[str]:
        value = self.case.inputs[column]
        return list(value) if isinstance(value, (list, tuple)) else [value]

    def _contents(self, location: str, directory: bool):
        if storage.is_url(location):
            if location not in self._remote:
                if directory:
                    self._remote[location] = storage.read_tree(location)
                else:
                    self._remote[location] = (location.rstrip("/").rsplit("/", 1)[-1], storage.read_bytes(location))
            content = self._remote[location]
            pairs = content if directory else [content]
            root = location.rstrip("/") + "/"
            return [(name, [data]) for name, data in pairs if not (directory and self._own(root + name))]
        if directory:
            root = Path(location)
            return [
                (os.path.relpath(path, root), _chunks(path))
                for path in storage.tree_names(location) if not self._own(path)
            ]
        return [(os.path.basename(location), _chunks(location))]

    def _own(self, path: str) -> bool:
        """A file the batch writes, found in an input folder (e.g. the SR written into its own
        composite-context folder, the records, the report): not an input, or no rerun would
        ever find the case done."""
        output = self.case.output.rstrip("/")
        if path == output or path.endswith(SIDECAR_SUFFIX) or path in self.case.bookkeeping:
            return True
        return self.case.output_is_directory and path.startswith(output + "/")

    def source(self, column: str):
        """One input column as a library source (list columns give a list)."""
        value = self.case.inputs.get(column)
        if value is None:
            return None
        directory = column in self.case.directories
        sources = [self._source(location, directory) for location in self._locations(column)]
        return sources if isinstance(value, (list, tuple)) else sources[0]

    def _source(self, location: str, directory: bool):
        if not storage.is_url(location):
            return Path(location)
        if location not in self._remote:
            self._contents(location, directory)
        return self._remote[location]


def _chunks(path: str, size: int = 1 << 20) -> Iterator[bytes]:
    try:
        with open(path, "rb") as stream:
            while chunk := stream.read(size):
                yield chunk
    except OSError as error:
        raise QidicomError(f"{path}: cannot be read ({error.strerror or error})") from None


# --------------------------------------------------------------------------- conversions


def convert(conversion_name: str, inputs: Inputs, options: dict) -> tuple[object, list[str]]:
    """Run a conversion as ``qidicom.conversions`` describes it, as the CLI does. Returns the
    output (bytes for a file, [(name, bytes)] for a folder) and the warnings."""
    conversion = conversions.get(conversion_name)
    sources = {}
    for item in conversion.inputs:
        given = (inputs.source(form.dest) for form in item.cli)
        sources[item.role] = next((source for source in given if source is not None), None)
    outcome = conversions.run(conversion, sources, options)
    return outcome.output, outcome.warnings


# --------------------------------------------------------------------------- running


def sidecar(output: str) -> str:
    """Where the record of a finished case lives: beside its output."""
    return output.rstrip("/") + SIDECAR_SUFFIX


def _up_to_date(case: Case, digest: str) -> dict | None:
    """The record of an earlier run that made this output from these very inputs, or None."""
    try:
        if not storage.exists(sidecar(case.output)):
            return None
        record = json.loads(storage.read_bytes(sidecar(case.output)))
    except (OSError, ValueError, QidicomError):
        return None
    if record.get("hash") != digest:
        return None
    if storage.size(case.output) != record.get("output_bytes"):
        return None  # the output was removed or replaced since
    return record


def one_line(error: BaseException) -> str:
    text = " ".join(part.strip() for part in str(error).splitlines() if part.strip())
    return text or type(error).__name__


def _cpu_time() -> float:
    """This thread's CPU time; the process's where there are no threads (Pyodide lacks
    ``time.thread_time``)."""
    return time.thread_time() if hasattr(time, "thread_time") else time.process_time()


def run_case(case: Case) -> CaseResult:
    """Run one case; never raises for a problem of the case itself, it is reported instead."""
    started, cpu = time.perf_counter(), _cpu_time()
    worker = f"{socket.gethostname()}:{os.getpid()}"

    def done(status: str, **values) -> CaseResult:
        return CaseResult.of(
            case, status, seconds=round(time.perf_counter() - started, 4),
            cpu_seconds=round(_cpu_time() - cpu, 4), worker=worker, **values,
        )

    try:
        with time_limit(case.timeout) as deadline:
            inputs = Inputs(case)
            digest = inputs.digest()
            if not case.force:
                record = _up_to_date(case, digest)
                if record is not None:
                    return done("skipped", output_bytes=record.get("output_bytes"), warnings=list(record.get("warnings", [])))
            storage.remove_partials(case.output)
            output, warnings = convert(case.conversion, inputs, case.options)
            deadline.check()  # a late result is not written: the case timed out
            if isinstance(output, (bytes, bytearray)):
                storage.write_file(case.output, bytes(output))
                size = len(output)
            else:
                storage.write_tree(case.output, output)
                size = sum(len(data) for _, data in output)
            record = {
                "qidicom": __version__, "case": case.id, "conversion": case.conversion, "hash": digest,
                "output_bytes": size, "warnings": warnings, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            # Written last: an output without its record is redone by the next run.
            storage.write_file(sidecar(case.output), (json.dumps(record, indent=1) + "\n").encode())
        return done("ok", output_bytes=size, warnings=warnings)
    except CaseTimeout:
        return done("timeout", error=f"no result within {case.timeout:g} s (--case-timeout)")
    except QidicomError as error:
        return done("failed", error=one_line(error))
    except MemoryError:
        return done("failed", error="out of memory")
    except Exception as error:  # a bug of ours or a library's: still one line, and the batch goes on
        return done("failed", error=f"unexpected {type(error).__name__}: {one_line(error)}")
