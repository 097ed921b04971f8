"""qidicom.conversions describes every conversion once; dcmqi's own tools are the contract.

The ``qidicom`` subcommands are made from that description, so the check that matters is
against dcmqi 1.5.7's native tools: every option their ``--help`` lists must be taken by the
subcommand of the same name, under each of its names (short ones too), with the same number
of values and the same default, and a command line giving all of them must parse. The
description must also name library functions that take what it describes, and offer the
app only choices the command line takes.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from qidicom import conversions
from qidicom.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
DCMQI_VERSION = "1.5.7"

#: Options every dcmqi tool has from its command-line toolkit rather than from its
#: conversion: the Slicer execution model's (for Slicer to run the tool as a module) and
#: TCLAP's own. They convert nothing, and qidicom does not take them.
TOOLKIT_OPTIONS = {"--returnparameterfile", "--processinformationaddress", "--xml", "--echo", "--", "--ignore_rest",
                   "--version"}


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def dcmqi_bin() -> Path | None:
    """dcmqi's virtual environment's bin folder: $DCMQI_VENV, or where tests/run.sh puts it."""
    candidates = [Path(os.environ["DCMQI_VENV"]) / "bin"] if os.environ.get("DCMQI_VENV") else []
    for candidate in candidates + [REPO / "bench" / ".dcmqi-venv" / "bin", REPO / ".dcmqi-venv" / "bin"]:
        if list(candidate.parent.glob(f"lib/python*/site-packages/dcmqi-{DCMQI_VERSION}.dist-info")):
            return candidate
    return None


def dcmqi_options(tool: str) -> list[dict]:
    """The options a dcmqi tool's ``--help`` lists: their names, value (if any) and default.

    Each entry of the "Where:" section starts at three spaces with its names
    (``-t <nrrd|...>,  --outputType <nrrd|...>``, wrapped at six spaces), then describes
    the option at five, ending with ``(value: X)`` when it has a default.
    """
    bin_dir = dcmqi_bin()
    if bin_dir is None or not (bin_dir / tool).exists():
        pytest.skip(f"dcmqi {DCMQI_VERSION} is not installed (set DCMQI_VENV, or run bench/setup_dcmqi.sh)")
    run = subprocess.run([str(bin_dir / tool), "--help"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.split("\nWhere:", 1)[1].split("\n   Description:", 1)[0].splitlines()
    entries: list[dict] = []
    for line in lines:
        if re.match(r"^   -", line):
            entries.append({"head": line.strip(), "text": ""})
        elif entries and line.startswith("      ") and not entries[-1]["text"]:
            entries[-1]["head"] += line.strip()  # the names' line, wrapped
        elif entries and line.strip():
            entries[-1]["text"] += " " + line.strip()
    options = []
    for entry in entries:
        names = re.findall(r"(?:^|,\s+)(--?[A-Za-z_]\w*|--)(?=\s|,|$)", entry["head"])
        value = re.search(r"<([^>]*>?)>", entry["head"])
        default = re.search(r"\(value:\s*([^)]*)\)", entry["text"])
        options.append({"names": names, "value": value.group(1) if value else None,
                        "default": default.group(1).strip() if default else None})
    assert options, f"no options read from {tool} --help"
    return options


def as_dcmqi_text(value) -> str:
    """A parsed default the way dcmqi's help prints one (switches and 0|1 options as 0/1)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def sample_value(option: dict) -> str:
    """A value dcmqi takes for the option: its default, or one of its kind."""
    if option["default"] is not None:
        return option["default"]
    if option["value"].startswith("std::vector"):
        return "first.nrrd,second.nrrd"
    return "somewhere/file"


TOOLS = [conversion.name for conversion in conversions.CONVERSIONS]


def test_every_cli_subcommand_is_a_described_conversion_and_nothing_else():
    assert sorted(subcommands(build_parser(with_batch=False))) == sorted(TOOLS)
    assert sorted(subcommands(build_parser())) == sorted(TOOLS + ["batch"])
    assert len({c.short_name for c in conversions.CONVERSIONS}) == len(conversions.CONVERSIONS)


@pytest.mark.parametrize("tool", TOOLS)
def test_every_option_of_dcmqis_tool_is_taken_with_the_same_names_values_and_default(tool):
    ours = subcommands(build_parser(with_batch=False))[tool]
    by_name = {name: action for action in ours._actions for name in action.option_strings}
    checked = 0
    for option in dcmqi_options(tool):
        if set(option["names"]) & TOOLKIT_OPTIONS:
            continue
        long_name = option["names"][-1]
        assert long_name in by_name, f"qidicom {tool} does not take dcmqi's {long_name}"
        action = by_name[long_name]
        missing = set(option["names"]) - set(action.option_strings)
        assert not missing, f"{tool} {long_name}: qidicom does not take it as {', '.join(sorted(missing))}"
        takes_value = action.nargs != 0
        assert takes_value == (option["value"] is not None), f"{tool} {long_name}: a value or not"
        if option["default"] is not None:
            assert as_dcmqi_text(action.default) == option["default"], f"{tool} {long_name}: default"
        checked += 1
    assert checked >= 2


