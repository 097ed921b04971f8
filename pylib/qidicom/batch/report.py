"""The batch report: one line per case, as CSV (for spreadsheets) and JSON (for programs)."""

from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from dataclasses import dataclass, field

from qidicom import __version__
from qidicom.batch import storage
from qidicom.batch.cases import STATUSES, CaseResult

COLUMNS = ("case", "row", "conversion", "status", "seconds", "cpu_seconds", "output", "output_bytes", "warnings", "error", "worker")


@dataclass
class BatchReport:
    """What a batch did: a result per case (in manifest order) and how it ran."""

    results: list[CaseResult]
    seconds: float = 0.0
    scheduler: str = ""
    dashboard: str | None = None
    interrupted: bool = False
    files: list[str] = field(default_factory=list)  # where the report was written

    @property
    def counts(self) -> dict[str, int]:
        counted = Counter(result.status for result in self.results)
        return {status: counted.get(status, 0) for status in STATUSES}

    @property
    def ok(self) -> bool:
        """Every case has its output (made now, or already up to date)."""
        return not self.interrupted and all(result.status in ("ok", "skipped") for result in self.results)

    @property
    def failed(self) -> list[CaseResult]:
        return [result for result in self.results if result.status in ("failed", "timeout")]

    def summary(self) -> str:
        counts = ", ".join(f"{n} {status}" for status, n in self.counts.items() if n)
        rate = sum(1 for r in self.results if r.status == "ok") / self.seconds * 60 if self.seconds else 0.0
        text = f"{len(self.results)} case(s): {counts or 'none'} in {self.seconds:.1f} s ({rate:.1f} converted/min)"
        return text + (", interrupted" if self.interrupted else "")

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for result in self.results:
            row = result.as_dict()
            row["warnings"] = " | ".join(result.warnings)
            row["output_bytes"] = "" if result.output_bytes is None else result.output_bytes
            writer.writerow(row)
        return buffer.getvalue()

    def to_json(self) -> str:
        document = {
            "qidicom": __version__,
            "seconds": round(self.seconds, 3),
            "scheduler": self.scheduler,
            "dashboard": self.dashboard,
            "interrupted": self.interrupted,
            "counts": self.counts,
            "cases": [result.as_dict() for result in self.results],
        }
        return json.dumps(document, indent=1) + "\n"

    def to_dataframe(self):
        """The per-case lines as a pandas DataFrame (needs pandas)."""
        import pandas

        return pandas.DataFrame([result.as_dict() for result in self.results], columns=list(COLUMNS))

    def write(self, location: str) -> list[str]:
        """Write ``<location>.csv`` and ``<location>.json`` (a .csv/.json suffix is replaced)."""
        stem = location[:-5] if location.endswith(".json") else location[:-4] if location.endswith(".csv") else location
        stem = storage.resolve(stem, os.getcwd())
        storage.write_file(stem + ".csv", self.to_csv().encode())
        storage.write_file(stem + ".json", self.to_json().encode())
        self.files = [stem + ".csv", stem + ".json"]
        return self.files
