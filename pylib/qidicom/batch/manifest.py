"""Manifests: one row per case, read from CSV, JSON lines, Parquet or a DataFrame, and
checked as a whole before anything runs.

Every bad row is reported at once (unknown column or conversion, an option the CLI would
refuse, a missing input, two rows writing the same output), so a collection of thousands
is fixed in one pass rather than one crash at a time.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from qidicom.batch import storage
from qidicom.batch.cases import Case
from qidicom.batch.columns import (
    BATCH_COLUMNS, CASE_COLUMN, CONVERSION_COLUMN, Conversion, UsageError, all_columns, conversions,
    default_output_name, resolve_conversion,
)
from qidicom.errors import QidicomError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class ManifestError(QidicomError):
    """A manifest that cannot run; ``problems`` lists every bad row."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = problems or []


# --------------------------------------------------------------------------- reading


def read_rows(manifest: Any) -> tuple[list[dict], str, str]:
    """The rows of a manifest, the folder its relative paths start from, and its name.

    ``manifest`` is a path or URL (``.csv``, ``.tsv``, ``.jsonl``/``.ndjson``, ``.parquet``),
    a pandas DataFrame, a pyarrow Table, or a list of dicts.
    """
    if isinstance(manifest, (str, os.PathLike)):
        text = os.fspath(manifest)
        location = storage.resolve(text, os.getcwd())
        problem = storage.problem(location, directory=False)
        if problem:
            raise ManifestError(f"manifest {problem}")
        data = storage.read_bytes(location)
        name = location.rsplit("/", 1)[-1]
        return _parse(data, name), storage.parent(location), name
    if hasattr(manifest, "to_dict"):  # pandas
        return list(manifest.to_dict(orient="records")), os.getcwd(), "the DataFrame"
    if hasattr(manifest, "to_pylist"):  # pyarrow
        return list(manifest.to_pylist()), os.getcwd(), "the table"
    if isinstance(manifest, Iterable):
        rows = list(manifest)
        if all(isinstance(row, Mapping) for row in rows):
            return [dict(row) for row in rows], os.getcwd(), "the rows"
    raise ManifestError(f"cannot read a manifest from {type(manifest).__name__} (give a path, a DataFrame or a list of dicts)")


