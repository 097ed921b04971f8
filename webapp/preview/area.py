"""A mode's Preview area, mounted with one call: ``PreviewArea(state).panel()``.

It reads what the mode's state already parsed: ``series`` (a ReferenceSeries) and the
``(name, bytes)`` pairs it came from (``_series_pairs``), the SEG mode's ``label_maps`` or
the PM mode's map ``volume``, and the metadata ``document`` (segment labels and colours,
map units). The preview opens by itself once the series and a label map (or a map) are
there, and again when they or the segments' description change; with the series alone,
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
INPUTS = ("series", "label_maps", "volume", "document", "useLabelIDAsSegmentNumber")
#: The metadata's keys the preview shows (segment numbers, labels and colours; map units).
DESCRIBING = ("segmentAttributes", "segmentAttributesFileMapping", "QuantityValueCode", "MeasurementUnitsCode")

#: Seconds the inputs must stay the same before a shown preview is made again (the form
#: changes the metadata on every key typed in a segment's label).
QUIET_S = 0.6

REPORT_NEEDS_SEG = ("A measurement report (SR) refers to the SEG it measures: convert to a SEG below, then "
                    "“Measurements” under what was written pre-fills the report.")


class PreviewArea:
    def __init__(self, state, *, offer: Offer = file_download, prefill_report: Prefill | None = None):
        self.state = state
        self.offer, self.prefill_report = offer, prefill_report
        self.volume: qp.SeriesVolume | None = None
        self.shown: tuple | None = None  # the inputs' signature of the preview shown, if any
        self._opening = False
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

    def _with_preview_packages(self, action: Callable[[], None]) -> None:
        schedule = getattr(self.state, "schedule", None)
        stages.run_with("preview", schedule, action, waiting=lambda: self._message("Loading the preview…", "info"),
                        failed=self._message)

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
        document = getattr(state, "document", None) or {}
        described = json.dumps({key: document.get(key) for key in DESCRIBING}, sort_keys=True, default=str)
        return (id(getattr(state, "series", None)), tuple(map(id, getattr(state, "label_maps", None) or [])),
                id(getattr(state, "volume", None)), described, bool(getattr(state, "useLabelIDAsSegmentNumber", False)))

    def _inputs_changed(self, *_events) -> None:
        """Several inputs often arrive in one message (a sample, files dropped together): the
        preview is made once, after it."""
        if self._opening or not self.inputs_ready() or self.signature() == self.shown:
            return
        schedule = getattr(self.state, "schedule", None)
        if schedule is None:  # no event loop to wait for (a plain Python session)
            self._with_preview_packages(self.show_inputs)
            return
        self._opening = True

        async def open_preview() -> None:
            import asyncio

            try:
                while self.shown is not None:  # a preview is shown: wait for the inputs to settle
                    seen = self.signature()
                    await asyncio.sleep(QUIET_S)
                    if self.signature() == seen:
                        break
            finally:
                self._opening = False
            if self.inputs_ready() and self.signature() != self.shown:
                self._with_preview_packages(self.show_inputs)

        schedule(open_preview)

    def _result_changed(self, event) -> None:
        """A new result: offer its preview, and show it at once if the series is decoded already
        (after the download link has reached the page: reading back and drawing takes seconds)."""
        self.output_button.visible = bool(event.new)
        if not event.new or self.volume is None:
            return
        schedule = getattr(self.state, "schedule", None)
        if schedule is None:  # no event loop (a plain Python session)
            self.show_written()
            return

        async def show_when_offered() -> None:
            import asyncio

            await asyncio.sleep(0.05)
            if self.state.result_url == event.new:  # not replaced by another conversion meanwhile
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
        except Exception as error:  # PreviewUnavailable, an off-grid map...: said beside the button
            self.shown = signature  # said once: the same inputs do not try again by themselves
            self.button.visible = True
            self._message(str(error))
            return
        self.view = SlicePreview(volume, overlay=overlay, pmap=pmap, title="Preview of the inputs")
        items = [self.view.panel()]
        if overlay is not None and overlay.segments:
            items.append(MeasurementsPanel(volume, overlay, offer=self.offer,
                                           note=REPORT_NEEDS_SEG if self.prefill_report is not None else "").panel())
        self.shown = signature
        self.button.visible = False  # shown: it follows the inputs by itself now
        self._show(items)

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
                view = SlicePreview(volume, overlay=overlay, title=f"What was written: {name}")
                extra.append(self._measurements(volume, overlay, name, data, contents).panel())
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

    def _measurements(self, volume, overlay, name: str, data: bytes, contents) -> MeasurementsPanel:
        """Per-segment numbers of the written SEG, and a report of them referencing it."""
        import pydicom

        pairs = list(getattr(self.state, "_series_pairs", None) or [])
        uid = str(pydicom.dcmread(pydicom.filebase.DicomBytesIO(data), stop_before_pixels=True,
                                  specific_tags=["SOPInstanceUID"]).SOPInstanceUID)
        series = self.state.series
        used = set(series.names)
        pairs = [(n, d) for n, d in pairs if n in used] or pairs  # only the series' own files
        library = [base_name(n) for n in series.names]
        arguments = {"segmentation_file": base_name(name), "segmentation_uid": uid,
                     "source_series_uid": self.state.series.series_uid, "image_library": library}
        prefill = None
        if self.prefill_report is not None:
            def prefill(document: dict) -> None:
                self.prefill_report(document, pairs + [(base_name(name), data)])
        return MeasurementsPanel(volume, overlay, report_arguments=arguments, prefill=prefill, offer=self.offer)

    def panel(self) -> pn.viewable.Viewable:
        return pn.Column(pn.Row(self.button, self.output_button), self.area, sizing_mode="stretch_width",
                         css_classes=["qi-preview-area"])
