"""highdicom's frame look-up tables, built on first use (qidicom.highdicom_luts): the SEGs and
PMs written are the same as with highdicom's own classes, a conversion never builds them, and
every query, pickling and copying answer as highdicom's classes do."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
from synthetic import written_alike

import highdicom
from qidicom import highdicom_luts, pm
from qidicom.geometry import Volume
from qidicom.readers import read_dicom_series, read_image
from qidicom.samples import make_sample_study
from qidicom.seg.write import write_segmentation

STUDY = make_sample_study(rows=24, columns=20, slices=6)


def builds() -> dict:
    ct = read_dicom_series(STUDY.ct_series)
    labels = read_image(STUDY.ct_labels)
    liver = Volume((labels.array == 1).astype(np.float32) * 0.75, labels.affine, "liver-probability")
    one_segment = copy.deepcopy(STUDY.seg_metadata)
    one_segment["segmentAttributes"] = [one_segment["segmentAttributes"][0][:1]]
    adc = read_image(STUDY.adc_map)
    mr = read_dicom_series(STUDY.mr_series, check_spacing=False)
    return {
        "binary SEG": lambda: write_segmentation([labels], STUDY.seg_metadata, ct).dataset,
        "labelmap SEG": lambda: write_segmentation([labels], STUDY.seg_metadata, ct, segmentation_type="labelmap").dataset,
        "fractional SEG": lambda: write_segmentation([liver], one_segment, ct, segmentation_type="fractional").dataset,
        "PM": lambda: pm.write_parametric_map(adc, STUDY.pm_metadata, mr).dataset,
    }


BUILDS = builds()


def highdicoms(build):
    highdicom_luts.DEFER = False
    try:
        return build()
    finally:
        highdicom_luts.DEFER = True


def answers(dataset) -> list:
    """What highdicom's readers answer from the look-up tables."""
    volume = dataset.get_volume()
    return [sorted(dataset.get_source_image_uids()), volume.array.tolist(), volume.affine.tolist()]


@pytest.mark.parametrize("name", list(BUILDS))
def test_written_and_answered_as_by_highdicoms_class(name):
    ours, theirs = BUILDS[name](), highdicoms(BUILDS[name])
    assert isinstance(ours, highdicom_luts.DeferredLuts) and not isinstance(theirs, highdicom_luts.DeferredLuts)
    assert isinstance(ours, type(theirs))
    assert not ours.luts_built  # the conversion never needed them
    written = written_alike(theirs)
    assert written_alike(ours) == written
    # The answers are those of the file read back (the PM writer reorders frames after
    # highdicom built them, so highdicom's class answers from tables of the order before).
    expected = answers(read_back(ours))
    assert answers(ours) == expected
    assert ours.luts_built
    if name != "PM":
        assert answers(theirs) == expected
    # Pickled and copied before any query, they build their tables when first asked.
    for fresh in (BUILDS[name](), BUILDS[name]()):
        for other in (pickle.loads(pickle.dumps(fresh)), copy.deepcopy(fresh)):
            assert written_alike(other) == written
            assert answers(other) == expected


def read_back(dataset):
    """The object as highdicom reads it from its file."""
    import io

    from qidicom.dicom_encoding import write_part10

    import pydicom

    read = pydicom.dcmread(io.BytesIO(write_part10(dataset)))
    kind = highdicom.seg.Segmentation if isinstance(dataset, highdicom.seg.Segmentation) else highdicom.pm.ParametricMap
    return kind.from_dataset(read)


def test_the_tables_are_built_once_with_highdicoms_function(monkeypatch):
    calls = []
    original = highdicom.image._Image._build_luts

    def counted(self):
        calls.append(self)
        original(self)

    monkeypatch.setattr(highdicom.image._Image, "_build_luts", counted)
    built = BUILDS["binary SEG"]()
    assert calls == []
    answers(built)
    answers(built)
    assert calls == [built]
    # An attribute highdicom does not set is still pydicom's error.
    with pytest.raises(AttributeError):
        built._no_such_attribute
