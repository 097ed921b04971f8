"""Forms built from the schema fields: coded-concept pickers, nested objects, lists of groups.

A list of objects is edited master-detail: a keyboard-navigable list of its items and one
form for the selected item. The number of widgets therefore does not grow with the number
of segments or measurement groups, which keeps a 100-segment document responsive.
"""

from __future__ import annotations

import html
from typing import Any, Callable

import panel as pn

from .document import MISSING, format_path, get
from .schema import Field
from .widgets import Row, TextRow, label_of


WRAPPING_LABEL = "label { white-space: normal; overflow-wrap: anywhere; }"


class CodeRow(Row):
    """A coded concept: search a code list by meaning or code value, or type a custom code.

    The search runs in Python (``qidicom.codes.search``: an exact code value first, then
    meanings starting with the text, then meanings holding every word) and the matches are
    listed in a plain list box: type, Tab into the list, arrow to an entry (it is taken at
    once), all with the keyboard.
    """

    LIMIT = 40

    def __init__(self, field: Field, path_of, write, picker: str | None, category_of: Callable | None = None):
        super().__init__(field, path_of, write)
        self.picker = picker
        self.category_of = category_of  # () -> the category code, for the segmentation types
        self.current: Any = MISSING
        self.texts = {"CodeValue": "", "CodingSchemeDesignator": "", "CodeMeaning": ""}
        self.by_label: dict[str, Any] = {}
        label = label_of(field)
        self.search = pn.widgets.TextInput(
            name=f"{label} — search by meaning or code value", placeholder="type to search the code list",
            description=field.help or None, sizing_mode="stretch_width", visible=picker is not None,
            stylesheets=[WRAPPING_LABEL])
        self.matches = pn.widgets.Select(name=f"{field.name} — matches (choose one)", options=[], size=6,
                                         sizing_mode="stretch_width", visible=False, stylesheets=[WRAPPING_LABEL])
        # Three boxes side by side; their long labels wrap instead of running into each other.
        box = {"sizing_mode": "stretch_width", "min_width": 120, "stylesheets": [WRAPPING_LABEL]}
        self.value = pn.widgets.TextInput(name=f"{field.name} CodeValue", **box)
        self.scheme = pn.widgets.TextInput(name=f"{field.name} CodingSchemeDesignator", **box)
        self.meaning = pn.widgets.TextInput(name=f"{field.name} CodeMeaning", **box)
        self.note = pn.pane.HTML("", visible=False, margin=(0, 10), styles={"color": "#555", "font-size": "0.9em"})
        self.search.param.watch(self._searched, "value_input")
        self.matches.param.watch(self._picked, "value")
        for widget in (self.value, self.scheme, self.meaning):
            widget.param.watch(self._typed, "value_input")
        self.on_pick: list[Callable[[Any], None]] = []

    def _searched(self, event) -> None:
        self.refresh_matches(event.new)

    def refresh_matches(self, text: str | None = None) -> None:
        """List the entries matching the search text (the box's own when None)."""
        from qidicom import codes

        text = (self.search.value_input if text is None else text or "").strip()
        if not text or self.picker is None:
            self.by_label = {}
            self.matches.visible = False
            return
        category = self.category_of() if self.category_of is not None else None
        found = codes.search(self.picker, text, category=category, limit=self.LIMIT)
        self.by_label = {c.label: c for c in found}
        # A heading entry first, so no real entry is chosen until the person chooses it.
        n = len(found)
        heading = (f"{n}{'+' if n == self.LIMIT else ''} match{'es' if n != 1 else ''}: choose one"
                   if found else "no match: type the code in the boxes below")
        self._loading = True
        try:
            self.matches.options = [heading] + list(self.by_label)
            self.matches.value = heading
        finally:
            self._loading = False
        self.matches.visible = True

    def _picked(self, event) -> None:
        code = self.by_label.get(event.new)
        if code is None or self._loading:
            return
        self.load(self._merge(code.as_json()))
        self.write(self.current)
        for callback in self.on_pick:
            callback(code)

    def _merge(self, fields: dict) -> dict:
        base = dict(self.current) if isinstance(self.current, dict) else {}
        base.update(fields)
        return base

    def _typed(self, event) -> None:
        if self._loading:
            return
        # The latest text of each box, whichever of value_input (as typed) and value (on
        # leaving the box) told it last: the browser may coalesce either.
        key = {id(self.value): "CodeValue", id(self.scheme): "CodingSchemeDesignator",
               id(self.meaning): "CodeMeaning"}[id(event.obj)]
        self.texts[key] = event.new or ""
        parts = dict(self.texts)
        if not any(parts.values()):
            self.current = MISSING
            self.write(MISSING)
        else:
            self.current = self._merge(parts)
            self.write(self.current)
        self._update_note()

    def set_value(self, value):
        self.current = dict(value) if isinstance(value, dict) else MISSING
        code = value if isinstance(value, dict) else {}
        for widget, key in ((self.value, "CodeValue"), (self.scheme, "CodingSchemeDesignator"),
                            (self.meaning, "CodeMeaning")):
            text = code.get(key)
            text = text if isinstance(text, str) else ("" if text is None else str(text))
            widget.value = text
            widget.value_input = text
            self.texts[key] = text
        self._update_note()

    def _known(self, code: dict):
        from qidicom import codes

        if self.picker is None or not isinstance(code.get("CodeValue"), str):
            return None
        found = codes.find(self.picker, code["CodeValue"], code.get("CodingSchemeDesignator"))
        if found is None and self.picker == "segmentation-type":
            found = next((c for c in codes.types_of_category(None)
                          if c.value == code["CodeValue"] and c.scheme == code.get("CodingSchemeDesignator")), None)
        return found

    def _update_note(self) -> None:
        code = self.current if isinstance(self.current, dict) else {}
        known = self._known(code)
        text = ""
        if known is not None and known.meaning != code.get("CodeMeaning"):
            text = f"The code list calls {known.scheme} {known.value} “{html.escape(known.meaning)}”."
        elif known is None and code.get("CodeValue") and self.picker:
            text = "Custom code (not in the code list)."
        self.note.object = text
        self.note.visible = bool(text)
        if self.picker:
            meaning = code.get("CodeMeaning")
            self.search.placeholder = (f"now: {meaning} — type to search the code list" if meaning
                                       else "type to search the code list by meaning or code value")

    def panel(self):
        return pn.Column(
            pn.pane.HTML(f"<b>{html.escape(label_of(self.field))}</b>", margin=(8, 10, 0, 10)),
            self.search, self.matches, pn.Row(self.value, self.scheme, self.meaning, sizing_mode="stretch_width", margin=0),
            self.note, self.message, sizing_mode="stretch_width", margin=0,
            styles={"border-left": "3px solid #d0d7de", "padding-left": "4px"})


