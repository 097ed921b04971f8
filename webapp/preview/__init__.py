"""The slice preview: three linked patient planes of a series with its segments and map.

Mount it with one call::

    from preview import SlicePreview
    view = SlicePreview(series_volume, overlay=overlay, pmap=map_overlay)
    layout = view.panel()

The data are ``qidicom.preview``'s objects (the series' pixels kept once, overlays on its
grid). The Bokeh models are built so that what crosses to the page is small: window and
level are the base colour mapper's ``low``/``high``; opacity is the overlay glyph's
``global_alpha``; hiding a segment makes its palette entry transparent; the map threshold
is its mapper's ``low`` (below it is transparent). Those changes are made by the page
itself (webapp/page.js, from the description ``SlicePreview.page_side`` puts in the base
mapper's tags), at once, and reach this side as model changes. Only a new slice (slider,
keys on the focused slider, click or jump) waits for the worker and sends pixels, only for
the planes whose slice changed, in one patch (webapp/panel_bridge.py). No CustomJS (the
page's Content Security Policy forbids eval), so other interactions are Python callbacks
on Bokeh events.
"""

from preview.view import PlaneFigure, SlicePreview  # noqa: F401
