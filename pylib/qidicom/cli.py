"""The ``qidicom`` command: subcommands and long options mirror dcmqi's tools, so a
pipeline switches by prefixing ``qidicom``.

Every failure is one clear line on stderr and a non-zero exit; outputs are written
atomically, so a failed run leaves no file behind.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

from qidicom import __version__, conversions
from qidicom.errors import QidicomError

log = logging.getLogger("qidicom")


def _settings(args: argparse.Namespace, name: str) -> dict:
    """The library keywords of a conversion's options, from its description."""
    return {option.parameter: getattr(args, option.dest)
            for option in conversions.get(name).options if option.parameter}


def _references(args: argparse.Namespace):
    """The reference series as given: a folder that exists, or a list of at least one file.
    (An empty folder, or one without DICOM images, is named by the reader.)"""
    if args.inputDICOMDirectory is not None:
        if not args.inputDICOMDirectory:
            raise QidicomError("--inputDICOMDirectory: no folder was given")
        if not Path(args.inputDICOMDirectory).is_dir():
            raise QidicomError(f"{args.inputDICOMDirectory}: not a folder (--inputDICOMDirectory)")
        return args.inputDICOMDirectory
    if not args.inputDICOMList:
        raise QidicomError("--inputDICOMList: no file names were given")
    return [Path(name) for name in args.inputDICOMList]


def _print_warnings(warnings: Sequence[str]) -> None:
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)


# --------------------------------------------------------------------------- SEG


def itkimage2segimage(args: argparse.Namespace) -> None:
    from qidicom.seg import segmentation_from_files
    from qidicom.writers import write_file_atomically

    result = segmentation_from_files(
        [Path(name) for name in args.inputImageList],
        Path(args.inputMetadata),
        _references(args),
        **_settings(args, "itkimage2segimage"),
    )
    _print_warnings(result.warnings)
    write_file_atomically(args.outputDICOM, result.data)
    segments = len(result.dataset.SegmentSequence)
    log.info("wrote %s: %s SEG, %d segment(s), %d frame(s)", args.outputDICOM, args.segmentationType, segments, int(result.dataset.NumberOfFrames))


def segimage2itkimage(args: argparse.Namespace) -> None:
    from qidicom.seg import segmentation_to_files

    warnings: list[str] = []
    files = segmentation_to_files(Path(args.inputDICOM), warnings=warnings, **_settings(args, "segimage2itkimage"))
    _print_warnings(warnings)
    _write_all(Path(args.outputDirectory), files)


def _write_all(directory: Path, files) -> None:
    from qidicom.writers import write_file_atomically

    directory.mkdir(parents=True, exist_ok=True)
    for exported in files:
        write_file_atomically(directory / exported.name, exported.data)
        log.info("wrote %s", directory / exported.name)


def bin2labelsegimage(args: argparse.Namespace) -> None:
    from qidicom.seg import binary_to_labelmap
    from qidicom.writers import write_file_atomically

    result = binary_to_labelmap(Path(args.inputDICOM), **_settings(args, "bin2labelsegimage"))
    _print_warnings(result.warnings)
    write_file_atomically(args.outputDICOM, result.data)


# --------------------------------------------------------------------------- PM


def itkimage2paramap(args: argparse.Namespace) -> None:
    from qidicom.pm import parametric_map_from_files
    from qidicom.writers import write_file_atomically

    result = parametric_map_from_files(
        Path(args.inputImage),
        Path(args.inputMetadata),
        _references(args),
        **_settings(args, "itkimage2paramap"),
    )
    _print_warnings(result.warnings)
    write_file_atomically(args.outputDICOM, result.data)
    log.info("wrote %s: parametric map, %d frame(s)", args.outputDICOM, int(result.dataset.NumberOfFrames))


def paramap2itkimage(args: argparse.Namespace) -> None:
    from qidicom.pm import parametric_map_to_files

    files, warnings = parametric_map_to_files(Path(args.inputDICOM), **_settings(args, "paramap2itkimage"))
    _print_warnings(warnings)
    _write_all(Path(args.outputDirectory), files)


