#!/usr/bin/env python3
"""Regenerate the bundled code lists in ../codelists/ from pydicom's copy of DICOM PS3.16.

The lists feed a metadata form editor: segmentation categories with their property types,
anatomic regions with modifiers, and parametric-map quantities with units. Every code comes
from pydicom's context-group tables (``pydicom.sr._cid_dict``) and concept dictionary
(``pydicom.sr._concepts_dict``), so the lists follow whatever DICOM edition pydicom ships.

``picker-codes.json`` holds the editor's other pickers (anatomic regions of CID 4, PM
measurement methods, model fitting and derivation, SR findings, finding sites, quantities,
units and derivations, procedures), each the union of the context groups in ``PICKERS``.

``segmentation-colours.json`` holds recommended display colours. PS3.16 gives none, so they
come from 3D Slicer's "General Anatomy" terminology (the copy dcmqi ships as
``segContexts/SegmentationCategoryTypeModifier-SlicerGeneralAnatomy.json``), given with
``--colours PATH``; by default the script looks for it in the reference material next to
the repository (``../shared/reference/dcmqi/segContexts``). Without it that file is left as
committed.

Run from anywhere:  python3 schemas/tools/make_code_lists.py [--colours PATH]
The output is deterministic (sorted by code meaning); commit it together with this script.
"""

from __future__ import annotations

import argparse
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


# The editor's pickers: name -> (title, context groups whose union it offers, first first).
PICKERS: dict[str, tuple[str, tuple[int, ...]]] = {
    "anatomic-region": ("Anatomic region", (4031, 4)),
    "anatomic-modifier": ("Anatomic region modifier", (ANATOMIC_MODIFIERS,)),
    "laterality": ("Laterality", (LATERALITY,)),
    "pm-quantity": ("Parametric map quantity", (PM_QUANTITIES,)),
    "pm-units": ("Measurement units", (PM_UNITS, 83, 7277, 7460, 7461, 7462)),
    "pm-measurement-method": ("Measurement method", (7273, 4100, 4102, 4106)),
    "pm-model-fitting": ("Model fitting method", (7274, 4105)),
    "pm-derivation": ("Derivation", (7203, PM_QUANTITIES)),
    "sr-finding": ("Finding", (7151,)),
    "sr-finding-site": ("Finding site", (4031, 4, 7140, 7601)),
    "sr-quantity": ("Measurement quantity", (7469, 7466, 7470, 7471, 7472, 7478, 218)),
    "sr-units": ("Measurement units", (PM_UNITS, 7460, 7461, 7462, 83, 84, 85)),
    "sr-derivation": ("Derivation modifier", (7464, 7465)),
    "sr-measurement-method": ("Measurement method", (7473, 7474, 4106, 7273)),
    "procedure-reported": ("Procedure reported", (100,)),
}


def picker_codes() -> dict:
    """Every picker of ``PICKERS`` as compact [value, scheme, meaning, cid] rows."""
    lists = {}
    for name, (title, cids) in PICKERS.items():
        seen: dict[tuple[str, str], list] = {}
        for cid in cids:
            for c in codes(cid):
                seen.setdefault((c["CodingSchemeDesignator"], c["CodeValue"]), [
                    c["CodeValue"], c["CodingSchemeDesignator"], c["CodeMeaning"], cid])
        rows = sorted(seen.values(), key=lambda r: (r[2].lower(), r[0]))
        lists[name] = {"title": title, "cids": list(cids), "codes": rows}
    used = sorted({c for _, cids in PICKERS.values() for c in cids})
    return {
        "name": "qidicom metadata editor code pickers",
        "columns": ["CodeValue", "CodingSchemeDesignator", "CodeMeaning", "cid"],
        "source": source(*used),
        "lists": lists,
    }


def colour_codes(terminology: Path) -> dict:
    """Recommended display colours of segmentation property types (and type + modifier)
    from a 3D Slicer terminology file (dcmqi's segment-context format)."""
    document = json.loads(terminology.read_text(encoding="utf-8"))
    rows: dict[tuple, list] = {}
    for category in document["SegmentationCodes"]["Category"]:
        for kind in category.get("Type", []):
            key = (kind["CodingSchemeDesignator"], kind["CodeValue"])
            if "recommendedDisplayRGBValue" in kind:
                rows.setdefault(key + ("", ""), [*key, "", "", [int(v) for v in kind["recommendedDisplayRGBValue"]]])
            for modifier in kind.get("Modifier", []):
                if "recommendedDisplayRGBValue" in modifier:
                    mkey = (modifier["CodingSchemeDesignator"], modifier["CodeValue"])
                    rows.setdefault(key + mkey, [*key, *mkey, [int(v) for v in modifier["recommendedDisplayRGBValue"]]])
    return {
        "name": "recommended display colours of segmentation property types",
        "columns": ["TypeCodingSchemeDesignator", "TypeCodeValue", "ModifierCodingSchemeDesignator",
                    "ModifierCodeValue", "recommendedDisplayRGBValue"],
        "source": f"3D Slicer terminology: {document.get('SegmentationCategoryTypeContextName', terminology.name)}",
        "colours": [rows[k] for k in sorted(rows)],
    }


DEFAULT_COLOURS = (Path(__file__).resolve().parents[3] / "shared" / "reference" / "dcmqi" / "segContexts"
                   / "SegmentationCategoryTypeModifier-SlicerGeneralAnatomy.json")


def _compact(document: dict) -> str:
    """One row per line: small, and diffs stay readable."""
    head = {k: v for k, v in document.items() if k not in ("lists", "colours")}
    text = json.dumps(head, indent=1, ensure_ascii=False)[:-2]
    if "lists" in document:
        parts = []
        for name, entry in document["lists"].items():
            rows = ",\n".join("   " + json.dumps(r, ensure_ascii=False) for r in entry["codes"])
            meta = json.dumps({k: v for k, v in entry.items() if k != "codes"}, ensure_ascii=False)[:-1]
            parts.append(f"  {json.dumps(name)}: {meta}, \"codes\": [\n{rows}\n  ]}}")
        text += ',\n "lists": {\n' + ",\n".join(parts) + "\n }\n}\n"
    else:
        rows = ",\n".join("  " + json.dumps(r, ensure_ascii=False) for r in document["colours"])
        text += ',\n "colours": [\n' + rows + "\n ]\n}\n"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--colours", type=Path, default=DEFAULT_COLOURS,
                        help="3D Slicer terminology JSON giving recommendedDisplayRGBValue")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    outputs = [
        ("segmentation-categories-types.json", segmentation_codes()),
        ("anatomic-regions.json", anatomic_codes()),
        ("pm-quantities-units.json", pm_codes()),
    ]
    for name, document in outputs:
        text = json.dumps(document, indent=1, ensure_ascii=False) + "\n"
        (OUT / name).write_text(text, encoding="utf-8")
        print(f"{name}: {len(text.encode()) // 1024} KiB")
    compact = [("picker-codes.json", picker_codes())]
    if args.colours.is_file():
        compact.append(("segmentation-colours.json", colour_codes(args.colours)))
    else:
        print(f"segmentation-colours.json: left as committed ({args.colours} not found)")
    for name, document in compact:
        text = _compact(document)
        assert json.loads(text) == document
        (OUT / name).write_text(text, encoding="utf-8")
        print(f"{name}: {len(text.encode()) // 1024} KiB")


if __name__ == "__main__":
    main()
