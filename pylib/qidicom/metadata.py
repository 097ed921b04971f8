"""Load and validate the metadata JSON that parameterises every conversion.

The documents follow qidicom's own JSON Schemas (draft-04, in ``qidicom/schemas``), which
accept dcmqi's metadata files unchanged. Every ``$ref`` resolves to a bundled file: a
document whose ``"@schema"`` names dcmqi's schema URL is checked against our copy of the
rules, and nothing is ever fetched from the network (a browser may be offline).

Typical use::

    from qidicom import metadata

    doc = metadata.load_json("seg.json")        # or bytes, text, a file object, (name, bytes)
    metadata.check(doc, "seg", name="seg.json")  # raises MetadataError listing every problem

    for problem in metadata.validate(doc, "seg"):
        print(problem)   # segmentAttributes[0][1].SegmentedPropertyTypeCodeSequence: 'CodeValue' is a required property
"""

from __future__ import annotations

import copy
import difflib
import functools
import importlib.resources
import io
import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union
from urllib.parse import urldefrag, urlsplit

# jsonschema and pydicom's coded concepts (~0.1 s to import, pydicom's concept dictionaries
# most of it) are imported where metadata is validated or codes are made: a reader, which
# only writes metadata out, needs neither.
if TYPE_CHECKING:
    import jsonschema
    from jsonschema.exceptions import ValidationError
    from pydicom.sr.coding import Code

from qidicom.errors import MetadataError, QidicomError
from qidicom.readers import as_named_bytes

__all__ = [
    "CODE_LISTS",
    "DCMQI_SCHEMA_BASE",
    "DCMQI_SCHEMA_IDS",
    "KINDS",
    "SCHEMA_BASE",
    "SCHEMA_FILES",
    "SCHEMA_IDS",
    "check",
    "format_path",
    "kind_of",
    "load_code_list",
    "load_json",
    "load_metadata",
    "load_schema",
    "schema_path",
    "schemas_dir",
    "validate",
]

#: Base URL of qidicom's schema ids (an identifier only: nothing is served or fetched there).
SCHEMA_BASE = "https://qidicom.org/schemas/"
#: Base URL of dcmqi's schemas; documents naming these URLs are checked against our files.
DCMQI_SCHEMA_BASE = "https://raw.githubusercontent.com/qiicr/dcmqi/master/doc/schemas/"
# dcmqi's code-list files name their schemas one folder up, without "schemas/".
_DCMQI_DOC_BASE = "https://raw.githubusercontent.com/qiicr/dcmqi/master/doc/"

#: Schema file of each document kind. "seg", "pm" and "sr" are the conversion metadata;
#: the *-context kinds are the code lists a form editor offers.
SCHEMA_FILES: dict[str, str] = {
    "seg": "seg-schema.json",
    "pm": "pm-schema.json",
    "sr": "sr-tid1500-schema.json",
    "segment-context": "segment-context-schema.json",
    "anatomic-context": "anatomic-context-schema.json",
    "pm-context": "pm-context-schema.json",
}
# Files that only hold shared definitions.
_LIBRARY_FILES = ("common-schema.json", "sr-common-schema.json", "segment-context-common-schema.json")

#: The document kinds a conversion takes.
KINDS: tuple[str, ...] = ("seg", "pm", "sr")

#: The "@schema" value qidicom's readers write, per kind.
SCHEMA_IDS: dict[str, str] = {kind: SCHEMA_BASE + f + "#" for kind, f in SCHEMA_FILES.items()}
#: dcmqi's "@schema" value for the same kind (accepted as an alias of ours).
DCMQI_SCHEMA_IDS: dict[str, str] = {kind: DCMQI_SCHEMA_BASE + f + "#" for kind, f in SCHEMA_FILES.items()}

_ALIASES = {
    "segmentation": "seg",
    "paramap": "pm",
    "parametric-map": "pm",
    "tid1500": "sr",
    "sr-tid1500": "sr",
}
_LABELS = {
    "seg": "Segmentation",
    "pm": "Parametric Map",
    "sr": "TID 1500 measurement report",
    "segment-context": "segmentation code list",
    "anatomic-context": "anatomic region code list",
    "pm-context": "parametric map code list",
}

