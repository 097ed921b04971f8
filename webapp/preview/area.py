"""A mode's Preview area, mounted with one call: ``PreviewArea(state).panel()``.

It reads what the mode's state already parsed: ``series`` (a ReferenceSeries) and the
``(name, bytes)`` pairs it came from (``_series_pairs``), the SEG mode's ``label_maps`` or
the PM mode's map ``volume``, and the metadata ``document`` (segment labels and colours,
map units). The preview opens by itself once the series and a label map (or a map) are
there, and again when they change; an edit of the segments' labels or colours (the same
series, label maps and numbering) is shown in place (``relabel``), and an edit of what the
preview does not show changes nothing here; with the series alone,
"Show the preview" opens it. "Show what was written" reads the written object back from
its bytes with the library's reader (``show_output(data)``), so the person sees what was
written, not what was meant. "Measurements" measures each segment on the series (with
the SEG writer's segment numbers, before any conversion); under a written SEG, with
``prefill_report``, it also pre-fills the SR mode with a report of them that references
that SEG.

In the app, showing first loads the site's "preview" packages (webapp/stages.py, loaded
on first use, not at start-up); ``show_inputs`` and ``show_output`` themselves assume them
loaded.
"""

from __future__ import annotations

import html
import json
from typing import Callable

import panel as pn

from qidicom import preview as qp

import stages
from preview.measure import MeasurementsPanel
from preview.objects import Offer, file_download
from preview.view import SlicePreview

#: ``prefill_report(document, files)``: an sr-tid1500 document and the DICOM files it names.
Prefill = Callable[[dict, list], object]


def base_name(name: str) -> str:
    return name.replace("\\", "/").rsplit("/", 1)[-1]


#: The state's parameters the preview is made from (those the state has are watched).
INPUTS = ("series", "label_maps", "volume", "map_source", "document", "useLabelIDAsSegmentNumber")
#: The metadata's keys the preview reads: segments' numbering, labels and colours (and the
#: finding and site its measurements report), the map's quantity and units.
DESCRIBING = ("segmentAttributes", "segmentAttributesFileMapping", "QuantityValueCode", "MeasurementUnitsCode")
#: What the preview reads of each segment (qidicom.preview's _label and _colour, the writer's
#: numbering by labelID, qidicom.measurements.report_metadata's Finding and FindingSite):
#: an edit of anything else (an algorithm's name, a category) leaves the preview as it is.
SEGMENT_KEYS = ("labelID", "SegmentLabel", "SegmentDescription", "SegmentedPropertyTypeCodeSequence",
                "AnatomicRegionSequence", "recommendedDisplayRGBValue", "RecommendedDisplayCIELabValue")


def described(document: dict | None) -> str:
    """The part of a metadata document the preview shows, as text to compare."""
    document = document or {}
    shown = {key: document.get(key) for key in DESCRIBING}
    groups = shown["segmentAttributes"]
    if isinstance(groups, list):  # a form's half-made document may have anything here: kept as it is
        shown["segmentAttributes"] = [
            [{k: a[k] for k in SEGMENT_KEYS if k in a} if isinstance(a, dict) else a for a in group]
            if isinstance(group, list) else group for group in groups]
    return json.dumps(shown, sort_keys=True, default=str)

#: Seconds the inputs must stay the same before the preview is made or changed (the form
#: changes the metadata on every key typed in a segment's label).
QUIET_S = 0.6
#: Seconds the metadata must stay the same before a preview is built (which takes seconds
#: of the worker's time with many segments, and an edit sent meanwhile waits behind it).
HOLD_S = 1.5

REPORT_NEEDS_SEG = ("A measurement report (SR) refers to the SEG it measures: convert to a SEG below, then "
                    "“Measurements” under what was written pre-fills the report.")


