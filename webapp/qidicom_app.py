"""The browser app, under Pyodide: label maps -> DICOM SEG, a parametric map -> DICOM
Parametric Map, measurements -> TID 1500 SR, all in one page.

This module holds the entry points worker.js calls. The parts live beside it:
panel_bridge (the Panel document mirrored to the page), base (what every conversion's
state shares), seg_mode / pm_mode / sr_mode (one state and one view per conversion),
open_mode (a SEG, PM or SR opened and turned back into files), preview/ (the slice
preview, measurements, the opened object's view), stages (packages loaded when first
needed), views (small view functions), samples ("Load sample data"). Files never travel through
Bokeh messages: the page hands the browser's File objects to the worker, which mounts them
in Python's file system and calls ``receive_files``. What each conversion takes and offers comes from
``qidicom.conversions``, which the page also reads (``conversion_description``) for its
file pickers.

qidicom (and with it numpy, pydicom, highdicom) is imported only after the first paint,
by ``load_conversion_stack``: until then the page shows the interface without the modes.
"""

from __future__ import annotations

import json

import panel as pn

import views
from base import log_exception
from panel_bridge import Bridge

#: The conversions, in the order the page offers them, by their short names; then the open mode.
CONVERSIONS = ("seg", "pm", "sr")
MODES = (*CONVERSIONS, "open")

BRIDGE = Bridge()
STATES: dict = {}  # short name -> the mode's state, made once the stack is loaded
ROOT = pn.Column(views.markdown("Loading the DICOM libraries…"), sizing_mode="stretch_width", css_classes=["qi-root"])
_current = {"mode": "seg"}


def _mode_module(mode: str):
    import open_mode
    import pm_mode
    import seg_mode
    import sr_mode

    return {"seg": seg_mode, "pm": pm_mode, "sr": sr_mode, "open": open_mode}[mode]


def _prefill_report(document: dict, files: list) -> None:
    """Measurements of a SEG just written (SEG mode's preview) to the SR mode: the files it
    names in its pool, the report in its form."""
    from qidicom import conversions

    report = _state("sr")
    report.clear_pool()
    report.take_files(conversions.POOL_ROLE, files)
    report.set_document(document)


def _state(mode: str):
    """The mode's state and view, made on first use (so startup builds only one)."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}")
    if mode not in STATES:
        module = _mode_module(mode)
        if mode == "open":
            state = module.OpenState()
        else:
            state = getattr(module, {"seg": "SegState", "pm": "PmState", "sr": "SrState"}[mode])(stack_ready=True)
        state.schedule = BRIDGE.run_later
        state.batch = BRIDGE.batched
        hooks = {"prefill_report": _prefill_report} if mode in ("seg", "open") else {}
        STATES[mode] = (state, module.view(state, **hooks))
    return STATES[mode][0]


def _show(mode: str) -> None:
    _state(mode)
    ROOT.objects = [STATES[mode][1]]


async def render() -> tuple[str, str, str]:
    """Build the app in a worker-side document; returns what the page needs to render it."""
    return await BRIDGE.render(lambda: ROOT, title="qidicom")


def link(send_patch) -> None:
    BRIDGE.link(send_patch)


def apply_patch(patch) -> None:
    BRIDGE.apply_patch(patch)


def _description(mode: str) -> dict:
    """A conversion's pickers (qidicom.conversions), and the mode's own (APP_INPUTS: inputs of
    the app's preview and measurements, not of the conversion)."""
    from qidicom import conversions

    description = conversions.as_json(conversions.get(mode))
    description["inputs"] = description["inputs"] + list(getattr(_mode_module(mode), "APP_INPUTS", []))
    return description


@BRIDGE.in_document
def load_conversion_stack() -> str:
    """Import the conversion libraries (after the first paint), show the current mode, and
    return the conversions' description (JSON) for the page's file pickers."""
    try:
        from qidicom import conversions
        import qidicom.metadata  # noqa: F401
        import qidicom.pm  # noqa: F401
        import qidicom.seg  # noqa: F401
        import qidicom.sr  # noqa: F401

        _show(_current["mode"])
    except Exception:
        log_exception("loading the conversion libraries failed")
        ROOT.objects = [views.alert("The DICOM libraries failed to load in this browser (details are in the browser console).",
                                    "danger")]
        return json.dumps({"failed": True})
    import open_mode

    return json.dumps({"modes": [_description(mode) for mode in CONVERSIONS]
                       + [open_mode.DESCRIPTION]})


@BRIDGE.in_document
def set_mode(mode: str) -> None:
    """The page's mode tabs."""
    _current["mode"] = mode
    if STATES or mode in STATES:
        _show(mode)


#: The inputs that take the chosen files as paths, read when needed (a reference series:
#: its headers when it is parsed, each file's pixels when the preview decodes its slice).
#: Every other input gets the files' bytes, read at once.
LAZY_INPUTS = {("seg", "series"), ("pm", "series")}


@BRIDGE.in_document
def receive_files(mode: str, role: str, items) -> None:
    """Files chosen in the page, mounted read-only by the worker: ``items`` is a JS array of
    [name, path] (see receiveFiles in worker.js)."""
    from pathlib import Path

    lazy = (mode, role) in LAZY_INPUTS
    pairs = [(str(name), Path(str(path)) if lazy else Path(str(path)).read_bytes()) for name, path in items]
    _state(mode).take_files(role, pairs)


@BRIDGE.in_document
def load_sample(mode: str) -> list[list]:
    """The "Load sample data" button: makes and takes the sample for one mode; [role, file
    count] pairs for the page."""
    return [[role, count] for role, count in _state(mode).load_sample().items()]