#: What ``load_json`` accepts.
JSONSource = Union[str, bytes, bytearray, memoryview, os.PathLike, "io.IOBase", tuple, dict]


# --------------------------------------------------------------------------- schemas


def schemas_dir() -> Any:
    """Directory holding qidicom's schema files (a ``Path`` or importlib Traversable).

    The installed wheel carries them as ``qidicom/schemas``; an editable install or a
    source checkout uses the repository's ``schemas/`` next to ``pylib/``.
    """
    try:
        packaged = importlib.resources.files("qidicom").joinpath("schemas")
        if packaged.joinpath(SCHEMA_FILES["seg"]).is_file():
            return packaged
    except (ModuleNotFoundError, TypeError, OSError):  # pragma: no cover - unusual loaders
        pass
    checkout = Path(__file__).resolve().parents[2] / "schemas"
    if (checkout / SCHEMA_FILES["seg"]).is_file():
        return checkout
    raise QidicomError(
        "qidicom's JSON schemas are missing: neither qidicom/schemas in the installed package "
        f"nor {checkout} holds {SCHEMA_FILES['seg']}; reinstall qidicom"
    )


def _kind(kind: str) -> str:
    key = _ALIASES.get(kind.lower(), kind.lower()) if isinstance(kind, str) else kind
    if key not in SCHEMA_FILES:
        raise ValueError(f"unknown metadata kind {kind!r}; expected one of {', '.join(SCHEMA_FILES)}")
    return key


def schema_path(kind: str) -> Any:
    """Location of the schema file for ``kind`` ("seg", "pm", "sr", ...) or for a file name
    such as "common-schema.json"."""
    name = kind if kind.endswith(".json") else SCHEMA_FILES[_kind(kind)]
    return schemas_dir().joinpath(name)


@functools.lru_cache(maxsize=None)
def _read_schema_file(name: str) -> dict:
    return json.loads(schemas_dir().joinpath(name).read_text(encoding="utf-8"))


def load_schema(kind: str) -> dict:
    """The parsed schema for ``kind`` (a fresh copy the caller may change)."""
    name = kind if kind.endswith(".json") else SCHEMA_FILES[_kind(kind)]
    return copy.deepcopy(_read_schema_file(name))


#: Bundled code lists for a metadata form editor (``schemas/codelists/``, generated from
#: pydicom's copy of DICOM PS3.16 by ``schemas/tools/make_code_lists.py``), by name.
CODE_LISTS: dict[str, str] = {
    "segmentation": "segmentation-categories-types.json",
    "anatomic": "anatomic-regions.json",
    "pm": "pm-quantities-units.json",
}


def load_code_list(name: str) -> dict:
    """A bundled code list: "segmentation" (categories with their property types and the
    laterality modifiers), "anatomic" (CID 4031 regions and CID 2 modifiers) or "pm"
    (parametric-map quantities and units)."""
    if name not in CODE_LISTS:
        raise ValueError(f"unknown code list {name!r}; expected one of {', '.join(CODE_LISTS)}")
    return json.loads(schemas_dir().joinpath("codelists", CODE_LISTS[name]).read_text(encoding="utf-8"))


def _all_schema_files() -> tuple[str, ...]:
    return tuple(SCHEMA_FILES.values()) + _LIBRARY_FILES


def _draft4_id(schema: Any) -> str:
    """Draft-04 names a schema's URL with "id" (later drafts use "$id")."""
    return schema.get("id", "") if isinstance(schema, dict) and isinstance(schema.get("id"), str) else ""


@functools.lru_cache(maxsize=None)
def _store() -> dict[str, dict]:
    """Every URL a $ref or "@schema" may name, mapped to our bundled schema."""
    store: dict[str, dict] = {}
    for name in _all_schema_files():
        schema = _read_schema_file(name)
        for base in (SCHEMA_BASE, DCMQI_SCHEMA_BASE, _DCMQI_DOC_BASE):
            store[base + name] = schema
        own_id = urldefrag(_draft4_id(schema))[0]
        if own_id:
            store[own_id] = schema
    return store


