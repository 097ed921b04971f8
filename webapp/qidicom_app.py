"""The browser app: label map + DICOM series + metadata JSON -> DICOM SEG, under Pyodide.

State lives in one ``param.Parameterized``; every view is a small function of that state,
bound with ``pn.bind``. Files never travel through Bokeh messages: the page hands the
browser's File objects to the worker (worker.js), which reads them and calls
``receive_files``. The conversion itself is ``qidicom.seg.segmentation_from_files``.
"Load sample data" makes qidicom's phantom study (``qidicom.samples``) right here, so every
build has a sample and nothing is downloaded for it.

qidicom (and with it pydicom, highdicom, nibabel) is imported only after the first paint,
by ``load_conversion_stack``, so the page becomes usable sooner.
"""

from __future__ import annotations

import asyncio
import functools
import html
import json
import operator
import sys
import time
import traceback

import panel as pn
import param

SEGMENTATION_TYPES = {"Binary": "binary", "Label map": "labelmap", "Fractional": "fractional"}
COMPRESSIONS = {"None": "none", "Deflate": "deflate", "RLE": "rle"}
FRACTIONAL_TYPES = {"Probability": "PROBABILITY", "Occupancy": "OCCUPANCY"}


def log_exception(context: str) -> None:
    """Full tracebacks go to the browser console, never to the person."""
    print(f"qidicom: {context}", file=sys.stderr)
    traceback.print_exc()


