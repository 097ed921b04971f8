"""highdicom's module attribute table read a module at a time gives highdicom's table.

``qidicom.highdicom_tables`` points highdicom at a mapping that decodes each module's list
from highdicom's own JSON file when first asked for, and at a remembering
``is_attribute_in_iod``. Proved here: the mapping equals ``json.loads`` of the file for every
module (keys in order, values, ``in``, ``len``), a file in another layout falls back to
highdicom's loader, every highdicom module that binds either function is pointed at ours,
the remembered answers are highdicom's, and SEGs and PMs built either way are the same bytes.
"""

from __future__ import annotations

import copy
import importlib
import json
import pkgutil
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from synthetic import written_alike

import highdicom
import highdicom._standard_utils as standard_utils
from qidicom import highdicom_tables, pm
from qidicom.geometry import Volume
from qidicom.readers import read_dicom_series, read_image
from qidicom.samples import make_sample_study, write_sample_study
from qidicom.sr.write import report_from_files
from qidicom.seg.write import write_segmentation

STUDY = make_sample_study(rows=24, columns=20, slices=12)
SAMPLE_FOLDER = tempfile.TemporaryDirectory(prefix="qidicom-tables-")  # removed at exit
#: UIDs made while writing start with highdicom's root; those of the inputs do not.
TABLE = pkgutil.get_data("highdicom", highdicom_tables.DATA_FILE)


def no_fallback():
    raise AssertionError("the table fell back to highdicom's loader")


def test_the_lazy_table_is_highdicoms_table_for_every_module():
    expected = json.loads(TABLE)
    table = highdicom_tables.ModuleAttributeMap(TABLE, no_fallback)
    assert len(table) == len(expected) > 400
    assert list(table) == list(expected)  # the same keys in the same order
    assert "segmentation-image" in table and "no-such-module" not in table and 3 not in table
    for name, attributes in expected.items():
        assert table[name] == attributes, name
        assert table[name] is table[name]  # decoded once, like highdicom's cached dict
    assert dict(table.items()) == expected and table == expected
    assert table.get("no-such-module") is None
    with pytest.raises(KeyError):
        table["no-such-module"]


def test_the_comparison_sees_one_changed_attribute():
    expected = json.loads(TABLE)
    changed = TABLE.replace(b'"keyword": "ReferencedSOPClassUID"', b'"keyword": "ReferencedSOPClassUI"', 1)
    table = highdicom_tables.ModuleAttributeMap(changed, no_fallback)
    assert list(table) == list(expected)
    assert table["acquisition-context"] != expected["acquisition-context"]
    assert table["approval"] == expected["approval"]


@pytest.mark.parametrize("layout", [{}, {"indent": 4}, {"indent": 1}, {"indent": "\t"}])
def test_another_layout_is_refused_by_the_scan(layout):
    with pytest.raises(highdicom_tables.LayoutError):
        highdicom_tables.ModuleAttributeMap(json.dumps(json.loads(TABLE), **layout).encode(), no_fallback)


def test_a_table_in_another_layout_is_highdicoms_own(monkeypatch):
    compact = json.dumps(json.loads(TABLE)).encode()
    monkeypatch.setattr(highdicom_tables, "_table", None)
    monkeypatch.setattr(highdicom_tables.pkgutil, "get_data", lambda package, name: compact)
    table = highdicom_tables.get_module_attribute_map()
    assert type(table) is dict
    assert table is highdicom_tables.highdicom_function("get_module_attribute_map")()


def test_a_value_not_where_the_scan_put_it_falls_back():
    # Passes the scan (each value opens with "[" and closes with "\n  ],"), but "a" holds
    # two lists: decoding finds the first one followed by more than a comma.
    odd = b'{\n  "a": [\n    1\n  ]\n  ],\n  "b": [\n    2\n  ]\n}\n'
    table = highdicom_tables.ModuleAttributeMap(odd, lambda: {"from": ["highdicom"]})
    assert list(table) == ["a", "b"]
    assert table["b"] == [2]
    with pytest.raises(KeyError):
        table["a"]  # highdicom's table is used from then on
    assert list(table) == ["from"] and table["from"] == ["highdicom"]


def test_a_key_twice_is_refused():
    with pytest.raises(highdicom_tables.LayoutError, match="twice"):
        highdicom_tables.ModuleAttributeMap(b'{\n  "a": [\n  ],\n  "a": [\n  ]\n}', no_fallback)


def highdicom_modules_naming(function: str) -> set[str]:
    root = Path(highdicom.__file__).parent
    names = set()
    for path in root.rglob("*.py"):
        if re.search(rf"\b{function}\b", path.read_text(encoding="utf-8")):
            parts = path.relative_to(root.parent).with_suffix("").parts
            names.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


@pytest.mark.parametrize("function", list(highdicom_tables.HIGHDICOM_USERS))
def test_every_highdicom_module_naming_the_function_is_pointed_at_ours(function):
    assert highdicom_modules_naming(function) == set(highdicom_tables.HIGHDICOM_USERS[function])
    highdicom_tables.install()
    ours = getattr(highdicom_tables, function)
    for name in highdicom_tables.HIGHDICOM_USERS[function]:
        assert getattr(importlib.import_module(name), function) is ours, name
    assert highdicom_tables.highdicom_function(function) is not ours


