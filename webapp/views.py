"""Small view functions shared by the modes: each is a function of state values, bound
with ``pn.bind``, so it re-renders only when those values change."""

from __future__ import annotations

import html
import operator
import sys

import panel as pn


def escape(value) -> str:
    return html.escape(str(value))


# Math rendering off everywhere: text here includes file names and messages, and BokehJS
# would fetch MathJax from a CDN for anything between $$ delimiters.
def markdown(text, **kwargs) -> pn.pane.Markdown:
    return pn.pane.Markdown(text, disable_math=True, **kwargs)


def alert(text, alert_type: str, **kwargs) -> pn.pane.Alert:
    return pn.pane.Alert(text, alert_type=alert_type, disable_math=True, **kwargs)


def series_view(title: str, summary, message, warnings, count):
    """A DICOM series as found: patient, modality, grid; or why it could not be used."""
    if message:
        return alert(f"**{escape(title)}:** {escape(message)}", "danger")
    if not summary:
        return markdown(f"**{escape(title)}:** none chosen yet.")
    spacing = " × ".join(f"{v:g}" for v in summary["pixel_spacing_mm"])
    rows = [
        ("Patient", f"{summary['patient_name'] or '(no name)'} ({summary['patient_id'] or 'no ID'})"),
        ("Modality", summary["modality"]),
        ("Series", f"{summary['series_description'] or '(no description)'} #{summary['series_number']}"),
        ("Size", f"{summary['columns']} × {summary['rows']} pixels, {summary['slices']} slices"),
        ("Pixel spacing", f"{spacing} mm"),
    ]
    table = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    notes = "".join(f"<li>{escape(w)}</li>" for w in warnings)
    return pn.pane.HTML(
        f"<h3>Series found ({count} file{'s' if count != 1 else ''})</h3>"
        f"<table class='qi-summary'>{table}</table>" + (f"<ul class='qi-notes'>{notes}</ul>" if notes else ""),
        sizing_mode="stretch_width",
    )


def images_view(title: str, rows: list[dict], message: str):
    """Loaded NIfTI/NRRD images: name, grid and, for label maps, the label values found."""
    if message:
        return alert(f"**{escape(title)}:** {escape(message)}", "danger")
    if not rows:
        return markdown(f"**{escape(title)}:** none chosen yet.")
    body = "".join(
        f"<tr><td>{escape(row['name'])}</td><td>{escape(row['grid'])}</td><td>{escape(row.get('detail', ''))}</td></tr>"
        for row in rows)
    return pn.pane.HTML(f"<h3>{escape(title)}</h3><table class='qi-summary qi-images'>{body}</table>",
                        sizing_mode="stretch_width")


def metadata_view(name, document, problems, message):
    label = f"Metadata JSON: {name}" if name else "Metadata"
    if message:
        items = "".join(f"<li><code>{escape(p)}</code></li>" for p in problems)
        return alert(f"<strong>{escape(label)}</strong>: {escape(message)}"
                     + (f"<ul class='qi-problems'>{items}</ul>" if items else ""), "danger")
    if document is None:
        return markdown("**Metadata JSON:** none chosen yet.")
    if not problems:
        return alert(f"**{escape(label)}** is valid." if name else "**Metadata** is valid.", "success")
    items = "".join(f"<li><code>{escape(p)}</code></li>" for p in problems)
    count = len(problems)
    return alert(f"<strong>{escape(label)}</strong>: {count} problem{'s' if count != 1 else ''} to fix"
                 f"<ul class='qi-problems'>{items}</ul>", "danger")


def status_html(busy: bool, progress: float, message: str, url: str, name: str, size: int, warnings: list,
                stack_ready: bool) -> str:
    """The conversion's progress, then its download link, as one text. The page applies a new
    text in place; a view shown, hidden or replaced instead makes BokehJS lay out the whole
    document again, 0.3-0.4 s beside a preview, which held the link back that long."""
    if not stack_ready:
        return "<p>Loading the DICOM libraries…</p>"
    if url:
        notes = "".join(f"<li>{escape(w)}</li>" for w in warnings)
        return (f"<div class='qi-result'>Done: <a class='qi-download' href='{escape(url)}' download='{escape(name)}'>"
                f"Download {escape(name)}</a> ({size / 1e6:.2f} MB)"
                + (f"<ul class='qi-notes'>{notes}</ul>" if notes else "") + "</div>")
    if busy:
        percent = round(progress * 100)  # (the state keeps it within 0-1)
        return (f"<div class='qi-progress'><progress max='100' value='{percent}' style='width: 100%'></progress>"
                f"<div>Converting: {escape(message)} ({percent}%)</div></div>")
    return ""


