"""PM mode: a parametric map (NIfTI/NRRD) + its reference series (or one reference image)
+ pm metadata -> DICOM Parametric Map, with the pixel data type and compression chosen."""

from __future__ import annotations

import panel as pn
import param

import samples
import views
from base import ConversionState, Pairs, readable_failure
from seg_mode import SeriesInput, grid_text


def map_row(name: str, volume) -> dict:
    import numpy as np

    array = np.asarray(volume.array)
    finite = array[np.isfinite(array)] if array.dtype.kind == "f" else array
    span = f"values {finite.min():.4g} to {finite.max():.4g}" if finite.size else "no finite values"
    return {"name": name, "grid": grid_text(volume), "detail": f"{array.dtype}, {span}"}


class PmState(ConversionState, SeriesInput):
    conversion_name = "itkimage2paramap"
    input_params = ("series", "volume", "map_message")

    volume = param.Parameter(default=None, doc="the parsed map (a qidicom Volume)")
    map_rows = param.List(default=[])
    map_message = param.String(default="")

    def set_input(self, role: str, pairs: Pairs) -> None:
        # Spacing is checked by the writer, once it knows whether the files are a full
        # series or a block of one (see qidicom.pm.place_map).
        if role == "series":
            self._read_series(pairs, match=self.volume, check_spacing=False)
        elif role == "map":
            self._read_map(pairs[-1] if pairs else None)
        else:
            super().set_input(role, pairs)

    def _read_map(self, pair) -> None:
        from qidicom.readers import read_image

        if pair is None:
            self.param.update(volume=None, map_rows=[], map_message="")
            return
        try:
            volume = read_image(pair)
            row = map_row(pair[0], volume)
        except Exception as error:
            self.param.update(volume=None, map_rows=[], map_message=readable_failure(error, "reading the map"))
            return
        self.param.update(volume=volume, map_rows=[row], map_message="")
        self._rematch_series(volume, check_spacing=False)

    def missing(self) -> list[str]:
        reasons = []
        if self.series is None:
            reasons.append("the reference series " + ("could not be used" if self.series_message else "is not chosen yet"))
        if self.map_message:
            reasons.append("the map could not be read")
        elif self.volume is None:
            reasons.append("no parametric map yet")
        return reasons

    def write(self, options, progress):
        writer = self.conversion.resolve("writer")
        return writer(self.volume, self.document, self.series, progress=progress, **options)

    def load_sample(self) -> dict[str, int]:
        inputs = samples.pm_inputs()
        for role, pairs in inputs.items():
            self.take_files(role, pairs)
        return {role: len(pairs) for role, pairs in inputs.items()}


def view(state: PmState) -> pn.viewable.Viewable:
    options = [views.option_widget(state, option) for option in state.conversion.app_options]
    form = views.editor_view(state)
    return pn.Column(
        views.markdown("## 2. Check"),
        pn.bind(views.series_view, "Reference series", state.param.series_summary, state.param.series_message,
                state.param.series_warnings, state.param.series_count),
        pn.bind(views.images_view, "Parametric map", state.param.map_rows, state.param.map_message),
        views.preview_card(state),
        pn.bind(views.metadata_view, state.param.metadata_name, state.param.document, state.param.metadata_problems,
                state.param.metadata_message),
        *([form] if form is not None else []),
        *views.convert_controls(state, options),
        sizing_mode="stretch_width",
        css_classes=["qi-app", "qi-mode-pm"],
    )