class ConverterState(param.Parameterized):
    series_files = param.List(default=[], doc="(name, bytes) of the reference DICOM files")
    series_summary = param.Dict(default=None, allow_None=True)
    series_message = param.String(default="")
    series_warnings = param.List(default=[])

    label_files = param.List(default=[], doc="(name, bytes) of the label map(s)")
    label_message = param.String(default="")

    metadata_file = param.Parameter(default=None, doc="(name, bytes) of the metadata JSON")
    metadata_problems = param.List(default=[])
    metadata_message = param.String(default="")

    segmentation_type = param.Selector(default="binary", objects=list(SEGMENTATION_TYPES.values()))
    compress = param.Selector(default="none", objects=list(COMPRESSIONS.values()))
    fractional_type = param.Selector(default="PROBABILITY", objects=list(FRACTIONAL_TYPES.values()))
    skip_empty = param.Boolean(default=True, doc="leave out frames with no segmented pixel")
    use_label_id_as_segment_number = param.Boolean(default=False)

    stack_ready = param.Boolean(default=False, doc="qidicom and its dependencies are imported")
    busy = param.Boolean(default=False)
    progress = param.Number(default=0.0, bounds=(0, 1))
    progress_message = param.String(default="")
    error = param.String(default="")
    result_name = param.String(default="")
    result_url = param.String(default="")
    result_size = param.Integer(default=0)
    result_warnings = param.List(default=[])

    can_convert = param.Boolean(default=False, doc="every input is there and valid, and nothing runs")

    @param.depends("series_summary", "label_files", "metadata_file", "metadata_problems",
                   "metadata_message", "busy", "stack_ready", watch=True)
    def _update_can_convert(self) -> None:
        self.can_convert = bool(
            self.stack_ready and not self.busy and self.series_summary and self.label_files
            and self.metadata_file and not self.metadata_problems and not self.metadata_message
        )

    # ----------------------------------------------------------------------- inputs

    def receive_files(self, role: str, items) -> None:
        """Files read by the worker: ``items`` is a JS array of [name, Uint8Array]."""
        pairs = [(str(name), data.to_bytes()) for name, data in items]
        self.take_files(role, pairs)

    def take_files(self, role: str, pairs: list[tuple[str, bytes]]) -> None:
        self.error = ""
        if role == "series":
            self._set_series(pairs)
        elif role == "labelmap":
            self._set_labels(pairs)
        elif role == "metadata":
            self._set_metadata(pairs[-1] if pairs else None)
        else:
            raise ValueError(f"unknown input role {role!r}")

    def load_sample(self) -> dict[str, int]:
        """Take the phantom study's CT series, label map and seg metadata exactly as if the
        person had chosen those files; returns how many files each input got."""
        inputs = sample_inputs()
        for role, pairs in inputs.items():
            self.take_files(role, pairs)
        return {role: len(pairs) for role, pairs in inputs.items()}

    def _set_series(self, pairs: list[tuple[str, bytes]]) -> None:
        from qidicom.errors import QidicomError
        from qidicom.readers import read_dicom_series

        self.series_files = pairs
        self.series_summary, self.series_warnings, self.series_message = None, [], ""
        try:
            series = read_dicom_series(pairs)
        except QidicomError as error:
            self.series_message = str(error)
        except Exception:
            log_exception("reading the DICOM series failed")
            self.series_message = "These files could not be read as a DICOM series (details are in the browser console)."
        else:
            self.series_summary = series.summary()
            self.series_warnings = list(series.warnings)

    def _set_labels(self, pairs: list[tuple[str, bytes]]) -> None:
        self.label_files = pairs
        self.label_message = ""
        unknown = [name for name, _ in pairs if not name.lower().endswith((".nrrd", ".nhdr", ".nii", ".nii.gz"))]
        if unknown:
            self.label_message = f"Not a NIfTI or NRRD file name: {', '.join(unknown)}. It will be tried anyway."

    def _set_metadata(self, pair: tuple[str, bytes] | None) -> None:
        from qidicom import metadata
        from qidicom.errors import MetadataError, QidicomError

        self.metadata_file = pair
        self.metadata_problems, self.metadata_message = [], ""
        if pair is None:
            return
        try:
            document = metadata.load_json(pair[1], name=pair[0])
            self.metadata_problems = metadata.validate(document, "seg")
        except MetadataError as error:
            self.metadata_message = str(error)
            self.metadata_problems = list(error.problems)
        except QidicomError as error:
            self.metadata_message = str(error)
        except Exception:
            log_exception("reading the metadata failed")
            self.metadata_message = "The metadata could not be read (details are in the browser console)."

    # ----------------------------------------------------------------------- converting

    def start_conversion(self, _event=None) -> None:
        if self.can_convert:
            # Run after this click's message is handled, so "busy" reaches the page first.
            asyncio.get_event_loop().create_task(self.convert())

    async def convert(self) -> None:
        from panel.io.state import set_curdoc

        with set_curdoc(DOCUMENT):
            await self._convert()

    async def _convert(self) -> None:
        from qidicom.errors import MetadataError, QidicomError
        from qidicom.seg import segmentation_from_files

        if self.result_url:
            revoke_download_url(self.result_url)
        # One batched update per state change: every bound view re-renders once, not per field.
        self.param.update(busy=True, error="", progress=0.0, progress_message="starting", result_url="",
                          result_name="", result_size=0, result_warnings=[])
        await asyncio.sleep(0.05)
        started = time.perf_counter()
        try:
            result = segmentation_from_files(
                self.label_files, self.metadata_file, self.series_files,
                segmentation_type=self.segmentation_type, fractional_type=self.fractional_type,
                compress=self.compress, skip_empty=self.skip_empty,
                use_label_id_as_segment_number=self.use_label_id_as_segment_number,
                progress=self._report,
            )
        except MetadataError as error:
            self.error = str(error) + "".join(f"\n- {problem}" for problem in error.problems)
        except QidicomError as error:
            self.error = str(error)
        except MemoryError:
            log_exception("out of memory")
            self.error = "The browser ran out of memory for this conversion. Try the command-line tool for inputs this large."
        except Exception as error:
            log_exception("conversion failed")
            self.error = (f"The conversion failed unexpectedly ({type(error).__name__}). "
                          "Details are in the browser console; please report them.")
        else:
            print(f"qidicom: {self.segmentation_type} SEG written in {time.perf_counter() - started:.2f} s "
                  f"({len(result.data) / 1e6:.1f} MB)")
            self._offer_download(result)
        finally:
            self.busy = False

    def _report(self, message: str, fraction: float) -> None:
        self.progress_message = message
        self.progress = min(max(float(fraction), 0.0), 1.0)

    def _offer_download(self, result) -> None:
        self.param.update(progress=1.0, progress_message="done", result_url=make_download_url(result.data),
                          result_name=result.filename, result_size=len(result.data),
                          result_warnings=list(result.warnings))


@functools.cache
def sample_inputs() -> dict[str, list[tuple[str, bytes]]]:
    """The default phantom study as (name, bytes) per input, named as ``write_sample_study``
    names them on disk (made once: same arguments give the same bytes)."""
    from qidicom.samples import make_sample_study

    study = make_sample_study()
    metadata = json.dumps(study.seg_metadata, indent=2).encode()
    return {"series": list(study.ct_series), "labelmap": [study.ct_labels], "metadata": [("seg.json", metadata)]}


