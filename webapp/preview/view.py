"""Bokeh figures for ``qidicom.preview`` data, inside Panel (see the package docstring)."""

from __future__ import annotations

import itertools
import json
import time
from typing import Callable

import numpy as np
import panel as pn
from bokeh import events
from bokeh.models import (ColorBar, ColumnDataSource, Image, Label, LinearColorMapper, PanTool, Plot,
                          Range1d, ResetTool, Span, Title)
from bokeh.palettes import Greys256, Viridis256

from qidicom import preview as qp

TRANSPARENT = "#00000000"
#: Screen pixels per figure side (the longer side of the plane's extent).
FIGURE_SIZE = 320
#: Each preview's models are named ``qi-<key>-...`` (several previews can share a document).
_KEYS = itertools.count(1)
#: The tag of the base colour mapper whose next tag is the preview's page-side description
#: (JSON, see ``SlicePreview.page_side``): webapp/page.js reads it.
PAGE_SIDE_TAG = "qi-page-side"
#: A drag across this many screen pixels changes the window by its width (or by 1, if narrower).
DRAG_SCALE = 200


def _picks(count: int, shown: int) -> np.ndarray:
    """Which of ``count`` pixels to draw as ``shown`` screen pixels: the one under each screen
    pixel's centre (what the canvas would pick from the full slice, without sending it)."""
    return np.floor((np.arange(shown) + 0.5) * count / shown).astype(np.intp)


def _hex(rgb) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(int(v) for v in rgb))