class PreviewArea:
    def __init__(self, state, *, offer: Offer = file_download, prefill_report: Prefill | None = None):
        self.state = state
        self.offer, self.prefill_report = offer, prefill_report
        self.volume: qp.SeriesVolume | None = None
        self.shown: tuple | None = None  # the inputs' signature of the preview shown, if any
        self.inputs_view: SlicePreview | None = None  # the inputs' preview, while the area shows it
        self.measurements: MeasurementsPanel | None = None  # its measurements
        self._opening = False
        self._prepared = False  # the preview's packages asked for (see _prepare)
        self._replacing = False  # the area says a preview of new files is being made
        self.button = pn.widgets.Button(name="Show the preview", button_type="default")
        self.button.on_click(lambda _event: self._with_preview_packages(self.show_inputs))
        self.output_button = pn.widgets.Button(name="Show what was written", button_type="default", visible=False)
        self.output_button.on_click(lambda _event: self._with_preview_packages(self.show_written))
        self.area = pn.Column(sizing_mode="stretch_width")
        params = getattr(state, "param", {})
        if "result_url" in params:
            state.param.watch(self._result_changed, "result_url")
        watched = [name for name in INPUTS if name in params]
        if watched:
            state.param.watch(self._inputs_changed, watched)
        self._edited_at = 0.0  # time.monotonic() of the metadata's last change
        if "document" in params:
            state.param.watch(self._document_changed, "document")
        # The form edits its document in place and the state takes a shallow copy of it, equal
        # to the one before (the nested segments are shared): param sees no change of the
        # state's document then, so the form's own changes are watched too.
        editor = getattr(state, "editor", None)
        if editor is not None and "document" in getattr(editor, "param", {}):
            editor.param.watch(self._document_changed, "document")
            editor.param.watch(self._inputs_changed, "document")
        self._prepare()

    def _with_preview_packages(self, action: Callable[[], None]) -> None:
        schedule = getattr(self.state, "schedule", None)
        stages.run_with("preview", schedule, lambda: self._after_figures_imports(action, schedule),
                        waiting=lambda: self._message("Loading the preview…", "info"), failed=self._message)

    def _after_figures_imports(self, action: Callable[[], None], schedule) -> None:
        """The first figure imports pandas (Bokeh's ColumnDataSource does), most of a second
        in the worker: done in a step of its own, so that what the page sent meanwhile (a
        form edit) is answered between it and the building of the preview."""
        import sys

        if schedule is None or "pandas" in sys.modules:
            action()
            return
        import pandas  # noqa: F401

        async def then() -> None:
            import asyncio

            await asyncio.sleep(0)
            try:
                action()
            except Exception:
                from base import log_exception

                log_exception("showing the preview failed")
                self._message("The preview failed unexpectedly (details are in the browser console).")

        schedule(then)

    # ---------------------------------------------------------------- opening by itself

    def inputs_ready(self) -> bool:
        """The series and something to show over it (a label map, a map)."""
        state = self.state
        return getattr(state, "series", None) is not None and (
            bool(getattr(state, "label_maps", None)) or getattr(state, "volume", None) is not None)

    def signature(self) -> tuple:
        """What the preview of the inputs shows: when it changes, the preview is made again
        (not on every edit of the metadata: only of what the preview shows of it)."""
        state = self.state
        return (id(getattr(state, "series", None)), tuple(map(id, getattr(state, "label_maps", None) or [])),
                (id(getattr(state, "volume", None)), id(getattr(state, "map_source", None))),
                described(getattr(state, "document", None)), bool(getattr(state, "useLabelIDAsSegmentNumber", False)))

    def _prepare(self) -> None:
        """In the background, once the mode's page is shown: load the preview's packages and
        import pandas (its figures import it), seconds of the worker's time, so that both are
        done while the person chooses files, not when the preview opens by itself, as the
        person starts the form and types in it (an edit sent meanwhile waited behind them)."""
        schedule = getattr(self.state, "schedule", None)
        if self._prepared or schedule is None or stages.is_loaded("preview"):
            return
        self._prepared = True

        async def prepare() -> None:
            import asyncio

            try:
                await stages.load("preview")
                await asyncio.sleep(0)  # what the page sent meanwhile first
                import pandas  # noqa: F401
            except Exception:  # said when the preview is opened (stages.run_with)
                pass

        schedule(prepare)

    def _document_changed(self, _event) -> None:
        import time

        self._edited_at = time.monotonic()

    def _inputs_changed(self, *_events) -> None:
        """Several inputs often arrive in one message (a sample, files dropped together): the
        preview is made once, after it. A preview of other files goes at once (not shown
        as if it were of these while the new one is made)."""
        if self.shown is not None and self.inputs_ready() and self.signature()[:3] != self.shown[:3] \
                and self.area.objects and not self._replacing:
            self._message("Making the preview of the files chosen…", "info")
            self._replacing = True
        if self._opening or not self.inputs_ready() or self.signature() == self.shown:
            return
        schedule = getattr(self.state, "schedule", None)
        if schedule is None:  # no event loop to wait for (a plain Python session)
            self._with_preview_packages(self.update_inputs)
            return
        self._opening = True

        async def open_preview() -> None:
            import asyncio
            import time

            try:
                while True:  # until the inputs have settled
                    seen = self.signature()
                    await asyncio.sleep(QUIET_S)
                    if self.signature() != seen:
                        continue
                    if self.shown is not None and self.relabel():
                        return  # new labels or colours: shown in place, at once
                    if time.monotonic() - self._edited_at >= HOLD_S:
                        break  # not while the form is being typed in: building takes seconds
            finally:
                self._opening = False
            if self.inputs_ready() and self.signature() != self.shown:
                self._with_preview_packages(self.update_inputs)

        schedule(open_preview)

    def update_inputs(self) -> None:
        """The inputs' preview after a change: in place when only the segments' descriptions
        changed (labels, colours: ``relabel``), made again otherwise."""
        if not self.relabel():
            self.show_inputs()

    def relabel(self) -> bool:
        """Show new labels and colours of the segments shown (the same series, label maps and
        numbering) in the preview and its measurements, without making either again (with 100
        segments that takes seconds in the worker, and an edit typed meanwhile waits). False
        when the change needs a new preview."""
        state, shown, now = self.state, self.shown, self.signature()
        view = self.inputs_view
        if shown is None or view is None or view.overlay is None or shown[:3] != now[:3]:
            return False
        overlay = qp.relabelled(view.overlay, state.label_maps, state.document,
                                bool(getattr(state, "useLabelIDAsSegmentNumber", False)))
        if overlay is None:
            return False
        if overlay is not view.overlay:
            view.relabel(overlay)
            if self.measurements is not None:
                self.measurements.relabel(overlay)
        self.shown = now
        return True

    def _result_changed(self, event) -> None:
        """A new result: offer its preview, and show it at once if the series is decoded already
        (after the download link has reached the page: reading back and drawing takes seconds).
        The button appears after the link too: a view shown makes the page lay out the whole
        document (0.3-0.4 s beside a preview), which would hold the link back."""
        schedule = getattr(self.state, "schedule", None)
        if not event.new or schedule is None:  # (no event loop: a plain Python session)
            self.output_button.visible = bool(event.new)
            if event.new and self.volume is not None:
                self.show_written()
            return

        async def show_when_offered() -> None:
            import asyncio

            await asyncio.sleep(0.05)
            if self.state.result_url != event.new:  # replaced by another conversion meanwhile
                return
            self.output_button.visible = True
            if self.volume is not None:
                self.show_written()

        schedule(show_when_offered)

    def show_written(self) -> None:
        result = getattr(self.state, "last_result", None)
        if result is not None:
            self.show_output(result.data, self.state.result_name or "the written object")

    def _series_volume(self) -> qp.SeriesVolume:
        state = self.state
        if self.volume is None or self.volume.series is not state.series:
            self.volume = None  # the old pixels go before the new ones are decoded
            self.volume = qp.series_volume(state.series, dict(getattr(state, "_series_pairs", None) or []))
        return self.volume

    def _message(self, text: str, kind: str = "warning") -> None:
        self._show([pn.pane.Alert(html.escape(text), alert_type=kind)])

    def _show(self, items: list) -> None:
        """Replace what the area shows; the downloads the old content offered are revoked."""
        clear = getattr(self.offer, "clear", None)
        if clear is not None:
            clear()
        self.inputs_view = self.measurements = None
        self._replacing = False
        self.area.objects = items

    def show_inputs(self) -> None:
        state = self.state
        if getattr(state, "series", None) is None:
            self._message("Choose the reference series first.")
            return
        signature = self.signature()
        try:
            volume = self._series_volume()
            overlay = pmap = None
            if getattr(state, "label_maps", None):
                overlay = qp.overlay_from_label_maps(state.label_maps, volume, state.document,
                                                     bool(getattr(state, "useLabelIDAsSegmentNumber", False)))
            if getattr(state, "volume", None) is not None and not isinstance(state.volume, qp.SeriesVolume):
                pmap = qp.map_overlay(state.volume, volume, state.document)
            measured_map = self._measured_map(volume) if overlay is not None else None
        except Exception as error:  # PreviewUnavailable, an off-grid map...: said beside the button
            self.shown = signature  # said once: the same inputs do not try again by themselves
            self.button.visible = True
            self._message(str(error))
            return
        measured_map, map_problem = measured_map if measured_map is not None else (None, "")
        self.view = view = SlicePreview(volume, overlay=overlay, pmap=pmap if pmap is not None else measured_map, title="Preview of the inputs")
        items = [view.panel()]
        if map_problem:
            items.append(pn.pane.Alert(html.escape(map_problem), alert_type="warning"))
        measured = None
        if overlay is not None and overlay.segments:
            measured = MeasurementsPanel(volume, overlay, measured_map, offer=self.offer,
                                         note=REPORT_NEEDS_SEG if self.prefill_report is not None else "")
            items.append(measured.panel())
        self.shown = signature
        self.button.visible = False  # shown: it follows the inputs by itself now
        self._show(items)
        self.inputs_view, self.measurements = view, measured

    def _measured_map(self, volume) -> tuple[qp.MapOverlay | None, str]:
        """The map chosen to measure in the segments (SEG mode's ``map_source``) on the series'
        grid, or why it cannot be used (said under the preview; the segments still measured)."""
        source = getattr(self.state, "map_source", None)
        if not source:
            return None, ""
        try:
            return qp.map_overlay(source["volume"], volume, source["metadata"]), ""
        except Exception as error:  # off the series' grid...
            return None, f"{source['name']}: the map cannot be measured on this series ({error})."

    def show_output(self, data: bytes, name: str = "the written object") -> None:
        """The object just written, read back by the library's reader, over the series."""
        from qidicom import reverse

        extra: list = []
        try:
            volume = self._series_volume()
            kind = reverse.object_kind((name, data))
            if kind == "seg":
                from qidicom.seg import read_segmentation

                contents = read_segmentation((name, data))
                overlay = qp.overlay_from_segmentation(contents, volume)
                measured_map, problem = self._measured_map(volume)
                view = SlicePreview(volume, overlay=overlay, pmap=measured_map, title=f"What was written: {name}")
                if problem:
                    extra.append(pn.pane.Alert(html.escape(problem), alert_type="warning"))
                written = self._measurements(volume, overlay, name, data, contents, measured_map)
                extra.append(written.panel())
            elif kind == "pm":
                from qidicom.pm import read_parametric_map

                view = SlicePreview(volume, pmap=qp.map_overlay(read_parametric_map((name, data)), volume),
                                    title=f"What was written: {name}")
            else:
                self._message("An SR has no image to show: open it in “Open a DICOM object” to see its table.", "info")
                return
        except Exception as error:
            self._message(str(error))
            return
        self.button.param.update(name="Show the preview of the inputs", visible=True)  # to go back to them
        self._show([view.panel(), *extra])
        self.written_measurements = written if kind == "seg" else None

    def _measurements(self, volume, overlay, name: str, data: bytes, contents, pmap=None) -> MeasurementsPanel:
        """Per-segment numbers of the written SEG (and of the map chosen to measure), and a
        report of them referencing the SEG (and the map, when it is a DICOM Parametric Map;
        a map of unknown units stays out of the report)."""
        import pydicom

        def uid_of(dicom: bytes) -> str:
            return str(pydicom.dcmread(pydicom.filebase.DicomBytesIO(dicom), stop_before_pixels=True,
                                       specific_tags=["SOPInstanceUID"]).SOPInstanceUID)

        pairs = list(getattr(self.state, "_series_pairs", None) or [])
        uid = uid_of(data)
        series = self.state.series
        used = set(series.names)
        pairs = [(n, d) for n, d in pairs if n in used] or pairs  # only the series' own files
        library = [base_name(n) for n in series.names]
        arguments = {"segmentation_file": base_name(name), "segmentation_uid": uid,
                     "source_series_uid": self.state.series.series_uid, "image_library": library}
        files = pairs + [(base_name(name), data)]
        source = getattr(self.state, "map_source", None)
        if pmap is not None and source and pmap.metadata.get("MeasurementUnitsCode") \
                and pmap.metadata.get("QuantityValueCode"):
            arguments["map_metadata"] = pmap.metadata
            if source.get("data") is not None:  # a DICOM PM: the report references it, the SR pool gets it
                arguments.update(map_file=base_name(source["name"]), map_uid=uid_of(source["data"]))
                files.append((base_name(source["name"]), source["data"]))
        prefill = None
        if self.prefill_report is not None:
            def prefill(document: dict) -> None:
                self.prefill_report(document, files)
        return MeasurementsPanel(volume, overlay, pmap, report_arguments=arguments, prefill=prefill, offer=self.offer)

    def panel(self) -> pn.viewable.Viewable:
        return pn.Column(pn.Row(self.button, self.output_button), self.area, sizing_mode="stretch_width",
                         css_classes=["qi-preview-area"])
