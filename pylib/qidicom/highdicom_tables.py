"""highdicom's module attribute table, decoded one module at a time.

highdicom keeps the attributes of every module of the standard in one 22 MB JSON file
(``highdicom/_standard/module_attribute_map.json``) and its ``get_module_attribute_map()``
decodes all of it on first use: ~0.3 s (0.55 s in Pyodide) and 60 MiB of objects kept for
the process, on the first SEG or PM a process builds, of which a conversion looks up about
30 modules (by ``[name]`` and ``in``). :func:`install` points highdicom at :class:`ModuleAttributeMap`, a read-only mapping
over highdicom's own file bytes (nothing is copied into qidicom): one scan finds where each
module's list starts, and a module is decoded when first asked for, by the same JSON
decoder, so every value equals highdicom's.

The scan relies on the file's layout (two-space indented, one module list per top-level
key); anything else, such as a highdicom release that writes the file differently, falls
back to highdicom's own loader. ``tests/test_highdicom_tables.py`` proves the mapping equal
to ``json.loads`` of the file, key by key and in order, and the SEGs and PMs built with it
byte-identical to those built without.

highdicom also asks its tables, once per source image, whether the image's IOD holds an
attribute (``is_attribute_in_iod``, behind ``is_multiframe_image``: a walk over every
attribute of the IOD's modules, ~0.5 ms, 200 times for a 200-slice series). The answer
depends on the attribute and the SOP Class only, so :func:`install` also has highdicom ask
:func:`is_attribute_in_iod`, which remembers highdicom's answer per question.
"""

from __future__ import annotations

import json
import pkgutil
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping

#: The highdicom modules that bind each replaced function by name (each is pointed at ours;
#: the test fails if highdicom gains another).
HIGHDICOM_USERS = {
    "get_module_attribute_map": ("highdicom._standard_utils", "highdicom.base", "highdicom.image"),
    "is_attribute_in_iod": ("highdicom._standard_utils", "highdicom.base", "highdicom.sr.content"),
}
DATA_FILE = "_standard/module_attribute_map.json"

# A top-level key: a line indented by exactly two spaces that starts with a string followed by
# a colon. JSON strings hold no raw newline, so such a line never starts inside a value.
_TOP_LEVEL_KEY = re.compile(rb'\n  ("(?:[^"\\\n]|\\.)*") ?: ?')
_DECODER = json.JSONDecoder()
_JSON_SPACE = " \t\n\r"


class LayoutError(ValueError):
    """The file is not laid out as the scan expects (the caller falls back)."""


class ModuleAttributeMap(Mapping):
    """Module name to its attribute list, decoded from the JSON bytes on first access.

    ``data`` is the whole JSON text of highdicom's table; ``fallback`` gives highdicom's own
    fully decoded table, used from then on if a module's text turns out not to be where the
    scan put it.
    """

    def __init__(self, data: bytes, fallback: Callable[[], dict]):
        self._data = data
        self._fallback = fallback
        self._spans = _scan(data)
        self._decoded: dict[str, list] = {}
        self._full: dict | None = None

    def __getitem__(self, name: str) -> list:
        if self._full is not None:
            return self._full[name]
        try:
            return self._decoded[name]
        except KeyError:
            pass
        start, end, last = self._spans[name]  # KeyError for an unknown module, as a dict
        try:
            value = _decode(self._data, start, end, last)
        except LayoutError:
            self._full = self._fallback()
            return self._full[name]
        return self._decoded.setdefault(name, value)

    def __contains__(self, name: object) -> bool:
        if self._full is not None:
            return name in self._full
        return name in self._spans

    def __iter__(self) -> Iterator[str]:
        return iter(self._full if self._full is not None else self._spans)

    def __len__(self) -> int:
        return len(self._full if self._full is not None else self._spans)


def _scan(data: bytes) -> dict[str, tuple[int, int, bool]]:
    """Each top-level key's value span (start, end, is last) in ``data``, in file order."""
    matches = list(_TOP_LEVEL_KEY.finditer(data))
    if not matches or data[: matches[0].start()].strip(_JSON_SPACE.encode()) != b"{":
        raise LayoutError("the file does not open with a two-space indented object")
    spans: dict[str, tuple[int, int, bool]] = {}
    for index, match in enumerate(matches):
        last = index == len(matches) - 1
        end = len(data) if last else matches[index + 1].start()
        # Each value is a list closed at the keys' indent: "[" ... "\n  ]," (or "\n  ]\n}").
        closed = (
            data[match.end() :].rstrip(_JSON_SPACE.encode()).endswith(b"\n  ]\n}")
            if last
            else data.endswith(b"\n  ],", match.end(), end)
        )
        if not (closed and data.startswith(b"[", match.end())):
            raise LayoutError("a top-level value is not a list closed at the keys' indent")
        raw_key = match.group(1)
        key = raw_key[1:-1].decode("utf-8") if b"\\" not in raw_key else json.loads(raw_key)
        if key in spans:
            raise LayoutError(f"the key {key!r} occurs twice")
        spans[key] = (match.end(), end, last)
    return spans


