"""Coded terms for metadata pickers: search by meaning or code value, offline.

The terms come from the bundled code lists (``schemas/codelists/``, generated from pydicom's
copy of DICOM PS3.16 by ``schemas/tools/make_code_lists.py``). A picker is named, e.g.
"segmentation-category", "segmentation-type" (filtered by a category), "anatomic-region",
"pm-units" or "sr-quantity"; :data:`PICKERS` lists them all.

Typical use::

    from qidicom import codes

    codes.search("anatomic-region", "liv")[0]          # Code('10200004', 'SCT', 'Liver', cid=4031)
    codes.search("segmentation-type", "kidney", category=codes.find("segmentation-category", "91723000"))
    codes.recommended_colour({"CodeValue": "10200004", "CodingSchemeDesignator": "SCT"})  # (221, 130, 101)
    codes.check_code({"CodeValue": "1", "CodingSchemeDesignator": "", "CodeMeaning": "x"})  # problems
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any, Mapping

__all__ = ["Code", "PICKERS", "check_code", "code_list", "find", "recommended_colour", "search", "types_of_category"]


@dataclass(frozen=True)
class Code:
    """One coded term of a picker (``cid``: the PS3.16 context group it came from, if any)."""

    value: str
    scheme: str
    meaning: str
    cid: int | None = None

    def as_json(self) -> dict:
        """The metadata form of the code (CodeValue, CodingSchemeDesignator, CodeMeaning)."""
        return {"CodeValue": self.value, "CodingSchemeDesignator": self.scheme, "CodeMeaning": self.meaning}

    @property
    def label(self) -> str:
        """What a picker shows: meaning, then scheme and value."""
        return f"{self.meaning} ({self.scheme} {self.value})"


def _read(name: str) -> Any:
    from qidicom.metadata import schemas_dir

    return json.loads(schemas_dir().joinpath("codelists", name).read_text(encoding="utf-8"))


def _code(entry: Mapping) -> Code:
    cid = entry.get("cid")
    return Code(str(entry["CodeValue"]), str(entry["CodingSchemeDesignator"]), str(entry["CodeMeaning"]),
                int(cid) if isinstance(cid, (int, str)) and str(cid).isdigit() else None)


@functools.lru_cache(maxsize=None)
def _segmentation() -> tuple[tuple[Code, ...], dict[tuple[str, str], tuple[Code, ...]], tuple[Code, ...]]:
    document = _read("segmentation-categories-types.json")["SegmentationCodes"]
    categories = tuple(_code(c) for c in document["Category"])
    types = {(c["CodingSchemeDesignator"], c["CodeValue"]): tuple(_code(t) for t in c.get("Type", []))
             for c in document["Category"]}
    return categories, types, tuple(_code(m) for m in document["Modifier"])


@functools.lru_cache(maxsize=None)
def _pickers() -> dict[str, tuple[str, tuple[Code, ...]]]:
    document = _read("picker-codes.json")
    return {
        name: (entry["title"], tuple(Code(v, s, m, int(c)) for v, s, m, c in entry["codes"]))
        for name, entry in document["lists"].items()
    }


#: Every picker name with its title.
PICKERS: dict[str, str] = {
    "segmentation-category": "Segmented property category",
    "segmentation-type": "Segmented property type",
    "segmentation-modifier": "Segmented property type modifier",
    "anatomic-region": "Anatomic region",
    "anatomic-modifier": "Anatomic region modifier",
    "laterality": "Laterality",
    "pm-quantity": "Parametric map quantity",
    "pm-units": "Measurement units",
    "pm-measurement-method": "Measurement method",
    "pm-model-fitting": "Model fitting method",
    "pm-derivation": "Derivation",
    "sr-finding": "Finding",
    "sr-finding-site": "Finding site",
    "sr-quantity": "Measurement quantity",
    "sr-units": "Measurement units",
    "sr-derivation": "Derivation modifier",
    "sr-measurement-method": "Measurement method",
    "procedure-reported": "Procedure reported",
}


def _key(code: Code | Mapping | None) -> tuple[str, str] | None:
    if isinstance(code, Code):
        return code.scheme, code.value
    if isinstance(code, Mapping) and code.get("CodeValue") is not None:
        return str(code.get("CodingSchemeDesignator", "")), str(code["CodeValue"])
    return None


def types_of_category(category: Code | Mapping | None) -> tuple[Code, ...]:
    """The property types PS3.16 lists for a segmentation category (every type when None or
    when the category is not in CID 7150)."""
    _, types, _ = _segmentation()
    key = _key(category)
    if key in types:
        return types[key]
    return _all_types()


@functools.lru_cache(maxsize=None)
def _all_types() -> tuple[Code, ...]:
    _, types, _ = _segmentation()
    seen: dict[tuple[str, str], Code] = {}
    for group in types.values():
        for t in group:
            seen.setdefault((t.scheme, t.value), t)
    return tuple(sorted(seen.values(), key=lambda c: (c.meaning.lower(), c.value)))


def code_list(name: str, *, category: Code | Mapping | None = None) -> tuple[Code, ...]:
    """Every term of picker ``name`` (see :data:`PICKERS`), sorted by meaning.

    ``category`` filters "segmentation-type" to the types of that category.
    """
    if name == "segmentation-category":
        return _segmentation()[0]
    if name == "segmentation-type":
        return types_of_category(category)
    if name == "segmentation-modifier":
        return _segmentation()[2]
    pickers = _pickers()
    if name not in pickers:
        raise ValueError(f"unknown code picker {name!r}; expected one of {', '.join(PICKERS)}")
    return pickers[name][1]


def find(name: str, value: str, scheme: str | None = None) -> Code | None:
    """The term of picker ``name`` with code value ``value`` (and ``scheme``), or None."""
    for code in code_list(name):
        if code.value == value and (scheme is None or code.scheme == scheme):
            return code
    return None


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"[\s,;()]+", text.lower()) if w]


def search(name: str, query: str, *, category: Code | Mapping | None = None, limit: int | None = 50) -> list[Code]:
    """Terms of picker ``name`` matching ``query``: an exact code value first, then meanings
    starting with the query, then those containing every word of it (in any order)."""
    terms = code_list(name, category=category)
    query = query.strip()
    if not query:
        return list(terms[:limit] if limit else terms)
    lowered = query.lower()
    words = _words(query)
    ranked: list[tuple[int, int, Code]] = []
    for n, code in enumerate(terms):
        meaning = code.meaning.lower()
        if code.value.lower() == lowered or f"{code.scheme} {code.value}".lower() == lowered:
            rank = 0
        elif meaning.startswith(lowered):
            rank = 1
        elif code.value.lower().startswith(lowered):
            rank = 2
        elif words and all(w in meaning for w in words):
            rank = 3
        else:
            continue
        ranked.append((rank, n, code))
    ranked.sort(key=lambda item: (item[0], item[1]))
    found = [code for _, _, code in ranked]
    return found[:limit] if limit else found


@functools.lru_cache(maxsize=None)
def _colours() -> dict[tuple[str, str, str, str], tuple[int, int, int]]:
    document = _read("segmentation-colours.json")
    return {(ts, tv, ms, mv): tuple(rgb) for ts, tv, ms, mv, rgb in document["colours"]}


def recommended_colour(type_code: Code | Mapping | None, modifier: Code | Mapping | None = None) -> tuple[int, int, int] | None:
    """The recommended display colour (RGB 0-255) of a property type (with its modifier, e.g.
    Left), where the bundled colour source gives one."""
    key = _key(type_code)
    if key is None:
        return None
    colours = _colours()
    mkey = _key(modifier)
    if mkey is not None and key + mkey in colours:
        return colours[key + mkey]
    return colours.get(key + ("", ""))


_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")


def check_code(code: Any, path: str = "") -> list[str]:
    """Problems of a custom code (value, scheme, meaning), each ``<path>.<field>: <what>``.

    Beyond the schema's rules, DICOM's: the scheme designator is an SH (16 characters), the
    meaning an LO (64), and none may hold a backslash or control character.
    """
    prefix = f"{path}." if path else ""
    if not isinstance(code, Mapping):
        return [f"{path or '(root)'}: a code needs CodeValue, CodingSchemeDesignator and CodeMeaning"]
    problems = []
    for field, limit in (("CodeValue", 64), ("CodingSchemeDesignator", 16), ("CodeMeaning", 64)):
        text = code.get(field)
        if not isinstance(text, str) or not text.strip():
            problems.append(f"{prefix}{field}: must not be empty")
        elif len(text) > limit:
            problems.append(f"{prefix}{field}: {len(text)} characters, at most {limit} allowed")
        elif _CONTROL.search(text):
            problems.append(f"{prefix}{field}: must not hold a backslash or control character")
        elif text != text.strip():
            problems.append(f"{prefix}{field}: leading or trailing spaces are not allowed")
    return problems
