"""qidicom.conversions describes every conversion once; the command line must agree with it.

A parser generated from the description is compared, option by option, with the one
``qidicom.cli.build_parser`` makes today (names, required marks, choices, defaults,
metavars, help, value parsing, exclusive groups), so any drift between the two fails here.
"""

from __future__ import annotations

import argparse
import inspect

import pytest

from qidicom import conversions
from qidicom.cli import build_parser

# Options every subcommand has that are not part of a conversion.
COMMON = {"help", "verbose"}
# Strings to feed each value parser: both parsers must agree on all of them.
SAMPLE_VALUES = ["0", "1", "true", "False", "yes", "a,b,,c", "", "x.nrrd"]


def cli_subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: sub for name, sub in action.choices.items() if name != "batch"}


def generated(conversion: conversions.Conversion) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=conversion.name)
    conversions.add_cli_arguments(parser, conversion)
    return parser


def actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and a.dest not in COMMON]


def parsed(function, text: str):
    if function is None:
        return ("as text", text)
    try:
        return ("value", function(text))
    except (argparse.ArgumentTypeError, ValueError) as error:
        return ("refused", str(error))


def exclusive_groups(parser: argparse.ArgumentParser) -> list[tuple[tuple[str, ...], bool]]:
    return [(tuple(a.dest for a in group._group_actions), group.required) for group in parser._mutually_exclusive_groups]


def test_every_cli_subcommand_is_described_and_nothing_else():
    assert sorted(cli_subparsers()) == sorted(c.name for c in conversions.CONVERSIONS)
    assert len({c.short_name for c in conversions.CONVERSIONS}) == len(conversions.CONVERSIONS)


@pytest.mark.parametrize("name", [c.name for c in conversions.CONVERSIONS])
def test_generated_options_equal_the_cli_parser(name):
    conversion = conversions.get(name)
    cli, mine = cli_subparsers()[name], generated(conversion)
    assert cli.description == conversion.help
    ours = actions(mine)
    theirs = actions(cli)
    assert [a.option_strings for a in ours] == [a.option_strings for a in theirs], "options or their order differ"
    for made, expected in zip(ours, theirs):
        where = expected.option_strings[-1]
        assert type(made) is type(expected), where
        for attribute in ("dest", "required", "choices", "default", "metavar", "help", "nargs"):
            made_value, expected_value = getattr(made, attribute), getattr(expected, attribute)
            if attribute == "choices" and expected_value is not None:
                made_value, expected_value = tuple(made_value), tuple(expected_value)
            assert made_value == expected_value, f"{name} {where}: {attribute} differs"
        for text in SAMPLE_VALUES:
            assert parsed(made.type, text) == parsed(expected.type, text), f"{name} {where} parses '{text}' differently"
    assert exclusive_groups(mine) == exclusive_groups(cli)


@pytest.mark.parametrize("name", [c.name for c in conversions.CONVERSIONS])
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