@pytest.mark.parametrize("tool", TOOLS)
def test_a_command_line_with_all_of_dcmqis_options_parses(tool):
    options = [o for o in dcmqi_options(tool) if not set(o["names"]) & TOOLKIT_OPTIONS and "--help" not in o["names"]]
    ours = subcommands(build_parser(with_batch=False))[tool]
    exclusive = [{a.option_strings[-1] for a in group._group_actions} for group in ours._mutually_exclusive_groups]
    # dcmqi takes a folder and a list of files together; qidicom takes one of them: one line each.
    variants: list[set] = [set()]
    for group in exclusive:
        variants = [skip | (group - {keep}) for skip in variants for keep in sorted(group)]
    for left_out in variants:
        argv = [tool]
        for option in options:
            name = option["names"][-1]
            if name in left_out:
                continue
            argv += [name] if option["value"] is None else [name, sample_value(option)]
        try:
            args = build_parser(with_batch=False).parse_args(argv)
        except SystemExit:
            pytest.fail(f"qidicom refuses dcmqi's command line {' '.join(argv)}")
        for option in options:
            name = option["names"][-1]
            if name in left_out or option["value"] is None:
                continue
            action = next(a for a in ours._actions if name in a.option_strings)
            given = sample_value(option)
            assert getattr(args, action.dest) == (action.type(given) if action.type else given), f"{tool} {name}"


@pytest.mark.parametrize("name", TOOLS)
def test_library_functions_take_every_described_input_and_option(name):
    conversion = conversions.get(name)
    function = conversion.resolve("function")
    assert inspect.isclass(conversion.resolve("result"))
    parameters = inspect.signature(function).parameters
    for item in conversion.inputs:
        if item.parameter and conversion.name != "tid1500reader":
            assert item.parameter in parameters, f"{function.__name__} has no parameter {item.parameter}"
    for option in conversion.options:
        if option.parameter:
            assert option.parameter in parameters, f"{function.__name__} has no parameter {option.parameter}"
    if conversion.writer:
        writer = inspect.signature(conversion.resolve("writer")).parameters
        for option in conversion.app_options:
            assert option.parameter in writer, f"{conversion.writer} has no parameter {option.parameter}"


def called_with(**arguments):
    """A stand-in library function for the test below: its output is what it was called with."""
    return json.dumps(arguments).encode(), []


def test_the_cli_runs_each_option_through_the_library_keyword_the_description_names():
    import dataclasses

    def run(command_line: list[str]) -> dict:
        args = build_parser(with_batch=False).parse_args(command_line)
        conversion = dataclasses.replace(conversions.get(command_line[0]), function=f"{__name__}:called_with")
        sources = {item.role: f"<{item.role}>" for item in conversion.inputs}
        return json.loads(conversions.run(conversion, sources, vars(args)).output)

    assert run(["itkimage2segimage", "--inputImageList", "l.nrrd", "--inputDICOMDirectory", "ct", "--inputMetadata",
                "m.json", "--outputDICOM", "o.dcm", "--skip", "0", "--segmentationType", "labelmap",
                "--referencesGeometryCheck", "0", "--noDicomValueChecks"]) == {
        "label_maps": "<labelmaps>", "references": "<series>", "metadata": "<metadata>",
        "skip_empty": False, "use_label_id_as_segment_number": False, "segmentation_type": "labelmap",
        "fractional_type": "PROBABILITY", "compress": "none", "check_geometry": False,
    }
    assert run(["paramap2itkimage", "--inputDICOM", "pm.dcm", "--outputDirectory", "out", "-n", "adc", "-t", "nii"]) == {
        "source": "<pm>", "prefix": "adc", "output_type": "nii",
    }


def test_choices_offered_by_the_app_are_the_cli_choices_with_labels():
    for conversion in conversions.CONVERSIONS:
        for option in conversion.app_options:
            assert option.parameter, f"{conversion.name} {option.option}: shown in the app but runs nothing"
            if option.type == "choice":
                assert set(option.choice_labels) == set(option.choices), f"{conversion.name} {option.option}"
                assert option.default in option.choices


def test_the_pages_pickers_accept_what_the_readers_read():
    seg = conversions.get("seg")
    labels = seg.input("labelmaps")
    assert labels.accepts("liver.nii.gz") and labels.accepts("Liver.NRRD") and not labels.accepts("seg.json")
    assert seg.input("series").accepts("IM0001")  # DICOM files need no extension
    # A browser matches only the last suffix, so .nii.gz needs ".gz" in the picker's accept.
    assert labels.html_accept.split(",") == [".gz", ".nhdr", ".nii", ".nrrd"]
    assert seg.input("metadata").schema == "seg" and conversions.get("pm").input("metadata").schema == "pm"
    sr = conversions.as_json(conversions.get("sr"))
    assert [picker["role"] for picker in sr["inputs"]] == ["metadata", conversions.POOL_ROLE]
    assert sr["inputs"][1]["roles"] == ["image_library", "composite_context"]
    with pytest.raises(KeyError, match="no conversion named 'nope'"):
        conversions.get("nope")