class CodeOrTextRow(Row):
    """A qualitative value: a coded concept or a text."""

    def __init__(self, field, path_of, write, picker=None):
        super().__init__(field, path_of, write)
        self.mode = pn.widgets.RadioButtonGroup(name=f"{field.name} is a", options=["Code", "Text"], value="Code")
        self.code = CodeRow(field, path_of, write, picker)
        self.text = TextRow(field, path_of, write)
        self.mode.param.watch(self._mode, "value")

    def _mode(self, event) -> None:
        self.code_panel.visible = event.new == "Code"
        self.text_panel.visible = event.new == "Text"

    def set_value(self, value):
        is_text = isinstance(value, str)
        self.mode.value = "Text" if is_text else "Code"
        self.code.load(value if not is_text else MISSING)
        self.text.load(value if is_text else MISSING)

    def show(self, problems):
        self.code.show(problems)
        self.text.show(problems)

    def panel(self):
        self.code_panel = self.code.panel()
        self.text_panel = self.text.panel()
        self.text_panel.visible = False
        return pn.Column(self.mode, self.code_panel, self.text_panel, sizing_mode="stretch_width", margin=0)


class Form:
    """The fields of one object at ``path_of()``."""

    def __init__(self, env, fields: list[Field], path_of: Callable[[], list], skip: tuple = ()):
        self.env = env
        self.path_of = path_of
        self.rows: list[Row] = []
        for field in fields:
            if field.name in skip:
                continue
            self.rows.append(env.make_row(field, path_of))
        self.by_name = {row.field.name: row for row in self.rows}

    def load(self) -> None:
        node = get(self.env.document, self.path_of(), {})
        for row in self.rows:
            row.load(node.get(row.field.name, MISSING) if isinstance(node, dict) else MISSING)

    def show(self, problems) -> None:
        for row in self.rows:
            row.show(problems)

    def panel(self) -> pn.Column:
        return pn.Column(*[row.panel() for row in self.rows], sizing_mode="stretch_width", margin=0)


