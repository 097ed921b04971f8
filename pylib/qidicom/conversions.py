"""Each conversion described once: its inputs, options, outputs, the function that runs it.

The ``qidicom`` command line (its subcommands' argparse options, by ``add_cli_arguments``),
the batch manifest (its columns, read off that parser) and the browser app (its file
pickers, option widgets and which library function it calls) are all made from
``CONVERSIONS``, so they cannot drift apart. Names
follow dcmqi: a conversion is named after the dcmqi tool (``itkimage2segimage``) and has a
short name (``seg``); inputs, outputs and options carry dcmqi's long option names.

This module imports nothing but the standard library, so the app can describe its file
pickers before the DICOM libraries are loaded, and a build without numpy can read it.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = [
    "CONVERSIONS", "Conversion", "Input", "Option", "Output", "CliForm",
    "get", "by_short_name", "add_cli_arguments", "app_inputs", "as_json", "POOL_ROLE",
    "comma_list", "zero_or_one", "IMAGE_EXTENSIONS", "DICOM_EXTENSIONS", "JSON_EXTENSIONS",
    "Outcome", "run", "start_reading_images",
]

#: Label maps and parametric maps: NIfTI or NRRD (``.gz`` for the picker's sake: a browser
#: matches only the last suffix of ``.nii.gz``).
IMAGE_EXTENSIONS = (".nrrd", ".nhdr", ".nii", ".nii.gz")
#: DICOM files often have no extension at all: an empty tuple means "any file".
DICOM_EXTENSIONS: tuple[str, ...] = ()
JSON_EXTENSIONS = (".json",)


def comma_list(text: str) -> list[str]:
    """A dcmqi list option: comma-separated, empty parts ignored."""
    return [part for part in text.split(",") if part]


def zero_or_one(text: str) -> bool:
    """A dcmqi on/off option given a value (``--skip 0``)."""
    if text not in ("0", "1", "true", "false", "True", "False"):
        raise argparse.ArgumentTypeError(f"expected 0 or 1, got '{text}'")
    return text in ("1", "true", "True")


#: Value types of options and inputs on the command line.
VALUE_TYPES: dict[str, Callable[[str], Any] | None] = {
    "text": None,
    "list": comma_list,
    "bool01": zero_or_one,
    "flag": None,
    "choice": None,
}


@dataclass(frozen=True)
class CliForm:
    """One way to give an input on the command line (some inputs have two, exclusive)."""

    option: str  # "--inputDICOMDirectory"
    form: str  # "file", "files" (comma-separated list) or "directory"
    metavar: str
    help: str

    @property
    def dest(self) -> str:
        return self.option.lstrip("-")


@dataclass(frozen=True)
class Input:
    """One input of a conversion, by the role it plays."""

    role: str  # "labelmaps", "series", "metadata", ...
    label: str  # what a person calls it
    kind: str  # "image", "dicom" or "json"
    extensions: tuple[str, ...]  # accepted name endings; empty: any file
    multiple: bool  # more than one file
    required: bool
    cli: tuple[CliForm, ...]
    schema: str | None = None  # the metadata kind ("seg", "pm", "sr") of a JSON input
    parameter: str | None = None  # the library function's parameter for it

    def accepts(self, name: str) -> bool:
        """Whether a file name fits this input (DICOM inputs take any name)."""
        lowered = name.lower()
        return not self.extensions or lowered.endswith(self.extensions)

    @property
    def html_accept(self) -> str:
        """The ``accept`` attribute of a file picker for this input."""
        endings = sorted({"." + e.rsplit(".", 1)[-1] for e in self.extensions})
        return ",".join(endings + (["application/json"] if self.kind == "json" else []))


@dataclass(frozen=True)
class Output:
    option: str
    metavar: str
    help: str
    kind: str  # "dicom", "json" or "directory"

    @property
    def dest(self) -> str:
        return self.option.lstrip("-")


@dataclass(frozen=True)
class Option:
    """A setting of a conversion."""

    option: str  # "--segmentationType"
    type: str  # "choice", "flag" (no value), "bool01" (0|1), "text"
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    shorts: tuple[str, ...] = ()  # ("-p",): other names on the command line
    parameter: str | None = None  # the library function's keyword, None if it has no effect
    label: str | None = None  # shown in the app; None: not offered there
    choice_labels: dict[str, str] = field(default_factory=dict)  # value -> what the app shows

    @property
    def dest(self) -> str:
        return self.option.lstrip("-")


@dataclass(frozen=True)
class Conversion:
    name: str  # dcmqi's tool name, the CLI subcommand
    short_name: str  # "seg", "pm", "sr", "seg-read", ...
    help: str
    inputs: tuple[Input, ...]
    outputs: tuple[Output, ...]
    options: tuple[Option, ...]
    function: str  # "module:name" of the library function that runs it from files
    result: str  # "module:name" of the result type
    writer: str | None = None  # "module:name" of the function taking parsed inputs (the app's)
    title: str = ""  # what the app calls the result, e.g. "DICOM SEG"
    #: Roles the app fills from one pool of loaded files, each file found in it by name or
    #: SOP Instance UID (the SR's image library and composite context).
    pooled: tuple[str, ...] = ()

    def input(self, role: str) -> Input:
        return next(item for item in self.inputs if item.role == role)

    def option_named(self, dest: str) -> Option:
        return next(item for item in self.options if item.dest == dest)

    @property
    def app_options(self) -> tuple[Option, ...]:
        return tuple(option for option in self.options if option.label)

    def resolve(self, what: str = "function") -> Any:
        """The library object named by ``function``, ``writer`` or ``result`` (imported now)."""
        module, _, name = getattr(self, what).partition(":")
        return getattr(importlib.import_module(module), name)


def _reference_series(parameter: str = "references") -> Input:
    return Input(
        "series", "Reference DICOM series", "dicom", DICOM_EXTENSIONS, True, True,
        (CliForm("--inputDICOMDirectory", "directory", "DIR", "folder with the reference DICOM series (searched recursively)"),
         CliForm("--inputDICOMList", "files", "F1,F2,...", "comma-separated reference DICOM files")),
        parameter=parameter,
    )


def _read_output(kind: str, prefix_help: str) -> tuple[Output, tuple[Option, ...]]:
    output = Output("--outputDirectory", "DIR", prefix_help, "directory")
    options = (
        # dcmqi's segimage2itkimage calls it -p, its paramap2itkimage -n; -p for both here.
        Option("--prefix", "text", "", shorts=("-p",) if kind == "seg" else ("-p", "-n"),
               help="output file name prefix (none by default: 1.nrrd, meta.json)" if kind == "seg" else
               "output file name prefix (default none: pmap.<ext>, meta.json)", parameter="prefix"),
        Option("--outputType", "choice", "nrrd", choices=("nrrd", "nii", "nifti"), shorts=("-t",),
               help="image format (nii and nifti write .nii.gz, as dcmqi does; default nrrd)", parameter="output_type"),
    )
    return output, options


#: Taken so dcmqi's command lines run unchanged; it changes nothing (no ``parameter``).
_NO_DICOM_VALUE_CHECKS = Option(
    "--noDicomValueChecks", "flag", False,
    help="taken for dcmqi's command lines: qidicom always carries over source values that break VR rules, as this makes dcmqi do")

_SEG_READ_OUTPUT, _SEG_READ_OPTIONS = _read_output("seg", "where to write <prefix>-<N>.<ext> and <prefix>-meta.json")
_PM_READ_OUTPUT, _PM_READ_OPTIONS = _read_output("pm", "where to write <prefix>-pmap.<ext> and <prefix>-meta.json")

CONVERSIONS: tuple[Conversion, ...] = (
    Conversion(
        "itkimage2segimage", "seg", "Label maps (NIfTI/NRRD) and metadata JSON to a DICOM Segmentation.",
        inputs=(
            Input("labelmaps", "Label map(s)", "image", IMAGE_EXTENSIONS, True, True,
                  (CliForm("--inputImageList", "files", "L1,L2,...", "comma-separated label map files, one per outer segmentAttributes group"),),
                  parameter="label_maps"),
            _reference_series(),
            Input("metadata", "Metadata JSON (dcmqi seg format)", "json", JSON_EXTENSIONS, False, True,
                  (CliForm("--inputMetadata", "file", "JSON", "dcmqi-style seg metadata JSON"),),
                  schema="seg", parameter="metadata"),
        ),
        outputs=(Output("--outputDICOM", "FILE", "the SEG to write", "dicom"),),
        options=(
            Option("--skip", "bool01", True, metavar="0|1", help="leave out empty frames (default 1)",
                   parameter="skip_empty", label="Leave out slices with no segmented pixel"),
            Option("--useLabelIDAsSegmentNumber", "flag", False, help="number segments by their labelID instead of consecutively",
                   parameter="use_label_id_as_segment_number", label="Use label values as segment numbers"),
            Option("--segmentationType", "choice", "binary", choices=("binary", "labelmap", "fractional"),
                   help="SEG type (default binary)", parameter="segmentation_type", label="Segmentation type",
                   choice_labels={"binary": "Binary", "labelmap": "Label map", "fractional": "Fractional"}),
            Option("--fractionalType", "choice", "PROBABILITY", choices=("PROBABILITY", "OCCUPANCY"),
                   help="meaning of fractional values (default PROBABILITY)", parameter="fractional_type",
                   label="Fractional type", choice_labels={"PROBABILITY": "Probability", "OCCUPANCY": "Occupancy"}),
            Option("--compress", "choice", "none", choices=("none", "deflate", "rle"),
                   help="transfer syntax: none (Explicit VR Little Endian), deflate, or rle (not for binary)",
                   parameter="compress", label="Compression",
                   choice_labels={"none": "None", "deflate": "Deflate", "rle": "RLE"}),
            Option("--referencesGeometryCheck", "bool01", True, metavar="0|1",
                   help="check the label maps lie on the series grid (default 1)", parameter="check_geometry",
                   label="Check the label maps lie on the series grid"),
            _NO_DICOM_VALUE_CHECKS,
        ),
        function="qidicom.seg:segmentation_from_files", writer="qidicom.seg:write_segmentation",
        result="qidicom.results:WriteResult", title="DICOM SEG",
    ),
    Conversion(
        "segimage2itkimage", "seg-read", "A DICOM Segmentation to label maps and a metadata JSON.",
        inputs=(Input("seg", "DICOM Segmentation", "dicom", DICOM_EXTENSIONS, False, True,
                      (CliForm("--inputDICOM", "file", "FILE", "the SEG to read"),), parameter="source"),),
        outputs=(_SEG_READ_OUTPUT,),
        options=_SEG_READ_OPTIONS + (
            Option("--mergeSegments", "flag", False, help="merge non-overlapping segments into as few label maps as possible",
                   parameter="merge_segments"),),
        function="qidicom.seg:segmentation_to_files", result="qidicom.writers:ExportedFile",
    ),
    Conversion(
        "bin2labelsegimage", "seg-labelmap", "A BINARY DICOM Segmentation to a LABELMAP one.",
        inputs=(Input("seg", "Binary DICOM Segmentation", "dicom", DICOM_EXTENSIONS, False, True,
                      (CliForm("--inputDICOM", "file", "FILE", "the binary SEG to convert"),), parameter="source"),),
        outputs=(Output("--outputDICOM", "FILE", "the labelmap SEG to write", "dicom"),),
        options=(
            Option("--usePalette", "flag", False, help="add a palette colour lookup table from the segment colours",
                   parameter="use_palette"),
            Option("--compress", "choice", "none", choices=("none", "rle", "deflate"), help="transfer syntax (default none)",
                   parameter="compress"),
            Option("--force16Bit", "flag", False, help="store 16-bit pixels even when 8 bits would do", parameter="force_16_bit"),
            Option("--noCheck", "flag", False,
                   help="taken for dcmqi's command lines; qidicom's checks (overlapping segments, SEG type) stay on, "
                   "since without them the label map would be wrong"),
        ),
        function="qidicom.seg:binary_to_labelmap", result="qidicom.results:WriteResult",
    ),
    Conversion(
        "itkimage2paramap", "pm", "A parametric map (NIfTI/NRRD) and metadata JSON to a DICOM Parametric Map.",
        inputs=(
            Input("map", "Parametric map", "image", IMAGE_EXTENSIONS, False, True,
                  (CliForm("--inputImage", "file", "FILE", "the map; it keeps its own grid, and each frame references the "
                           "reference image in its plane"),), parameter="image"),
            Input("metadata", "Metadata JSON (dcmqi pm format)", "json", JSON_EXTENSIONS, False, True,
                  (CliForm("--inputMetadata", "file", "JSON", "dcmqi-style pm metadata JSON"),), schema="pm", parameter="metadata"),
            _reference_series(),
        ),
        outputs=(Output("--outputDICOM", "FILE", "the Parametric Map to write", "dicom"),),
        options=(
            Option("--compress", "choice", "none", choices=("none", "deflate"),
                   help="transfer syntax: none (Explicit VR Little Endian) or deflate", parameter="compress",
                   label="Compression", choice_labels={"none": "None", "deflate": "Deflate"}),
            _NO_DICOM_VALUE_CHECKS,
            Option("--dataType", "choice", "auto", choices=("auto", "float32", "float64"),
                   help="pixel type: auto keeps the map's type (integers as 16-bit with slope/intercept); "
                   "float32 as dcmqi writes, which dcmqi's paramap2itkimage needs to read the map (default auto)",
                   parameter="data_type", label="Pixel data type",
                   choice_labels={"auto": "Keep the map's type", "float32": "float32", "float64": "float64"}),
        ),
        function="qidicom.pm:parametric_map_from_files", writer="qidicom.pm:write_parametric_map",
        result="qidicom.results:WriteResult", title="DICOM Parametric Map",
    ),
    Conversion(
        "paramap2itkimage", "pm-read", "A DICOM Parametric Map to a map image (real-world values) and a metadata JSON.",
        inputs=(Input("pm", "DICOM Parametric Map", "dicom", DICOM_EXTENSIONS, False, True,
                      (CliForm("--inputDICOM", "file", "FILE", "the Parametric Map to read"),), parameter="source"),),
        outputs=(_PM_READ_OUTPUT,),
        options=_PM_READ_OPTIONS,
        function="qidicom.pm:parametric_map_to_files", result="qidicom.writers:ExportedFile",
    ),
    Conversion(
        "tid1500writer", "sr", "dcmqi-style sr-tid1500 JSON to a DICOM TID 1500 measurement report (Comprehensive SR).",
        inputs=(
            Input("metadata", "Measurement metadata JSON (dcmqi sr-tid1500 format)", "json", JSON_EXTENSIONS, False, True,
                  (CliForm("--inputMetadata", "file", "JSON", "dcmqi-style sr-tid1500 metadata JSON"),), schema="sr",
                  parameter="metadata"),
            # In the app both come from one pool of loaded DICOM files (see "dicom" below).
            Input("image_library", "Image library files (the source series)", "dicom", DICOM_EXTENSIONS, True, False,
                  (CliForm("--inputImageLibraryDirectory", "directory", "DIR", "folder with the files named in imageLibrary (searched recursively)"),),
                  parameter="image_library"),
            Input("composite_context", "Composite context files (the SEG, any RWVM or PM)", "dicom", DICOM_EXTENSIONS, True, False,
                  (CliForm("--inputCompositeContextDirectory", "directory", "DIR", "folder with the files named in compositeContext: the SEG, the RWVM"),),
                  parameter="composite_context"),
        ),
        outputs=(Output("--outputDICOM", "FILE", "the SR to write", "dicom"),),
        options=(
            Option("--compress", "choice", "none", choices=("none", "deflate"),
                   help="transfer syntax: none (Explicit VR Little Endian) or deflate", parameter="compress",
                   label="Compression", choice_labels={"none": "None", "deflate": "Deflate"}),
        ),
        function="qidicom.sr:report_from_files", writer="qidicom.sr:write_report",
        result="qidicom.results:WriteResult", title="DICOM SR (TID 1500)", pooled=("image_library", "composite_context"),
    ),
    Conversion(
        "tid1500reader", "sr-read", "A DICOM TID 1500 measurement report to dcmqi-style sr-tid1500 JSON.",
        inputs=(Input("sr", "TID 1500 SR", "dicom", DICOM_EXTENSIONS, False, True,
                      (CliForm("--inputDICOM", "file", "FILE", "the SR to read"),), parameter="source"),),
        outputs=(Output("--outputMetadata", "JSON", "the metadata JSON to write", "json"),),
        options=(),
        function="qidicom.sr:report_to_json", result="builtins:bytes",
    ),
)

#: Where the CLI puts each input's options among the outputs and settings: dcmqi's order,
#: which ``--help`` shows. Lists option names in the order the command line defines them.
CLI_ORDER: dict[str, tuple[str, ...]] = {
    "itkimage2segimage": ("--inputImageList", "series", "--inputMetadata", "--outputDICOM", "--skip",
                          "--useLabelIDAsSegmentNumber", "--segmentationType", "--fractionalType", "--compress",
                          "--referencesGeometryCheck", "--noDicomValueChecks"),
    "itkimage2paramap": ("--inputImage", "--inputMetadata", "series", "--outputDICOM", "--compress", "--noDicomValueChecks",
                         "--dataType"),
    "tid1500writer": ("--inputMetadata", "--outputDICOM", "--inputImageLibraryDirectory",
                      "--inputCompositeContextDirectory", "--compress"),
}


def get(name: str) -> Conversion:
    """A conversion by dcmqi tool name or short name."""
    for conversion in CONVERSIONS:
        if name in (conversion.name, conversion.short_name):
            return conversion
    raise KeyError(f"no conversion named '{name}'")


def by_short_name() -> dict[str, Conversion]:
    return {conversion.short_name: conversion for conversion in CONVERSIONS}


def _option_kwargs(option: Option) -> dict:
    kwargs: dict[str, Any] = {"help": option.help}
    if option.type == "flag":
        kwargs["action"] = "store_true"
        return kwargs
    kwargs["default"] = option.default
    if option.type == "bool01":
        kwargs["type"] = zero_or_one
    if option.choices:
        kwargs["choices"] = option.choices
    if option.metavar:
        kwargs["metavar"] = option.metavar
    return kwargs


def add_cli_arguments(parser: argparse.ArgumentParser, conversion: Conversion) -> None:
    """Add a conversion's inputs, outputs and options to its argparse subparser.

    An input with two command-line forms (a folder or a list of files) becomes a required
    mutually exclusive group, as dcmqi's tools take it.
    """
    by_name: dict[str, Callable[[], None]] = {}
    for item in conversion.inputs:
        def add_input(item: Input = item) -> None:
            target: Any = parser
            if len(item.cli) > 1:
                target = parser.add_mutually_exclusive_group(required=item.required)
            for form in item.cli:
                kwargs: dict[str, Any] = {"metavar": form.metavar, "help": form.help}
                if form.form == "files":
                    kwargs["type"] = comma_list
                if len(item.cli) == 1 and item.required:
                    kwargs["required"] = True
                target.add_argument(form.option, **kwargs)
        by_name[item.role if len(item.cli) > 1 else item.cli[0].option] = add_input
    for output in conversion.outputs:
        by_name[output.option] = lambda output=output: parser.add_argument(
            output.option, required=True, metavar=output.metavar, help=output.help)
    for option in conversion.options:
        names = [*option.shorts, option.option]
        by_name[option.option] = lambda option=option, names=names: parser.add_argument(*names, **_option_kwargs(option))
    order = CLI_ORDER.get(conversion.name) or tuple(by_name)
    for key in order:
        by_name[key]()


@dataclass
class Outcome:
    """What running a conversion from files gave."""

    output: bytes | list[tuple[str, bytes]]  # a file's bytes, or a folder's (name, bytes)
    warnings: list[str]
    result: Any  # the library function's own result (a WriteResult, the files, ...)


def run(conversion: Conversion, sources: dict[str, Any], values: dict[str, Any]) -> Outcome:
    """Run a conversion's library function as described: ``sources`` gives each input by
    role (None when not given), ``values`` each option by its name on the command line;
    options without a library keyword (taken for dcmqi's command lines) change nothing.
    The command line and the batch both run conversions through this."""
    function = conversion.resolve("function")
    arguments: dict[str, Any] = {item.parameter: sources.get(item.role) for item in conversion.inputs}
    arguments.update({option.parameter: values[option.dest] for option in conversion.options if option.parameter})
    warnings: list[str] = []
    if "warnings" in inspect.signature(function).parameters:
        arguments["warnings"] = warnings  # a reader that reports its warnings into a list
    result = output = function(**arguments)
    if isinstance(output, tuple):  # (output, warnings)
        output, more = output
        warnings.extend(more)
    elif hasattr(output, "warnings"):  # a writer's WriteResult
        warnings.extend(output.warnings)
        output = output.data
    if isinstance(output, list):  # a reader's files
        return Outcome([(exported.name, exported.data) for exported in output], warnings, result)
    return Outcome(bytes(output), warnings, result)


def start_reading_images(conversion: Conversion, sources: dict[str, Any]) -> dict[str, Any]:
    """The sources, with each image file given by path already being read on another thread
    (``readers.PendingImage``), before the conversion's module imports the DICOM libraries:
    the inflation of a gzip'd image then overlaps those imports and the series' parsing.
    The command line calls it before ``run``; the library functions take these sources as
    they take paths."""
    import os

    started = dict(sources)
    for item in conversion.inputs:
        value = sources.get(item.role)
        if item.kind != "image" or value is None:
            continue
        paths = value if isinstance(value, list) else [value]
        if not paths or not all(isinstance(path, (str, os.PathLike)) for path in paths):
            continue
        from qidicom.readers import PendingImage  # numpy and the image readers only

        pending = [PendingImage(path) for path in paths]
        started[item.role] = pending if isinstance(value, list) else pending[0]
    return started


#: The app's one picker for a conversion's pooled roles.
POOL_ROLE = "dicom"


def app_inputs(conversion: Conversion) -> list[dict]:
    """The app's file pickers for a conversion: one per input, pooled roles merged into one."""
    pickers = []
    pooled = [item for item in conversion.inputs if item.role in conversion.pooled]
    for item in conversion.inputs:
        if item.role in conversion.pooled:
            if item is not pooled[0]:
                continue
            label = "DICOM files it references: " + ", ".join(i.label.split(" (")[-1].rstrip(")") for i in pooled)
            pickers.append({"role": POOL_ROLE, "label": label, "kind": "dicom", "extensions": [], "accept": "",
                            "multiple": True, "required": any(i.required for i in pooled), "directory": True,
                            "roles": [i.role for i in pooled]})
            continue
        pickers.append({"role": item.role, "label": item.label, "kind": item.kind, "extensions": list(item.extensions),
                        "accept": item.html_accept, "multiple": item.multiple, "required": item.required,
                        "directory": item.kind == "dicom" and item.multiple, "roles": [item.role]})
    return pickers


def as_json(conversion: Conversion) -> dict:
    """What the browser page needs of a conversion: its title and its file pickers."""
    return {"name": conversion.name, "short_name": conversion.short_name, "title": conversion.title,
            "inputs": app_inputs(conversion)}