def _parse(data: bytes, name: str) -> list[dict]:
    lowered = name.lower()
    if lowered.endswith((".parquet", ".pq")):
        try:
            import pyarrow.parquet
        except ImportError:
            raise ManifestError(f"{name}: Parquet manifests need pyarrow (pip install 'qidicom[batch]')") from None
        try:
            return pyarrow.parquet.read_table(io.BytesIO(data)).to_pylist()
        except Exception as error:  # pyarrow raises its own error types
            raise ManifestError(f"{name}: not a readable Parquet file ({error})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ManifestError(f"{name}: not UTF-8 text ({error})") from None
    if lowered.endswith((".jsonl", ".ndjson", ".json")):
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ManifestError(f"{name}: line {number}: not JSON ({error.msg}, column {error.colno})") from None
            if not isinstance(row, dict):
                raise ManifestError(f"{name}: line {number}: each line must be a JSON object, one case")
            rows.append(row)
        return rows
    dialect = "excel-tab" if lowered.endswith(".tsv") else "excel"
    reader = csv.DictReader(io.StringIO(text), dialect=dialect)
    rows = []
    for row in reader:
        if None in row:
            raise ManifestError(f"{name}: line {reader.line_num}: more cells than the header has columns")
        if any(value and value.strip() for value in row.values()):
            rows.append({key.strip(): value for key, value in row.items()})
    return rows


# --------------------------------------------------------------------------- checking


def _empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    if isinstance(value, str) and not value.strip():
        return True
    if isinstance(value, (list, tuple)) and not value:
        return True
    return False


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _switch(value: Any) -> bool | None:
    text = _text(value).lower()
    return True if text in _TRUE else False if text in _FALSE else None


def load_cases(
    manifest: Any,
    output_directory: str | os.PathLike,
    *,
    defaults: Mapping[str, Any] | None = None,
    base: str | os.PathLike | None = None,
    force: bool = False,
    case_timeout: float | None = None,
) -> list[Case]:
    """Check a manifest whole and turn its rows into cases; ManifestError lists every bad row.

    ``defaults`` are option values for every row that leaves that column empty (the CLI's
    ``--default NAME=VALUE``); ``base`` overrides the folder relative inputs start from.
    """
    rows, folder, name = read_rows(manifest)
    base_location = storage.resolve(os.fspath(base), os.getcwd()) if base is not None else folder
    output_root = storage.resolve(os.fspath(output_directory), os.getcwd())
    known = conversions()
    columns = all_columns(known)
    problems: list[str] = []
    defaults = dict(defaults or {})
    for key in defaults:
        if key in BATCH_COLUMNS or key not in columns:
            problems.append(f"default '{key}': not an option of any conversion{_suggestion(key, columns)}")

    unknown: dict[str, list[int]] = {}
    for number, row in enumerate(rows, start=1):
        for key, value in row.items():
            if key not in columns and not _empty(value):
                unknown.setdefault(key, []).append(number)
    for key, numbers in unknown.items():
        where = ", ".join(map(str, numbers[:10])) + (" ..." if len(numbers) > 10 else "")
        problems.append(f"column '{key}': not a manifest column{_suggestion(key, columns)} (rows {where})")

    cases: list[Case] = []
    outputs: dict[str, str] = {}
    ids: dict[str, int] = {}
    for number, row in enumerate(rows, start=1):
        case_id = _text(row[CASE_COLUMN]) if not _empty(row.get(CASE_COLUMN)) else f"row-{number:0{max(4, len(str(len(rows))))}d}"
        label = f"row {number} ({case_id})" if not _empty(row.get(CASE_COLUMN)) else f"row {number}"
        if case_id in ids:
            problems.append(f"{label}: case name '{case_id}' is also used by row {ids[case_id]}")
        ids.setdefault(case_id, number)
        case, row_problems = _case(row, number, case_id, known, defaults, base_location, output_root, force, case_timeout)
        problems += [f"{label}: {problem}" for problem in row_problems]
        if case is None:
            continue
        key = os.path.normcase(case.output.rstrip("/"))
        if key in outputs:
            problems.append(f"{label}: writes {case.output}, as {outputs[key]} does")
        else:
            outputs[key] = label
        cases.append(case)
    if not rows:
        problems.append("no rows")
    if problems:
        bad_rows = len({p.split(":", 1)[0] for p in problems if p.startswith("row ")})
        summary = f"{name}: {len(problems)} problem(s) in {bad_rows} row(s), nothing was run" if bad_rows else f"{name}: nothing was run"
        raise ManifestError(summary + "\n  " + "\n  ".join(problems), problems)
    return cases


def _suggestion(key: str, columns: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(columns), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _case(
    row: Mapping[str, Any], number: int, case_id: str, known: Mapping[str, Conversion], defaults: Mapping[str, Any],
    base: str, output_root: str, force: bool, timeout: float | None,
) -> tuple[Case | None, list[str]]:
    named = row.get(CONVERSION_COLUMN)
    if _empty(named):
        return None, ["no conversion (the 'conversion' column is empty)"]
    conversion = resolve_conversion(_text(named), known)
    if conversion is None:
        names = sorted({c.alias for c in known.values() if c.alias} | set(known))
        return None, [f"unknown conversion '{_text(named)}' (one of {', '.join(names)})"]

    problems = []
    values = {key: value for key, value in defaults.items() if key in conversion.columns}
    for key, value in row.items():
        if key in BATCH_COLUMNS or _empty(value):
            continue
        if key not in conversion.columns:
            if any(key in other.columns for other in known.values()):
                problems.append(f"{key} is not an option of {conversion.name}")
            continue  # unknown columns are reported once, for the whole manifest
        values[key] = value
    output_column = conversion.output
    if _empty(values.get(output_column.name)):
        values[output_column.name] = default_output_name(output_column, case_id)

    argv = []
    for key, value in values.items():
        column = conversion.columns[key]
        if column.flag:
            switch = _switch(value)
            if switch is None:
                problems.append(f"{key}: '{_text(value)}' is not 1/0, true/false or yes/no")
            elif switch:
                argv.append(column.option)
            continue
        if isinstance(value, (list, tuple)):
            if not column.many:
                problems.append(f"{key}: takes one value, got a list")
                continue
            value = ",".join(_text(item) for item in value)
        argv.append(f"{column.option}={_text(value)}")
    try:
        parsed = vars(conversion.parser.parse_args(argv))
    except UsageError as error:
        problems.append(str(error))
        return None, problems

    inputs: dict[str, Any] = {}
    directories = []
    options: dict[str, Any] = {}
    output = ""
    for column in conversion.columns.values():
        value = parsed.get(column.name)
        if column.role == "option":
            options[column.name] = value
        elif value is None:
            continue
        elif column.role == "output":
            output = storage.resolve(str(value), output_root)
        else:
            if column.directory:
                directories.append(column.name)
            items = value if isinstance(value, list) else [value]
            resolved = [storage.resolve(str(item), base) for item in items]
            for location in resolved:
                problem = storage.problem(location, column.directory)
                if problem:
                    problems.append(f"{column.name}: {problem}")
            inputs[column.name] = resolved if column.many else resolved[0]
    if problems:
        return None, problems
    case = Case(
        id=case_id, row=number, conversion=conversion.name, inputs=inputs, directories=tuple(directories),
        options=options, output=output, output_is_directory=conversion.output.directory, force=force, timeout=timeout,
    )
    return case, []
