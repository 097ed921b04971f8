"""What every conversion in the app shares: the metadata document, the options, running
the conversion and offering its result.

A mode (seg_mode, pm_mode, sr_mode) subclasses ``ConversionState``: it parses each input
when the files arrive, keeps the parsed objects (series, volumes, datasets), and converts
from them with the library's parsed-input writer, so no file is read twice. Options are
made from ``qidicom.conversions``: the same names, choices and defaults as the CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
import traceback
from typing import Any, Callable

import param


def metadata_editor_class():
    """The metadata form editor (webapp/editor/) when this build has it, else None.
    Imported with the conversion libraries, which it needs, not with the interface."""
    try:
        from editor import MetadataEditor
    except ModuleNotFoundError as error:
        if error.name != "editor":
            log_exception("the metadata editor could not be imported")
        return None
    except Exception:
        log_exception("the metadata editor could not be imported")
        return None
    return MetadataEditor

Pairs = list[tuple[str, bytes]]


def log_exception(context: str) -> None:
    """Full tracebacks go to the browser console, never to the person."""
    print(f"qidicom: {context}", file=sys.stderr)
    traceback.print_exc()


def readable_failure(error: BaseException, what: str) -> str:
    """The message a person sees for an error reading or converting ``what``."""
    from qidicom.errors import MetadataError, QidicomError

    if isinstance(error, MetadataError):
        return str(error) + "".join(f"\n- {problem}" for problem in error.problems)
    if isinstance(error, QidicomError):
        return str(error)
    if isinstance(error, MemoryError):
        log_exception("out of memory")
        return "The browser ran out of memory for this. Try the command-line tool for inputs this large."
    log_exception(f"{what} failed")
    return (f"{what[:1].upper()}{what[1:]} failed unexpectedly ({type(error).__name__}). "
            "Details are in the browser console; please report them.")


class ConversionState(param.Parameterized):
    """One conversion's inputs (parsed), metadata, options, and result."""

    conversion_name = "itkimage2segimage"  # set by each mode
    input_params: tuple[str, ...] = ()  # the subclass's params that make Convert possible

    metadata_name = param.String(default="", doc="file name of the metadata JSON, if one was loaded")
    document = param.Dict(default=None, allow_None=True, doc="the metadata document, as parsed")
    metadata_problems = param.List(default=[], doc="schema problems, each with its JSON path")
    metadata_message = param.String(default="", doc="why the metadata could not be read at all")

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
    blocked_reason = param.String(default="", doc="why Convert is disabled, shown beside it")

    def __init__(self, **params):
        from qidicom import conversions

        super().__init__(**params)
        self.conversion = conversions.get(self.conversion_name)
        for option in self.conversion.app_options:
            self.param.add_parameter(option.dest, _option_param(option))
        self.last_result = None
        self.editor = None
        editor_class = metadata_editor_class()
        if editor_class is not None:
            try:
                self.editor = editor_class(self.conversion.input("metadata").schema)
            except Exception:
                log_exception("the metadata editor could not start")
        if self.editor is not None:
            self.editor.param.watch(self._from_editor, ["document", "problems", "valid"])
        self.param.watch(self._update_can_convert, [
            "document", "metadata_problems", "metadata_message", "busy", "stack_ready", *self.input_params])
        self._update_can_convert()

    # ------------------------------------------------------------------ inputs

    def take_files(self, role: str, pairs: Pairs) -> None:
        """Files chosen for one of the conversion's inputs (see qidicom.conversions)."""
        self.error = ""
        if role == "metadata":
            self.set_metadata(pairs[-1] if pairs else None)
        else:
            self.set_input(role, pairs)

    def set_input(self, role: str, pairs: Pairs) -> None:
        raise ValueError(f"unknown input role {role!r} for {self.conversion.name}")

    def set_metadata(self, pair: tuple[str, bytes] | None) -> None:
        """A metadata JSON file: parsed and checked against the schema now."""
        from qidicom import metadata

        kind = self.conversion.input("metadata").schema
        self.param.update(metadata_name="", document=None, metadata_problems=[], metadata_message="")
        if pair is None:
            return
        name, data = pair
        if self.editor is not None:
            try:
                self.editor.load_json(data)
            except Exception as error:
                self.param.update(metadata_name=name, metadata_message=readable_failure(error, "reading the metadata"))
                return
            if self.editor.load_error:  # the form keeps its document; say why this one was refused
                self.param.update(metadata_name=name, metadata_message=f"{name}: {self.editor.load_error}")
                return
            self.metadata_name = name
            self._from_editor()
            return
        try:
            document = metadata.load_json(data, name=name)
            problems = metadata.validate(document, kind)
        except Exception as error:
            from qidicom.errors import MetadataError

            problems = list(error.problems) if isinstance(error, MetadataError) else []
            message = str(error) if isinstance(error, MetadataError) else readable_failure(error, "reading the metadata")
            self.param.update(metadata_name=name, metadata_message=message, metadata_problems=problems)
            return
        self.param.update(metadata_name=name, document=document, metadata_problems=problems)

    def set_document(self, document: dict) -> None:
        """A metadata document made in the app (a sample, the form editor)."""
        if self.editor is not None:
            self.editor.load_json(json.dumps(document))
            self._from_editor()
            return
        from qidicom import metadata

        self.param.update(document=document, metadata_problems=metadata.validate(document, self.conversion.input("metadata").schema),
                          metadata_message="")

    def _from_editor(self, *_events) -> None:
        """The form changed the document (edited in place): take it and its problems."""
        editor = self.editor
        self.param.update(document=dict(editor.document) if editor.document else None,
                          metadata_problems=list(editor.problems),
                          metadata_message=self.metadata_message if editor.load_error else "")

    def missing(self) -> list[str]:
        """What still stops the conversion, besides the metadata (the subclass's inputs)."""
        return []

    def _update_can_convert(self, *_events) -> None:
        reasons = []
        if not self.stack_ready:
            reasons.append("the DICOM libraries are still loading")
        reasons += self.missing()
        if self.metadata_message:
            reasons.append("the metadata could not be read")
        elif self.document is None:
            reasons.append("no metadata yet: load a metadata JSON" + (" or fill in the form" if self.editor else ""))
        elif self.metadata_problems:
            count = len(self.metadata_problems)
            reasons.append(f"the metadata has {count} problem{'s' if count != 1 else ''} to fix")
        if self.busy:
            reasons.append("a conversion is running")
        self.param.update(can_convert=not reasons,
                          blocked_reason=("Convert is not possible yet: " + "; ".join(reasons) + ".") if reasons else "")

    # ------------------------------------------------------------------ converting

    def option_values(self) -> dict[str, Any]:
        """The chosen options, as the library's keyword arguments."""
        return {option.parameter: getattr(self, option.dest) for option in self.conversion.app_options}

    def write(self, options: dict[str, Any], progress: Callable[[str, float], None]):
        """Run the conversion on the parsed inputs; returns the library's result."""
        raise NotImplementedError

    def start(self) -> None:
        """The Convert button: the conversion runs after this click's message is handled,
        so that "busy" reaches the page first."""
        if self.can_convert:
            self.schedule(self.convert)

    @staticmethod
    def schedule(coroutine_function: Callable) -> None:
        """Replaced by the app with its bridge's ``run_later`` (which sets Panel's curdoc)."""
        asyncio.get_event_loop().create_task(coroutine_function())

    @staticmethod
    def batch() -> contextlib.AbstractContextManager:
        """Replaced by the app with its bridge's ``batched``: the page gets the changes made in
        the block as one patch, so it lays its document out once for them, not per view."""
        return contextlib.nullcontext()

    async def convert(self) -> None:
        if not self.can_convert:
            return
        if self.result_url:
            revoke_download_url(self.result_url)
        # One batched update per state change: every bound view re-renders once, not per field.
        with self.batch():
            self.param.update(busy=True, error="", progress=0.0, progress_message="starting", result_url="",
                              result_name="", result_size=0, result_warnings=[])
        await asyncio.sleep(0.05)
        started = time.perf_counter()
        outcome: dict[str, Any] = {}
        try:
            result = self.write(self.option_values(), self._report)
        except Exception as error:
            outcome = dict(error=readable_failure(error, "the conversion"))
        else:
            self.last_result = result  # the library's result (dataset, bytes, name, warnings)
            written = time.perf_counter()
            outcome = dict(result_url=make_download_url(result.data), result_name=result.filename,
                           result_size=len(result.data), result_warnings=list(result.warnings))
        finally:
            # The link (or the error) first, in a patch of its own: the page applies it at once.
            # The end of "busy" follows: showing and hiding views costs the page a layout of
            # its whole document (0.1-1 s beside a preview), which held the link back.
            with self.batch():
                self.param.update(**outcome)
            if "result_url" in outcome:
                # (the benchmarks read this line: the library call's time, then the link's)
                print(f"qidicom: {self.conversion.short_name} written in {written - started:.2f} s "
                      f"({len(result.data) / 1e6:.1f} MB); link offered {time.perf_counter() - written:.2f} s later")
            await asyncio.sleep(0.02)  # the page's next frame shows the link before the layout below
            with self.batch():
                self.busy = False  # (the progress bar is hidden with it: no last step to show)

    def _report(self, message: str, fraction: float) -> None:
        with self.batch():
            self.param.update(progress_message=message, progress=min(max(float(fraction), 0.0), 1.0))


def _option_param(option) -> param.Parameter:
    if option.type == "choice":
        return param.Selector(default=option.default, objects=list(option.choices), doc=option.help, label=option.label)
    return param.Boolean(default=bool(option.default), doc=option.help, label=option.label)


def make_download_url(data: bytes, mime: str = "application/dicom") -> str:
    """A blob: URL for the bytes; created in the worker (qidicomDownloadURL in worker.js,
    one copy of the bytes), usable by the page (same origin): the bytes never cross to it."""
    from js import qidicomDownloadURL

    return qidicomDownloadURL(data, mime)


def revoke_download_url(url: str) -> None:
    from js import URL

    URL.revokeObjectURL(url)
