"""The Panel-worker bridge: a Panel document built in a Web Worker, mirrored by the page.

Panel's own worker glue (``panel convert``) assumes its generated page; the app has its own
page (page.js), so it drives the same machinery directly. That needs names Panel and Bokeh
keep private. Every one of them is used here and nowhere else, and ``PRIVATE_NAMES`` lists
them with the signatures relied on, so tests/test_panel_bridge.py fails as soon as a new
Panel or Bokeh pin drops or changes one.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Iterator

#: (module in the wheel, qualified name, parameters relied on) of every private name used.
PRIVATE_NAMES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("panel/io/pyodide.py", "_process_document_events", ("doc", "events")),
    ("panel/io/pyodide.py", "_convert_json_patch", ("json_patch",)),
    ("panel/io/pyodide.py", "init_doc", ()),
    ("panel/io/pyodide.py", "write_doc", ("doc",)),
    ("panel/io/state.py", "_state._on_load", ("self", "doc")),
    ("panel/io/state.py", "set_curdoc", ("doc",)),
    ("bokeh/document/document.py", "Document._template_variables", ()),
)

#: Where the page serves Panel's stylesheets from, relative to itself (works under a subpath).
STYLESHEETS = "./static/panel/"


class Bridge:
    """One worker-side Bokeh document and the page it is mirrored to."""

    def __init__(self) -> None:
        self.document = None
        self._send: Callable | None = None
        self._held: list | None = None  # document events of the page change being applied

    def in_document(self, function: Callable) -> Callable:
        """Run an entry point called from JavaScript with this document as Panel's curdoc,
        so that state changes update the document's models (and so the page)."""

        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            from panel.io.state import set_curdoc

            with set_curdoc(self.document):
                return function(*args, **kwargs)

        return wrapper

    async def render(self, make_root: Callable[[], Any], title: str) -> tuple[str, str, str]:
        """Build the app in a fresh worker-side document; returns (docs_json, render_items,
        root_ids), what the page needs to render it with Bokeh.embed."""
        from panel.io.pyodide import init_doc, write_doc
        from panel.io.state import state as panel_state

        init_doc()
        self.document = panel_state.curdoc
        self.document._template_variables["dist_url"] = STYLESHEETS
        make_root().servable(title=title)
        return await write_doc(self.document)

    def link(self, send_patch: Callable) -> None:
        """Send every later document change to the page (once it has rendered the document):
        ``send_patch(json_text, buffers)``, a JSON patch as text and its binary buffers."""
        from bokeh.events import DocumentReady
        from panel.io.state import set_curdoc
        from panel.io.state import state as panel_state

        self._send = send_patch

        def changed(event) -> None:
            if getattr(event, "setter", None) == "js":
                return  # the page made this change: it has it already
            if self._held is not None:
                self._held.append(event)
            else:
                self._dispatch([event])

        with set_curdoc(self.document):
            # What Panel's _link_docs_worker does, but with one patch per page change: a new
            # slice is then one message and one paint (pixels, crosshairs, readout), not ten.
            self.document.on_change(changed)
            self.document.unhold()
            self.document.callbacks.trigger_event(DocumentReady())
            # Mark the document loaded: until then Panel holds back the events of every update.
            panel_state._on_load(self.document)

    def _dispatch(self, events: list) -> None:
        import json

        import js
        import pyodide.ffi
        from panel.io.pyodide import _process_document_events

        patch, buffers = _process_document_events(self.document, events)
        # As JSON text: the worker parses it (a nested to_js would turn None into undefined).
        self._send(json.dumps(patch), js.Map.new(pyodide.ffi.to_js(list(buffers.items()))))

    @staticmethod
    def _combined(events: list) -> list:
        """The events of one batch, with only the last change of each model attribute."""
        from bokeh.document.events import ModelChangedEvent

        last = {}
        for position, event in enumerate(events):
            if isinstance(event, ModelChangedEvent):
                last[(event.model.id, event.attr)] = position
        return [event for position, event in enumerate(events)
                if not isinstance(event, ModelChangedEvent) or last[(event.model.id, event.attr)] == position]

    def apply_patch(self, patch: Any) -> None:
        """A change made in the page (a click, a choice), as the JS proxy of a JSON patch. What
        the app changes in answer goes back to the page as one patch."""
        from panel.io.pyodide import _convert_json_patch
        from panel.io.state import set_curdoc

        held = self._held = [] if self._held is None else self._held
        try:
            serialized = _convert_json_patch(patch)
            events = serialized.content.get("events", []) if isinstance(serialized.content, dict) else []
            with set_curdoc(self.document):
                if len(events) <= 1:
                    self.document.apply_json_patch(serialized, setter="js")
                else:
                    # One event at a time: Bokeh drops a whole patch that names a model the
                    # app has just replaced (a preview rebuilt), and with it a click sent in
                    # the same patch; so only the stale change is dropped.
                    for event in events:
                        self.document.apply_json_patch(
                            type(serialized)(content={**serialized.content, "events": [event]}, buffers=serialized.buffers),
                            setter="js")
        finally:
            self._held = None
            if held and self._send is not None:
                self._dispatch(self._combined(held))

    @contextlib.contextmanager
    def batched(self) -> Iterator[None]:
        """Send the document changes made in the block as one patch, at its end (inside a page
        change being applied, they go with that change's patch as they already do)."""
        if self._held is not None:
            yield
            return
        held = self._held = []
        try:
            yield
        finally:
            self._held = None
            if held and self._send is not None:
                self._dispatch(self._combined(held))

    def run_later(self, coroutine_function: Callable[[], Any]) -> None:
        """Run a coroutine after the current message is handled, in this document, so that
        what it sets first (e.g. "busy") reaches the page before the work starts."""
        import asyncio

        from panel.io.state import set_curdoc

        async def run() -> None:
            with set_curdoc(self.document):
                await coroutine_function()

        asyncio.get_event_loop().create_task(run())
