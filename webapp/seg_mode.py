"""SEG mode: label maps (one or several) + reference series + seg metadata -> DICOM SEG.

Several label maps are one SEG, as with dcmqi's ``--inputImageList``: the metadata's
``segmentAttributes`` has one group per file, matched by position or, with
``segmentAttributesFileMapping``, by file name.
"""

from __future__ import annotations

import panel as pn
import param

import samples
import views
from base import ConversionState, Pairs, readable_failure


MAP_ROLE = "map"
#: The mode's own picker (beside the conversion's): a map measured in the segments by the
#: preview's Measurements, not an input of the SEG.
APP_INPUTS = [{
    # (Its label must not contain "Measurements": a file input is a button named by its label.)
    "role": MAP_ROLE, "label": "Optional: a parametric map to measure in the segments (a DICOM Parametric Map, or a "
                               "NIfTI/NRRD map with its pm metadata JSON for its units)",
    "kind": "image", "extensions": [], "accept": "", "multiple": True, "required": False, "directory": False,
    "roles": [MAP_ROLE]}]

UNKNOWN_UNITS = ("its units are unknown (no MeasurementUnitsCode: choose its pm metadata JSON with it): its "
                 "statistics are in its stored values, and are left out of a report")


def read_measure_map(pairs: Pairs) -> dict:
    """The map chosen for the measurements: a DICOM Parametric Map (its own coded quantity and
    units), or a NIfTI/NRRD image; a pm metadata JSON chosen with it gives the units (and
    quantity) to either. Returns {volume, metadata, name, data (a DICOM PM's bytes, for the
    report's references) or None, units}."""
    from qidicom import metadata as metadata_module
    from qidicom import reverse
    from qidicom.errors import InputError

    documents = [(n, d) for n, d in pairs if n.lower().endswith(".json")]
    images = [(n, d) for n, d in pairs if not n.lower().endswith(".json")]
    if len(images) != 1 or len(documents) > 1:
        raise InputError("choose one map (a DICOM Parametric Map, NIfTI or NRRD) and at most one pm metadata JSON "
                         f"with it; {len(images)} image(s) and {len(documents)} JSON file(s) were chosen")
    name, data = images[0]
    try:
        is_pm = reverse.object_kind((name, data)) == "pm"
    except Exception:
        is_pm = False
    if is_pm:
        from qidicom.pm import read_parametric_map

        contents = read_parametric_map((name, data))
        volume, metadata = contents.volume, dict(contents.metadata)
    else:
        from qidicom.readers import read_image

        volume, metadata, data = read_image((name, data)), {}, None
    if documents:
        given = metadata_module.load_json(documents[0])
        if not isinstance(given, dict):
            raise InputError(f"{documents[0][0]}: not a pm metadata JSON object")
        metadata.update({k: given[k] for k in ("QuantityValueCode", "MeasurementUnitsCode") if given.get(k)})
    units = (metadata.get("MeasurementUnitsCode") or {}).get("CodeValue", "")
    return {"volume": volume, "metadata": metadata, "name": name, "data": data, "units": units}


def label_counts(volume) -> dict[int, int]:
    """Voxel count of each non-zero label value of a label map."""
    from qidicom.preview import label_counts as counts_of

    return {int(v): c for v, c in counts_of(volume.array).items() if v != 0 and float(v).is_integer()}


def grid_text(volume) -> str:
    spacing = " × ".join(f"{v:.3g}" for v in volume.spacing)
    return f"{' × '.join(map(str, volume.shape))} voxels of {spacing} mm"


class SeriesInput(param.Parameterized):
    """A reference series, parsed when its files arrive (shared by SEG and PM)."""

    series = param.Parameter(default=None, doc="the parsed qidicom.readers.ReferenceSeries")
    series_summary = param.Dict(default=None, allow_None=True)
    series_message = param.String(default="")
    series_warnings = param.List(default=[])
    series_count = param.Integer(default=0)

    def _read_series(self, pairs: Pairs, match=None, check_spacing: bool = True) -> None:
        from qidicom.readers import read_dicom_series

        self._series_pairs = pairs  # kept only to pick among several series once a map arrives
        update = dict(series=None, series_summary=None, series_warnings=[], series_message="", series_count=len(pairs))
        try:
            series = read_dicom_series(pairs, match=match, check_spacing=check_spacing)
        except Exception as error:
            update["series_message"] = readable_failure(error, "reading the DICOM series")
        else:
            update.update(series=series, series_summary=series.summary(), series_warnings=list(series.warnings))
        self.param.update(**update)

    def _rematch_series(self, match, check_spacing: bool = True) -> None:
        """Files holding several series could not be told apart without the image: now it is here."""
        if self.series is None and getattr(self, "_series_pairs", None) and "series" in self.series_message:
            self._read_series(self._series_pairs, match, check_spacing)