def failure_text(error: str) -> str:
    return "<strong>Conversion failed.</strong> " + escape(error).replace("\n", "<br>") if error else ""


def status_views(state) -> list[pn.viewable.Viewable]:
    """Progress and result (one text, changed in place), and the failure (shown only then)."""
    status = pn.pane.HTML(
        pn.bind(status_html, state.param.busy, state.param.progress, state.param.progress_message, state.param.result_url,
                state.param.result_name, state.param.result_size, state.param.result_warnings, state.param.stack_ready),
        sizing_mode="stretch_width", css_classes=["qi-status"])
    failure = alert(pn.bind(failure_text, state.param.error), "danger",
                    visible=pn.bind(bool, state.param.error), sizing_mode="stretch_width")
    return [status, failure]


def option_widget(state, option) -> pn.viewable.Viewable:
    """A conversion option as the CLI describes it: choices as buttons, on/off as a checkbox."""
    parameter = state.param[option.dest]
    if option.type == "choice":
        labels = {option.choice_labels.get(value, value): value for value in option.choices}
        widget = pn.widgets.RadioButtonGroup.from_param(parameter, options=labels, name=option.label)
        return pn.Row(markdown(option.label, width=150), widget)
    return pn.widgets.Checkbox.from_param(parameter, name=option.label)


def needs_script_evaluation(layout: pn.viewable.Viewable) -> list[str]:
    """Components BokehJS can only render by evaluating generated code (``new Function``),
    which the page's Content Security Policy forbids (no 'unsafe-eval'): one would stop the
    whole view from rendering."""
    from panel.reactive import ReactiveHTML

    return sorted({type(item).__name__ for item in layout.select(ReactiveHTML)})


def editor_view(state) -> pn.viewable.Viewable | None:
    """The metadata form editor, when this build has it and it can run under the page's policy."""
    if state.editor is None:
        return None
    try:
        layout = state.editor.panel()
        refused = needs_script_evaluation(layout)
    except Exception:
        from base import log_exception

        log_exception("the metadata form could not be built")
        return alert("The metadata form could not be built (details are in the browser console); "
                     "load a metadata JSON file instead.", "warning")
    if refused:
        print(f"qidicom: the metadata form is left out: {', '.join(refused)} need script evaluation, "
              "which this page's security policy forbids", file=sys.stderr)
        return alert("The metadata form is not available in this build; load a metadata JSON file instead.", "warning")
    return pn.Card(layout, title="Metadata form", collapsed=False, sizing_mode="stretch_width")


def convert_controls(state, options: list) -> list:
    """The options, the Convert button (disabled with the reason shown), progress, result."""
    button = pn.widgets.Button(name=f"Convert to {state.conversion.title}", button_type="primary",
                               disabled=pn.bind(operator.not_, state.param.can_convert))
    button.on_click(lambda _event: state.start())
    # Always shown, its text empty when nothing blocks (see status_html: no layout per change).
    reason = pn.pane.HTML(pn.bind(lambda text: f"<div>{escape(text)}</div>" if text else "", state.param.blocked_reason),
                          css_classes=["qi-blocked"], sizing_mode="stretch_width", margin=(0, 10))
    return [
        markdown("## 3. Convert"),
        *options,
        button,
        reason,
        *status_views(state),
    ]


class Downloads:
    """The files one part of the page offers, as blob: URL links (as the conversions' results
    are). A URL lives while its link is shown: offering a file of the same name again revokes
    the old URL, and ``clear()`` revokes them all when that part of the page is replaced."""

    def __init__(self) -> None:
        self.urls: dict[str, str] = {}

    def __call__(self, filename: str, data: bytes, mime: str) -> pn.pane.HTML:
        from base import make_download_url, revoke_download_url

        old = self.urls.pop(filename, None)
        if old:
            revoke_download_url(old)
        url = self.urls[filename] = make_download_url(data, mime)
        return pn.pane.HTML(f"<a class='qi-file-download' href='{escape(url)}' download='{escape(filename)}'>"
                            f"Download {escape(filename)}</a> ({len(data) / 1e3:.1f} kB)", margin=(8, 10))

    def clear(self) -> None:
        from base import revoke_download_url

        for url in self.urls.values():
            revoke_download_url(url)
        self.urls.clear()


def preview_card(state, prefill_report=None) -> pn.Card:
    """The mode's slice preview (webapp/preview/area.py), of its inputs and of what was written."""
    from preview.area import PreviewArea

    area = PreviewArea(state, offer=Downloads(), prefill_report=prefill_report)
    return pn.Card(area.panel(), title="Preview", collapsed=False, sizing_mode="stretch_width",
                   css_classes=["qi-preview-card"])
