"""``qidicom batch``: its options, its help (which lists the manifest's columns), and its run."""

from __future__ import annotations

import argparse
import textwrap
from typing import Mapping

from qidicom.errors import QidicomError

DESCRIPTION = (
    "Convert many cases listed in a manifest (CSV, JSON lines or Parquet; one row per case) on a local "
    "process pool or a Dask cluster. The manifest is checked whole before anything runs. Each case is "
    "isolated and its output written whole or not at all; a rerun skips cases whose output is up to "
    "date (a hash of the inputs, options and qidicom version is kept in <output>.qidicom-batch.json). "
    "A report (CSV and JSON) lists every case."
)


def add_arguments(parser: argparse.ArgumentParser, subcommands: Mapping[str, argparse.ArgumentParser]) -> None:
    """Fill in the ``batch`` subparser; its help lists the columns of the other subcommands."""
    from qidicom.batch.columns import conversions_from_subparsers, describe

    parser.description = textwrap.fill(DESCRIPTION, width=100)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = describe(conversions_from_subparsers(subcommands))
    parser.add_argument("manifest", help="the manifest: .csv, .tsv, .jsonl/.ndjson or .parquet, a path or an fsspec URL")
    parser.add_argument("--output-directory", required=True, metavar="DIR", help="where relative outputs go (a path or an fsspec URL)")
    parser.add_argument("--workers", type=int, metavar="N", help="local worker processes (default: the core count; 0: in this process)")
    parser.add_argument("--scheduler", metavar="ADDRESS", help="run on Dask: tcp://host:port for an existing scheduler, local:N for a LocalCluster of N workers started here")
    parser.add_argument("--case-timeout", type=float, metavar="SECONDS", help="record a case as timed out after this long")
    parser.add_argument("--force", action="store_true", help="redo every case, even those whose output is up to date")
    parser.add_argument("--default", action="append", default=[], metavar="COLUMN=VALUE", help="a value for rows that leave COLUMN empty, e.g. compress=deflate (repeatable)")
    parser.add_argument("--report", metavar="PATH", help="write PATH.csv and PATH.json (default: DIR/qidicom-batch-report)")
    parser.add_argument("--check", action="store_true", help="check the manifest and stop")


def _defaults(pairs: list[str]) -> dict[str, str]:
    values = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name.strip():
            raise QidicomError(f"--default {pair}: expected COLUMN=VALUE")
        values[name.strip()] = value
    return values


def run(args: argparse.Namespace) -> int:
    """The subcommand; the exit status is 0 when every case has its output, 1 otherwise."""
    import sys

    from qidicom.batch.manifest import load_cases
    from qidicom.batch.run import run_batch

    defaults = _defaults(args.default)
    if args.check:
        cases = load_cases(args.manifest, args.output_directory, defaults=defaults)
        print(f"{args.manifest}: {len(cases)} case(s), no problems")
        return 0
    report = run_batch(
        args.manifest, args.output_directory, scheduler=args.scheduler, workers=args.workers, defaults=defaults,
        force=args.force, case_timeout=args.case_timeout, report=args.report or True, verbose=args.verbose,
    )
    print(report.summary(), file=sys.stderr)
    print(f"report: {report.files[0]}", file=sys.stderr)
    if report.interrupted:
        raise KeyboardInterrupt
    return 0 if report.ok else 1
