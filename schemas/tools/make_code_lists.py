#!/usr/bin/env python3
"""Regenerate the bundled code lists in ../codelists/ from pydicom's copy of DICOM PS3.16.

The lists feed a metadata form editor: segmentation categories with their property types,
anatomic regions with modifiers, and parametric-map quantities with units. Every code comes
from pydicom's context-group tables (``pydicom.sr._cid_dict``) and concept dictionary
(``pydicom.sr._concepts_dict``), so the lists follow whatever DICOM edition pydicom ships.

Run from anywhere:  python3 schemas/tools/make_code_lists.py
The output is deterministic (sorted by code meaning); commit it together with this script.
"""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
from pydicom.sr._cid_dict import cid_concepts, name_for_cid
from pydicom.sr._concepts_dict import concepts

OUT = Path(__file__).resolve().parents[1] / "codelists"
SCHEMA_BASE = "https://qidicom.org/schemas/"

# PS3.16 CID 7150 (Segmentation Property Categories) names, for each category, the context
# group that lists its property types (CID 7191-7198).
TYPES_OF_CATEGORY = {
    "85756007": 7191,  # Tissue
    "91723000": 7192,  # Anatomical Structure
    "123037004": 7192,  # Anatomical Structure (code used before DICOM 2019)
    "260787004": 7193,  # Physical Object
    "49755003": 7194,  # Morphologically Altered Structure
    "246464006": 7195,  # Function
    "309825002": 7196,  # Spatial and Relational Concept
    "91720002": 7197,  # Body Substance
    "105590001": 7198,  # Substance
}
CATEGORIES = 7150
LATERALITY = 244  # modifier for paired structures
ANATOMIC_REGIONS = 4031
ANATOMIC_MODIFIERS = 2
PM_QUANTITIES = 7180
PM_UNITS = 7181


def codes(cid: int) -> list[dict]:
    """The concepts of context group ``cid``, sorted by meaning."""
    out = []
    for scheme, keywords in cid_concepts[cid].items():
        for keyword in keywords:
            for value, (meaning, cids) in concepts[scheme][keyword].items():
                if cid in cids:
                    out.append(
                        {
                            "CodeValue": value,
                            "CodingSchemeDesignator": scheme,
                            "CodeMeaning": meaning,
                            "cid": str(cid),
                            "contextGroupName": name_for_cid[cid],
                        }
                    )
    unique = {(c["CodingSchemeDesignator"], c["CodeValue"]): c for c in out}
    return sorted(unique.values(), key=lambda c: (c["CodeMeaning"].lower(), c["CodeValue"]))


def source(*cids: int) -> str:
    groups = ", ".join(f"CID {c} {name_for_cid[c]}" for c in cids)
    return f"DICOM PS3.16 context groups as shipped with pydicom {pydicom.__version__}: {groups}"


def segmentation_codes() -> dict:
    categories = []
    for category in codes(CATEGORIES):
        type_cid = TYPES_OF_CATEGORY.get(category["CodeValue"])
        entry = dict(category)
        entry["showAnatomy"] = category["CodeValue"] in ("85756007", "49755003", "91720002")
        if type_cid is not None and type_cid in cid_concepts:
            entry["Type"] = codes(type_cid)
        categories.append(entry)
    used = sorted({int(t["cid"]) for c in categories for t in c.get("Type", [])})
    return {
        "@schema": SCHEMA_BASE + "segment-context-schema.json#",
        "SegmentationCategoryTypeContextName": "DICOM segmentation property categories and types",
        "source": source(CATEGORIES, *used, LATERALITY),
        "SegmentationCodes": {"Category": categories, "Modifier": codes(LATERALITY)},
    }


def anatomic_codes() -> dict:
    return {
        "@schema": SCHEMA_BASE + "anatomic-context-schema.json#",
        "AnatomicContextName": "DICOM common anatomic regions",
        "source": source(ANATOMIC_REGIONS, ANATOMIC_MODIFIERS),
        "AnatomicCodes": {"AnatomicRegion": codes(ANATOMIC_REGIONS), "Modifier": codes(ANATOMIC_MODIFIERS)},
    }


def pm_codes() -> dict:
    return {
        "@schema": SCHEMA_BASE + "pm-context-schema.json#",
        "name": "DICOM parametric map quantities",
        "description": "Quantities (component semantics) and units a parametric map can use.",
        "source": source(PM_QUANTITIES, PM_UNITS),
        "QuantityDefinitions": codes(PM_QUANTITIES),
        "MeasurementUnits": codes(PM_UNITS),
    }


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, document in (
        ("segmentation-categories-types.json", segmentation_codes()),
        ("anatomic-regions.json", anatomic_codes()),
        ("pm-quantities-units.json", pm_codes()),
    ):
        text = json.dumps(document, indent=1, ensure_ascii=False) + "\n"
        (OUT / name).write_text(text, encoding="utf-8")
        print(f"{name}: {len(text.encode()) // 1024} KiB")


if __name__ == "__main__":
    main()
