"""The "Measurements" button: per-segment numbers from the preview's own data, shown as a
table with a CSV download, and a TID 1500 document pre-filled with them.

Mount with one call::

    MeasurementsPanel(volume, overlay, pmap=None, report_arguments=..., prefill=sr_state.set_document).panel()

``report_arguments`` are ``qidicom.measurements.report_metadata``'s keywords (the SEG's
file name and UID, the source series UID, the image library); ``prefill`` receives the
document (the app gives it to the SR mode's form editor).
"""

from __future__ import annotations

import html
from typing import Callable

import panel as pn

from qidicom import measurements

from preview.objects import Offer, file_download, table_html

COLUMNS = [("segment", "Segment"), ("label", "Label"), ("voxels", "Voxels"), ("volume_ml", "Volume (mL)"),
           ("mean", "Mean"), ("std", "SD"), ("min", "Min"), ("max", "Max"), ("median", "Median"), ("units", "Units"),
           ("map_mean", "Map mean"), ("map_std", "Map SD"), ("map_min", "Map min"), ("map_max", "Map max"),
           ("map_median", "Map median"), ("map_units", "Map units")]
#: Columns shown as numbers (readable, six significant digits; the CSV keeps every digit).
NUMERIC = {"voxels", "volume_ml", "mean", "std", "min", "max", "median", "map_mean", "map_std", "map_min", "map_max",
           "map_median"}


UNKNOWN = "unknown"
UNKNOWN_UNITS_NOTE = ("The map's units are unknown (it has no MeasurementUnitsCode): its statistics are of its "
                      "stored values, and a report leaves them out. Choose its pm metadata JSON with it to give them.")


def _readable(rows: list[dict]) -> list[dict]:
    return [{k: (measurements.readable_number(v) if k in NUMERIC else ("" if v is None else v)) for k, v in row.items()}
            for row in rows]


class MeasurementsPanel:
    """Measure on click; show, offer the CSV, and pre-fill the SR form."""

    def __init__(self, volume, overlay, pmap=None, *, report_arguments: dict | None = None,
                 prefill: Callable[[dict], object] | None = None, offer: Offer = file_download, note: str = ""):
        self.volume, self.overlay, self.pmap = volume, overlay, pmap
        self.report_arguments, self.prefill, self.offer = report_arguments, prefill, offer
        self.note = note  # said under the table (e.g. why no report is pre-filled here)
        self.results: list[measurements.SegmentMeasurement] = []
        self.document: dict | None = None
        self.button = pn.widgets.Button(name="Measurements", button_type="primary")
        self.button.on_click(lambda _event: self.measure())
        self.area = pn.Column(sizing_mode="stretch_width")

    def measure(self) -> None:
        self.results = measurements.measure_segments(self.volume, self.overlay, self.pmap)
        self._show(prefill=True)

    def relabel(self, overlay) -> None:
        """New labels and attributes of the same segments (the same voxels): the numbers
        shown stay, their labels change; nothing is measured again and no report is sent."""
        self.overlay = overlay
        if not self.results:
            return
        for result in self.results:
            info = overlay.segments.get(result.number)
            if info is not None:
                result.label, result.attributes = info.label, dict(info.attributes)
        self._show(prefill=False)

    def _show(self, prefill: bool) -> None:
        rows = measurements.measurements_table(self.results)
        unknown_units = self.pmap is not None and not self.pmap.units
        shown = _readable(rows)
        if unknown_units:
            for row in shown:
                row["map_units"] = UNKNOWN
        items: list = [pn.pane.HTML(table_html(shown, COLUMNS if self.pmap is not None else COLUMNS[:10]),
                                    sizing_mode="stretch_width", css_classes=["qi-measurements"]),
                       self.offer("measurements.csv", measurements.measurements_csv(self.results), "text/csv")]
        if unknown_units:
            items.append(pn.pane.Alert(html.escape(UNKNOWN_UNITS_NOTE), alert_type="warning"))
        if self.report_arguments is not None:
            try:
                self.document = measurements.report_metadata(self.results, modality=self.volume.modality,
                                                             **self.report_arguments)
            except Exception as error:  # e.g. nothing measurable: say so beside the table
                items.append(pn.pane.Alert(html.escape(str(error)), alert_type="warning"))
            else:
                if self.prefill is not None and prefill:
                    self.prefill(self.document)
                    items.append(pn.pane.Alert("The SR form is pre-filled with these measurements, and the files they "
                                               "refer to are loaded there: open “Measurement report (SR)” to convert.",
                                               alert_type="success"))
        if self.note:
            items.append(pn.pane.Alert(html.escape(self.note), alert_type="info"))
        self.area.objects = items

    def panel(self) -> pn.viewable.Viewable:
        return pn.Column(self.button, self.area, sizing_mode="stretch_width")
