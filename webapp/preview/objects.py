"""Open a DICOM object (SEG, Parametric Map, TID 1500 SR; qidicom's, dcmqi's or highdicom's),
with or without its source series: preview it, and offer what the CLI's readers write.

Mount with one call: ``ObjectViewer(name, data, series_pairs=None).panel()``. Files are
offered through ``offer(filename, data, mime)``, which the app replaces with its blob-URL
downloads; the default is Panel's FileDownload (for standalone pages and tests). A SEG
opened with its series offers "Measurements" of its segments on the series and, given a
parametric map on the series' grid (``map_source``: a DICOM PM, NIfTI or NRRD), on the map
in its units too.
"""

from __future__ import annotations

import html
from typing import Callable

import panel as pn

from qidicom import measurements, preview as qp
from qidicom import reverse

from preview.view import SlicePreview

Offer = Callable[[str, bytes, str], object]


def file_download(filename: str, data: bytes, mime: str) -> pn.widgets.FileDownload:
    import io

    return pn.widgets.FileDownload(io.BytesIO(data), filename=filename, label=f"Download {filename}",
                                   button_type="primary")


def table_html(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    head = "".join(f"<th>{html.escape(title)}</th>" for _, title in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(row.get(key, '')))}</td>" for key, _ in columns) + "</tr>"
                   for row in rows)
    return f"<table class='qi-table'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


SR_COLUMNS = [("group", "Group"), ("tracking_identifier", "Tracking ID"), ("finding", "Finding"),
              ("finding_site", "Finding site"), ("segment", "Segment"), ("quantity", "Quantity"),
              ("derivation", "Derivation"), ("value", "Value"), ("units", "Units")]


