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

from qidicom import __version__
from qidicom.errors import QidicomError

log = logging.getLogger("qidicom")


def _comma_list(text: str) -> list[str]:
    return [part for part in text.split(",") if part]


def _zero_or_one(text: str) -> bool:
    if text not in ("0", "1", "true", "false", "True", "False"):
        raise argparse.ArgumentTypeError(f"expected 0 or 1, got '{text}'")
    return text in ("1", "true", "True")


def _add_reference_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--inputDICOMDirectory", metavar="DIR", help="folder with the reference DICOM series (searched recursively)")
    group.add_argument("--inputDICOMList", metavar="F1,F2,...", type=_comma_list, help="comma-separated reference DICOM files")


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
        segmentation_type=args.segmentationType,
        fractional_type=args.fractionalType,
        compress=args.compress,
        skip_empty=args.skip,
        use_label_id_as_segment_number=args.useLabelIDAsSegmentNumber,
        check_geometry=args.referencesGeometryCheck,
    )
    _print_warnings(result.warnings)
    write_file_atomically(args.outputDICOM, result.data)
    segments = len(result.dataset.SegmentSequence)
    log.info("wrote %s: %s SEG, %d segment(s), %d frame(s)", args.outputDICOM, args.segmentationType, segments, int(result.dataset.NumberOfFrames))


def segimage2itkimage(args: argparse.Namespace) -> None:
    from qidicom.seg import segmentation_to_files

    warnings: list[str] = []
    files = segmentation_to_files(
        Path(args.inputDICOM), prefix=args.prefix, output_type=args.outputType, merge_segments=args.mergeSegments,
        warnings=warnings,
    )
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

    result = binary_to_labelmap(
        Path(args.inputDICOM), compress=args.compress, use_palette=args.usePalette, force_16_bit=args.force16Bit
    )
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
        compress=args.compress,
        data_type=args.dataType,
    )
    _print_warnings(result.warnings)
    write_file_atomically(args.outputDICOM, result.data)
    log.info("wrote %s: parametric map, %d frame(s)", args.outputDICOM, int(result.dataset.NumberOfFrames))