@functools.lru_cache(maxsize=None)
def _bundled_only_resolver() -> type:
    """A RefResolver class that never goes to the network: unknown URLs are an error."""
    import jsonschema
    from jsonschema.exceptions import RefResolutionError

    class _BundledOnlyResolver(jsonschema.RefResolver):
        def resolve_remote(self, uri: str) -> Any:
            raise RefResolutionError(
                f"schema {uri!r} is not bundled with qidicom (schemas are never fetched from the network)"
            )

    return _BundledOnlyResolver


def __getattr__(name: str) -> Any:
    if name == "_BundledOnlyResolver":  # made on first use, with jsonschema's import
        return _bundled_only_resolver()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _validator(kind: str) -> jsonschema.Draft4Validator:
    import jsonschema

    # A fresh resolver per call: a RefResolver keeps a scope stack while it validates, so
    # sharing one between threads would mix their scopes up. Building one is cheap.
    schema = _read_schema_file(SCHEMA_FILES[kind])
    resolver = _bundled_only_resolver()(
        base_uri=urldefrag(schema["id"])[0], referrer=schema, store=dict(_store())
    )
    return jsonschema.Draft4Validator(schema, resolver=resolver)


def kind_of(document: Any) -> str | None:
    """The kind named by a document's "@schema" (ours or dcmqi's URL), or None."""
    url = document.get("@schema") if isinstance(document, dict) else None
    if not isinstance(url, str):
        return None
    filename = urlsplit(urldefrag(url.strip())[0]).path.rsplit("/", 1)[-1]
    for kind, name in SCHEMA_FILES.items():
        if filename == name:
            return kind
    return None


# --------------------------------------------------------------------------- loading