def test_the_remembered_answers_are_highdicoms():
    highdicom_tables.install()
    original = highdicom_tables.highdicom_function("is_attribute_in_iod")
    questions = [("NumberOfFrames", None), ("PixelData", ["IconImageSequence"]), ("FloatPixelData", None),
                 ("ContentDate", None), ("TotalPixelMatrixRows", None)]

    def outcome(function, *question):
        try:
            return function(*question)
        except KeyError as error:  # highdicom's tables lack a few modules some IODs name
            return repr(error)

    answers = []
    for sop_class in standard_utils.get_sop_class_iod_map():
        for attribute, excluded in questions:
            answer = outcome(standard_utils.is_attribute_in_iod, attribute, sop_class, excluded)
            assert answer == outcome(original, attribute, sop_class, excluded), (attribute, sop_class)
            assert outcome(standard_utils.is_attribute_in_iod, attribute, sop_class, excluded) == answer
            answers.append(answer)
    assert answers.count(True) > 100 and answers.count(False) > 100
    for attempt in range(2):  # an unknown SOP Class is highdicom's error each time
        with pytest.raises(KeyError, match="No IOD found"):
            standard_utils.is_attribute_in_iod("PixelData", "1.2.3.4")


def builds() -> dict:
    """Each object to compare, as a function that builds it."""
    ct = read_dicom_series(STUDY.ct_series)
    labels = read_image(STUDY.ct_labels[1], STUDY.ct_labels[0])
    liver = Volume((labels.array == 1).astype(np.float32) * 0.75, labels.affine, "liver-probability")
    one_segment = copy.deepcopy(STUDY.seg_metadata)
    one_segment["segmentAttributes"] = [one_segment["segmentAttributes"][0][:1]]
    adc = read_image(STUDY.adc_map[1], STUDY.adc_map[0])
    mr = read_dicom_series(STUDY.mr_series, check_spacing=False)
    files = write_sample_study(SAMPLE_FOLDER.name)
    return {
        "SR": lambda: report_from_files(files["sr_metadata"], files["ct"], [files["seg"]]).dataset,
        "binary SEG": lambda: write_segmentation([labels], STUDY.seg_metadata, ct).dataset,
        "labelmap SEG": lambda: write_segmentation([labels], STUDY.seg_metadata, ct, segmentation_type="labelmap").dataset,
        "fractional SEG": lambda: write_segmentation([liver], one_segment, ct, segmentation_type="fractional").dataset,
        "PM": lambda: pm.write_parametric_map(adc, STUDY.pm_metadata, mr).dataset,
    }


BUILDS = builds()


@pytest.mark.parametrize("name", list(BUILDS))
def test_built_with_our_tables_is_built_with_highdicoms(name, monkeypatch):
    build = BUILDS[name]
    highdicom_tables.install()
    ours = build()
    assert type(highdicom_tables.get_module_attribute_map()) is highdicom_tables.ModuleAttributeMap
    for function, users in highdicom_tables.HIGHDICOM_USERS.items():
        for module in users:
            monkeypatch.setattr(importlib.import_module(module), function, highdicom_tables.highdicom_function(function))
    asked = standard_utils.get_module_attribute_map.cache_info()
    theirs = build()
    assert standard_utils.get_module_attribute_map.cache_info().hits > asked.hits  # highdicom's table was used
    assert written_alike(ours) == written_alike(theirs)


def test_the_comparison_sees_one_changed_element():
    built = BUILDS["binary SEG"]()
    changed = copy.deepcopy(built)
    changed.SegmentSequence[0].SegmentLabel = "Liver2"
    assert written_alike(built) == written_alike(copy.deepcopy(built))
    assert written_alike(built) != written_alike(changed)


def test_prepared_tables_leave_nothing_for_the_first_pm_and_seg_to_decode(tmp_path):
    # In a fresh process (this one's table has been used): prepare() for the PM's and the
    # series' IODs decodes every module the first ParametricMap, and a SEG on the CT, look up.
    code = f"""
import json
from qidicom import highdicom_tables, pm
from qidicom.readers import read_dicom_series, read_image
from qidicom.samples import write_sample_study
from qidicom.seg.write import write_segmentation
files = write_sample_study({str(tmp_path)!r})
mr = read_dicom_series(files["mr"], check_spacing=False)
ct = read_dicom_series(files["ct"])
highdicom_tables.prepare([pm.PARAMETRIC_MAP_SOP_CLASS, mr.datasets[0].SOPClassUID,
                          "1.2.840.10008.5.1.4.1.1.66.4", ct.datasets[0].SOPClassUID, "1.2.3.4"])
table = highdicom_tables.get_module_attribute_map()
prepared = set(table._decoded)
pm.write_parametric_map(read_image(files["adc_map"]), json.loads(files["pm_metadata"].read_text()), mr)
write_segmentation([read_image(files["ct_labels"])], json.loads(files["seg_metadata"].read_text()), ct)
print(json.dumps({{"type": type(table).__name__, "prepared": sorted(prepared), "after": sorted(table._decoded)}}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["type"] == "ModuleAttributeMap"
    assert len(seen["prepared"]) > 20 and seen["after"] == seen["prepared"]
