"""Read the project's JSON Schemas into field descriptions a form can be built from.

Only what a form needs is kept: each property's kind of widget, whether it is required, its
help text, default, limits and fixed choices. ``$ref`` (across the bundled files) and
``allOf`` are merged; the name of the definition a property refers to (``codeSequence``,
``RGB``, ``observerContext``...) decides the dedicated widgets.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

# Definitions with a dedicated widget, by the name they have in the schemas.
SPECIAL = {
    "codeSequence": "code",
    "RGB": "rgb",
    "CIELab": "numbers",
    "observerContext": "observer",
    "numericValue": "text",
    "dicomInstancesFileNameList": "strings",
}


@dataclass
class Field:
    """One property of an object schema, as a form shows it."""

    name: str
    kind: str  # text, integer, enum, code, rgb, numbers, strings, object, list, observer, nested-list, json
    required: bool = False
    title: str = ""
    description: str = ""
    default: Any = None
    max_length: int | None = None
    pattern: str | None = None
    minimum: int | None = None
    maximum: int | None = None
    choices: list = field(default_factory=list)
    fields: list["Field"] = field(default_factory=list)  # of an object, or of a list's items
    item_title: str = ""
    item_required: list = field(default_factory=list)

    @property
    def help(self) -> str:
        parts = [p for p in (self.description, self.title) if p]
        return " — ".join(dict.fromkeys(parts))


@functools.lru_cache(maxsize=None)
def _file(name: str) -> dict:
    from qidicom.metadata import load_schema

    return load_schema(name)


def _resolve_ref(ref: str, current: str) -> tuple[dict, str, str]:
    target, _, pointer = ref.partition("#")
    filename = target.rsplit("/", 1)[-1] if target else current
    node: Any = _file(filename)
    parts = [p for p in pointer.split("/") if p]
    for part in parts:
        node = node[part]
    return node, filename, parts[-1] if parts else ""


def merged(node: dict, current: str) -> tuple[dict, str, set[str]]:
    """The schema ``node`` with its $ref and allOf folded in: (merged, file, definition names)."""
    out: dict = {}
    names: set[str] = set()
    here = current
    if "$ref" in node:
        target, here, name = _resolve_ref(node["$ref"], current)
        names.add(name)
        sub, here, sub_names = merged(target, here)
        names |= sub_names
        out.update(sub)
    for part in node.get("allOf", []):
        sub, sub_file, sub_names = merged(part, here)
        names |= sub_names
        for key, value in sub.items():
            if key == "enum" and "enum" in out:
                out["enum"] = [v for v in out["enum"] if v in value]
            elif key not in ("title", "description") or key not in out:
                out[key] = value
        if "properties" in sub:
            here = sub_file
    for key, value in node.items():
        if key not in ("$ref", "allOf"):
            out[key] = value
    return out, here, names


def _kind(schema: dict, names: set[str]) -> str:
    for name, kind in SPECIAL.items():
        if name in names:
            return kind
    if "enum" in schema:
        return "enum"
    kind = schema.get("type")
    if kind == "integer":
        return "integer"
    if kind == "string":
        return "text"
    if kind == "array":
        return "array"
    if kind == "object" or "properties" in schema:
        return "object"
    return "json"


def _code_or_text(schema: dict) -> bool:
    branches = schema.get("oneOf", [])
    return any(str(b.get("$ref", "")).endswith("codeSequence") for b in branches) and any(
        b.get("type") == "string" for b in branches)


def describe(name: str, node: dict, current: str, required: bool) -> Field:
    schema, here, names = merged(node, current)
    kind = "code-or-text" if _code_or_text(schema) else _kind(schema, names)
    f = Field(
        name=name, kind=kind, required=required,
        title=schema.get("title", ""), description=schema.get("description", ""),
        default=schema.get("default"), max_length=schema.get("maxLength"), pattern=schema.get("pattern"),
        minimum=schema.get("minimum"), maximum=schema.get("maximum"),
        choices=list(schema.get("enum", [])),
    )
    if kind == "object":
        f.fields = object_fields(schema, here)
    elif kind == "array":
        items, item_file, item_names = merged(schema.get("items", {}), here)
        item_kind = _kind(items, item_names)
        if item_kind == "object":
            f.kind = "list"
            f.fields = object_fields(items, item_file)
            f.item_title = items.get("title", "item")
            f.item_required = list(items.get("required", []))
        elif item_kind == "array":
            f.kind = "nested-list"
            inner, inner_file, _ = merged(items.get("items", {}), item_file)
            f.fields = object_fields(inner, inner_file)
            f.item_title = inner.get("title", "item")
            f.item_required = list(inner.get("required", []))
        elif item_kind in ("text", "enum"):
            f.kind = "strings"
            f.title = f.title or items.get("title", "")
            f.description = f.description or items.get("description", "")
        elif item_kind == "integer":
            f.kind = "numbers"
        else:
            f.kind = "json"
    elif kind == "observer":
        for branch in schema.get("oneOf", []):
            sub, sub_file, _ = merged(branch, here)
            for sub_field in object_fields(sub, sub_file):
                if all(sub_field.name != g.name for g in f.fields):
                    f.fields.append(sub_field)
                if sub_field.name == "ObserverType":
                    f.choices.extend(c for c in sub_field.choices if c not in f.choices)
    return f


def object_fields(schema: dict, current: str) -> list[Field]:
    """The fields of an object schema, in the schema's order."""
    required = set(schema.get("required", []))
    return [describe(name, node, current, name in required) for name, node in schema.get("properties", {}).items()]


@functools.lru_cache(maxsize=None)
def document_fields(kind: str) -> tuple[Field, ...]:
    """The top-level fields of a "seg", "pm" or "sr" document."""
    from qidicom.metadata import SCHEMA_FILES

    filename = SCHEMA_FILES[kind]
    return tuple(object_fields(_file(filename), filename))