class SegState(ConversionState, SeriesInput):
    conversion_name = "itkimage2segimage"
    input_params = ("series", "label_maps", "labels_message")

    label_maps = param.List(default=[], doc="the parsed label maps (qidicom Volumes), in the order chosen")
    map_source = param.Dict(default=None, allow_None=True, doc="the map to measure in the segments (read_measure_map)")
    map_text = param.String(default="", doc="what the page says of that map")
    label_rows = param.List(default=[], doc="what the page shows of each label map")
    labels_message = param.String(default="")

    def set_input(self, role: str, pairs: Pairs) -> None:
        if role == "series":
            self._read_series(pairs, match=self.label_maps[0] if self.label_maps else None)
        elif role == "labelmaps":
            self._read_label_maps(pairs)
        elif role == MAP_ROLE:
            self._read_measure_map(pairs)
        else:
            super().set_input(role, pairs)

    def _read_label_maps(self, pairs: Pairs) -> None:
        from qidicom.readers import read_image

        volumes, rows = [], []
        try:
            for name, data in pairs:
                volume = read_image((name, data))
                counts = label_counts(volume)
                volumes.append(volume)
                detail = ", ".join(f"{value}: {count} voxels" for value, count in sorted(counts.items())[:12])
                rows.append({"name": name, "grid": grid_text(volume),
                             "detail": ("labels " + detail + (" …" if len(counts) > 12 else "")) if counts else "no labels",
                             "counts": counts})
        except Exception as error:
            self.param.update(label_maps=[], label_rows=[], labels_message=readable_failure(error, "reading the label map"))
            return
        self.param.update(label_maps=volumes, label_rows=rows, labels_message="")
        if volumes:
            self._rematch_series(volumes[0])

    def _read_measure_map(self, pairs: Pairs) -> None:
        try:
            source = read_measure_map(pairs)
        except Exception as error:
            self.param.update(map_source=None, map_text="danger:" + readable_failure(error, "reading the map"))
            return
        units = f"in {source['units']}" if source["units"] else UNKNOWN_UNITS
        kind = "info" if source["units"] else "warning"
        self.param.update(map_source=source, map_text=f"{kind}:{source['name']}: {grid_text(source['volume'])}; {units}.")

    def missing(self) -> list[str]:
        reasons = []
        if self.series is None:
            reasons.append("the reference series " + ("could not be used" if self.series_message else "is not chosen yet"))
        if self.labels_message:
            reasons.append("a label map could not be read")
        elif not self.label_maps:
            reasons.append("no label map yet")
        return reasons

    def start_form_from_labels(self) -> None:
        """Start the form editor with one segment per label value found: one group per label
        map, matched to its file by segmentAttributesFileMapping when there are several."""
        if self.editor is None or not self.label_rows:
            return
        if len(self.label_rows) == 1:
            self.editor.from_label_values(self.label_rows[0]["counts"])
        else:
            self.editor.from_label_values([row["counts"] for row in self.label_rows],
                                          file_names=[row["name"].rsplit("/", 1)[-1] for row in self.label_rows])
        self.metadata_name = ""

    def write(self, options, progress):
        writer = self.conversion.resolve("writer")
        return writer(self.label_maps, self.document, self.series, progress=progress, **options)

    def load_sample(self) -> dict[str, int]:
        inputs = samples.seg_inputs()
        self.param.update(map_source=None, map_text="")  # the sample's inputs replace the chosen ones
        for role, pairs in inputs.items():
            self.take_files(role, pairs)
        return {role: len(pairs) for role, pairs in inputs.items()}


def map_view(text: str):
    """The map chosen for the measurements, or why it could not be read (nothing when none)."""
    if not text:
        return pn.Spacer(height=0)
    kind, _, message = text.partition(":")
    return views.alert(f"**Map to measure:** {views.escape(message)}", kind)


def view(state: SegState, prefill_report=None) -> pn.viewable.Viewable:
    """The mode's page; ``prefill_report(document, files)`` takes the measurements of a written SEG
    to the SR mode (see preview.area)."""
    options = {option.dest: views.option_widget(state, option) for option in state.conversion.app_options}
    options["fractionalType"].visible = pn.bind(lambda kind: kind == "fractional", state.param.segmentationType)
    form = views.editor_view(state)
    from_labels = None
    if isinstance(form, pn.Card):  # the form itself, not a note that it is unavailable
        from_labels = pn.widgets.Button(name="Start the form from the label values", button_type="default",
                                        visible=pn.bind(bool, state.param.label_rows))
        from_labels.on_click(lambda _event: state.start_form_from_labels())
    return pn.Column(
        views.markdown("## 2. Check"),
        pn.bind(views.series_view, "DICOM series", state.param.series_summary, state.param.series_message,
                state.param.series_warnings, state.param.series_count),
        pn.bind(views.images_view, "Label maps", state.param.label_rows, state.param.labels_message),
        pn.bind(map_view, state.param.map_text),
        views.preview_card(state, prefill_report),
        pn.bind(views.metadata_view, state.param.metadata_name, state.param.document, state.param.metadata_problems,
                state.param.metadata_message),
        *[item for item in (from_labels, form) if item is not None],
        *views.convert_controls(state, list(options.values())),
        sizing_mode="stretch_width",
        css_classes=["qi-app", "qi-mode-seg"],
    )