def paramap2itkimage(args: argparse.Namespace) -> None:
    from qidicom.pm import parametric_map_to_files

    files, warnings = parametric_map_to_files(Path(args.inputDICOM), prefix=args.prefix, output_type=args.outputType)
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
        compress=args.compress,
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

    sub = command("itkimage2segimage", itkimage2segimage, "Label maps (NIfTI/NRRD) and metadata JSON to a DICOM Segmentation.")
    sub.add_argument("--inputImageList", required=True, type=_comma_list, metavar="L1,L2,...", help="comma-separated label map files, one per outer segmentAttributes group")
    _add_reference_options(sub)
    sub.add_argument("--inputMetadata", required=True, metavar="JSON", help="dcmqi-style seg metadata JSON")
    sub.add_argument("--outputDICOM", required=True, metavar="FILE", help="the SEG to write")
    sub.add_argument("--skip", type=_zero_or_one, default=True, metavar="0|1", help="leave out empty frames (default 1)")
    sub.add_argument("--useLabelIDAsSegmentNumber", action="store_true", help="number segments by their labelID instead of consecutively")
    sub.add_argument("--segmentationType", choices=("binary", "labelmap", "fractional"), default="binary", help="SEG type (default binary)")
    sub.add_argument("--fractionalType", choices=("PROBABILITY", "OCCUPANCY"), default="PROBABILITY", help="meaning of fractional values (default PROBABILITY)")
    sub.add_argument("--compress", choices=("none", "deflate", "rle"), default="none", help="transfer syntax: none (Explicit VR Little Endian), deflate, or rle (not for binary)")
    sub.add_argument("--referencesGeometryCheck", type=_zero_or_one, default=True, metavar="0|1", help="check the label maps lie on the series grid (default 1)")
    sub.add_argument("--noDicomValueChecks", action="store_true",
                     help="taken for dcmqi's command lines: qidicom always carries over source values that break VR rules, as this makes dcmqi do")

    sub = command("segimage2itkimage", segimage2itkimage, "A DICOM Segmentation to label maps and a metadata JSON.")
    sub.add_argument("--inputDICOM", required=True, metavar="FILE", help="the SEG to read")
    sub.add_argument("--outputDirectory", required=True, metavar="DIR", help="where to write <prefix>-<N>.<ext> and <prefix>-meta.json")
    sub.add_argument("-p", "--prefix", default="", help="output file name prefix (none by default: 1.nrrd, meta.json)")
    sub.add_argument("-t", "--outputType", choices=("nrrd", "nii", "nifti"), default="nrrd", help="image format (nii and nifti write .nii.gz, as dcmqi does; default nrrd)")
    sub.add_argument("--mergeSegments", action="store_true", help="merge non-overlapping segments into as few label maps as possible")

    sub = command("bin2labelsegimage", bin2labelsegimage, "A BINARY DICOM Segmentation to a LABELMAP one.")
    sub.add_argument("--inputDICOM", required=True, metavar="FILE", help="the binary SEG to convert")
    sub.add_argument("--outputDICOM", required=True, metavar="FILE", help="the labelmap SEG to write")
    sub.add_argument("--usePalette", action="store_true", help="add a palette colour lookup table from the segment colours")
    sub.add_argument("--compress", choices=("none", "rle", "deflate"), default="none", help="transfer syntax (default none)")
    sub.add_argument("--force16Bit", action="store_true", help="store 16-bit pixels even when 8 bits would do")
    sub.add_argument("--noCheck", action="store_true",
                     help="taken for dcmqi's command lines; qidicom's checks (overlapping segments, SEG type) stay on, "
                     "since without them the label map would be wrong")

    sub = command("itkimage2paramap", itkimage2paramap, "A parametric map (NIfTI/NRRD) and metadata JSON to a DICOM Parametric Map.")
    sub.add_argument("--inputImage", required=True, metavar="FILE", help="the map; it keeps its own grid, and each frame references the reference image in its plane")
    sub.add_argument("--inputMetadata", required=True, metavar="JSON", help="dcmqi-style pm metadata JSON")
    _add_reference_options(sub)
    sub.add_argument("--outputDICOM", required=True, metavar="FILE", help="the Parametric Map to write")
    sub.add_argument("--compress", choices=("none", "deflate"), default="none", help="transfer syntax: none (Explicit VR Little Endian) or deflate")
    sub.add_argument("--noDicomValueChecks", action="store_true",
                     help="taken for dcmqi's command lines: qidicom always carries over source values that break VR rules, as this makes dcmqi do")
    sub.add_argument("--dataType", choices=("auto", "float32", "float64"), default="auto",
                     help="pixel type: auto keeps the map's type (integers as 16-bit with slope/intercept); "
                     "float32 as dcmqi writes, which dcmqi's paramap2itkimage needs to read the map (default auto)")

    sub = command("paramap2itkimage", paramap2itkimage, "A DICOM Parametric Map to a map image (real-world values) and a metadata JSON.")
    sub.add_argument("--inputDICOM", required=True, metavar="FILE", help="the Parametric Map to read")
    sub.add_argument("--outputDirectory", required=True, metavar="DIR", help="where to write <prefix>-pmap.<ext> and <prefix>-meta.json")
    sub.add_argument("-p", "--prefix", default="", help="output file name prefix (default none: pmap.<ext>, meta.json)")
    sub.add_argument("-t", "--outputType", choices=("nrrd", "nii", "nifti"), default="nrrd", help="image format (nii and nifti write .nii.gz, as dcmqi does; default nrrd)")

    sub = command("tid1500writer", tid1500writer, "dcmqi-style sr-tid1500 JSON to a DICOM TID 1500 measurement report (Comprehensive SR).")
    sub.add_argument("--inputMetadata", required=True, metavar="JSON", help="dcmqi-style sr-tid1500 metadata JSON")
    sub.add_argument("--outputDICOM", required=True, metavar="FILE", help="the SR to write")
    sub.add_argument("--inputImageLibraryDirectory", metavar="DIR", help="folder with the files named in imageLibrary (searched recursively)")
    sub.add_argument("--inputCompositeContextDirectory", metavar="DIR", help="folder with the files named in compositeContext: the SEG, the RWVM")
    sub.add_argument("--compress", choices=("none", "deflate"), default="none", help="transfer syntax: none (Explicit VR Little Endian) or deflate")

    sub = command("tid1500reader", tid1500reader, "A DICOM TID 1500 measurement report to dcmqi-style sr-tid1500 JSON.")
    sub.add_argument("--inputDICOM", required=True, metavar="FILE", help="the SR to read")
    sub.add_argument("--outputMetadata", required=True, metavar="JSON", help="the metadata JSON to write")

    if not with_batch:
        return parser
    # Last, so its help can list the columns of every subcommand above (qidicom.batch).
    from qidicom.batch.command import add_arguments as add_batch_arguments

    sub = command("batch", batch, "Many cases from a manifest (CSV, JSON lines, Parquet), locally or on Dask.")
    add_batch_arguments(sub, commands.choices)

    return parser


#: The subcommands that convert one case; a command line starting with one of them is
#: parsed without the batch subcommand (see build_parser).
CONVERSION_COMMANDS = (
    "itkimage2segimage", "segimage2itkimage", "bin2labelsegimage", "itkimage2paramap", "paramap2itkimage",
    "tid1500writer", "tid1500reader",
)


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
