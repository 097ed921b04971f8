"""SR mode: sr-tid1500 metadata + the DICOM files it references -> TID 1500 measurement report.

The person loads every file the report refers to into one pool, in any number of picks:
the source series (imageLibrary), the SEG it measures and any RWVM or PM
(compositeContext). Each name in the metadata is then found in the pool by file name or
SOP Instance UID, as dcmqi finds it in its two folders; the page lists what was found and
what is still missing.
"""

from __future__ import annotations

import panel as pn
import param

import samples
import views
from base import ConversionState, Pairs, readable_failure

SEGMENTATION_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
WHERE = "the loaded DICOM files"


def code_json(item) -> dict:
    """A code sequence item as dcmqi's JSON writes codes."""
    return {"CodeValue": str(item.CodeValue), "CodingSchemeDesignator": str(item.CodingSchemeDesignator),
            "CodeMeaning": str(item.CodeMeaning)}


def pool_summary(by_uid: dict) -> list[str]:
    """One line per series in the pool: modality, description, file count."""
    series: dict[str, list] = {}
    for dataset in by_uid.values():
        series.setdefault(str(dataset.get("SeriesInstanceUID", "")), []).append(dataset)
    lines = []
    for datasets in series.values():
        first = datasets[0]
        what = f"{first.get('Modality', '?')} '{first.get('SeriesDescription', '') or '(no description)'}'"
        if str(first.get("SOPClassUID", "")) == SEGMENTATION_SOP_CLASS:
            what += f", {len(first.get('SegmentSequence', []))} segment(s)"
        lines.append(f"{what}: {len(datasets)} file{'s' if len(datasets) != 1 else ''}")
    return lines


class SrState(ConversionState):
    conversion_name = "tid1500writer"
    input_params = ("pool_count", "references", "pool_message")

    pool_count = param.Integer(default=0, doc="DICOM files in the pool")
    pool_lines = param.List(default=[])
    pool_message = param.String(default="")
    references = param.List(default=[], doc="(key, name, found) for every file the metadata names")

    def __init__(self, **params):
        self._pool = None  # qidicom.sr.ReferencedFiles of everything loaded
        super().__init__(**params)
        self.param.watch(self._check_references, ["document"])

    def set_input(self, role: str, pairs: Pairs) -> None:
        from qidicom import conversions

        if role != conversions.POOL_ROLE:
            super().set_input(role, pairs)
            return
        from qidicom.sr import ReferencedFiles

        try:
            added = ReferencedFiles.load(pairs, WHERE)
        except Exception as error:
            self.pool_message = readable_failure(error, "reading the DICOM files")
            return
        if self._pool is None:
            self._pool = added
        else:
            self._pool.by_name.update(added.by_name)
            self._pool.by_uid.update(added.by_uid)
        skipped = len(pairs) - len({id(d) for d in added.by_name.values()})
        self.param.update(pool_count=len(self._pool.by_uid), pool_lines=pool_summary(self._pool.by_uid),
                          pool_message=f"{skipped} of the chosen files are not DICOM and were left out." if skipped > 0 else "")
        self._check_references()
        self._share_context()

    def clear_pool(self) -> None:
        self._pool = None
        self.param.update(pool_count=0, pool_lines=[], pool_message="")
        self._check_references()
        self._share_context()

    def _check_references(self, *_events) -> None:
        found = []
        document = self.document or {}
        for key in ("compositeContext", "imageLibrary"):
            for index, name in enumerate(document.get(key) or []):
                try:
                    ok = self._pool is not None and self._pool.find(str(name), f"{key}[{index}]") is not None
                except Exception:
                    ok = False
                found.append((key, str(name), ok))
        self.references = found

    def _share_context(self) -> None:
        """Tell the form editor which SEG segments, series and files were loaded (its pickers)."""
        if self.editor is None:
            return
        segments, series, files = [], {}, []
        for name, dataset in (self._pool.by_name.items() if self._pool else []):
            if "/" in name:
                continue  # each file is in by_name under its base name too
            files.append(name)
            if str(dataset.get("SOPClassUID", "")) == SEGMENTATION_SOP_CLASS:
                referenced = dataset.get("ReferencedSeriesSequence") or [None]
                source_series = str(referenced[0].SeriesInstanceUID) if referenced[0] is not None else ""
                for item in dataset.get("SegmentSequence", []):
                    segments.append({
                        "file": name, "SOPInstanceUID": str(dataset.SOPInstanceUID), "SourceSeriesInstanceUID": source_series,
                        "SegmentNumber": int(item.SegmentNumber), "SegmentLabel": str(item.get("SegmentLabel", "")),
                        **{key: code_json(item.get(key)[0]) for key in ("SegmentedPropertyTypeCodeSequence", "AnatomicRegionSequence")
                           if item.get(key)}})
            else:
                entry = series.setdefault(str(dataset.get("SeriesInstanceUID", "")), {
                    "SeriesInstanceUID": str(dataset.get("SeriesInstanceUID", "")),
                    "Modality": str(dataset.get("Modality", "")),
                    "SeriesDescription": str(dataset.get("SeriesDescription", "")), "files": []})
                entry["files"].append(name)
        self.editor.set_context({"segments": segments, "series": list(series.values()), "files": sorted(files)})

    def missing(self) -> list[str]:
        reasons = []
        if not self.pool_count:
            reasons.append("no referenced DICOM files loaded yet")
        absent = [name for _key, name, ok in self.references if not ok]
        if absent and self.pool_count:
            reasons.append(f"{len(absent)} file(s) the metadata names are not among the loaded files ({', '.join(absent[:4])}"
                           + (" …" if len(absent) > 4 else "") + ")")
        return reasons

    def write(self, options, progress):
        writer = self.conversion.resolve("writer")
        return writer(self.document, self._pool, self._pool, progress=progress, **options)

    def load_sample(self) -> dict[str, int]:
        inputs = samples.sr_inputs()
        self.clear_pool()
        for role, pairs in inputs.items():
            self.take_files(role, pairs)
        return {role: len(pairs) for role, pairs in inputs.items()}