class PlaneFigure:
    """One plane: a figure with the series slice, overlay slices, map slice, crosshair and
    orientation letters. Coordinates are screen millimetres: x to the right, y up, the
    centre of pixel (row, column) at (column * dx, (rows - 1 - row) * dy)."""

    def __init__(self, owner: "SlicePreview", plane: str):
        self.owner = owner
        volume = owner.volume
        self.geometry = geometry = qp.plane_geometry(volume.affine, volume.shape, plane)
        dx, dy = geometry.column_spacing, geometry.row_spacing
        width, height = geometry.columns * dx, geometry.rows * dy
        scale = FIGURE_SIZE / max(width, height)
        self.extent = dict(x=-dx / 2, y=-dy / 2, dw=width, dh=height)
        # A bare Plot, not bokeh.plotting.figure: figure() imports pandas, which the app does not ship.
        self.figure = Plot(
            title=Title(text=plane.capitalize(), text_color="#ddd"),
            frame_width=max(60, int(width * scale)), frame_height=max(60, int(height * scale)),
            x_range=Range1d(-dx / 2, width - dx / 2, bounds="auto"), y_range=Range1d(-dy / 2, height - dy / 2, bounds="auto"),
            toolbar_location="above", match_aspect=True,
            background_fill_color="black", border_fill_color="#111", outline_line_color=None,
            name=f"qi-{owner.key}-{plane}")
        self.figure.add_tools(PanTool(), ResetTool())  # BoxZoomTool imports pandas too
        if owner.drag_mode == "window":
            self.figure.toolbar.active_drag = None  # a drag adjusts the window, not the view
        # A slice larger than the frame is sent at the frame's size (screen pixels): the page
        # colour-maps (on each window change) and draws that many pixels, not the full slice's.
        # The readout still reads the voxel under the pointer from the full data.
        self._on_screen = None
        if geometry.rows > self.figure.frame_height or geometry.columns > self.figure.frame_width:
            self._on_screen = np.ix_(_picks(geometry.rows, min(geometry.rows, self.figure.frame_height)),
                                     _picks(geometry.columns, min(geometry.columns, self.figure.frame_width)))
        key = owner.key
        self.base_source = ColumnDataSource({"image": [np.zeros((1, 1), np.float32)]}, name=f"qi-{key}-{plane}-base")
        self._image(self.base_source, owner.base_mapper, f"qi-{key}-{plane}-series")
        self.segment_sources = []
        self.segment_renderers = []
        for group in range(len(owner.overlay.label_maps) if owner.overlay else 0):
            source = ColumnDataSource({"image": [np.zeros((1, 1), np.uint8)]}, name=f"qi-{key}-{plane}-seg{group}")
            renderer = self._image(source, owner.segment_mapper, f"qi-{key}-{plane}-segments{group}",
                                   tags=[f"qi-{key}-segments"])
            renderer.glyph.global_alpha = owner.opacity
            self.segment_sources.append(source)
            self.segment_renderers.append(renderer)
        self.map_source = None
        if owner.pmap is not None:
            self.map_source = ColumnDataSource({"image": [np.zeros((1, 1), np.float32)]}, name=f"qi-{key}-{plane}-map")
            self.map_renderer = self._image(self.map_source, owner.map_mapper, f"qi-{key}-{plane}-pmap",
                                            tags=[f"qi-{key}-map"])
            self.map_renderer.glyph.global_alpha = owner.map_opacity
        self.vertical = Span(dimension="height", line_color="#ffcc00", line_alpha=0.6, line_width=1)
        self.horizontal = Span(dimension="width", line_color="#ffcc00", line_alpha=0.6, line_width=1)
        self.figure.add_layout(self.vertical)
        self.figure.add_layout(self.horizontal)
        letters = geometry.letters
        style = dict(text_color="#ffcc00", text_font_size="13px", text_font_style="bold", x_units="data", y_units="data")
        for text, x, y, align, baseline in (
            (letters["left"], -dx / 2, height / 2 - dy / 2, "left", "middle"),
            (letters["right"], width - dx / 2, height / 2 - dy / 2, "right", "middle"),
            (letters["top"], width / 2 - dx / 2, height - dy / 2, "center", "top"),
            (letters["bottom"], width / 2 - dx / 2, -dy / 2, "center", "bottom"),
        ):
            self.figure.add_layout(Label(x=x, y=y, text=text, text_align=align, text_baseline=baseline,
                                         x_offset=4 if align == "left" else -4 if align == "right" else 0,
                                         y_offset=-4 if baseline == "top" else 4 if baseline == "bottom" else 0, **style))
        self.letters = letters
        self.index = -1
        self.figure.on_event(events.Tap, self._tap)
        self.figure.on_event(events.MouseMove, self._move)
        self.figure.on_event(events.Pan, self._pan)

    def _image(self, source: ColumnDataSource, mapper: LinearColorMapper, name: str, tags=()):
        glyph = Image(image="image", color_mapper=mapper, tags=list(tags), **self.extent)
        return self.figure.add_glyph(source, glyph, name=name)

    # ---------------------------------------------------------------- coordinates

    def pixel_at(self, x: float, y: float) -> tuple[int, int] | None:
        """(row, column) under screen millimetres (x, y), or None outside the image."""
        g = self.geometry
        column = int(np.floor(x / g.column_spacing + 0.5))
        row = g.rows - 1 - int(np.floor(y / g.row_spacing + 0.5))
        if 0 <= row < g.rows and 0 <= column < g.columns:
            return row, column
        return None

    def voxel_at(self, x: float, y: float) -> tuple[int, int, int] | None:
        pixel = self.pixel_at(x, y)
        return None if pixel is None else self.geometry.voxel(self.index, *pixel)

    # ---------------------------------------------------------------- drawing

    def shown(self, image: np.ndarray) -> np.ndarray:
        """A slice as sent to the page: at most the frame's size, top row last (Bokeh's row 0
        is at the bottom), contiguous."""
        if self._on_screen is not None:
            image = image[self._on_screen]
        return np.ascontiguousarray(np.flipud(image))

    def show_slice(self, index: int) -> None:
        """Send this plane's slice ``index`` (series, overlays, map): the only pixel traffic."""
        owner, g = self.owner, self.geometry
        self.index = int(index)
        self.base_source.data = {"image": [self.shown(qp.real_slice(owner.volume, g, index))]}
        self.redraw_segments()
        if self.map_source is not None:
            values = g.take(owner.pmap.arrays(), index)
            self.map_source.data = {"image": [self.shown(values).astype(np.float32, copy=False)]}

    def redraw_segments(self) -> None:
        owner, g = self.owner, self.geometry
        if not self.segment_sources:
            return
        for group, (source, array) in enumerate(zip(self.segment_sources, owner.overlay.arrays())):
            labels = g.take(array, self.index)
            if self._on_screen is not None:
                labels = labels[self._on_screen]
            if owner.outline:  # drawn on the pixels shown, so that no outline pixel is left out
                labels = qp.outline(np.ascontiguousarray(labels))
            source.data = {"image": [np.ascontiguousarray(np.flipud(labels))]}

    def place_crosshair(self, ijk) -> None:
        _, row, column = self.geometry.locate(ijk)
        self.vertical.location = column * self.geometry.column_spacing
        self.horizontal.location = (self.geometry.rows - 1 - row) * self.geometry.row_spacing

    # ---------------------------------------------------------------- events

    def _tap(self, event) -> None:
        voxel = self.voxel_at(event.x, event.y)
        if voxel is not None:
            self.owner.set_position(voxel, source=self)

    def _move(self, event) -> None:
        voxel = self.voxel_at(event.x, event.y)
        if voxel is not None:
            self.owner.show_readout(voxel)

    def _pan(self, event) -> None:
        if self.owner.drag_mode == "window":
            self.owner.drag_window(event.delta_x or 0.0, event.delta_y or 0.0)


