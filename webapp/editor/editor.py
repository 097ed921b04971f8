"""MetadataEditor: a schema-driven form for SEG, Parametric Map and TID 1500 SR metadata."""

from __future__ import annotations

import html
import io
import json
import time
from typing import Any, Callable

import panel as pn
import param

from . import document as model
from .document import MISSING, get, put, remove, split_problem
from .forms import CodeOrTextRow, CodeRow, Form, ListEditor, ObjectRow, ObserverRow
from .schema import Field, document_fields
from .widgets import ColourRow, EnumRow, IntegerRow, JsonRow, StringsRow, TextRow

#: Code list offered for a coded field, by the field's name.
PICKER_OF = {
    "SegmentedPropertyCategoryCodeSequence": "segmentation-category",
    "SegmentedPropertyTypeCodeSequence": "segmentation-type",
    "SegmentedPropertyTypeModifierCodeSequence": "segmentation-modifier",
    "AnatomicRegionSequence": "anatomic-region",
    "AnatomicRegionModifierSequence": "anatomic-modifier",
    "QuantityValueCode": "pm-quantity",
    "MeasurementUnitsCode": "pm-units",
    "MeasurementMethodCode": "pm-measurement-method",
    "ModelFittingMethodCode": "pm-model-fitting",
    "DerivationCode": "pm-derivation",
    "procedureReported": "procedure-reported",
    "measurementMethod": "sr-measurement-method",
    "MeasurementMethod": "sr-measurement-method",
    "Finding": "sr-finding",
    "FindingSite": "sr-finding-site",
    "Laterality": "laterality",
    "quantity": "sr-quantity",
    "units": "sr-units",
    "derivationModifier": "sr-derivation",
    "derivationParameter": "sr-quantity",
    "derivationParameterUnits": "sr-units",
    "numProperty": "sr-quantity",
    "numPropertyUnits": "sr-units",
}

# Fields the form does not offer: the schema URL is set when a document is made.
HIDDEN = ("@schema",)
FILE_NAMES = {"seg": "seg.json", "pm": "pm.json", "sr": "sr.json"}
PROBLEMS_LISTED = 50  # beyond this the list says how many more (a long list slows every edit)


def _meaning(code: Any) -> str:
    return code.get("CodeMeaning", "") if isinstance(code, dict) else ""