class ObjectRow(Row):
    """A nested object (algorithm identification) as a collapsible card."""

    def __init__(self, env, field, path_of, write):
        super().__init__(field, path_of, write)
        self.form = Form(env, field.fields, lambda: self.path)

    def set_value(self, value):
        self.form.load()

    def show(self, problems):
        super().show([p for p in problems if p[0] == format_path(self.path)])
        self.form.show(problems)

    def panel(self):
        # Open: BokehJS links the widgets of a collapsed Card but never draws them, so a value
        # set on them (loading a document) fails in the page.
        return pn.Card(self.form.panel(), self.message, title=label_of(self.field), collapsed=False,
                       sizing_mode="stretch_width", margin=(5, 0))


class ObserverRow(Row):
    """The SR observer: a person (name) or a device (UID, name, manufacturer...)."""

    def __init__(self, env, field, path_of, write):
        super().__init__(field, path_of, write)
        self.form = Form(env, field.fields, lambda: self.path)
        kind = self.form.by_name["ObserverType"]
        kind.choices = list(field.choices)
        kind.widget.options = ["(not set)"] + kind.choices
        self.panels = {row.field.name: row.panel() for row in self.form.rows}
        kind.widget.param.watch(lambda e: self._visibility(e.new), "value")

    def _visibility(self, kind: str) -> None:
        for name, panel in self.panels.items():
            if name == "PersonObserverName":
                panel.visible = kind != "DEVICE"
            elif name.startswith("Device"):
                panel.visible = kind == "DEVICE"

    def set_value(self, value):
        self.form.load()
        self._visibility(value.get("ObserverType") if isinstance(value, dict) else None)

    def show(self, problems):
        super().show([p for p in problems if p[0] == format_path(self.path)])
        self.form.show(problems)

    def panel(self):
        return pn.Column(pn.pane.HTML(f"<b>{html.escape(label_of(self.field))}</b>"), *self.panels.values(), self.message,
                         sizing_mode="stretch_width", margin=0)