def make_download_url(data: bytes) -> str:
    """A blob: URL for the bytes; created in the worker, usable by the page (same origin)."""
    from js import Blob, Object, URL, Uint8Array
    from pyodide.ffi import to_js

    buffer = Uint8Array.new(len(data))
    buffer.assign(data)
    blob = Blob.new([buffer], to_js({"type": "application/dicom"}, dict_converter=Object.fromEntries))
    return URL.createObjectURL(blob)


def revoke_download_url(url: str) -> None:
    from js import URL

    URL.revokeObjectURL(url)


# --------------------------------------------------------------------------- views


def _escape(value) -> str:
    return html.escape(str(value))


# Math rendering off everywhere: text here includes file names and messages, and BokehJS
# would fetch MathJax from a CDN for anything between $$ delimiters.
def markdown(text: str, **kwargs) -> pn.pane.Markdown:
    return pn.pane.Markdown(text, disable_math=True, **kwargs)


def alert(text: str, alert_type: str) -> pn.pane.Alert:
    return pn.pane.Alert(text, alert_type=alert_type, disable_math=True)


def series_view(summary, message, warnings, count):
    if message:
        return alert(f"**DICOM series:** {_escape(message)}", "danger")
    if not summary:
        return markdown("**DICOM series:** none chosen yet.")
    spacing = " × ".join(f"{v:g}" for v in summary["pixel_spacing_mm"])
    rows = [
        ("Patient", f"{summary['patient_name'] or '(no name)'} ({summary['patient_id'] or 'no ID'})"),
        ("Modality", summary["modality"]),
        ("Series", f"{summary['series_description'] or '(no description)'} #{summary['series_number']}"),
        ("Size", f"{summary['columns']} × {summary['rows']} pixels, {summary['slices']} slices"),
        ("Pixel spacing", f"{spacing} mm"),
    ]
    table = "".join(f"<tr><th>{_escape(k)}</th><td>{_escape(v)}</td></tr>" for k, v in rows)
    notes = "".join(f"<li>{_escape(w)}</li>" for w in warnings)
    return pn.pane.HTML(
        f"<h3>Series found ({count} file{'s' if count != 1 else ''})</h3>"
        f"<table class='qi-summary'>{table}</table>" + (f"<ul class='qi-notes'>{notes}</ul>" if notes else ""),
        sizing_mode="stretch_width",
    )


def labels_view(files, message):
    if not files:
        return markdown("**Label map:** none chosen yet.")
    names = ", ".join(_escape(name) for name, _ in files)
    text = f"**Label map:** {names}"
    if message:
        return alert(text + f"<br>{_escape(message)}", "warning")
    return markdown(text)


def metadata_view(file, problems, message):
    if file is None:
        return markdown("**Metadata JSON:** none chosen yet.")
    name = _escape(file[0])
    if not problems and not message:
        return alert(f"**Metadata JSON:** {name} is valid.", "success")
    items = "".join(f"<li><code>{_escape(p)}</code></li>" for p in problems)
    head = _escape(message) if message else f"{len(problems)} problem{'s' if len(problems) != 1 else ''} to fix"
    return alert(
        f"<strong>Metadata JSON: {name}</strong>: {head}" + (f"<ul class='qi-problems'>{items}</ul>" if items else ""), "danger")


def progress_text(progress, message) -> str:
    return f"Converting: {_escape(message)} ({progress:.0%})"


def progress_view(state: ConverterState) -> pn.viewable.Viewable:
    """One bar and one line, updated in place: a progress step costs a value change, not new models."""
    return pn.Column(
        pn.indicators.Progress(value=pn.bind(lambda p: int(round(p * 100)), state.param.progress), max=100,
                               sizing_mode="stretch_width"),
        markdown(pn.bind(progress_text, state.param.progress, state.param.progress_message)),
        visible=state.param.busy,
        sizing_mode="stretch_width",
    )


def result_view(error, url, name, size, warnings, stack_ready):
    if not stack_ready:
        return markdown("Loading the DICOM libraries…")
    if error:
        lines = _escape(error).replace("\n", "<br>")
        return alert(f"<strong>Conversion failed.</strong> {lines}", "danger")
    if not url:
        return pn.Spacer(height=0)
    notes = "".join(f"<li>{_escape(w)}</li>" for w in warnings)
    return pn.pane.HTML(
        f"<div class='qi-result'>Done: <a class='qi-download' href='{_escape(url)}' download='{_escape(name)}'>"
        f"Download {_escape(name)}</a> ({size / 1e6:.2f} MB)"
        + (f"<ul class='qi-notes'>{notes}</ul>" if notes else "") + "</div>",
        sizing_mode="stretch_width",
    )


