"""Open mode: a DICOM SEG, Parametric Map or TID 1500 SR (qidicom's, dcmqi's, highdicom's),
with or without its source series, shown (preview over the series, or the SR's table) and
turned back into what the CLI's readers write (webapp/preview/objects.py: ObjectViewer). A SEG
with its series is measured on it, and on a parametric map when one is given too.

Not a conversion of ``qidicom.conversions``: the page's pickers for it come from
``DESCRIPTION``, in the same form as a conversion's description.
"""

from __future__ import annotations

import panel as pn
import param

import samples
import stages
import views
from base import Pairs, readable_failure

SHORT_NAME = "open"
OBJECT_ROLE, SERIES_ROLE, MAP_ROLE = "object", "series", "map"

DESCRIPTION = {
    "name": "open", "short_name": SHORT_NAME, "title": "Open a DICOM object",
    "inputs": [
        {"role": OBJECT_ROLE, "label": "DICOM object to open (SEG, Parametric Map or TID 1500 SR)", "kind": "dicom",
         "extensions": [".dcm"], "accept": "", "multiple": True, "required": True, "directory": False,
         "roles": [OBJECT_ROLE]},
        {"role": SERIES_ROLE, "label": "Its source series (optional: the object is shown over it)", "kind": "dicom",
         "extensions": [], "accept": "", "multiple": True, "required": False, "directory": True,
         "roles": [SERIES_ROLE]},
        {"role": MAP_ROLE, "label": "A parametric map to measure in the segments (optional: a DICOM Parametric Map, "
                                    "NIfTI or NRRD on the series' grid)", "kind": "image",
         "extensions": [".nii", ".nii.gz", ".nrrd", ".nhdr"], "accept": "", "multiple": False, "required": False,
         "directory": False, "roles": [MAP_ROLE]},
    ],
}


def split_objects(pairs: Pairs) -> tuple[Pairs, Pairs]:
    """(the SEG/PM/SR objects, the other files) of files chosen or dropped together."""
    from qidicom import reverse

    objects, others = [], []
    for pair in pairs:
        try:
            reverse.object_kind(pair)
        except Exception:
            others.append(pair)
        else:
            objects.append(pair)
    return objects, others