class ObjectViewer:
    """One opened DICOM object: its kind, a preview (SEG, PM) or table (SR), and downloads."""

    def __init__(self, name: str, data: bytes, series_pairs: list[tuple[str, bytes]] | None = None,
                 offer: Offer = file_download, map_source: tuple[str, bytes] | None = None):
        self.name, self.data, self.offer = name, data, offer
        self.kind = reverse.object_kind((name, data))
        self.messages: list[str] = []
        self.view: SlicePreview | None = None
        self.rows: list[dict] = []
        self.measurements = None  # a preview.measure.MeasurementsPanel, for a SEG with its series
        self.pmap: qp.MapOverlay | None = None
        self.volume = self._series(series_pairs) if series_pairs else None
        self.map_source = map_source
        if self.kind == "seg":
            self._open_segmentation()
        elif self.kind == "pm":
            self._open_map()
        else:
            self._open_report()

    # ---------------------------------------------------------------- reading

    def _series(self, pairs) -> qp.SeriesVolume | None:
        try:
            return qp.read_series_volume(pairs)
        except qp.PreviewUnavailable as error:
            self.messages.append(f"{error} The object is shown on its own grid.")
        except Exception as error:  # a series problem must not stop the object being opened
            self.messages.append(f"The series could not be used ({error}); the object is shown on its own grid.")
        return None

    def _open_segmentation(self) -> None:
        from qidicom.seg import read_segmentation

        contents = read_segmentation((self.name, self.data))
        self.messages += contents.warnings
        self.contents = contents
        volume = self.volume
        if volume is not None:
            try:
                overlay = qp.overlay_from_segmentation(contents, volume)
            except qp.GeometryError as error:
                self.messages.append(f"{error}; shown on its own grid instead.")
                volume = None
        if volume is None:
            shape = contents.label_map.shape if contents.label_map is not None else contents.segments[0].array.shape
            volume = qp.SeriesVolume.blank(contents.affine, shape, name=self.name)
            overlay = qp.overlay_from_segmentation(contents, volume)
        self.overlay = overlay
        if self.map_source is not None:
            self.pmap = self._map(volume)
        self.view = SlicePreview(volume, overlay=overlay, pmap=self.pmap,
                                 title=f"{self.name}: {len(overlay.segments)} segment(s)")
        if self.volume is not None and volume is self.volume:
            from preview.measure import MeasurementsPanel  # it imports this module's table

            self.measurements = MeasurementsPanel(volume, overlay, self.pmap, offer=self.offer)

    def _map(self, volume: qp.SeriesVolume) -> qp.MapOverlay | None:
        """The map to measure in the segments, on the series' grid; None (and a message) when
        there is no series or it does not fit."""
        name = self.map_source[0]
        if self.volume is None or volume is not self.volume:
            self.messages.append(f"{name}: a map is measured on the source series; choose the series too.")
            return None
        try:
            if name.lower().endswith(".dcm") or reverse.object_kind(self.map_source) == "pm":
                from qidicom.pm import read_parametric_map

                return qp.map_overlay(read_parametric_map(self.map_source), volume)
        except Exception:
            pass  # not a DICOM Parametric Map: read it as an image below
        try:
            from qidicom.readers import read_image

            return qp.map_overlay(read_image(self.map_source), volume)
        except Exception as error:
            self.messages.append(f"{name}: the map could not be used ({error}).")
            return None

    def _open_map(self) -> None:
        from qidicom.pm import read_parametric_map

        contents = read_parametric_map((self.name, self.data))
        self.messages += contents.warnings
        volume = self.volume
        pmap = None
        if volume is not None:
            try:
                pmap = qp.map_overlay(contents, volume)
            except qp.GeometryError as error:
                self.messages.append(f"{error}; shown on its own grid instead.")
                volume = None
        if volume is None:
            volume = qp.SeriesVolume.blank(contents.volume.affine, contents.volume.shape, name=self.name)
            pmap = qp.map_overlay(contents, volume)
        self.view = SlicePreview(volume, pmap=pmap, title=f"{self.name}: {pmap.quantity or 'map'} ({pmap.units})")

    def _open_report(self) -> None:
        from qidicom.sr import read_report

        contents = read_report((self.name, self.data))
        self.messages += contents.warnings
        self.report = contents.metadata
        self.rows = reverse.report_table(contents.metadata)

    # ---------------------------------------------------------------- files

    def files(self, output_type: str = "nrrd", merge: bool = False):
        """What the CLI's reader writes for this object."""
        files, warnings = reverse.reader_files((self.name, self.data), self.kind, output_type=output_type,
                                               merge_segments=merge)
        return files, warnings

    def zip_name(self) -> str:
        stem = self.name.rsplit("/", 1)[-1]
        return (stem[:-4] if stem.lower().endswith(".dcm") else stem) + ".zip"

    def _download_zip(self, output_type: str, merge: bool) -> None:
        files, warnings = self.files(output_type, merge)
        self.download_area.objects = [self.offer(self.zip_name(), reverse.files_zip(files), "application/zip")] + [
            pn.pane.Alert(html.escape(w), alert_type="warning") for w in warnings]

    # ---------------------------------------------------------------- layout

    def panel(self) -> pn.viewable.Viewable:
        items: list = [pn.pane.Markdown(f"### {html.escape(self.name)} ({reverse.KINDS[self.kind]} reads it)",
                                        disable_math=True)]
        items += [pn.pane.Alert(html.escape(m), alert_type="warning") for m in self.messages]
        self.download_area = pn.Column()
        if self.kind == "sr":
            shown = [{**row, "value": measurements.readable_number(row["value"])} for row in self.rows]
            items.append(pn.pane.HTML(table_html(shown, SR_COLUMNS), sizing_mode="stretch_width", css_classes=["qi-sr-table"]))
            files, _ = self.files()
            items.append(pn.Row(self.offer("measurements.csv", reverse.report_csv(self.report), "text/csv"),
                                self.offer(files[0].name, files[0].data, "application/json")))
            return pn.Column(*items, sizing_mode="stretch_width")
        output = pn.widgets.Select(name="Image files", options={"NRRD": "nrrd", "NIfTI (.nii.gz)": "nii.gz"}, value="nrrd", width=160)
        merge = pn.widgets.Checkbox(name="Merge segments into label maps", value=False, visible=self.kind == "seg")
        button = pn.widgets.Button(name="Make the files (one zip)", button_type="primary")
        button.on_click(lambda _event: self._download_zip(output.value, merge.value))
        items += [self.view.panel(), pn.Row(output, merge, button), self.download_area]
        if self.measurements is not None:
            items.append(self.measurements.panel())
        elif self.kind == "seg":
            items.append(pn.pane.Markdown("Choose its source series to measure the segments on the image.",
                                          disable_math=True))
        return pn.Column(*items, sizing_mode="stretch_width")
