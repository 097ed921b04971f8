#!/usr/bin/env python3
"""Where the time of a SEG write goes: the library call step by step, in CPython or Pyodide.

    python bench/steps.py [--type binary|labelmap] [--compress none|deflate] [--runs 2] [--pylib DIR]
    node bench/steps_pyodide.mjs [--type binary] [--pylib DIR]   # the same, in dist/'s Pyodide

Each step of ``qidicom.seg.segmentation_from_files`` is called on its own, in order, on the
bench case (work/seg: 512x512x200 CT, ten labels, labels.nrrd), and timed: wall time, and in
CPython CPU time too (steadier on a loaded machine). The first run includes first-call costs
(highdicom's standard tables); later runs are a warm process. ``--hd`` also times highdicom's
own parts (by wrapping its private methods: measurement only). The real conversion reads the
label map on a second thread while the series is parsed; here the steps run one after another.
``--pylib`` runs another tree (e.g. a `git archive` of an older commit). Figures only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def breakdown(labels, meta, series, segmentation_type="binary", compress="none", runs=2) -> dict:
    """Per-step [wall, CPU] seconds of ``runs`` SEG writes from (name, bytes) pairs or paths."""
    start = _clock()
    from qidicom import metadata as md, readers, seg, writers
    seg = getattr(seg, "write", seg)  # the writer's steps: qidicom.seg.write since seg became a package
    import highdicom  # noqa: F401  (imported by the conversion too; counted here)

    now = _clock()
    result = {"import": [round(now[0] - start[0], 3), round(now[1] - start[1], 3)], "runs": []}
    for _ in range(runs):
        steps: dict = {}
        last = [_clock()]

        def lap(name: str) -> None:
            now = _clock()
            steps[name] = [round(now[0] - last[0][0], 3), round(now[1] - last[0][1], 3)]
            last[0] = now

        document = md.load_json(meta)
        md.check(document, "seg", "metadata")
        lap("metadata")
        volume = readers.read_image(labels)
        lap("read label map")
        reference = readers.read_dicom_series(series, match=volume)
        lap("read series")
        warnings: list[str] = []
        specs = seg.assign_segments(document, [volume.name])
        seg._check_finite(volume)
        arrays = seg._label_arrays_on_grid([volume], reference, True, warnings)
        checked = seg._check_labels(arrays, specs, [volume.name], False, warnings)
        specs, slice_bits = checked if isinstance(checked, tuple) else (checked, None)  # before 2026-12-02: specs
        lap("check labels")
        specs = seg._renumber(specs, False, segmentation_type)
        descriptions = [seg.segment_description(spec, warnings) for spec in specs]
        frames = seg._pixel_array(arrays, specs, segmentation_type, [volume.name])
        known = {} if slice_bits is None else {"segments_by_frame": seg._segments_by_frame(slice_bits, specs)}
        lap("frames")
        algorithms = {spec.number: seg._algorithm(spec, warnings) for spec in specs}
        dataset = seg.build_segmentation(reference.datasets, frames, segmentation_type, descriptions, algorithms,
                                         document, transfer_syntax=writers.transfer_syntax_for(compress), **known)
        lap("highdicom")
        with readers.tolerant_dicom_values():
            data = writers.dicom_bytes(dataset, compress)
        lap("encode")
        steps["total"] = [round(sum(v[0] for v in steps.values()), 3), round(sum(v[1] for v in steps.values()), 3)]
        steps["bytes"] = len(data)
        result["runs"].append(steps)
    return result


def time_highdicom_parts() -> dict:
    """Wrap highdicom's private construction steps to total their time (measurement only)."""
    import collections
    import functools

    import qidicom  # noqa: F401  (its Pyodide shims before highdicom)
    import highdicom as hd
    import highdicom._standard_utils as standard
    import highdicom.image as image

    totals: dict = collections.defaultdict(float)

    def wrap(owner, name):
        function = getattr(owner, name)
        static = isinstance(owner.__dict__.get(name), staticmethod)

        @functools.wraps(function)
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                totals[name] += time.perf_counter() - start

        setattr(owner, name, staticmethod(timed) if static else timed)

    for name in ("_prepare_spatial_metadata", "_get_pffg_item", "_build_luts", "_add_source_image_references",
                 "_encode_pixels_native", "_get_nonempty_plane_indices", "_init_multiframe_image"):
        wrap(image._Image, name)
    wrap(hd.seg.Segmentation, "__init__")
    for name in ("get_module_attribute_map", "get_iod_module_map"):  # loaded once, then cached
        start = time.perf_counter()
        getattr(standard, name)()
        totals[f"{name} (first call)"] = time.perf_counter() - start
    return totals


def main(argv=None) -> int:
    here = Path(__file__).resolve().parent
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--type", default="binary", choices=["binary", "labelmap"])
    p.add_argument("--compress", default="none", choices=["none", "deflate", "rle"])
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--hd", action="store_true", help="also total highdicom's own parts")
    p.add_argument("--pylib", type=Path, default=here.parent / "pylib")
    p.add_argument("--work", type=Path, default=here / "work")
    args = p.parse_args(argv)
    sys.path.insert(0, str(args.pylib))
    parts = time_highdicom_parts() if args.hd else {}
    data = args.work / "seg"
    result = breakdown(data / "labels.nrrd", data / "seg-meta.json", data / "ct", args.type, args.compress, args.runs)
    result["highdicom_parts"] = {k: round(v, 3) for k, v in parts.items()}
    import os

    result["load_average"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
