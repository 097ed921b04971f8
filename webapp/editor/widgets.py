"""One row of the form per schema field: the control, its help, and its problems beside it.

A row knows its field's JSON path (through ``path_of``, since a detail form moves from item
to item), shows the document's value (``load``) and writes the person's edits back through
``write(path, value)`` (``MISSING`` deletes the key). Rows never hold a copy of the document.
"""

from __future__ import annotations

import html
import json
from typing import Any, Callable

import panel as pn

from .document import MISSING, format_path, hex_colour, problems_for, rgb_of
from .schema import Field

Writer = Callable[[list, Any], None]


def label_of(field: Field) -> str:
    return field.name + (" *" if field.required else "")


class Row:
    """Base: the field's path, its problem pane and the write-back guard."""

    def __init__(self, field: Field, path_of: Callable[[], list], write: Writer):
        self.field = field
        self.path_of = path_of
        self._write = write
        self._loading = False
        self.message = pn.pane.HTML("", visible=False, css_classes=["qi-field-problem"],
                                    margin=(0, 10, 6, 10), styles={"color": "#b00020", "font-size": "0.9em"})

    @property
    def path(self) -> list:
        return self.path_of() + [self.field.name]

    def write(self, value: Any) -> None:
        if not self._loading:
            self._write(self.path, value)

    def load(self, value: Any) -> None:
        self._loading = True
        try:
            self.set_value(value)
        finally:
            self._loading = False

    def set_value(self, value: Any) -> None:  # pragma: no cover - every row overrides it
        raise NotImplementedError

    def show(self, problems: list[tuple[str, str]]) -> None:
        messages = problems_for(problems, format_path(self.path), self.field.name)
        text = "".join(f"<div role='alert'>⚠ {html.escape(m)}</div>" for m in messages)
        if text != self.message.object:
            self.message.object = text
        self.message.visible = bool(messages)

    def panel(self) -> pn.viewable.Viewable:  # pragma: no cover
        raise NotImplementedError


class TextRow(Row):
    def __init__(self, field, path_of, write):
        super().__init__(field, path_of, write)
        placeholder = "" if field.default in (None, "") else f"e.g. {field.default}"
        self.widget = pn.widgets.TextInput(name=label_of(field), placeholder=placeholder,
                                           description=field.help or None, sizing_mode="stretch_width")
        if field.max_length:
            self.widget.max_length = max(field.max_length, 1024)  # longer input is shown as a problem
        self.widget.param.watch(self._changed, "value_input")

    def _changed(self, event) -> None:
        text = event.new or ""
        self.write(text if text != "" else MISSING)

    def set_value(self, value):
        text = value if isinstance(value, str) else ("" if value is MISSING or value is None else json.dumps(value))
        self.widget.value = text
        self.widget.value_input = text

    def panel(self):
        return pn.Column(self.widget, self.message, sizing_mode="stretch_width", margin=0)


class IntegerRow(Row):
    def __init__(self, field, path_of, write):
        super().__init__(field, path_of, write)
        self.widget = pn.widgets.IntInput(name=label_of(field), value=None, start=field.minimum,
                                          end=field.maximum, description=field.help or None,
                                          sizing_mode="stretch_width")
        self.widget.param.watch(self._changed, "value")

    def _changed(self, event) -> None:
        self.write(MISSING if event.new is None else int(event.new))

    def set_value(self, value):
        self.widget.value = value if isinstance(value, int) and not isinstance(value, bool) else None

    def panel(self):
        return pn.Column(self.widget, self.message, sizing_mode="stretch_width", margin=0)


NOT_SET = "(not set)"


class EnumRow(Row):
    def __init__(self, field, path_of, write, choices: list | None = None, labels: dict | None = None):
        super().__init__(field, path_of, write)
        self.choices = list(choices or field.choices)
        self.labels = dict(labels or {})  # value -> what the list shows (e.g. a series' description)
        self.widget = pn.widgets.Select(name=label_of(field), options=self._options(MISSING),
                                        description=field.help or None, sizing_mode="stretch_width")
        self.widget.param.watch(self._changed, "value")

    def _options(self, value) -> dict:
        values = [NOT_SET] + self.choices
        if value is not MISSING and value not in values:
            values.append(value)  # an invalid value stays visible (and is reported)
        return {str(self.labels.get(v, v)): v for v in values}

    def _changed(self, event) -> None:
        self.write(MISSING if event.new == NOT_SET else event.new)

    def set_value(self, value):
        options = self._options(value)
        if self.widget.options != options:
            self.widget.options = options
        self.widget.value = NOT_SET if value is MISSING else value

    def panel(self):
        return pn.Column(self.widget, self.message, sizing_mode="stretch_width", margin=0)