class MetadataEditor(param.Parameterized):
    """Edit one dcmqi metadata document ("seg", "pm" or "sr") through a form.

    ``document`` is the JSON document being edited (the same dict object throughout; the
    param is triggered on every change), ``problems`` every validation problem as
    ``"<JSON path>: <message>"`` and ``valid`` whether there are none.
    """

    document = param.Dict(default={}, doc="the JSON document being edited")
    problems = param.List(default=[], doc="'<JSON path>: <message>' for every problem (qidicom.metadata.validate)")
    valid = param.Boolean(default=False, doc="the document has no problem")
    load_error = param.String(default="", doc="why the last load_json failed ('' when it did not)")
    last_validation_ms = param.Number(default=0.0, doc="time the last validation took")

    def __init__(self, kind: str = "seg", document: dict | None = None, context: dict | None = None, **params):
        if kind not in FILE_NAMES:
            raise ValueError(f"unknown metadata kind {kind!r}; expected 'seg', 'pm' or 'sr'")
        super().__init__(**params)
        self.kind = kind
        self.context = dict(context or {})
        self.voxel_counts: dict[tuple[int, int], int] = {}
        self.document = document if document is not None else model.empty_document(kind)
        self._group = 0  # SEG: which label-map file's segments are shown
        self._build()
        self._refresh()

    # ------------------------------------------------------------------ the ways to start

    def load_json(self, text: str | bytes) -> None:
        """Edit the document in ``text`` exactly as it is (nothing is added or reordered).
        Invalid JSON leaves the current document and sets ``load_error``."""
        from qidicom import metadata
        from qidicom.errors import QidicomError

        try:
            parsed = metadata.load_json(text if isinstance(text, str) else bytes(text), name=FILE_NAMES[self.kind])
        except QidicomError as exc:
            self.load_error = str(exc)
            return
        self.load_error = ""
        self.voxel_counts = {}
        self._group = 0
        self.document = parsed
        self._refresh()

    def new_document(self) -> None:
        """Start again from an empty document."""
        self.load_error = ""
        self.voxel_counts = {}
        self._group = 0
        self.document = model.empty_document(self.kind)
        self._refresh()

    def from_label_values(self, values: dict[int, int] | list[dict[int, int]], file_names: list[str] | None = None) -> None:
        """A SEG document with one segment per label value (value -> voxel count), each with a
        distinct default colour; a list of such dicts describes several label-map files."""
        files = [values] if isinstance(values, dict) else list(values)
        self.load_error = ""
        self._group = 0
        self.document = model.labelmap_document(files, file_names)
        self.voxel_counts = {(g, int(v)): int(n) for g, counts in enumerate(files) for v, n in counts.items()}
        self._refresh()

    def set_context(self, context: dict) -> None:
        """Loaded files, series and SEG segments the SR pickers offer (see the package docs)."""
        self.context = dict(context or {})
        self._build()
        if getattr(self, "_panel", None) is not None:  # shown already: show the new widgets in it
            self._panel.objects = self._columns()
        self._refresh()

    # ------------------------------------------------------------------ editing

    def write(self, path: list, value: Any) -> None:
        """Set (or with MISSING delete) the value at ``path`` and revalidate."""
        if get(self.document, path) == value and value is not MISSING:
            return
        if value is MISSING:
            if get(self.document, path) is MISSING:
                return
            remove(self.document, path)
        else:
            put(self.document, path, value)
        self._changed()

    def edit(self, change: Callable[[dict], None]) -> None:
        """Apply ``change(document)`` in place and revalidate."""
        change(self.document)
        self._changed()

    def _changed(self) -> None:
        self._validate()
        self.param.trigger("document")
        self._show_problems()

    def _validate(self) -> None:
        from qidicom import metadata

        start = time.perf_counter()
        problems = list(dict.fromkeys(
            metadata.validate(self.document, self.kind) + model.editor_rules(self.document, self.kind)))
        self.last_validation_ms = (time.perf_counter() - start) * 1000
        self.problems = problems
        self.valid = not problems

    # ------------------------------------------------------------------ the form

    def make_row(self, field: Field, path_of: Callable[[], list]):
        write = self.write
        if field.kind == "code":
            picker = PICKER_OF.get(field.name)
            if field.name == "SegmentedPropertyTypeCodeSequence":
                row = CodeRow(field, path_of, write, picker, category_of=lambda: get(
                    self.document, path_of() + ["SegmentedPropertyCategoryCodeSequence"], None))
            else:
                row = CodeRow(field, path_of, write, picker)
            if field.name == "SegmentedPropertyCategoryCodeSequence":
                row.on_pick.append(lambda code: self._category_picked(path_of()))
            if field.name in ("SegmentedPropertyTypeCodeSequence", "SegmentedPropertyTypeModifierCodeSequence"):
                row.on_pick.append(lambda code: self._type_picked(path_of()))
            return row
        if field.kind == "code-or-text":
            return CodeOrTextRow(field, path_of, write)
        if field.kind == "rgb":
            return ColourRow(field, path_of, write)
        if field.kind == "enum":
            return EnumRow(field, path_of, write)
        if field.kind == "integer":
            if field.name == "ReferencedSegment" and self.context.get("segments"):
                return _SegmentChoice(self, field, path_of, write)
            return IntegerRow(field, path_of, write)
        if field.kind == "strings":
            options = None
            if field.name in ("imageLibrary", "compositeContext") and self.context.get("files"):
                options = [str(f) for f in self.context["files"]]
            return StringsRow(field, path_of, write, options)
        if field.kind == "text":
            if field.name == "SourceSeriesForImageSegmentation" and self.context.get("series"):
                series = [s for s in self.context["series"] if s.get("SeriesInstanceUID")]
                labels = {s["SeriesInstanceUID"]: " · ".join(str(s[k]) for k in ("Modality", "SeriesDescription")
                                                             if s.get(k)) + f" ({s['SeriesInstanceUID']})"
                          for s in series}
                return EnumRow(field, path_of, write, choices=list(labels), labels=labels)
            return TextRow(field, path_of, write)
        if field.kind == "object":
            return ObjectRow(self, field, path_of, write)
        if field.kind == "observer":
            return ObserverRow(self, field, path_of, write)
        if field.kind == "list":
            return ListEditor(self, field, path_of, write, summary=self._summary, new_item=self._new_item(field))
        return JsonRow(field, path_of, write)

    def _category_picked(self, segment_path: list) -> None:
        """The type list follows the category: search again within the new one."""
        type_row = self.segments.form.by_name["SegmentedPropertyTypeCodeSequence"]
        type_row.refresh_matches()

    def _type_picked(self, segment_path: list) -> None:
        """A picked type brings its recommended colour (where the colour source has one)."""
        from qidicom import codes

        segment = get(self.document, segment_path, {})
        colour = codes.recommended_colour(segment.get("SegmentedPropertyTypeCodeSequence"),
                                          segment.get("SegmentedPropertyTypeModifierCodeSequence"))
        if colour is not None:
            self.write(segment_path + ["recommendedDisplayRGBValue"], list(colour))
            self.segments.form.by_name["recommendedDisplayRGBValue"].load(list(colour))
        if not segment.get("SegmentLabel") or str(segment.get("SegmentLabel", "")).startswith("Segment "):
            meaning = _meaning(segment.get("SegmentedPropertyTypeCodeSequence"))
            if meaning:
                self.write(segment_path + ["SegmentLabel"], meaning[:64])
                self.segments.form.by_name["SegmentLabel"].load(meaning[:64])
        self.segments.update_labels()

    def _summary(self, path: list, index: int, item: Any) -> str:
        if not isinstance(item, dict):
            return f"{index + 1}. (not an object)"
        name = path[-1] if path else ""
        if name == "Measurements":
            text = item.get("TrackingIdentifier") or f"measurement group {index + 1}"
            extra = _meaning(item.get("Finding"))
            return f"{index + 1}. {text}" + (f" · {extra}" if extra else "")
        if name == "measurementItems":
            parts = [_meaning(item.get("derivationModifier")), _meaning(item.get("quantity"))]
            value = item.get("value", "")
            units = item.get("units", {}).get("CodeValue", "") if isinstance(item.get("units"), dict) else ""
            return f"{index + 1}. " + " ".join(p for p in parts if p) + f" = {value} {units}".rstrip()
        if name == "qualitativeEvaluations":
            value = item.get("conceptValue")
            return f"{index + 1}. {_meaning(item.get('conceptCode'))} = {_meaning(value) if isinstance(value, dict) else value}"
        codes = [v for v in item.values() if isinstance(v, dict) and "CodeMeaning" in v]
        return f"{index + 1}. " + " = ".join(_meaning(c) for c in codes[:2]) if codes else f"{index + 1}."

    def _segment_summary(self, path: list, index: int, item: Any) -> str:
        if not isinstance(item, dict):
            return f"{index + 1}. (not an object)"
        label = item.get("labelID", "?")
        text = item.get("SegmentLabel") or _meaning(item.get("SegmentedPropertyTypeCodeSequence"))
        count = self.voxel_counts.get((self._group, label)) if isinstance(label, int) else None
        colour = model.hex_colour(item.get("recommendedDisplayRGBValue"))
        out = f"label {label} · {text}"
        if colour:
            out += f" · {colour}"
        if count is not None:
            out += f" · {count:,} voxels"
        return out

    def _new_item(self, field: Field) -> Callable[[list], dict]:
        def make(entries: list) -> dict:
            item: dict = {}
            if field.name == "Measurements":
                from pydicom.uid import generate_uid

                item = {"TrackingIdentifier": f"Measurement group {len(entries) + 1}",
                        "TrackingUniqueIdentifier": generate_uid()}
            for sub in field.fields:
                if sub.required and sub.default is not None:
                    item[sub.name] = sub.default
            return item
        return make

    def _new_segment(self, entries: list) -> dict:
        used = {s.get("labelID") for s in entries if isinstance(s, dict)}
        label = max([v for v in used if isinstance(v, int)] + [0]) + 1
        n = sum(len(g) for g in self.document.get("segmentAttributes", []) if isinstance(g, list))
        return model.new_segment(label, n)

    def _build(self) -> None:
        fields = [f for f in document_fields(self.kind) if f.name not in HIDDEN]
        special = {"segmentAttributes", "segmentAttributesFileMapping"} if self.kind == "seg" else set()
        self.form = Form(self, [f for f in fields if f.name not in special], lambda: [])
        self.segments = None
        if self.kind == "seg":
            attributes = next(f for f in fields if f.name == "segmentAttributes")
            mapping = next(f for f in fields if f.name == "segmentAttributesFileMapping")
            self.mapping_row = StringsRow(mapping, lambda: [], self.write)
            self.group_choice = pn.widgets.Select(name="Label-map file", options={}, sizing_mode="stretch_width")
            self.group_choice.param.watch(self._group_chosen, "value")
            self.add_group = pn.widgets.Button(name="Add label-map file", description="Describe another label-map file")
            self.remove_group = pn.widgets.Button(name="Remove label-map file", button_type="danger",
                                                  description="Remove the chosen file's segments")
            self.add_group.on_click(lambda _: self._add_group())
            self.remove_group.on_click(lambda _: self._remove_group())
            list_field = Field(name="Segments", kind="list", required=True, fields=attributes.fields,
                               item_title="segment", item_required=attributes.item_required)
            self.segments = _SegmentList(self, list_field, lambda: ["segmentAttributes"], self.write,
                                         summary=self._segment_summary, new_item=self._new_segment)
        self._build_side()

    def _group_chosen(self, event) -> None:
        if event.new is None or getattr(self, "_loading_groups", False):
            return
        self._group = int(event.new)
        self.segments.index = 0
        self.segments.refresh()

    def _add_group(self) -> None:
        def add(document):
            groups = document.setdefault("segmentAttributes", [])
            groups.append([self._new_segment([])])
            if isinstance(document.get("segmentAttributesFileMapping"), list):
                document["segmentAttributesFileMapping"].append(f"labels-{len(groups)}.nii.gz")
        self.edit(add)
        self._group = len(self.document["segmentAttributes"]) - 1
        self.segments.index = 0
        self._refresh_groups()
        self.segments.refresh()

    def _remove_group(self) -> None:
        groups = self.document.get("segmentAttributes")
        if not isinstance(groups, list) or len(groups) <= 1:
            return
        g = self._group

        def drop(document):
            del document["segmentAttributes"][g]
            if isinstance(document.get("segmentAttributesFileMapping"), list) and g < len(document["segmentAttributesFileMapping"]):
                del document["segmentAttributesFileMapping"][g]
        self.edit(drop)
        self._group = max(0, g - 1)
        self.segments.index = 0
        self._refresh_groups()
        self.segments.refresh()

    def _refresh_groups(self) -> None:
        groups = self.document.get("segmentAttributes")
        groups = groups if isinstance(groups, list) else []
        names = self.document.get("segmentAttributesFileMapping")
        options = {}
        for g, group in enumerate(groups):
            name = names[g] if isinstance(names, list) and g < len(names) else f"label-map file {g + 1}"
            options[f"{g + 1}. {name} ({len(group) if isinstance(group, list) else 0} segments)"] = str(g)
        self._loading_groups = True
        try:
            self.group_choice.options = options
            self.group_choice.value = str(self._group) if options else None
        finally:
            self._loading_groups = False
        self.group_choice.visible = len(groups) > 1
        self.remove_group.disabled = len(groups) <= 1

    def _refresh(self) -> None:
        """Every control from the document (after a load), then validation."""
        self.form.load()
        if self.kind == "seg":
            self.mapping_row.load(self.document.get("segmentAttributesFileMapping", MISSING))
            groups = self.document.get("segmentAttributes")
            self._group = min(self._group, max(0, len(groups) - 1)) if isinstance(groups, list) else 0
            self._refresh_groups()
            self.segments.index = 0
            self.segments.load(get(self.document, ["segmentAttributes", self._group], []))
        self._validate()
        self.param.trigger("document")
        self._show_problems()

    def _show_problems(self) -> None:
        parsed = [split_problem(p) for p in self.problems]
        self.form.show(parsed)
        if self.segments is not None:
            self.mapping_row.show(parsed)
            self.segments.show(parsed)
            own = [m for w, m in parsed if w == "segmentAttributes"]
            self.group_message.object = "".join(f"<div role='alert'>⚠ {html.escape(m)}</div>" for m in own)
            self.group_message.visible = bool(own)
        self._update_side()

    # ------------------------------------------------------------------ validation list, text, download

    def _build_side(self) -> None:
        self.status = pn.pane.HTML("", sizing_mode="stretch_width", css_classes=["qi-editor-status"])
        self.problem_list = pn.pane.HTML("", sizing_mode="stretch_width", css_classes=["qi-problem-list"],
                                         styles={"max-height": "260px", "overflow-y": "auto"})
        self.text = pn.widgets.TextAreaInput(name="The document as JSON text (edit, then Apply text)",
                                             rows=24, sizing_mode="stretch_width", css_classes=["qi-json-text"])
        self.apply_text = pn.widgets.Button(name="Apply text", description="Load the text above into the form")
        self.apply_text.on_click(lambda _: self.load_json(self._typed_text or self.text.value))
        self._typed_text = ""  # what the person typed in the text view since it was last set
        self.text.param.watch(self._text_typed, "value_input")
        self.text_error = pn.pane.HTML("", visible=False, styles={"color": "#b00020", "white-space": "pre-wrap"})
        self.download = pn.widgets.FileDownload(callback=self._download_bytes, filename=FILE_NAMES[self.kind],
                                                label=f"Download {FILE_NAMES[self.kind]}", button_type="success",
                                                embed=False)
        # Copying needs the page's main thread (a worker has no clipboard) and no script made
        # from text (the site's Content Security Policy): the page (page.js) copies the text
        # of class qi-json-text when the button of class qi-copy-json is pressed.
        self.copy = pn.widgets.Button(name="Copy JSON", description="Copy the document's JSON text to the clipboard",
                                      css_classes=["qi-copy-json"])
        self.upload = pn.widgets.FileInput(accept=".json,application/json", name="Load a dcmqi JSON file",
                                           multiple=False, width=230)
        self.upload.param.watch(lambda e: e.new and self.load_json(e.new), "value")
        self.empty = pn.widgets.Button(name="New empty document", description="Discard this document and start again")
        self.empty.on_click(lambda _: self.new_document())
        self.group_message = pn.pane.HTML("", visible=False, styles={"color": "#b00020"})
        self.param.watch(lambda e: self._show_load_error(), "load_error")

    def _text_typed(self, event) -> None:
        self._typed_text = event.new or ""

    def _show_load_error(self) -> None:
        self.text_error.object = html.escape(self.load_error)
        self.text_error.visible = bool(self.load_error)

    def text_of(self) -> str:
        """The document as the JSON text that is downloaded."""
        return json.dumps(self.document, indent=2, ensure_ascii=False) + "\n"

    def _download_bytes(self) -> io.BytesIO:
        return io.BytesIO(self.text_of().encode("utf-8"))

    def _update_side(self) -> None:
        n = len(self.problems)
        if n:
            self.status.object = (f"<div role='status' style='color:#b00020'><b>{n} problem{'s' if n != 1 else ''}</b>"
                                  " — the document cannot be converted until they are fixed.</div>")
        else:
            self.status.object = "<div role='status' style='color:#1a7f37'><b>Valid</b> — ready to convert.</div>"
        shown = self.problems[:PROBLEMS_LISTED]
        items = "".join(f"<li><code>{html.escape(w)}</code>: {html.escape(m)}</li>" for w, m in map(split_problem, shown))
        if n > len(shown):
            items += f"<li>… and {n - len(shown)} more (each is shown under its field)</li>"
        self.problem_list.object = f"<ul style='margin:0;padding-left:18px'>{items}</ul>" if items else ""
        # Only value is sent (the text is large with many segments); what the person types
        # arrives as value_input and is kept for Apply text.
        self._typed_text = ""
        self.text.value = self.text_of()

    def panel(self) -> pn.viewable.Viewable:
        """The editor's layout: start choices, the form, and beside it problems and JSON text."""
        if getattr(self, "_panel", None) is not None:
            return self._panel
        # A Bokeh Row that wraps (pn.FlexBox is ReactiveHTML, which needs script evaluation
        # and so cannot run under the app's Content Security Policy).
        self._panel = pn.Row(*self._columns(), sizing_mode="stretch_width", styles={"flex-wrap": "wrap"},
                             css_classes=["qi-metadata-editor"])
        self._show_problems()
        return self._panel

    def _columns(self) -> list:
        """The form's column and the side column, of the current widgets (``_build``)."""
        titles = {"seg": "Segmentation", "pm": "Parametric map", "sr": "Measurement report (TID 1500)"}
        start = pn.Row(self.empty, pn.pane.HTML("<label>Or load a dcmqi JSON file:</label>", margin=(14, 5, 0, 15)),
                       self.upload, sizing_mode="stretch_width", styles={"flex-wrap": "wrap"})
        main = [pn.pane.HTML(f"<h2 style='margin:4px 0'>{titles[self.kind]} metadata</h2>"
                             "<p style='margin:0'>Fields marked * are required. Problems appear under each field "
                             "and in the list beside the form.</p>"), start]
        if self.kind == "seg":
            main += [pn.Card(self.form.panel(), title="Series", collapsed=False, sizing_mode="stretch_width"),
                     pn.Card(self.group_choice, pn.Row(self.add_group, self.remove_group), self.group_message,
                             self.mapping_row.panel(), self.segments.panel(),
                             title="Segments", sizing_mode="stretch_width")]
        else:
            main.append(self.form.panel())
        side = pn.Column(self.status, self.problem_list, pn.Row(self.download, self.copy), self.text,
                         self.apply_text, self.text_error, sizing_mode="stretch_width",
                         styles={"position": "sticky", "top": "0"})
        return [pn.Column(*main, sizing_mode="stretch_width", styles={"flex": "3 1 480px", "min-width": "320px"}),
                pn.Column(side, sizing_mode="stretch_width", styles={"flex": "2 1 360px", "min-width": "300px"})]