def _decode(data: bytes, start: int, end: int, last: bool) -> list:
    """The JSON value at ``data[start:end]``, which must be followed by "," (or the closing
    brace of the object, for the last key) and nothing else."""
    try:
        text = data[start:end].decode("utf-8")
        value, stop = _DECODER.raw_decode(text)
    except ValueError as error:  # not UTF-8, or not JSON there
        raise LayoutError(str(error)) from None
    if text[stop:].strip(_JSON_SPACE) != ("}" if last else ","):
        raise LayoutError("a top-level value is followed by more than its separator")
    return value


_LOCK = threading.Lock()
_table: Mapping | None = None
#: highdicom's own functions, as they were before :func:`install` replaced them.
_originals: dict[str, Callable] = {}
_answers: dict[tuple, bool] = {}


def highdicom_function(function: str) -> Callable:
    """highdicom's own ``function`` (as it was before :func:`install`)."""
    import highdicom._standard_utils as standard_utils

    return _originals.get(function) or getattr(standard_utils, function)


def get_module_attribute_map() -> Mapping:
    """highdicom's module attribute table, as :class:`ModuleAttributeMap` (or, if the file's
    layout is not the expected one, highdicom's own decoded dict). Made once per process."""
    global _table
    with _LOCK:
        if _table is None:
            loader = highdicom_function("get_module_attribute_map")
            data = pkgutil.get_data("highdicom", DATA_FILE)
            try:
                if data is None:
                    raise LayoutError("highdicom's table was not found")
                _table = ModuleAttributeMap(data, loader)
            except (LayoutError, UnicodeDecodeError, ValueError):
                _table = loader()
        return _table


def is_attribute_in_iod(attribute: str, sop_class_uid: str, exclude_path_elements=None) -> bool:
    """highdicom's ``is_attribute_in_iod``, answered once per question: the tables it walks
    do not change, so neither does the answer. Errors (an unknown SOP Class) are highdicom's
    each time; unhashable arguments go to highdicom as they are."""
    theirs = highdicom_function("is_attribute_in_iod")
    try:
        key = (attribute, sop_class_uid, None if exclude_path_elements is None else tuple(exclude_path_elements))
        return _answers[key]
    except KeyError:
        pass
    except TypeError:
        return theirs(attribute, sop_class_uid, exclude_path_elements)
    answer = theirs(attribute, sop_class_uid, key[2])
    _answers[key] = answer
    return answer


def install() -> None:
    """Point highdicom's users of ``get_module_attribute_map`` and ``is_attribute_in_iod`` at
    ours (idempotent; done before the first SEG or PM is built)."""
    import importlib

    if _originals:
        return
    with _LOCK:
        if not _originals:
            import highdicom._standard_utils as standard_utils

            ours = {"get_module_attribute_map": get_module_attribute_map, "is_attribute_in_iod": is_attribute_in_iod}
            originals = {function: getattr(standard_utils, function) for function in ours}
            for function, users in HIGHDICOM_USERS.items():
                for name in users:
                    setattr(importlib.import_module(name), function, ours[function])
            _originals.update(originals)


def prepare(sop_class_uids: Iterable[str]) -> None:
    """Import highdicom, :func:`install`, and decode the modules of the IODs of these SOP
    Classes now instead of inside the first construction (~0.17 s in a fresh process, of
    which the import is ~0.13 s). The PM writer does this while its map is still being
    inflated on another thread, time it would otherwise spend waiting; the values decoded
    are the same as on demand. SOP Classes highdicom does not know are passed over."""
    install()
    from highdicom._standard_utils import get_iod_module_map, get_sop_class_iod_map

    table = get_module_attribute_map()
    iods, iod_of = get_iod_module_map(), get_sop_class_iod_map()
    for uid in sop_class_uids:
        for module in iods.get(iod_of.get(str(uid), ""), ()):
            table.get(module["key"])