class StringsRow(Row):
    """A list of strings, one per line (file names, b-values)."""

    def __init__(self, field, path_of, write, options: list[str] | None = None):
        super().__init__(field, path_of, write)
        self.options = options
        help_text = (field.help + " — " if field.help else "") + "one per line"
        if options:
            self.widget = pn.widgets.MultiChoice(name=label_of(field), options=list(options),
                                                 description=field.help or None, sizing_mode="stretch_width")
            self.widget.param.watch(self._changed_choice, "value")
        else:
            self.widget = pn.widgets.TextAreaInput(name=label_of(field) + " (one per line)", rows=3,
                                                   description=help_text, sizing_mode="stretch_width")
            self.widget.param.watch(self._changed, "value_input")

    def _changed(self, event) -> None:
        items = [line.strip() for line in (event.new or "").splitlines() if line.strip()]
        self.write(items if items else MISSING)

    def _changed_choice(self, event) -> None:
        self.write(list(event.new) if event.new else MISSING)

    def set_value(self, value):
        items = [str(v) for v in value] if isinstance(value, list) else []
        if self.options is not None:
            options = list(dict.fromkeys(list(self.options) + items))
            if self.widget.options != options:
                self.widget.options = options
            self.widget.value = items
        else:
            text = "\n".join(items)
            self.widget.value = text
            self.widget.value_input = text

    def panel(self):
        return pn.Column(self.widget, self.message, sizing_mode="stretch_width", margin=0)


class JsonRow(Row):
    """Any other value, as JSON text (a list of numbers, an unusual value)."""

    def __init__(self, field, path_of, write):
        super().__init__(field, path_of, write)
        self.widget = pn.widgets.TextInput(name=label_of(field) + " (JSON)", description=field.help or None,
                                           sizing_mode="stretch_width")
        self.widget.param.watch(self._changed, "value")
        self.local = ""

    def _changed(self, event) -> None:
        text = (event.new or "").strip()
        if not text:
            self.local = ""
            self.write(MISSING)
            return
        try:
            value = json.loads(text)
        except ValueError as exc:
            self.local = f"not valid JSON: {exc.msg} at column {exc.colno}"
            self.message.object = f"<div role='alert'>⚠ {html.escape(self.local)}</div>"
            self.message.visible = True
            return
        self.local = ""
        self.write(value)

    def set_value(self, value):
        self.local = ""
        self.widget.value = "" if value is MISSING else json.dumps(value)

    def show(self, problems):
        if not self.local:
            super().show(problems)

    def panel(self):
        return pn.Column(self.widget, self.message, sizing_mode="stretch_width", margin=0)


class ColourRow(Row):
    """recommendedDisplayRGBValue through a colour picker."""

    def __init__(self, field, path_of, write):
        super().__init__(field, path_of, write)
        self.widget = pn.widgets.ColorPicker(name=label_of(field), value="#000000",
                                             description=field.help or None, width=120)
        self.text = pn.pane.HTML("", margin=(28, 5, 0, 5))
        self.clear = pn.widgets.Button(name="Clear colour", button_type="light", margin=(24, 5, 0, 5),
                                       description="Remove recommendedDisplayRGBValue")
        self.widget.param.watch(self._changed, "value")
        self.clear.on_click(lambda _: self.write(MISSING))

    def _changed(self, event) -> None:
        rgb = rgb_of(event.new)
        self.text.object = html.escape(json.dumps(rgb))
        self.write(rgb)

    def set_value(self, value):
        colour = hex_colour(value)
        self.widget.value = colour or "#000000"
        self.text.object = html.escape(json.dumps(value)) if colour else "(not set)"

    def panel(self):
        return pn.Column(pn.Row(self.widget, self.text, self.clear, margin=0), self.message, margin=0)
