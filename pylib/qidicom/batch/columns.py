"""The manifest's columns, read off the CLI's own parser so they cannot drift from it.

A column is named like the CLI option it stands for (``--inputImageList`` is the column
``inputImageList``); which columns a conversion takes, which are required, their choices
and defaults, and whether a value is a file, a folder or a list of files all come from
``qidicom.cli.build_parser``. Only the short aliases and the batch's own columns (``case``,
``conversion``) are defined here.
"""

from __future__ import annotations

import argparse
import functools
import textwrap
from dataclasses import dataclass, field
from typing import Mapping

#: Short names a manifest may use instead of the CLI's subcommand names.
ALIASES = {
    "seg": "itkimage2segimage",
    "pm": "itkimage2paramap",
    "sr": "tid1500writer",
    "seg-read": "segimage2itkimage",
    "pm-read": "paramap2itkimage",
    "sr-read": "tid1500reader",
    "seg-labelmap": "bin2labelsegimage",
}

#: Columns of the batch itself rather than of a conversion.
CASE_COLUMN = "case"
CONVERSION_COLUMN = "conversion"
BATCH_COLUMNS = (CASE_COLUMN, CONVERSION_COLUMN)

#: Options of every subcommand that mean nothing per case.
_NOT_COLUMNS = {"help", "verbose"}
#: Metavars the CLI uses for paths; a comma in a metavar marks a comma-separated list.
_PATH_METAVARS = {"FILE", "DIR", "JSON"}


@dataclass(frozen=True)
class Column:
    """One manifest column: a CLI option of one or more conversions."""

    name: str
    option: str  # the long option, e.g. "--inputImageList"
    role: str  # "input", "output" or "option"
    directory: bool  # a folder rather than a file
    many: bool  # a comma-separated list (or a list, in JSON lines and Parquet)
    flag: bool  # an on/off switch without a value on the command line
    choices: tuple[str, ...] | None
    default: object
    required: bool
    help: str
    metavar: str | None = None

    @property
    def is_path(self) -> bool:
        return self.role in ("input", "output")


@dataclass(frozen=True)
class Conversion:
    """A subcommand a manifest row can ask for, with its columns in the CLI's order."""

    name: str
    alias: str | None
    help: str
    columns: dict[str, Column]
    one_of: tuple[tuple[str, ...], ...]  # groups of which exactly one column is required
    parser: argparse.ArgumentParser | None = field(default=None, compare=False, repr=False)

    @property
    def output(self) -> Column:
        return next(column for column in self.columns.values() if column.role == "output")

    @property
    def inputs(self) -> list[Column]:
        return [column for column in self.columns.values() if column.role == "input"]


def _long_option(action: argparse.Action) -> str:
    return next((o for o in action.option_strings if o.startswith("--")), action.option_strings[0])


def _column(action: argparse.Action, required: bool) -> Column:
    metavar = action.metavar if isinstance(action.metavar, str) else None
    many = bool(metavar and "," in metavar)
    is_path = bool(metavar and (metavar in _PATH_METAVARS or many))
    role = "option"
    if is_path:
        role = "output" if action.dest.startswith("output") else "input"
    flag = isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))
    return Column(
        name=action.dest,
        option=_long_option(action),
        role=role,
        directory=metavar == "DIR",
        many=many,
        flag=flag,
        choices=tuple(action.choices) if action.choices else None,
        default=action.default,
        required=required,
        help=action.help or "",
        metavar=metavar,
    )


def conversion_from_parser(name: str, parser: argparse.ArgumentParser, help_text: str) -> Conversion:
    """Describe one subcommand's options as manifest columns."""
    grouped: dict[str, tuple[str, ...]] = {}
    one_of = []
    for group in parser._mutually_exclusive_groups:  # argparse keeps no public view of these
        dests = tuple(action.dest for action in group._group_actions)
        if group.required:
            one_of.append(dests)
        for dest in dests:
            grouped[dest] = dests
    columns = {}
    for action in parser._actions:
        if not action.option_strings or action.dest in _NOT_COLUMNS or action.dest == argparse.SUPPRESS:
            continue
        columns[action.dest] = _column(action, bool(action.required))
    alias = next((short for short, long in ALIASES.items() if long == name), None)
    return Conversion(name, alias, help_text, columns, tuple(one_of), parser)