class OpenState(param.Parameterized):
    """The opened object and series; ``content`` is what the mode shows of them."""

    object_name = param.String(default="")
    series_count = param.Integer(default=0)
    map_name = param.String(default="")
    message = param.String(default="")
    content = param.Parameter(default=None, doc="the ObjectViewer's layout, once made")

    def __init__(self, offer=None, **params):
        super().__init__(**params)
        self.offer = offer or views.Downloads()
        #: ``prefill_report(document, files)``: the app's hook to the SR mode (see view()).
        self.prefill_report = None
        self._object: tuple[str, bytes] | None = None
        self._series: Pairs = []
        self._map: tuple[str, bytes] | None = None

    @staticmethod
    def schedule(coroutine_function) -> None:  # replaced by the app with its bridge's run_later
        import asyncio

        asyncio.get_event_loop().create_task(coroutine_function())

    def take_files(self, role: str, pairs: Pairs) -> None:
        if role == OBJECT_ROLE:
            objects, others = split_objects(pairs)
            if not objects:
                self.param.update(message=f"{pairs[0][0] if pairs else 'The file'}: not a DICOM SEG, Parametric Map "
                                          "or TID 1500 SR.", content=None)
                return
            from qidicom import reverse

            kinds = [reverse.object_kind(pair) for pair in objects]
            if "seg" in kinds and "pm" in kinds:  # a SEG and a map chosen together: the map is measured in it
                self._map = objects[len(kinds) - 1 - kinds[::-1].index("pm")]
                self._object = objects[len(kinds) - 1 - kinds[::-1].index("seg")]
            else:
                self._object = objects[-1]
            if others:  # a study dropped as one: the other files are the series
                self._series = others
        elif role == SERIES_ROLE:
            self._series = list(pairs)
        elif role == MAP_ROLE:
            self._map = pairs[-1] if pairs else None
        else:
            raise ValueError(f"unknown input role {role!r} for the open mode")
        self.param.update(object_name=self._object[0] if self._object else "", series_count=len(self._series),
                          map_name=self._map[0] if self._map else "")
        self.open()

    def clear_series(self) -> None:
        """Show the object on its own grid again (a map is measured on the series: it goes too)."""
        self._series = []
        self._map = None
        self.param.update(series_count=0, map_name="")
        if self._object is not None:
            self.open()

    def open(self) -> None:
        """Show the object (again, over the series when there is one)."""
        if self._object is None:
            self.param.update(message="Choose the DICOM object to open.", content=None)
            return
        from qidicom import reverse

        name, data = self._object
        try:
            kind = reverse.object_kind((name, data))
        except Exception as error:
            self.param.update(message=readable_failure(error, "reading the object"), content=None)
            return
        if kind == "sr":  # a table: no Bokeh image, so no preview packages needed
            self._show()
            return
        stages.run_with("preview", self.schedule, self._show,
                        waiting=lambda: self.param.update(message="Loading the preview…", content=None),
                        failed=lambda text: self.param.update(message=text, content=None))

    def _show(self) -> None:
        from preview.objects import ObjectViewer

        name, data = self._object
        clear = getattr(self.offer, "clear", None)
        if clear is not None:  # the old object's downloads go with it
            clear()
        try:
            viewer = ObjectViewer(name, data, self._series or None, offer=self.offer, map_source=self._map)
            layout = viewer.panel()
        except Exception as error:
            self.param.update(message=readable_failure(error, f"opening {name}"), content=None)
            return
        self.viewer = viewer
        self._report_measurements(viewer)
        self.param.update(message="", content=layout)

    def _report_measurements(self, viewer) -> None:
        """A SEG opened with its series: its Measurements pre-fill the SR mode with a report
        referencing that SEG (its SOPInstanceUID and segment numbers) and, when the map is
        a DICOM Parametric Map, that map; the SR mode's file pool gets the series, the SEG
        (and the map), as for a SEG just written in SEG mode (preview.area)."""
        measured = getattr(viewer, "measurements", None)
        if measured is None or self.prefill_report is None:
            return
        import pydicom

        from preview.area import base_name

        def uid_of(data: bytes) -> str:
            return str(pydicom.dcmread(pydicom.filebase.DicomBytesIO(data), stop_before_pixels=True,
                                       specific_tags=["SOPInstanceUID"]).SOPInstanceUID)

        name, data = self._object
        series = measured.volume.series
        used = set(series.names)
        files = [(n, d) for n, d in self._series if n in used] or list(self._series)
        arguments = {"segmentation_file": base_name(name), "segmentation_uid": uid_of(data),
                     "source_series_uid": series.series_uid, "image_library": [base_name(n) for n in series.names]}
        files.append((base_name(name), data))
        if measured.pmap is not None and self._map is not None:
            from qidicom import reverse

            try:
                is_pm = reverse.object_kind(self._map) == "pm"
            except Exception:
                is_pm = False
            if is_pm and measured.pmap.metadata.get("MeasurementUnitsCode"):
                arguments.update(map_metadata=measured.pmap.metadata, map_file=base_name(self._map[0]),
                                 map_uid=uid_of(self._map[1]))
                files.append((base_name(self._map[0]), self._map[1]))
        measured.report_arguments = arguments
        measured.prefill = lambda document: self.prefill_report(document, files)

    def load_sample(self) -> dict[str, int]:
        """The sample SEG of the phantom CT, with its series."""
        inputs = {SERIES_ROLE: list(samples.study().ct_series), OBJECT_ROLE: [samples.sample_seg()]}
        self._series = inputs[SERIES_ROLE]
        self.take_files(OBJECT_ROLE, inputs[OBJECT_ROLE])
        return {role: len(pairs) for role, pairs in inputs.items()}


def content_view(object_name: str, message: str, content):
    if message:
        kind = "info" if message.startswith("Loading") else "danger" if object_name else "warning"
        return views.alert(views.escape(message), kind)
    if content is None:
        return views.markdown("**DICOM object:** none chosen yet.")
    return content


def view(state: OpenState, prefill_report=None) -> pn.viewable.Viewable:
    """The mode's page; ``prefill_report(document, files)`` takes the measurements of an opened
    SEG to the SR mode."""
    state.prefill_report = prefill_report
    forget = pn.widgets.Button(name="Forget the series", visible=pn.bind(bool, state.param.series_count))
    forget.on_click(lambda _event: state.clear_series())
    return pn.Column(
        views.markdown("## 2. See and save"),
        pn.Row(pn.bind(lambda count: views.markdown(f"**Source series:** {count} file{'s' if count != 1 else ''}."
                                                    if count else "**Source series:** none (the object is shown on its own grid)."),
                       state.param.series_count), forget),
        pn.bind(lambda name: views.markdown(f"**Map to measure:** {views.escape(name)}." if name else ""), state.param.map_name),
        pn.bind(content_view, state.param.object_name, state.param.message, state.param.content),
        sizing_mode="stretch_width",
        css_classes=["qi-app", "qi-mode-open"],
    )