class _SegmentList(ListEditor):
    """The segments of the chosen label-map file: segmentAttributes[<file>]."""

    @property
    def path(self) -> list:
        return ["segmentAttributes", self.env._group]


class _SegmentChoice(IntegerRow):
    """ReferencedSegment chosen from the loaded SEG's segments; fills the SEG's UIDs too."""

    def __init__(self, editor: MetadataEditor, field, path_of, write):
        super().__init__(field, path_of, write)
        self.editor = editor
        self.segments = {}
        for s in editor.context.get("segments", []):
            number = s.get("SegmentNumber", s.get("number"))
            if number is None:
                continue
            label = s.get("SegmentLabel", s.get("label", ""))
            source = s.get("file") or s.get("SOPInstanceUID", "")
            self.segments[f"{number} · {label}" + (f" ({source})" if source else "")] = s
        self.choice = pn.widgets.Select(name="Referenced segment: choose from the loaded SEG",
                                        options=["(not set)"] + list(self.segments), sizing_mode="stretch_width")
        self.choice.param.watch(self._chosen, "value")

    def _chosen(self, event) -> None:
        segment = self.segments.get(event.new)
        if segment is None or self._loading:
            return
        group = self.path_of()
        number = int(segment.get("SegmentNumber", segment.get("number")))
        self.widget.value = number
        uid = segment.get("SOPInstanceUID")
        if uid:
            self.editor.write(group + ["segmentationSOPInstanceUID"], uid)
        source = segment.get("SourceSeriesInstanceUID")
        if source:
            self.editor.write(group + ["SourceSeriesForImageSegmentation"], source)
        for key, target in (("SegmentedPropertyTypeCodeSequence", "Finding"), ("AnatomicRegionSequence", "FindingSite")):
            if isinstance(segment.get(key), dict) and get(self.editor.document, group + [target]) is MISSING:
                self.editor.write(group + [target], dict(segment[key]))
        self.editor.form.load()  # the UIDs and codes just filled in

    def set_value(self, value):
        super().set_value(value)
        match = next((k for k, s in self.segments.items() if s.get("SegmentNumber", s.get("number")) == value), "(not set)")
        self.choice.value = match

    def panel(self):
        return pn.Column(self.choice, self.widget, self.message, sizing_mode="stretch_width", margin=0)