def conversions_from_subparsers(choices: Mapping[str, argparse.ArgumentParser]) -> dict[str, Conversion]:
    """Every conversion subcommand among a parser's subcommands (all but ``batch``)."""
    result = {}
    for name, parser in choices.items():
        if name == "batch":
            continue
        result[name] = conversion_from_parser(name, parser, parser.description or "")
    return result


class UsageError(ValueError):
    """A row's options that the CLI's parser refuses; the message is the parser's."""


def _refuse(message: str):
    raise UsageError(message)


@functools.lru_cache(maxsize=1)
def conversions() -> dict[str, Conversion]:
    """The conversions of the installed CLI, by subcommand name.

    Their parsers (a private copy) raise UsageError instead of exiting, so a row's options
    are checked by exactly the code that checks them on the command line.
    """
    from qidicom.cli import build_parser

    parser = build_parser(with_batch=False)
    subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for sub in subcommands.choices.values():
        sub.error = _refuse  # instance attribute: argparse calls self.error(message)
    return conversions_from_subparsers(subcommands.choices)


def resolve_conversion(text: str, known: Mapping[str, Conversion] | None = None) -> Conversion | None:
    """The conversion a manifest names, by CLI name or short alias (case-insensitive)."""
    known = known if known is not None else conversions()
    key = text.strip()
    lowered = {name.lower(): name for name in known}
    name = ALIASES.get(key.lower()) or lowered.get(key.lower())
    return known.get(name) if name else None


def all_columns(known: Mapping[str, Conversion] | None = None) -> set[str]:
    known = known if known is not None else conversions()
    names = set(BATCH_COLUMNS)
    for conversion in known.values():
        names.update(conversion.columns)
    return names


def default_output_name(column: Column, case: str) -> str:
    """Where a row without an output column writes, inside --output-directory."""
    if column.directory:
        return case
    return f"{case}.json" if column.metavar == "JSON" else f"{case}.dcm"


def describe(known: Mapping[str, Conversion]) -> str:
    """The manifest columns as text, for ``qidicom batch --help``."""
    lines = [
        "manifest columns (CSV header, JSON-lines keys or Parquet columns; one row per case):",
        textwrap.fill(
            "required: " + ", ".join(f"{c.alias} ({c.name})" if c.alias else c.name for c in known.values()),
            width=100, initial_indent="  conversion   ", subsequent_indent=" " * 15,
        ),
        "  case         optional: a unique name for the case in the report (default: row-<N>)",
        "",
        "  Other columns are the CLI options of the row's conversion, named without the dashes.",
        "  Empty cells mean 'not given'. Relative input paths are relative to the manifest's",
        "  folder, relative outputs to --output-directory; fsspec URLs (s3://, gs://, memory://,",
        "  file://...) work where the fsspec backend is installed. Lists are comma-separated",
        "  (or lists, in JSON lines and Parquet); switches take 1/0, true/false, yes/no.",
        "  Rows are independent and run in any order, in parallel: a case that reads another",
        "  case's output (an SR of a SEG made in the same batch) belongs in a second batch.",
    ]
    for conversion in known.values():
        title = f"{conversion.alias} = {conversion.name}" if conversion.alias else conversion.name
        lines += ["", f"  {title}: {conversion.help}"]
        grouped = {name for group in conversion.one_of for name in group}
        for column in conversion.columns.values():
            if column.role == "output":
                need = "default " + default_output_name(column, "<case>")
            elif column.required:
                need = "required"
            elif column.name in grouped:
                others = next(g for g in conversion.one_of if column.name in g)
                need = "required, or " + " / ".join(n for n in others if n != column.name)
            else:
                need = "optional"
            detail = [need]
            if column.flag:
                detail.append("a switch")
            elif column.choices:
                detail.append("|".join(column.choices))
            if column.help:
                detail.append(column.help)
            text = textwrap.fill(
                "; ".join(detail), width=100, initial_indent=f"    {column.name:<27} ", subsequent_indent=" " * 32
            )
            lines.append(text)
    return "\n".join(lines)
