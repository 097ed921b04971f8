""""Load sample data": qidicom's phantom study (``qidicom.samples``), made here in the
browser, as the files each mode takes, named as ``write_sample_study`` names them on disk."""

from __future__ import annotations

import functools
import json

Pairs = list[tuple[str, bytes]]


@functools.cache
def study():
    """The default phantom study (made once: same arguments, same bytes)."""
    from qidicom.samples import make_sample_study

    return make_sample_study()


def _json(name: str, document: dict) -> tuple[str, bytes]:
    return name, (json.dumps(document, indent=2) + "\n").encode("utf-8")


def seg_inputs() -> dict[str, Pairs]:
    sample = study()
    return {"series": list(sample.ct_series), "labelmaps": [sample.ct_labels],
            "metadata": [_json("seg.json", sample.seg_metadata)]}


def pm_inputs() -> dict[str, Pairs]:
    sample = study()
    return {"series": list(sample.mr_series), "map": [sample.adc_map],
            "metadata": [_json("pm.json", sample.pm_metadata)]}


@functools.cache
def sample_seg() -> tuple[str, bytes]:
    """The SEG the sample's sr.json measures, made by qidicom's SEG writer as
    ``write_sample_study`` makes it."""
    from qidicom.seg import segmentation_from_files

    sample = study()
    return "seg.dcm", segmentation_from_files([sample.ct_labels], sample.seg_metadata, sample.ct_series).data


def sr_inputs() -> dict[str, Pairs]:
    sample = study()
    return {"dicom": list(sample.ct_series) + [sample_seg()], "metadata": [_json("sr.json", sample.sr_metadata)]}