# --------------------------------------------------------------------------- SR TID 1500


def _directory(path: str | None, option: str) -> Path | None:
    if path is None:
        return None
    if not Path(path).is_dir():
        raise QidicomError(f"{path}: not a folder ({option})")
    return Path(path)


def tid1500writer(args: argparse.Namespace) -> None:
    from qidicom.sr import report_from_files
    from qidicom.writers import write_file_atomically

    result = report_from_files(
        Path(args.inputMetadata),
        _directory(args.inputImageLibraryDirectory, "--inputImageLibraryDirectory"),
        _directory(args.inputCompositeContextDirectory, "--inputCompositeContextDirectory"),
        **_settings(args, "tid1500writer"),
    )
    _print_warnings(result.warnings)
    write_file_atomically(args.outputDICOM, result.data)
    log.info("wrote %s: TID 1500 measurement report", args.outputDICOM)


def tid1500reader(args: argparse.Namespace) -> None:
    from qidicom.sr import report_to_json
    from qidicom.writers import write_file_atomically

    data, warnings = report_to_json(Path(args.inputDICOM))
    _print_warnings(warnings)
    write_file_atomically(args.outputMetadata, data)
    log.info("wrote %s", args.outputMetadata)


# --------------------------------------------------------------------------- batch


def batch(args: argparse.Namespace) -> None:
    from qidicom.batch.command import run

    status = run(args)
    if status:
        raise SystemExit(status)


# --------------------------------------------------------------------------- parser

Command = Callable[[argparse.Namespace], None]

#: What runs each conversion's subcommand, by dcmqi tool name.
HANDLERS: dict[str, Command] = {
    "itkimage2segimage": itkimage2segimage,
    "segimage2itkimage": segimage2itkimage,
    "bin2labelsegimage": bin2labelsegimage,
    "itkimage2paramap": itkimage2paramap,
    "paramap2itkimage": paramap2itkimage,
    "tid1500writer": tid1500writer,
    "tid1500reader": tid1500reader,
}


def build_parser(with_batch: bool = True) -> argparse.ArgumentParser:
    """The ``qidicom`` parser; ``with_batch=False`` leaves out the batch subcommand, whose
    options take a module import (~60 ms) that a single conversion does not need."""
    parser = argparse.ArgumentParser(
        prog="qidicom",
        description="Convert quantitative-imaging results to and from DICOM SEG, Parametric Map and TID 1500 SR. "
        "Subcommands and options mirror dcmqi's tools.",
    )
    parser.add_argument("--version", action="version", version=f"qidicom {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, handler: Command, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--verbose", action="store_true", help="report progress on stderr")
        sub.set_defaults(handler=handler)
        return sub

    for conversion in conversions.CONVERSIONS:  # inputs, outputs and options as described there
        conversions.add_cli_arguments(command(conversion.name, HANDLERS[conversion.name], conversion.help), conversion)

    if not with_batch:
        return parser
    # Last, so its help can list the columns of every subcommand above (qidicom.batch).
    from qidicom.batch.command import add_arguments as add_batch_arguments

    sub = command("batch", batch, "Many cases from a manifest (CSV, JSON lines, Parquet), locally or on Dask.")
    add_batch_arguments(sub, commands.choices)

    return parser


#: The subcommands that convert one case; a command line starting with one of them is
#: parsed without the batch subcommand (see build_parser).
CONVERSION_COMMANDS = tuple(conversion.name for conversion in conversions.CONVERSIONS)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(with_batch=not arguments or arguments[0] not in CONVERSION_COMMANDS)
    args = parser.parse_args(arguments)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    log.setLevel(logging.INFO if args.verbose else logging.WARNING)
    try:
        args.handler(args)
    except QidicomError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # a bug of ours: still one clear line, details on request
        if os.environ.get("QIDICOM_DEBUG"):
            raise
        print(f"error: unexpected {type(error).__name__}: {error} (set QIDICOM_DEBUG=1 for details)", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