def _decode(data: bytes, label: str) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode(json.detect_encoding(data))
    except UnicodeDecodeError as exc:
        raise MetadataError(
            f"{label}: not readable as UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None


def _looks_like_json_text(text: str) -> bool:
    stripped = text.lstrip("\ufeff \t\r\n")
    return stripped[:1] in ("{", "[", '"') or "\n" in text or stripped == ""


def _read_source(source: Any, name: str | None) -> tuple[str, str]:
    """(text, label) for any accepted source; files go through the readers' common loader."""
    if isinstance(source, str) and _looks_like_json_text(source):
        return source, name or "metadata JSON"
    if isinstance(source, tuple) and len(source) == 2 and isinstance(source[1], str):
        return source[1], name or str(source[0])  # (filename, text)
    if name is None and not isinstance(source, (str, os.PathLike, tuple)):
        file_name = getattr(source, "name", None)
        name = os.fspath(file_name) if isinstance(file_name, (str, os.PathLike)) else "metadata JSON"
    named = as_named_bytes(source, name)
    return _decode(named.data, named.name), named.name


def _syntax_message(label: str, exc: json.JSONDecodeError, text: str) -> str:
    message = f"{label}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
    before = text[: exc.pos].rstrip()
    here = text[exc.pos : exc.pos + 1]
    if exc.msg.startswith("Expecting property name") and here == "'":
        message += " (JSON needs double quotes around names and strings)"
    elif before.endswith(",") and here in ("}", "]"):
        message += " (a comma before a closing bracket is not allowed in JSON)"
    elif exc.msg.startswith("Expecting ',' delimiter") and here == '"':
        message += " (a comma is missing at the end of the previous item)"
    lines = text.splitlines() or [""]
    if 1 <= exc.lineno <= len(lines):
        line = lines[exc.lineno - 1].replace("\t", " ")
        col = exc.colno - 1
        start = max(0, col - 50)
        snippet = line[start : start + 100]
        message += f"\n    {snippet}\n    {' ' * (col - start)}^"
    return message


def load_json(source: JSONSource, name: str | None = None) -> dict:
    """Parse a metadata JSON document into a dict.

    ``source`` is a path (``str`` or ``PathLike``), JSON text, ``bytes``, a file object
    (binary or text) or a ``(filename, bytes)`` pair (what a browser upload gives); an
    already parsed ``dict`` is returned as is. ``name`` is the file name used in messages
    (default: the path, the file object's name or the pair's filename).

    Raises MetadataError for invalid JSON (naming line and column) or a top level that is
    not an object, and InputError when a file cannot be read.
    """
    return _load(source, name)[0]


def _load(source: JSONSource, name: str | None) -> tuple[dict, str | None]:
    if isinstance(source, dict):
        return source, name
    text, label = _read_source(source, name)
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        raise MetadataError(f"{label}: the metadata is empty (expected a JSON object)")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MetadataError(_syntax_message(label, exc, text)) from None
    except RecursionError:
        raise MetadataError(f"{label}: invalid JSON: nested too deeply") from None
    if not isinstance(document, dict):
        raise MetadataError(
            f"{label}: the metadata must be a JSON object ({{ ... }}) at the top level, "
            f"not {_json_type(document, article=True)}"
        )
    return document, label


# --------------------------------------------------------------------------- validation

_IDENTIFIER = re.compile(r"[A-Za-z_@$][A-Za-z0-9_@$-]*\Z")


def format_path(path: Iterable[str | int]) -> str:
    """A JSON path like ``segmentAttributes[0][1].SegmentLabel``; ``(root)`` when empty."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENTIFIER.match(part):
            out += ("." if out else "") + part
        else:
            out += f"[{json.dumps(part)}]"
    return out or "(root)"


def _json_type(value: Any, article: bool = False) -> str:
    if isinstance(value, dict):
        kind = "object"
    elif isinstance(value, list):
        kind = "array"
    elif isinstance(value, str):
        kind = "string"
    elif isinstance(value, bool):
        kind = "boolean"
    elif isinstance(value, (int, float)):
        kind = "number"
    elif value is None:
        return "null"
    else:
        kind = type(value).__name__
    if not article:
        return kind
    return ("an " if kind[0] in "aeiou" else "a ") + kind


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _title(error: ValidationError) -> str | None:
    title = error.schema.get("title") if isinstance(error.schema, dict) else None
    return title if isinstance(title, str) else None


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _message(error: ValidationError) -> str:
    """A short, specific message for one leaf error."""
    keyword, value, instance = error.validator, error.validator_value, error.instance
    title = _title(error)
    if keyword == "type":
        expected = value if isinstance(value, str) else " or ".join(value)
        return f"{_short(instance)} is not of type {expected!r} (got {_json_type(instance, article=True)})"
    if keyword == "enum":
        return f"{_short(instance)} is not one of {value!r}"
    if keyword == "maxLength":
        what = f" for {title}" if title else ""
        return f"{_short(instance)} is too long{what}: {len(instance)} characters, at most {value} allowed"
    if keyword == "minLength":
        return "must not be empty" if value == 1 else f"{_short(instance)} is too short: at least {value} characters needed"
    if keyword == "pattern":
        return f"{_short(instance)} is not a valid {title}" if title else f"{_short(instance)} does not match {value!r}"
    if keyword == "minItems":
        if not instance:
            return f"must not be empty (at least {_plural(value, 'item')} needed)"
        return f"has {_plural(len(instance), 'item')}, at least {value} needed"
    if keyword == "maxItems":
        return f"has {_plural(len(instance), 'item')}, at most {value} allowed"
    if keyword == "required":
        return error.message
    if keyword in ("minimum", "maximum"):
        return error.message
    return error.message if len(error.message) <= 200 else error.message[:197] + "..."


def _unknown_properties(error: ValidationError) -> Iterator[tuple[list, str]]:
    allowed = list(error.schema.get("properties", {}))
    patterns = list(error.schema.get("patternProperties", {}))
    for key in error.instance:
        if key in allowed or any(re.search(p, key) for p in patterns):
            continue
        hint = [a for a in allowed if a.lower() == key.lower()] or difflib.get_close_matches(
            key, allowed, n=1, cutoff=0.7
        )
        text = f"unknown property (did you mean {hint[0]!r}?)" if hint else "unknown property, not allowed here"
        yield [*error.absolute_path, key], text


def _branches(error: ValidationError) -> dict[int, list[ValidationError]]:
    groups: dict[int, list[ValidationError]] = {}
    for sub in error.context:
        index = sub.relative_schema_path[0] if sub.relative_schema_path else 0
        groups.setdefault(index, []).append(sub)
    return groups


def _explain(error: ValidationError) -> Iterator[tuple[list, str]]:
    """(absolute path, message) pairs describing one validation error."""
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        yield from _unknown_properties(error)
        return
    if error.validator in ("oneOf", "anyOf") and error.context:
        path = list(error.absolute_path)
        branches = _branches(error)
        # Every alternative rejects the same field's value from a fixed list: merge the lists.
        enum_hits = [
            [e for e in errs if e.validator == "enum"] for errs in branches.values()
        ]
        if all(hits for hits in enum_hits):
            first = enum_hits[0][0]
            if all(h[0].path == first.path for h in enum_hits):
                allowed = [v for hits in enum_hits for v in hits[0].validator_value]
                yield list(first.absolute_path), f"{_short(first.instance)} is not one of {allowed!r}"
                return
        type_hits = [[e for e in errs if e.validator == "type" and not e.path] for errs in branches.values()]
        if all(type_hits):
            expected: list[str] = []
            for hits in type_hits:
                value = hits[0].validator_value
                expected.extend([value] if isinstance(value, str) else value)
            wanted = " or ".join(repr(t) for t in dict.fromkeys(expected))
            yield path, f"{_short(error.instance)} is not of type {wanted} (got {_json_type(error.instance, article=True)})"
            return
        title = _title(error)
        if title and not isinstance(error.instance, (dict, list)) and all(not e.path for e in error.context):
            yield path, f"{_short(error.instance)} is not a valid {title}"
            return
        # Otherwise explain the alternative that came closest: fewest errors, and not one
        # rejected outright for having the wrong type or a value outside a fixed list.
        def distance(item: tuple[int, list[ValidationError]]) -> tuple[int, int]:
            errs = item[1]
            decisive = sum(1 for e in errs if e.validator in ("type", "enum") and len(e.path) <= 1)
            return decisive, len(errs)

        _, best = min(sorted(branches.items()), key=distance)
        for sub in best:
            yield from _explain(sub)
        return
    if error.validator in ("oneOf", "anyOf"):
        # oneOf matched more than one alternative (or none and no detail is available).
        yield list(error.absolute_path), _message(error)
        return
    yield list(error.absolute_path), _message(error)


def _document_order(document: Any, path: list) -> tuple:
    """Sort key placing a path where it occurs in the document (unknown keys last)."""
    key = []
    node = document
    for part in path:
        if isinstance(part, int):
            key.append(part)
            node = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
        elif isinstance(node, dict):
            keys = list(node)
            key.append(keys.index(part) if part in node else len(keys))
            node = node.get(part)
        else:
            key.append(0)
            node = None
    return tuple(key)


def _schema_kind_problem(document: Any, kind: str) -> list[tuple[list, str]]:
    named = kind_of(document)
    if named is None or named == kind:
        return []
    return [
        (
            ["@schema"],
            f"names the {_LABELS[named]} schema, but {_LABELS[kind]} metadata was expected",
        )
    ]


def _seg_consistency(document: Any) -> list[tuple[list, str]]:
    """SEG rules a JSON Schema cannot state: one entry per label in a file, one file name per file."""
    groups = document.get("segmentAttributes") if isinstance(document, dict) else None
    if not isinstance(groups, list):
        return []
    found: list[tuple[list, str]] = []
    for g, group in enumerate(groups):
        seen: dict[int, int] = {}
        for s, segment in enumerate(group if isinstance(group, list) else []):
            label = segment.get("labelID") if isinstance(segment, dict) else None
            if not isinstance(label, int) or isinstance(label, bool):
                continue
            if label in seen:
                found.append(
                    (
                        ["segmentAttributes", g, s, "labelID"],
                        f"label {label} is already described by segmentAttributes[{g}][{seen[label]}] "
                        "(each label of a file needs exactly one entry)",
                    )
                )
            else:
                seen[label] = s
    mapping = document.get("segmentAttributesFileMapping")
    if isinstance(mapping, list) and len(mapping) != len(groups):
        found.append(
            (
                ["segmentAttributesFileMapping"],
                f"names {_plural(len(mapping), 'file')} but segmentAttributes describes "
                f"{_plural(len(groups), 'file')}; they must match one to one",
            )
        )
    return found


def validate(document: Any, kind: str) -> list[str]:
    """Every problem of ``document`` against the schema of ``kind`` ("seg", "pm" or "sr").

    Each problem reads ``<JSON path>: <what is wrong>``, e.g.
    ``segmentAttributes[0][1].SegmentedPropertyTypeCodeSequence: 'CodeValue' is a required
    property``; problems of the document as a whole use the path ``(root)``. The list is in
    document order and empty when the document is valid. Schema references are resolved
    from the bundled files only (no network).
    """
    kind = _kind(kind)
    found: list[tuple[list, str]] = list(_schema_kind_problem(document, kind))
    for error in _validator(kind).iter_errors(document):
        found.extend(_explain(error))
    if kind == "seg":
        found.extend(_seg_consistency(document))
    indexed = [(_document_order(document, path), n, format_path(path), msg) for n, (path, msg) in enumerate(found)]
    indexed.sort(key=lambda item: (item[0], item[1]))
    problems = [f"{where}: {msg}" for _, _, where, msg in indexed]
    return list(dict.fromkeys(problems))  # the same problem can surface twice via oneOf


def check(document: Any, kind: str, name: str | None = None) -> dict:
    """Return ``document`` if it is valid ``kind`` metadata, else raise MetadataError.

    The error's ``problems`` holds every problem (as from :func:`validate`) and its message
    names the file (``name``) and lists them all.
    """
    kind = _kind(kind)
    problems = validate(document, kind)
    if problems:
        label = name or "metadata"
        count = _plural(len(problems), "problem")
        listing = "\n".join(f"  - {p}" for p in problems)
        raise MetadataError(f"{label}: {count} in the {_LABELS[kind]} metadata:\n{listing}", problems)
    return document


def load_metadata(source: JSONSource, kind: str, name: str | None = None) -> dict:
    """:func:`load_json` then :func:`check`: a valid document, or a MetadataError naming the file."""
    document, label = _load(source, name)
    return check(document, kind, label)


def integer_field(value, field_name: str) -> int:
    """An IS field of the metadata (dcmqi writes numbers as strings) as an int."""
    try:
        return int(str(value).strip())
    except ValueError:
        raise MetadataError(f"metadata: {field_name} '{value}' is not an integer", [f"{field_name}: '{value}' is not an integer"]) from None


def code_from_json(entry: dict) -> Code:
    """A metadata code object (CodeValue, CodingSchemeDesignator, CodeMeaning) as a pydicom Code."""
    from pydicom.sr.coding import Code

    return Code(str(entry["CodeValue"]), str(entry["CodingSchemeDesignator"]), str(entry["CodeMeaning"]))


def code_to_json(code) -> dict:
    """A coded concept (a DICOM code sequence item or a pydicom Code) as a metadata code object."""
    if hasattr(code, "scheme_designator"):
        value, scheme, meaning = code.value, code.scheme_designator, code.meaning
    else:
        value = code.get("CodeValue") or code.get("LongCodeValue") or code.get("URNCodeValue")
        scheme, meaning = code.CodingSchemeDesignator, code.CodeMeaning
    return {"CodeValue": str(value), "CodingSchemeDesignator": str(scheme), "CodeMeaning": str(meaning)}