class ListEditor(Row):
    """A list of objects: pick an item, edit it below; add, remove and reorder items."""

    def __init__(self, env, field: Field, path_of, write, summary: Callable[[list, int, Any], str],
                 new_item: Callable[[list], dict], skip: tuple = ()):
        super().__init__(field, path_of, write)
        self.env = env
        self.summary = summary
        self.new_item = new_item
        self.index = 0
        noun = field.item_title or "item"
        self.noun = noun
        self.items = pn.widgets.Select(name=f"{label_of(field)}: choose a {noun} to edit", options={}, size=8,
                                       sizing_mode="stretch_width")
        self.add = pn.widgets.Button(name=f"Add {noun}", button_type="primary", description=f"Add a {noun} at the end")
        self.delete = pn.widgets.Button(name=f"Remove {noun}", button_type="danger", description=f"Remove the chosen {noun}")
        self.up = pn.widgets.Button(name="Move up", description=f"Move the chosen {noun} one place up")
        self.down = pn.widgets.Button(name="Move down", description=f"Move the chosen {noun} one place down")
        self.count = pn.pane.HTML("")
        self._skip = skip
        self._form: Form | None = None  # built when the list first has an item (keeps pages light)
        self.items.param.watch(self._chosen, "value")
        self.add.on_click(lambda _: self._add())
        self.delete.on_click(lambda _: self._remove())
        self.up.on_click(lambda _: self._move(-1))
        self.down.on_click(lambda _: self._move(+1))
        self._problems: list = []
        self.detail = pn.Column(sizing_mode="stretch_width", margin=0)

    @property
    def form(self) -> Form:
        if self._form is None:
            self._form = Form(self.env, self.field.fields, lambda: self.path + [self.index], skip=self._skip)
            self.detail.objects = [self._form.panel()]
        return self._form

    def entries(self) -> list:
        value = get(self.env.document, self.path, [])
        return value if isinstance(value, list) else []

    def _chosen(self, event) -> None:
        if self._loading or event.new is None:
            return
        self.index = int(event.new)
        self.form.load()
        self.form.show(self._problems)
        self._buttons()

    def _add(self) -> None:
        entries = self.entries()
        item = self.new_item(entries)
        self.env.edit(lambda doc: self._insert(doc, item))
        self.index = len(self.entries()) - 1
        self.refresh()

    def _insert(self, document, item) -> None:
        from .document import put

        if isinstance(get(document, self.path, None), list):
            get(document, self.path).append(item)
        else:
            put(document, self.path, [item])

    def _remove(self) -> None:
        entries = self.entries()
        if not entries:
            return
        index = self.index

        def drop(document):
            del get(document, self.path)[index]
        self.env.edit(drop)
        self.index = max(0, min(index, len(self.entries()) - 1))
        self.refresh()

    def _move(self, step: int) -> None:
        entries = self.entries()
        i, j = self.index, self.index + step
        if not (0 <= i < len(entries) and 0 <= j < len(entries)):
            return

        def swap(document):
            items = get(document, self.path)
            items[i], items[j] = items[j], items[i]
        self.env.edit(swap)
        self.index = j
        self.refresh()

    def set_value(self, value):
        self.index = min(self.index, max(0, len(value) - 1)) if isinstance(value, list) else 0
        self.refresh(loading=True)

    def refresh(self, loading: bool = False) -> None:
        """Item list, chosen item and detail form from the document."""
        entries = self.entries()
        was = self._loading
        self._loading = True
        try:
            self.update_labels()
            self.items.value = str(self.index) if entries else None
        finally:
            self._loading = was
        self.detail.visible = bool(entries)
        if entries:
            self.form.load()
            self.form.show(self._problems)
        self._buttons()

    def update_labels(self) -> None:
        entries = self.entries()
        base = format_path(self.path)
        flagged = {p[0] for p in self._problems}
        options = {}
        for i, item in enumerate(entries):
            here = f"{base}[{i}]"
            bad = any(w == here or w.startswith(here + ".") or w.startswith(here + "[") for w in flagged)
            options[("⚠ " if bad else "") + self.summary(self.path, i, item)] = str(i)
        if self.items.options != options:
            self.items.options = options
        n = len(entries)
        self.count.object = f"{n} {self.noun}{'' if n == 1 else 's'}"

    def _buttons(self) -> None:
        n = len(self.entries())
        self.delete.disabled = n == 0
        self.up.disabled = self.index <= 0 or n == 0
        self.down.disabled = self.index >= n - 1

    def show(self, problems) -> None:
        self._problems = problems
        own = [p for p in problems if p[0] == format_path(self.path)]
        parent = format_path(self.path_of())
        own += [p for p in problems if p[0] == parent and p[1].startswith(f"'{self.field.name}' is a required")]
        super().show(own)
        self.update_labels()
        if self.entries():
            self.form.show(problems)

    def panel(self):
        return pn.Column(
            pn.pane.HTML(f"<h3 style='margin:4px 0'>{html.escape(label_of(self.field))}</h3>"),
            self.message, self.count, self.items, pn.Row(self.add, self.delete, self.up, self.down),
            self.detail, sizing_mode="stretch_width", margin=0,
            styles={"border": "1px solid #d0d7de", "border-radius": "6px", "padding": "6px"})