class SlicePreview:
    """Three linked planes of ``volume`` (a ``qidicom.preview.SeriesVolume``) with the
    segments of ``overlay`` and the map of ``pmap``; ``panel()`` is the layout to mount."""

    def __init__(self, volume: qp.SeriesVolume, overlay: qp.Overlay | None = None, pmap: qp.MapOverlay | None = None,
                 title: str = "Preview", timing: Callable[[str, float], None] | None = None):
        self.volume, self.overlay, self.pmap, self.title = volume, overlay, pmap, title
        self.key = key = next(_KEYS)
        self.timing = timing
        self.opacity, self.outline = 0.5, False
        self.map_opacity = 1.0 if volume.is_blank else 0.7  # over nothing, the map as it is
        self.drag_mode = "window"
        self.hidden: set[int] = set()
        centre, width = qp.default_window(volume)
        greys = list(reversed(Greys256)) if volume.inverted else Greys256  # Greys256 runs black to white
        self.base_mapper = LinearColorMapper(palette=greys, low=centre - width / 2, high=centre + width / 2,
                                             name=f"qi-{key}-window")
        # page.js drags the window itself (the mapper's range), as it applies presets: the
        # window's text follows the range, whichever side changed it.
        for end in ("low", "high"):
            self.base_mapper.on_change(end, self._window_moved)
        self.segment_mapper = None
        if overlay is not None and overlay.segments:
            top = max(overlay.segments)
            self.segment_mapper = LinearColorMapper(palette=self._segment_palette(), low=-0.5, high=top + 0.5,
                                                    name=f"qi-{key}-segment-colours")
        self.map_mapper = None
        if pmap is not None:
            low, high = pmap.value_range()
            self.map_mapper = LinearColorMapper(palette=Viridis256, low=low, high=high if high > low else low + 1,
                                                low_color=TRANSPARENT, nan_color=TRANSPARENT, name=f"qi-{key}-map-colours")
        self.planes = {name: PlaneFigure(self, name) for name in qp.PLANES}
        self._build_widgets()
        self.base_mapper.tags = [PAGE_SIDE_TAG, json.dumps(self.page_side())]
        start = tuple(n // 2 for n in volume.shape)
        self.position = start
        for plane in self.planes.values():
            plane.show_slice(plane.geometry.locate(start)[0])
            plane.place_crosshair(start)
        self.show_readout(start)

    # ---------------------------------------------------------------- widgets

    def _segment_palette(self) -> list[str]:
        top = max(self.overlay.segments)
        palette = [TRANSPARENT] * (top + 1)
        for number, info in self.overlay.segments.items():
            if number not in self.hidden:
                palette[number] = _hex(info.colour)
        return palette

    def _build_widgets(self) -> None:
        volume = self.volume
        self.sliders = {}
        for name, plane in self.planes.items():
            slider = pn.widgets.IntSlider(name=f"{name.capitalize()} slice", start=0, end=max(plane.geometry.count - 1, 1),
                                          value=plane.geometry.count // 2, disabled=plane.geometry.count < 2,
                                          sizing_mode="stretch_width", css_classes=[f"qi-slider-{name}"])
            slider.param.watch(lambda event, n=name: self.set_slice(n, event.new), "value")
            self.sliders[name] = slider
        presets = {"Series window" if volume.window else "Default": qp.default_window(volume)}
        if volume.modality == "CT" or volume.units == "HU":
            presets.update({f"{k} ({int(w)}/{int(c)})": (c, w) for k, (c, w) in qp.WINDOW_PRESETS.items()})
        presets["Automatic (1-99 %)"] = None
        self.presets = presets
        key = self.key
        self.preset = pn.widgets.Select(name="Window", options=list(presets), value=list(presets)[0], width=200,
                                        css_classes=[f"qi-ctl-{key}-window"])
        self.preset.param.watch(lambda event: self.set_preset(event.new), "value")
        centre, width = qp.default_window(volume)
        self.window_text = pn.pane.HTML(self._window_label(centre, width), margin=(0, 5))
        self.drag = pn.widgets.RadioButtonGroup(name="Drag", options=["window", "pan"], value="window", button_type="light",
                                                css_classes=[f"qi-ctl-{key}-drag"])
        self.drag.param.watch(self._set_drag, "value")
        self.readout = pn.pane.HTML("", sizing_mode="stretch_width", css_classes=["qi-readout"])
        # Without a series (an object opened alone) there is no image to window.
        controls = [] if volume.is_blank else [self.preset, self.window_text,
                                            pn.Row(pn.pane.Markdown("Drag:", margin=(8, 5)), self.drag)]
        if self.overlay is not None and self.overlay.segments:
            names = {f"{n} {s.label}": n for n, s in self.overlay.segments.items()}
            self._segment_names = names
            self.visible = pn.widgets.CheckBoxGroup(name="Segments", options=list(names), value=list(names), inline=False,
                                                    css_classes=[f"qi-ctl-{key}-visible"])
            self.visible.param.watch(
                lambda event: self.set_visible([self._segment_names[v] for v in event.new if v in self._segment_names]),
                "value")
            self.opacity_slider = pn.widgets.FloatSlider(name="Opacity", start=0, end=1, step=0.05, value=self.opacity,
                                                         css_classes=[f"qi-ctl-{key}-opacity"])
            self.opacity_slider.param.watch(lambda event: self.set_opacity(event.new), "value")
            self.style = pn.widgets.RadioButtonGroup(name="Style", options=["fill", "outline"], value="fill", button_type="light")
            self.style.param.watch(lambda event: self.set_outline(event.new == "outline"), "value")
            self.jump = pn.widgets.Select(name="Jump to segment", options=["(choose)"] + list(names), value="(choose)")
            self.jump.param.watch(self._jump_chosen, "value")
            controls += [self.opacity_slider, self.style, self.jump, self.visible]
        if self.pmap is not None:
            low, high = self.map_mapper.low, self.map_mapper.high
            step = (high - low) / 200 or 1
            self.threshold = pn.widgets.FloatSlider(name=f"Map threshold ({self.pmap.units or 'units unknown'})", start=low, end=high,
                                                    step=step, value=low, css_classes=[f"qi-ctl-{key}-threshold"])
            self.threshold.param.watch(lambda event: self.set_threshold(event.new), "value")
            self.map_opacity_slider = pn.widgets.FloatSlider(name="Map opacity", start=0, end=1, step=0.05,
                                                             value=self.map_opacity, css_classes=[f"qi-ctl-{key}-map-opacity"])
            self.map_opacity_slider.param.watch(lambda event: self.set_map_opacity(event.new), "value")
            controls += [self.threshold, self.map_opacity_slider]
        self.controls = pn.Column(*controls, width=240)

    def page_side(self) -> dict:
        """What webapp/page.js needs to apply window, opacity, visibility and threshold
        changes in the page at once (no round trip to this worker; the change then comes
        back here as the models' new values, so this side stays the same): the preview's
        key (its widgets carry the CSS class ``qi-ctl-<key>-<control>``), each preset's
        mapper range, the full segment palette and the segment number of each checkbox."""
        windows = {}
        for name, window in self.presets.items():
            centre, width = window if window is not None else qp.auto_window(self.volume)
            width = max(float(width), 1e-6)
            windows[name] = [centre - width / 2, centre + width / 2]
        side: dict = {"key": self.key, "window": {"mapper": self.base_mapper.name, "presets": windows,
                                                  "drag": not self.volume.is_blank, "drag_scale": DRAG_SCALE}}
        if self.segment_mapper is not None:
            hidden, self.hidden = self.hidden, set()
            side["segments"] = {"mapper": self.segment_mapper.name, "glyphs": f"qi-{self.key}-segments",
                                "palette": self._segment_palette(), "transparent": TRANSPARENT,
                                "numbers": list(self._segment_names.values())}
            self.hidden = hidden
        if self.map_mapper is not None:
            side["map"] = {"mapper": self.map_mapper.name, "glyphs": f"qi-{self.key}-map"}
        return side

    def _jump_chosen(self, event) -> None:
        if event.new in self._segment_names:
            self.jump_to(self._segment_names[event.new])
            self.jump.value = "(choose)"  # so the same segment can be chosen again

    def _window_label(self, centre: float, width: float) -> str:
        units = f" {self.volume.units}" if self.volume.units else ""
        return f"<span class='qi-window-text'>Level {centre:.4g}, width {width:.4g}{units}</span>"

    def panel(self) -> pn.viewable.Viewable:
        """The layout: three planes with their sliders, the controls, the readout."""
        columns = []
        for name, plane in self.planes.items():
            items = [pn.pane.Bokeh(plane.figure), self.sliders[name]]
            columns.append(pn.Column(*items, width=plane.figure.frame_width + 40))
        if self.pmap is not None:
            # In a figure of its own, so that the planes keep their frames (and aspect).
            axial = self.planes["axial"].figure
            holder = Plot(frame_width=1, frame_height=axial.frame_height, toolbar_location=None, min_border_left=0,
                          outline_line_color=None, title=Title(text=" "), name="qi-map-colour-bar",
                          x_range=Range1d(0, 1), y_range=Range1d(0, 1))
            bar = ColorBar(color_mapper=self.map_mapper, title=f"{self.pmap.quantity or 'map'} ({self.pmap.units or 'units unknown'})",
                           location=(0, 0), orientation="vertical", width=14)
            holder.add_layout(bar, "right")
            self.colour_bar = bar
            columns[0] = pn.Row(columns[0], pn.pane.Bokeh(holder))
        return pn.Column(
            pn.pane.Markdown(f"### {self.title}", disable_math=True),
            # Two by two (as viewers' four-up layouts): three planes and the controls in one row
            # are wider than the page. A GridBox, not a FlexBox: FlexBox is a ReactiveHTML,
            # which BokehJS renders by evaluating code, which the page's policy forbids.
            pn.GridBox(*columns, self.controls, ncols=2),
            self.readout,
            sizing_mode="stretch_width", css_classes=["qi-preview"],
        )

    # ---------------------------------------------------------------- changes (page-side where possible)

    def _timed(self, what: str, started: float) -> None:
        if self.timing is not None:
            self.timing(what, time.perf_counter() - started)

    def set_slice(self, plane: str, index: int) -> None:
        """A new slice of one plane: its pixels, and the crosshair in the other two."""
        started = time.perf_counter()
        figure = self.planes[plane]
        if index == figure.index:
            return
        ijk = list(self.position)
        ijk[figure.geometry.slice_axis] = int(index)
        self.position = tuple(ijk)
        figure.show_slice(index)
        for other in self.planes.values():
            other.place_crosshair(self.position)
        self.show_readout(self.position)
        self._timed("slice", started)

    def set_position(self, ijk, source: PlaneFigure | None = None) -> None:
        """Crosshair to a voxel: every plane whose slice changes gets new pixels."""
        started = time.perf_counter()
        self.position = tuple(int(v) for v in ijk)
        for name, plane in self.planes.items():
            index = plane.geometry.locate(self.position)[0]
            if index != plane.index:
                plane.show_slice(index)
                self.sliders[name].param.update(value=index)  # no second draw: show_slice is done
            plane.place_crosshair(self.position)
        self.show_readout(self.position)
        self._timed("position", started)

    def set_window(self, centre: float, width: float) -> None:
        """Window/level: the mapper's range only (no pixels)."""
        started = time.perf_counter()
        width = max(float(width), 1e-6)
        self.base_mapper.update(low=centre - width / 2, high=centre + width / 2)
        self.window_text.object = self._window_label(centre, width)
        self._timed("window", started)

    @property
    def window(self) -> tuple[float, float]:
        low, high = self.base_mapper.low, self.base_mapper.high
        return (low + high) / 2, high - low

    def set_preset(self, name: str) -> None:
        window = self.presets[name]
        self.set_window(*(window if window is not None else qp.auto_window(self.volume)))

    def drag_window(self, dx: float, dy: float) -> None:
        """Drag right widens, drag up raises the level (as in most viewers), scaled to the
        width. In the app the page does this itself (page.js, the same formula)."""
        centre, width = self.window
        factor = max(width, 1.0) / DRAG_SCALE
        self.set_window(centre - dy * factor, width + dx * factor)

    def _window_moved(self, _attr, _old, _new) -> None:
        self.window_text.object = self._window_label(*self.window)

    def _set_drag(self, event) -> None:
        self.drag_mode = event.new
        for plane in self.planes.values():
            toolbar = plane.figure.toolbar
            toolbar.active_drag = None if event.new == "window" else toolbar.tools[0]

    def set_opacity(self, value: float) -> None:
        started = time.perf_counter()
        self.opacity = float(value)
        for plane in self.planes.values():
            for renderer in plane.segment_renderers:
                renderer.glyph.global_alpha = self.opacity
        self._timed("opacity", started)

    def set_visible(self, numbers) -> None:
        """Per-segment visibility: palette entries only (no pixels)."""
        started = time.perf_counter()
        self.hidden = set(self.overlay.segments) - set(int(n) for n in numbers)
        self.segment_mapper.palette = self._segment_palette()
        self._timed("visibility", started)

    def relabel(self, overlay: qp.Overlay) -> None:
        """New labels and colours of the same segments (``qidicom.preview.relabelled``: the same
        label maps and numbers): the palette, the segment lists and the readout change, no
        pixels move and no figure is made again (the form edits descriptions as one types)."""
        if self.overlay is None or set(overlay.segments) != set(self.overlay.segments):
            raise ValueError("relabel takes the same segments with new descriptions")
        self.overlay = overlay
        self.segment_mapper.palette = self._segment_palette()
        names = {f"{n} {s.label}": n for n, s in overlay.segments.items()}
        self._segment_names = names
        self.visible.param.update(options=list(names), value=[name for name, n in names.items() if n not in self.hidden])
        self.jump.options = ["(choose)"] + list(names)
        self.base_mapper.tags = [PAGE_SIDE_TAG, json.dumps(self.page_side())]
        self.show_readout(self.position)

    def set_outline(self, outline: bool) -> None:
        self.outline = bool(outline)
        for plane in self.planes.values():
            plane.redraw_segments()

    def set_threshold(self, value: float) -> None:
        """Map values below the threshold become transparent: the mapper's low only."""
        started = time.perf_counter()
        self.map_mapper.low = float(value)
        self._timed("threshold", started)

    def set_map_opacity(self, value: float) -> None:
        self.map_opacity = float(value)
        for plane in self.planes.values():
            plane.map_renderer.glyph.global_alpha = self.map_opacity

    def jump_to(self, number: int) -> None:
        """The slices through a segment's centre."""
        self.set_position(self.overlay.centre(number))

    def show_readout(self, ijk) -> None:
        values = qp.readout(self.volume, ijk, self.overlay, self.pmap)
        self.last_readout = values
        self.readout.object = f"<span class='qi-readout-text'>{_escape(qp.format_readout(values))}</span>"


def _escape(text: str) -> str:
    import html

    return html.escape(text)