def create_app(state: ConverterState) -> pn.viewable.Viewable:
    type_choice = pn.widgets.RadioButtonGroup.from_param(
        state.param.segmentation_type, options=SEGMENTATION_TYPES, name="Segmentation type")
    compression_choice = pn.widgets.RadioButtonGroup.from_param(
        state.param.compress, options=COMPRESSIONS, name="Compression")
    fractional_choice = pn.widgets.RadioButtonGroup.from_param(
        state.param.fractional_type, options=FRACTIONAL_TYPES, name="Fractional type")
    skip_empty_choice = pn.widgets.Checkbox.from_param(
        state.param.skip_empty, name="Leave out slices with no segmented pixel")
    label_numbers_choice = pn.widgets.Checkbox.from_param(
        state.param.use_label_id_as_segment_number, name="Use label values as segment numbers")
    convert_button = pn.widgets.Button(
        name="Convert to DICOM SEG", button_type="primary",
        disabled=pn.bind(operator.not_, state.param.can_convert),
    )
    convert_button.on_click(state.start_conversion)
    return pn.Column(
        markdown("## 2. Check"),
        pn.bind(series_view, state.param.series_summary, state.param.series_message,
                state.param.series_warnings, pn.bind(len, state.param.series_files)),
        pn.bind(labels_view, state.param.label_files, state.param.label_message),
        pn.bind(metadata_view, state.param.metadata_file, state.param.metadata_problems,
                state.param.metadata_message),
        markdown("## 3. Convert"),
        pn.Row(markdown("Segmentation type", width=150), type_choice),
        pn.Row(markdown("Fractional type", width=150), fractional_choice,
               visible=pn.bind(lambda kind: kind == "fractional", state.param.segmentation_type)),
        pn.Row(markdown("Compression", width=150), compression_choice),
        skip_empty_choice,
        label_numbers_choice,
        convert_button,
        progress_view(state),
        pn.bind(result_view, state.param.error, state.param.result_url, state.param.result_name,
                state.param.result_size, state.param.result_warnings, state.param.stack_ready),
        sizing_mode="stretch_width",
        css_classes=["qi-app"],
    )


STATE = ConverterState()
DOCUMENT = None  # the worker-side Bokeh document, mirrored by the page


def in_document(function):
    """Run an entry point called from JavaScript with the app's document as Panel's curdoc,
    so that state changes update the document's models (and so the page)."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        from panel.io.state import set_curdoc

        with set_curdoc(DOCUMENT):
            return function(*args, **kwargs)

    return wrapper


async def render() -> tuple[str, str, str]:
    """Build the app in a worker-side document; returns what the page needs to render it."""
    global DOCUMENT
    from panel.io.pyodide import init_doc, write_doc
    from panel.io.state import state as panel_state

    init_doc()
    DOCUMENT = panel_state.curdoc
    # Stylesheets come from dist/static/panel/, relative to the page (works under a subpath).
    DOCUMENT._template_variables["dist_url"] = "./static/panel/"
    create_app(STATE).servable(title="qidicom")
    return await write_doc(DOCUMENT)


@in_document
def link(send_patch) -> None:
    """Start sending every document change to the page (after it has rendered the document)."""
    from panel.io.pyodide import _link_docs_worker
    from panel.io.state import state as panel_state

    _link_docs_worker(DOCUMENT, send_patch, setter="js")
    # Mark the document loaded: until then Panel keeps holding the events of every update.
    panel_state._on_load(DOCUMENT)


@in_document
def apply_patch(patch) -> None:
    """A change made in the page (a click, a choice)."""
    from panel.io.pyodide import _convert_json_patch

    DOCUMENT.apply_json_patch(_convert_json_patch(patch), setter="js")


@in_document
def receive_files(role: str, items) -> None:
    STATE.receive_files(role, items)


@in_document
def load_sample() -> list[list]:
    """The "Load sample data" button: makes and takes the sample; [role, file count] pairs for the page."""
    return [[role, count] for role, count in STATE.load_sample().items()]


@in_document
def load_conversion_stack() -> None:
    """Import the conversion libraries (after the first paint) and enable Convert."""
    try:
        import qidicom.seg  # noqa: F401
        import qidicom.metadata  # noqa: F401
    except Exception:
        log_exception("loading the conversion libraries failed")
        STATE.error = "The DICOM libraries failed to load in this browser (details are in the browser console)."
        return
    STATE.stack_ready = True
