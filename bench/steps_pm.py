#!/usr/bin/env python3
"""Where the time of a PM write goes: the library call step by step, in CPython.

    python bench/steps_pm.py [--runs 3] [--pylib DIR] [--beside]

Each step of ``qidicom.pm.parametric_map_from_files`` is called on its own, in order, on the
bench case (work/pm: 256x256x200 float32 map.nii.gz, 200-slice MR series) and timed: wall
and CPU seconds. The first run includes first-call costs (highdicom's standard tables);
later runs are a warm process. The real conversion reads the map on a second thread while
the series is parsed; ``--beside`` times that step as it runs there (map and series
together). highdicom's own parts are totalled by wrapping its private methods (measurement
only). ``--pylib`` runs another tree (e.g. a `git archive` of an older commit). Figures only.
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import os
import sys
import time
from pathlib import Path


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _wrap(owner, name: str, totals: dict, label: str | None = None) -> None:
    function = getattr(owner, name)
    static = isinstance(owner.__dict__.get(name), staticmethod)

    @functools.wraps(function)
    def timed(*args, **kwargs):
        start = _clock()
        try:
            return function(*args, **kwargs)
        finally:
            now = _clock()
            entry = totals[label or name]
            entry[0] += now[0] - start[0]
            entry[1] += now[1] - start[1]

    setattr(owner, name, staticmethod(timed) if static else timed)


def breakdown(image: Path, meta: Path, series: Path, runs: int, beside: bool) -> dict:
    start = _clock()
    from qidicom import metadata as md, pm, readers
    import highdicom as hd
    import highdicom.image as hd_image

    now = _clock()
    result: dict = {"import": [round(now[0] - start[0], 3), round(now[1] - start[1], 3)], "runs": []}
    parts: dict = collections.defaultdict(lambda: [0.0, 0.0])
    _wrap(hd.pm.ParametricMap, "__init__", parts, "highdicom ParametricMap")
    for name in ("_prepare_spatial_metadata", "_get_pffg_item", "_encode_pixels_native"):
        _wrap(hd_image._Image, name, parts)
    for name in ("_reference_frame_sources", "_order_frames_along_normal", "dicom_bytes"):
        _wrap(pm, name, parts)
    for _ in range(runs):
        parts.clear()
        steps: dict = {}
        last = [_clock()]

        def lap(name: str) -> None:
            now = _clock()
            steps[name] = [round(now[0] - last[0][0], 3), round(now[1] - last[0][1], 3)]
            last[0] = now

        document = md.load_json(meta)
        md.check(document, "pm", "metadata")
        lap("metadata")
        if beside:
            (volume,), reference = readers.read_images_and_series([image], series, check_spacing=False)
            lap("read map beside series")
        else:
            volume = readers.read_image(image)
            lap("read map")
            reference = readers.read_dicom_series(series, match=volume, check_spacing=False)
            lap("read series")
        written = pm.write_parametric_map(volume, document, reference)
        lap("write (highdicom, post-processing, encode)")
        steps["total"] = [round(sum(v[0] for v in steps.values()), 3), round(sum(v[1] for v in steps.values()), 3)]
        steps["parts of write"] = {k: [round(v[0], 3), round(v[1], 3)] for k, v in parts.items()}
        steps["bytes"] = len(written.data)
        result["runs"].append(steps)
    return result


def main(argv=None) -> int:
    here = Path(__file__).resolve().parent
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--beside", action="store_true", help="read the map beside the series, as the conversion does")
    p.add_argument("--pylib", type=Path, default=here.parent / "pylib")
    p.add_argument("--work", type=Path, default=here / "work")
    args = p.parse_args(argv)
    sys.path.insert(0, str(args.pylib))
    data = args.work / "pm"
    result = breakdown(data / "map.nii.gz", data / "pm-meta.json", data / "mr", args.runs, args.beside)
    result["load_average"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