def pool_view(count, lines, message, references):
    if not count and not references:
        return views.markdown("**Referenced DICOM files:** none loaded yet.")
    parts = [f"<h3>DICOM files loaded ({count})</h3>" if count else "<p><strong>Referenced DICOM files:</strong> none loaded yet.</p>"]
    if lines:
        parts.append("<ul>" + "".join(f"<li>{views.escape(line)}</li>" for line in lines) + "</ul>")
    if message:
        parts.append(f"<p class='qi-notes'>{views.escape(message)}</p>")
    if references:
        rows = []
        for key in ("compositeContext", "imageLibrary"):
            named = [(name, ok) for k, name, ok in references if k == key]
            if not named:
                continue
            absent = [name for name, ok in named if not ok]
            found = len(named) - len(absent)
            shown = ", ".join(name for name, ok in named if ok) if len(named) <= 4 else f"{found} of {len(named)} files"
            rows.append(f"<tr class='qi-found'><td>{key}</td><td>found: {views.escape(shown) if found else 'none'}</td></tr>")
            if absent:
                rows.append(f"<tr class='qi-missing'><td>{key}</td><td><strong>missing:</strong> "
                            f"{views.escape(', '.join(absent))}</td></tr>")
        missing = sum(not ok for _k, _n, ok in references)
        parts.append(f"<p>The metadata names {len(references)} file(s): "
                     + (f"<strong>{missing} not loaded yet</strong>.</p>" if missing else "all loaded.</p>")
                     + f"<table class='qi-summary qi-references'>{''.join(rows)}</table>")
    return pn.pane.HTML("".join(parts), sizing_mode="stretch_width")


def view(state: SrState) -> pn.viewable.Viewable:
    options = [views.option_widget(state, option) for option in state.conversion.app_options]
    clear = pn.widgets.Button(name="Forget the loaded DICOM files", visible=pn.bind(bool, state.param.pool_count))
    clear.on_click(lambda _event: state.clear_pool())
    form = views.editor_view(state)
    return pn.Column(
        views.markdown("## 2. Check"),
        pn.bind(pool_view, state.param.pool_count, state.param.pool_lines, state.param.pool_message, state.param.references),
        clear,
        pn.bind(views.metadata_view, state.param.metadata_name, state.param.document, state.param.metadata_problems,
                state.param.metadata_message),
        *([form] if form is not None else []),
        *views.convert_controls(state, options),
        sizing_mode="stretch_width",
        css_classes=["qi-app", "qi-mode-sr"],
    )
