"""The ``qidicom`` command: subcommands and long options mirror dcmqi's tools, so a
pipeline switches by prefixing ``qidicom``.

Every failure is one clear line on stderr and a non-zero exit; outputs are written
atomically, so a failed run leaves no file behind.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Callable, Iterator, Sequence

from qidicom import __version__, conversions
from qidicom.errors import QidicomError

log = logging.getLogger("qidicom")


def _source(form: conversions.CliForm, value):
    """One input as given on the command line: files that are named, a folder that exists.
    (An empty folder, or one without DICOM images, is named by the reader.)"""
    if form.form == "files":
        if not value:
            raise QidicomError(f"{form.option}: no file names were given")
        return [Path(name) for name in value]
    if form.form == "directory":
        if not value:
            raise QidicomError(f"{form.option}: no folder was given")
        if not Path(value).is_dir():
            raise QidicomError(f"{value}: not a folder ({form.option})")
    return Path(value)


def _summary(result) -> str:
    """What a written DICOM object is, for --verbose."""
    dataset = getattr(result, "dataset", None)
    if dataset is None:
        return ""
    parts = [str(getattr(dataset.SOPClassUID, "name", dataset.SOPClassUID))]
    if "SegmentSequence" in dataset:
        parts.append(f"{dataset.SegmentationType} {len(dataset.SegmentSequence)} segment(s)")
    if "NumberOfFrames" in dataset:
        parts.append(f"{int(dataset.NumberOfFrames)} frame(s)")
    return ": " + ", ".join(parts)


#: Modules pydicom probes for on import (``pydicom.data`` downloads its test files with
#: them when installed), which no conversion uses: ``requests`` with ``urllib3`` and
#: ``tqdm`` take ~0.05-0.07 s to import.
DOWNLOAD_MODULES = ("requests", "tqdm")


@contextlib.contextmanager
def download_helpers_hidden() -> Iterator[None]:
    """While the block runs, pydicom's download helpers' optional modules cannot be imported.

    ``import pydicom`` imports ``pydicom.data``, whose downloader tries ``requests`` and
    ``tqdm`` and falls back to the standard library without them. A name set to None in
    ``sys.modules`` makes its import fail (the import system's documented way to hide a
    module), so pydicom takes that fallback. Afterwards the names are free again: code that
    imports requests later gets it. Once pydicom is imported, nothing is hidden.
    """
    hidden = [] if "pydicom" in sys.modules else [name for name in DOWNLOAD_MODULES if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


def convert(args: argparse.Namespace) -> None:
    """Any conversion's subcommand: its inputs, options and outputs as its description says."""
    conversion = conversions.get(args.command)
    sources = {}
    for item in conversion.inputs:
        given = [form for form in item.cli if getattr(args, form.dest) is not None]
        sources[item.role] = _source(given[0], getattr(args, given[0].dest)) if given else None
    # The images are inflated on other threads while the DICOM libraries are imported
    # (nibabel imports pydicom too: the helpers are hidden from the start).
    with download_helpers_hidden():
        sources = conversions.start_reading_images(conversion, sources)
        with contextlib.suppress(ImportError):  # should pydicom need them, it is imported as usual
            import pydicom  # noqa: F401
    from qidicom.writers import write_file_atomically

    outcome = conversions.run(conversion, sources, vars(args))
    for warning in outcome.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    [output] = conversion.outputs
    target = Path(getattr(args, output.dest))
    if output.kind == "directory":
        target.mkdir(parents=True, exist_ok=True)
        for name, data in outcome.output:
            write_file_atomically(target / name, data)
            log.info("wrote %s", target / name)
    else:
        write_file_atomically(target, outcome.output)
        log.info("wrote %s%s", target, _summary(outcome.result))


# --------------------------------------------------------------------------- batch


def batch(args: argparse.Namespace) -> None:
    from qidicom.batch.command import run

    # Always SystemExit, 0 too: the command then exits the ordinary way (see run()).
    raise SystemExit(run(args))


# --------------------------------------------------------------------------- parser

Command = Callable[[argparse.Namespace], None]

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
        conversions.add_cli_arguments(command(conversion.name, convert, conversion.help), conversion)

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


def run() -> None:
    """The ``qidicom`` command: ``main``, then leave at once, without tearing down the
    interpreter. Freeing highdicom's standard tables and every module at exit costs 0.4-0.5 s,
    more than loading them did; by then a conversion's outputs are written and closed.
    (``batch`` exits the ordinary way, through SystemExit, so its pools shut down.)

    OpenBLAS, loaded with numpy, starts a thread per core at import (~0.08 s of CPU here)
    for matrix products that a conversion never makes larger than 4x4: one thread, unless
    the environment says otherwise. Threads hand the GIL over sooner (see
    ``readers.THREAD_SWITCH_INTERVAL``), as the images are inflated beside imports."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from qidicom.readers import THREAD_SWITCH_INTERVAL  # (imports numpy: after the line above)

    sys.setswitchinterval(min(sys.getswitchinterval(), THREAD_SWITCH_INTERVAL))
    status = main()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said
            status = status or 1
    os._exit(status)


if __name__ == "__main__":
    run()
