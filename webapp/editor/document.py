"""The editor's model without widgets: JSON-path access, new documents, editor-only rules.

Everything here works on plain dicts so the form can be tested, and reasoned about, without
a browser. A document is changed only where the person edits it: loading and saving a file
never reorders, reformats or fills in anything.
"""

from __future__ import annotations

import colorsys
import re
from typing import Any

MISSING = object()

Path = list  # of str (object keys) and int (list indices)


def get(document: Any, path: Path, default: Any = MISSING) -> Any:
    """The value at ``path`` in ``document``, or ``default``."""
    node = document
    for part in path:
        if isinstance(part, int) and isinstance(node, list) and 0 <= part < len(node):
            node = node[part]
        elif isinstance(part, str) and isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return default
    return node


def put(document: dict, path: Path, value: Any) -> None:
    """Set the value at ``path``, making the objects on the way (a new key goes last)."""
    node: Any = document
    for part, following in zip(path, path[1:]):
        if isinstance(node, dict):
            if not isinstance(node.get(part), (dict, list)):
                node[part] = [] if isinstance(following, int) else {}
            node = node[part]
        else:
            node = node[part]
    node[path[-1]] = value


def remove(document: dict, path: Path) -> None:
    """Delete the value at ``path``; objects left empty by it go too (never the top level)."""
    parent = get(document, path[:-1], None)
    if isinstance(parent, dict):
        parent.pop(path[-1], None)
        if not parent and len(path) > 1 and isinstance(path[-2], str):
            remove(document, path[:-1])
    elif isinstance(parent, list) and isinstance(path[-1], int) and 0 <= path[-1] < len(parent):
        del parent[path[-1]]


def format_path(path: Path) -> str:
    from qidicom.metadata import format_path as fmt

    return fmt(path)


_PROBLEM = re.compile(r"^(?P<path>\(root\)|[^:\s]+): (?P<message>.*)$", re.S)


def split_problem(problem: str) -> tuple[str, str]:
    """("segmentAttributes[0][0].labelID", "message") from a validate() line."""
    match = _PROBLEM.match(problem)
    return (match["path"], match["message"]) if match else ("(root)", problem)


def problems_for(problems: list[tuple[str, str]], path: str, name: str | None = None) -> list[str]:
    """The messages that belong to the field at ``path`` (its value, anything inside it, or its
    being missing from its parent object)."""
    out = []
    parent = path.rsplit(".", 1)[0] if "." in path else "(root)"
    for where, message in problems:
        if where == path or where.startswith(path + ".") or where.startswith(path + "["):
            out.append(message if where == path else f"{where[len(path):].lstrip('.')}: {message}")
        elif name and where == parent and message.startswith(f"'{name}' is a required property"):
            out.append("required")
    return out


def _code_problems(node: Any, path: Path) -> list[str]:
    from qidicom.codes import check_code

    found = []
    if isinstance(node, dict):
        if "CodeValue" in node and "CodingSchemeDesignator" in node:
            return check_code(node, format_path(path))
        for key, value in node.items():
            found += _code_problems(value, path + [key])
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _code_problems(value, path + [i])
    return found


def editor_rules(document: Any, kind: str) -> list[str]:
    """Rules the editor adds to the schema's: SegmentAlgorithmName unless MANUAL, and DICOM's
    rules for a code (no empty meaning, a scheme designator of at most 16 characters)."""
    found = _code_problems(document, [])
    if kind == "seg" and isinstance(document, dict):
        for g, group in enumerate(document.get("segmentAttributes") or []):
            for s, segment in enumerate(group if isinstance(group, list) else []):
                if not isinstance(segment, dict):
                    continue
                algorithm = segment.get("SegmentAlgorithmType")
                name = segment.get("SegmentAlgorithmName")
                if algorithm in ("SEMIAUTOMATIC", "AUTOMATIC") and not (isinstance(name, str) and name.strip()):
                    found.append(
                        f"segmentAttributes[{g}][{s}].SegmentAlgorithmName: required unless "
                        f"SegmentAlgorithmType is MANUAL (this segment is {algorithm})"
                    )
    return found


def distinct_colour(n: int) -> list[int]:
    """The n-th of a sequence of well separated colours (golden-angle hues)."""
    hue = (0.08 + n * 0.618033988749895) % 1.0
    saturation = 0.65 if n % 2 == 0 else 0.5
    value = 0.9 if (n // 2) % 2 == 0 else 0.75
    return [int(round(c * 255)) for c in colorsys.hsv_to_rgb(hue, saturation, value)]


def hex_colour(rgb: Any) -> str | None:
    if isinstance(rgb, list) and len(rgb) == 3 and all(isinstance(c, int) and 0 <= c <= 255 for c in rgb):
        return "#%02x%02x%02x" % tuple(rgb)
    return None


def rgb_of(hex_text: str) -> list[int]:
    text = hex_text.lstrip("#")
    return [int(text[i:i + 2], 16) for i in (0, 2, 4)]


def new_segment(label_id: int, n: int) -> dict:
    """A segment with what the schema requires, its defaults and a distinct colour."""
    from qidicom.metadata import load_schema

    properties = load_schema("seg")["definitions"]["segment"]["properties"]
    return {
        "labelID": label_id,
        "SegmentLabel": f"Segment {label_id}",
        "SegmentAlgorithmType": properties["SegmentAlgorithmType"]["default"],
        "SegmentedPropertyCategoryCodeSequence": dict(properties["SegmentedPropertyCategoryCodeSequence"]["default"]),
        "SegmentedPropertyTypeCodeSequence": dict(properties["SegmentedPropertyTypeCodeSequence"]["default"]),
        "recommendedDisplayRGBValue": distinct_colour(n),
    }


def empty_document(kind: str) -> dict:
    """A new document of ``kind``: only "@schema" and the lists the person fills."""
    from qidicom.metadata import SCHEMA_IDS

    document: dict = {"@schema": SCHEMA_IDS[kind]}
    if kind == "seg":
        document["segmentAttributes"] = [[]]
    elif kind == "sr":
        document["observerContext"] = {"ObserverType": "PERSON", "PersonObserverName": ""}
        document["Measurements"] = []
    return document


def labelmap_document(files: list[dict[int, int]], file_names: list[str] | None = None) -> dict:
    """A SEG document with one segment per label value found in each label map."""
    document = empty_document("seg")
    groups = []
    n = 0
    for values in files:
        group = []
        for label in sorted(int(v) for v in values if int(v) > 0):
            group.append(new_segment(label, n))
            n += 1
        groups.append(group)
    document["segmentAttributes"] = groups or [[]]
    if file_names:
        document["segmentAttributesFileMapping"] = list(file_names)
    return document
