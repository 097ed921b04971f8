#!/usr/bin/env python3
"""Where the time of a SEG read goes: ``segimage2itkimage``'s library call step by step.

    python bench/steps_read.py [--type binary|labelmap] [--seg FILE] [--runs 2] [--pylib DIR]

The SEG is the bench case's uncompressed one (work/out/seg/write/qidicom-<type>-none.dcm, as
``bench_seg.py`` leaves it; ``--seg`` names another). Each step runs on its own, in order,
and is timed: wall time and CPU time (steadier on a loaded machine; above wall time where
threads run). The first run includes first-call costs; later runs are a warm process. The
steps are public calls that every version of qidicom has, so ``--pylib`` (a ``git archive``
of an older commit) gives the "before" column of the same table:

- imports: what the command imports for this subcommand (``qidicom.cli``, then the
  conversion's module as the command resolves it);
- parse: ``read_segmentation`` (DICOM parsing, pixel data, grid, segment attributes);
- volumes: each segment's volume made (unmerged, as the command writes them), one at a time;
- encode: each volume as gzip'd NRRD, one at a time (``writers.volume_bytes``);
- whole call: ``segmentation_to_files``, as the command calls it (encoding on two threads);
- of which pydicom's parse of the whole file (``readers.read_dicom``, what the read did
  before the functional groups were decoded from the bytes), for comparison.
Figures only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def breakdown(seg_path: Path, runs: int = 2) -> dict:
    """Per-step [wall, CPU] seconds of ``runs`` SEG reads of ``seg_path``."""
    start = _clock()
    from qidicom import cli, conversions  # noqa: F401  (the command's own imports)

    conversion = conversions.get("segimage2itkimage")
    read_files = conversion.resolve("function")  # imports what the command imports
    from qidicom import readers, writers
    from qidicom.seg import read as seg_read

    now = _clock()
    result: dict = {"import": [round(now[0] - start[0], 3), round(now[1] - start[1], 3)], "runs": []}
    data = seg_path.read_bytes()
    for _ in range(runs):
        steps: dict = {}
        last = [_clock()]

        def lap(name: str) -> None:
            now = _clock()
            steps[name] = [round(now[0] - last[0][0], 3), round(now[1] - last[0][1], 3)]
            last[0] = now

        contents = seg_read.read_segmentation((seg_path.name, data))
        lap("parse")
        # Made and encoded one at a time, as the command does (holding them all would time
        # the page faults of fresh memory instead).
        volumes = ([volume for _, volume in contents.merged_volumes()] if contents.label_map is not None
                   else (volume for _, volume in contents.iter_segment_volumes()))
        made, encoded = [0.0, 0.0], [0.0, 0.0]
        for volume in volumes:
            now = _clock()
            made = [made[0] + now[0] - last[0][0], made[1] + now[1] - last[0][1]]
            writers.volume_bytes(volume, "nrrd")
            del volume
            last[0] = _clock()
            encoded = [encoded[0] + last[0][0] - now[0], encoded[1] + last[0][1] - now[1]]
        steps["volumes"] = [round(made[0], 3), round(made[1], 3)]
        steps["encode"] = [round(encoded[0], 3), round(encoded[1], 3)]
        del volumes
        steps["total of the steps"] = [round(sum(v[0] for v in steps.values()), 3),
                                       round(sum(v[1] for v in steps.values()), 3)]
        files = read_files((seg_path.name, data), prefix="seg")
        lap("whole call")
        steps["bytes out"] = sum(len(f.data) for f in files)
        del files
        last[0] = _clock()
        readers.read_dicom((seg_path.name, data))
        lap("pydicom parse of the whole file")
        result["runs"].append(steps)
    return result


def main(argv=None) -> int:
    here = Path(__file__).resolve().parent
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--type", default="binary", choices=["binary", "labelmap"])
    p.add_argument("--seg", type=Path, help="the SEG to read (default: the bench case's uncompressed one)")
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--pylib", type=Path, default=here.parent / "pylib")
    p.add_argument("--work", type=Path, default=here / "work")
    args = p.parse_args(argv)
    sys.path.insert(0, str(args.pylib))
    seg_path = args.seg or args.work / "out" / "seg" / "write" / f"qidicom-{args.type}-none.dcm"
    if not seg_path.is_file():
        print(f"{seg_path}: no such SEG (run bench_seg.py first, or give --seg)", file=sys.stderr)
        return 1
    result = breakdown(seg_path, args.runs)
    result["seg"] = str(seg_path)
    result["load_average"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
