"""dcmqi's own test suite, run against qidicom.

dcmqi defines its tests in ``testing/{seg,paramaps,sr}-CMakeLists.txt`` (a copy is in
``../shared/reference/dcmqi/testing``). The tables below hold every one of them: the dcmqi test
name, its command line exactly as the CMake file writes it (CMake variables kept, expanded by
``expand``; only the tool is run as ``qidicom <tool>``), the tests it depends on, and what dcmqi
checks afterwards:

* ``compare``: dcmqi's ``--compare baseline output`` (an ITK image comparison): here
  ``assert_same_image``, voxel-exact, with size, origin, spacing and direction within 1e-3 mm;
* ``comparejson``: dcmqi's ``util/comparejson.py expected actual [ignore]``: here
  ``comparejson_problems``, every expected key present in the actual with an equal value of
  the same type, through dicts and lists, keys in the ignore list (always ``@schema``) skipped;
* ``dciodvfy``: the file passes dicom3tools' validator with no error line;
* ``will_fail``: dcmqi's WILL_FAIL property: the command must fail, here with one clear line
  that names the overlap, leaving no output behind.

Dependent tests (CTest's TEST_DEPENDS / FIXTURES_REQUIRED) run their prerequisites first, once
per session, in one output folder per dcmqi module, as CTest does.

``test_every_dcmqi_test_is_in_the_table`` reads dcmqi's CMake files and checks that every test
they define is here (or in ``NOT_TRANSLATED``, with the reason).

After the tables, tests where dcmqi's own baseline is weaker than the standard or than what a
user relies on, each saying why it is stricter: dciodvfy on every SEG, map and SR (dcmqi checks
a few), Patient Orientation on labelmaps, highdicom reading every object voxel for voxel, the
metadata of every read-back (not only some), the group dcmqi leaves unchecked, NIfTI names,
every option of dcmqi's --help, and the console script.

The data are dcmqi's (``../shared``); without it these tests skip. The same behaviours are
covered on generated data by the other test files.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

import highdicom as hd
import nibabel
import nrrd
import numpy as np
import pydicom
import pytest

from conftest import UNKNOWN_IOD, dciodvfy_errors
from qidicom.cli import main

# --------------------------------------------------------------------------- dcmqi's tests


@dataclass(frozen=True)
class DcmqiTest:
    """One dcmqi test: what it runs and what it checks."""

    name: str
    command: str = ""  # dcmqi's command line with its CMake variables, tool first; "" for a check-only test
    depends: tuple[str, ...] = ()
    compare: tuple[tuple[str, str], ...] = ()  # (baseline, output) pairs
    comparejson: tuple[str, str, tuple[str, ...]] | None = None  # (expected, actual, ignored keys)
    dciodvfy: str = ""
    will_fail: bool = False
    hello: bool = False  # a `--help` test


def hello(tool: str) -> DcmqiTest:
    return DcmqiTest(f"{tool}_hello", f"{tool} --help", hello=True)


#: The options each dcmqi 1.5.7 tool lists in its --help, less the Slicer execution-model ones
#: (--xml, --echo, --returnparameterfile, --processinformationaddress) and --version/--help.
#: dcmqi's hello tests only check that --help exits 0; a drop-in must also take every option a
#: dcmqi pipeline may pass.
DCMQI_OPTIONS = {
    "itkimage2segimage": ("--compress", "--inputDICOMDirectory", "--inputDICOMList", "--inputImageList", "--inputMetadata",
                          "--noDicomValueChecks", "--outputDICOM", "--referencesGeometryCheck", "--segmentationType", "--skip",
                          "--useLabelIDAsSegmentNumber", "--verbose"),
    "segimage2itkimage": ("--inputDICOM", "--mergeSegments", "--outputDirectory", "--outputType", "--prefix", "--verbose"),
    "bin2labelsegimage": ("--compress", "--force16Bit", "--inputDICOM", "--noCheck", "--outputDICOM", "--usePalette", "--verbose"),
    "itkimage2paramap": ("--inputDICOMDirectory", "--inputDICOMList", "--inputImage", "--inputMetadata", "--noDicomValueChecks",
                         "--outputDICOM"),
    "paramap2itkimage": ("--inputDICOM", "--outputDirectory", "--outputType", "--prefix"),
    "tid1500writer": ("--inputCompositeContextDirectory", "--inputImageLibraryDirectory", "--inputMetadata", "--outputDICOM"),
    "tid1500reader": ("--inputDICOM", "--outputMetadata"),
}


# testing/seg-CMakeLists.txt. ${BASELINE} = data/segmentations, ${DICOM_DIR} = ${BASELINE}/ct-3slice.
SEG_ITK2DCM = [
    hello("itkimage2segimage"),
    DcmqiTest(
        "itkimage2segimage_makeSEG",
        "itkimage2segimage --inputMetadata ${CMAKE_SOURCE_DIR}/doc/examples/seg-example.json"
        " --inputImageList ${BASELINE}/liver_seg.nrrd --inputDICOMDirectory ${DICOM_DIR}"
        " --outputDICOM ${MODULE_TEMP_DIR}/liver.dcm",
    ),
    DcmqiTest(
        "itkimage2segimage_makeSEG_labelmap",
        "itkimage2segimage --inputMetadata ${CMAKE_SOURCE_DIR}/doc/examples/seg-example.json"
        " --inputImageList ${BASELINE}/liver_seg.nrrd --inputDICOMDirectory ${DICOM_DIR}"
        " --outputDICOM ${MODULE_TEMP_DIR}/liver-labelmap-direct.dcm --segmentationType labelmap",
    ),
    DcmqiTest(
        "itkimage2segimage_makeSEG_labelmap_multi",
        "itkimage2segimage --inputMetadata ${CMAKE_SOURCE_DIR}/doc/examples/seg-example_liver_spine.json"
        " --inputImageList ${BASELINE}/liver_seg.nrrd,${BASELINE}/spine_seg.nrrd"
        " --inputDICOMList ${DICOM_DIR}/01.dcm,${DICOM_DIR}/02.dcm,${DICOM_DIR}/03.dcm"
        " --outputDICOM ${MODULE_TEMP_DIR}/liver_spine-labelmap.dcm --segmentationType labelmap",
    ),
    DcmqiTest(
        "itkimage2segimage_makeSEG_labelmap_multi_labelID",
        "itkimage2segimage --inputMetadata ${CMAKE_SOURCE_DIR}/doc/examples/seg-example_liver_spine.json"
        " --inputImageList ${BASELINE}/liver_seg.nrrd,${BASELINE}/spine_seg.nrrd"
        " --inputDICOMList ${DICOM_DIR}/01.dcm,${DICOM_DIR}/02.dcm,${DICOM_DIR}/03.dcm"
        " --outputDICOM ${MODULE_TEMP_DIR}/liver_spine-labelmap-labelID.dcm --segmentationType labelmap"
        " --useLabelIDAsSegmentNumber",
    ),
    DcmqiTest(
        "itkimage2segimage_makeSEG_labelmap_gapped_labelID",
        "itkimage2segimage --inputMetadata ${CMAKE_SOURCE_DIR}/doc/examples/seg-example_liver_spine_gapped.json"
        " --inputImageList ${BASELINE}/liver_seg.nrrd,${BASELINE}/spine_seg_label5.nrrd"
        " --inputDICOMList ${DICOM_DIR}/01.dcm,${DICOM_DIR}/02.dcm,${DICOM_DIR}/03.dcm"
        " --outputDICOM ${MODULE_TEMP_DIR}/liver_spine-labelmap-gapped.dcm --segmentationType labelmap"
        " --useLabelIDAsSegmentNumber",
    ),
    DcmqiTest(
        "itkimage2segimage_makeSEG_labelmap_overlap",
        "itkimage2segimage --inputMetadata ${CMAKE_SOURCE_DIR}/doc/examples/seg-example_multiple_segments.json"
        " --inputImageList ${BASELINE}/liver_seg.nrrd,${BASELINE}/spine_seg.nrrd,${BASELINE}/heart_seg.nrrd"
        " --inputDICOMList ${DICOM_DIR}/01.dcm,${DICOM_DIR}/02.dcm,${DICOM_DIR}/03.dcm"
        " --outputDICOM ${MODULE_TEMP_DIR}/liver_spine_heart-labelmap.dcm --segmentationType labelmap",
        will_fail=True,
    ),
    DcmqiTest(
        "itkimage2segimage_makeSEG_merged_segment_files_from_partial_overlap",
        "itkimage2segimage --inputMetadata ${CMAKE_SOURCE_DIR}/doc/examples/seg-example_partial_overlaps.json"
        " --inputImageList ${BASELINE}/partial_overlaps-1.nrrd,${BASELINE}/partial_overlaps-2.nrrd,${BASELINE}/partial_overlaps-3.nrrd"
        " --inputDICOMList ${DICOM_DIR}/01.dcm,${DICOM_DIR}/02.dcm,${DICOM_DIR}/03.dcm"
        " --outputDICOM ${MODULE_TEMP_DIR}/partial_overlaps.dcm --useLabelIDAsSegmentNumber",
    ),
    DcmqiTest(
        "itkimage2segimage_makeSEG_multiple_segment_files",
        "itkimage2segimage --inputMetadata ${CMAKE_SOURCE_DIR}/doc/examples/seg-example_multiple_segments.json"
        " --inputImageList ${BASELINE}/liver_seg.nrrd,${BASELINE}/spine_seg.nrrd,${BASELINE}/heart_seg.nrrd"
        " --inputDICOMList ${DICOM_DIR}/01.dcm,${DICOM_DIR}/02.dcm,${DICOM_DIR}/03.dcm"
        " --outputDICOM ${MODULE_TEMP_DIR}/liver_heart_seg.dcm",
    ),
    DcmqiTest(
        "itkimage2segimage_makeSEG_multiple_segment_files_reordered",
        "itkimage2segimage --inputMetadata ${CMAKE_SOURCE_DIR}/doc/examples/seg-example_multiple_segments_reordered.json"
        " --inputImageList ${BASELINE}/heart_seg.nrrd,${BASELINE}/liver_seg.nrrd,${BASELINE}/spine_seg.nrrd"
        " --inputDICOMList ${DICOM_DIR}/01.dcm,${DICOM_DIR}/02.dcm,${DICOM_DIR}/03.dcm"
        " --outputDICOM ${MODULE_TEMP_DIR}/liver_heart_seg_reordered.dcm",
    ),
    DcmqiTest("itkimage2segimage_makeSEG_dciodvfy", depends=("itkimage2segimage_makeSEG",),
              dciodvfy="${MODULE_TEMP_DIR}/liver.dcm"),
    DcmqiTest("itkimage2segimage_makeSEG_multiple_segment_files_dciodvfy",
              depends=("itkimage2segimage_makeSEG_multiple_segment_files",),
              dciodvfy="${MODULE_TEMP_DIR}/liver_heart_seg.dcm"),
    DcmqiTest("itkimage2segimage_makeSEG_multiple_segment_files_reordered_dciodvfy",
              depends=("itkimage2segimage_makeSEG_multiple_segment_files_reordered",),
              dciodvfy="${MODULE_TEMP_DIR}/liver_heart_seg_reordered.dcm"),
    DcmqiTest(
        "itkimage2segimage_makeSEG_deflate",
        "itkimage2segimage --inputMetadata ${CMAKE_SOURCE_DIR}/doc/examples/seg-example.json"
        " --inputImageList ${BASELINE}/liver_seg.nrrd --inputDICOMDirectory ${DICOM_DIR}"
        " --outputDICOM ${MODULE_TEMP_DIR}/liver-deflate.dcm --compress deflate",
    ),
]


def reader(name: str, dicom: str, prefix: str, depends: str = "", *compare: tuple[str, str], options: str = "--outputType nrrd") -> DcmqiTest:
    """A ``segimage2itkimageTest --compare ... segimage2itkimageTest <args>`` test."""
    return DcmqiTest(
        name,
        f"segimage2itkimage --inputDICOM {dicom} --outputDirectory ${{MODULE_TEMP_DIR}} {options} --prefix {prefix}".replace("  ", " "),
        depends=(depends,) if depends else (),
        compare=compare,
    )


SEG_DCM2ITK = [
    hello("segimage2itkimage"),
    reader("segimage2itkimage_makeNRRD", "${MODULE_TEMP_DIR}/liver.dcm", "makeNRRD", "itkimage2segimage_makeSEG",
           ("${BASELINE}/liver_seg.nrrd", "${MODULE_TEMP_DIR}/makeNRRD-1.nrrd")),
    reader("segimage2itkimage_makeNRRD_deflate", "${MODULE_TEMP_DIR}/liver-deflate.dcm", "makeNRRD_deflate",
           "itkimage2segimage_makeSEG_deflate",
           ("${BASELINE}/liver_seg.nrrd", "${MODULE_TEMP_DIR}/makeNRRD_deflate-1.nrrd")),
    reader("segimage2itkimage_makeNRRD_from_labelmap_direct", "${MODULE_TEMP_DIR}/liver-labelmap-direct.dcm",
           "makeNRRD_labelmap_direct", "itkimage2segimage_makeSEG_labelmap",
           ("${BASELINE}/liver_seg.nrrd", "${MODULE_TEMP_DIR}/makeNRRD_labelmap_direct-1.nrrd")),
    reader("segimage2itkimage_makeNRRD_from_labelmap_multi", "${MODULE_TEMP_DIR}/liver_spine-labelmap.dcm",
           "makeNRRD_labelmap_multi", "itkimage2segimage_makeSEG_labelmap_multi",
           ("${BASELINE}/liver_spine_seg.nrrd", "${MODULE_TEMP_DIR}/makeNRRD_labelmap_multi-1.nrrd")),
    reader("segimage2itkimage_makeNRRD_from_labelmap_gapped", "${MODULE_TEMP_DIR}/liver_spine-labelmap-gapped.dcm",
           "makeNRRD_labelmap_gapped", "itkimage2segimage_makeSEG_labelmap_gapped_labelID",
           ("${BASELINE}/liver_spine_gapped_seg.nrrd", "${MODULE_TEMP_DIR}/makeNRRD_labelmap_gapped-1.nrrd")),
    reader("segimage2itkimage_makeNRRD_multiple_segment_files", "${MODULE_TEMP_DIR}/liver_heart_seg.dcm",
           "makeNRRD_multiple_segments", "itkimage2segimage_makeSEG_multiple_segment_files",
           ("${BASELINE}/liver_seg.nrrd", "${MODULE_TEMP_DIR}/makeNRRD_multiple_segments-1.nrrd"),
           ("${BASELINE}/spine_seg.nrrd", "${MODULE_TEMP_DIR}/makeNRRD_multiple_segments-2.nrrd"),
           ("${BASELINE}/heart_seg.nrrd", "${MODULE_TEMP_DIR}/makeNRRD_multiple_segments-3.nrrd"), options=""),
    reader("segimage2itkimage_makeNRRD_multiple_segment_files_reordered",
           "${MODULE_TEMP_DIR}/liver_heart_seg_reordered.dcm", "makeNRRD_multiple_segments_reordered",
           "itkimage2segimage_makeSEG_multiple_segment_files_reordered",
           ("${BASELINE}/liver_seg.nrrd", "${MODULE_TEMP_DIR}/makeNRRD_multiple_segments_reordered-1.nrrd"),
           ("${BASELINE}/spine_seg.nrrd", "${MODULE_TEMP_DIR}/makeNRRD_multiple_segments_reordered-2.nrrd"),
           ("${BASELINE}/heart_seg.nrrd", "${MODULE_TEMP_DIR}/makeNRRD_multiple_segments_reordered-3.nrrd"), options=""),
    reader("segimage2itkimage_makeNRRD_merged_segment_file", "${MODULE_TEMP_DIR}/liver_heart_seg.dcm",
           "makeNRRD_merged_segment_file", "itkimage2segimage_makeSEG_multiple_segment_files",
           ("${BASELINE}/liver_spine_seg.nrrd", "${MODULE_TEMP_DIR}/makeNRRD_merged_segment_file-1.nrrd"),
           ("${BASELINE}/heart_seg.nrrd", "${MODULE_TEMP_DIR}/makeNRRD_merged_segment_file-2.nrrd"),
           options="--mergeSegments"),
    DcmqiTest("segimage2itkimage_makeNRRD_merged_segment_file_JSON",
              depends=("segimage2itkimage_makeNRRD_merged_segment_file",),
              comparejson=("${CMAKE_SOURCE_DIR}/doc/examples/seg-example_multiple_segments_merged.json",
                           "${MODULE_TEMP_DIR}/makeNRRD_merged_segment_file-meta.json", ())),
    reader("segimage2itkimage_makeNRRD_merged_segment_files_from_partial_overlaps",
           "${MODULE_TEMP_DIR}/partial_overlaps.dcm", "makeNRRD_merged_segment_files_from_partial_overlaps",
           "itkimage2segimage_makeSEG_merged_segment_files_from_partial_overlap",
           ("${BASELINE}/partial_overlaps-1.nrrd", "${MODULE_TEMP_DIR}/makeNRRD_merged_segment_files_from_partial_overlaps-1.nrrd"),
           ("${BASELINE}/partial_overlaps-2.nrrd", "${MODULE_TEMP_DIR}/makeNRRD_merged_segment_files_from_partial_overlaps-2.nrrd"),
           options="--mergeSegments"),
    DcmqiTest("segimage2itkimage_makeNRRD_merged_segment_files_from_partial_overlaps_JSON",
              depends=("segimage2itkimage_makeNRRD_merged_segment_files_from_partial_overlaps",),
              comparejson=("${CMAKE_SOURCE_DIR}/doc/examples/seg-example_partial_overlaps.json",
                           "${MODULE_TEMP_DIR}/makeNRRD_merged_segment_files_from_partial_overlaps-meta.json", ())),
    DcmqiTest("seg_meta_roundtrip", depends=("segimage2itkimage_makeNRRD",),
              comparejson=("${CMAKE_SOURCE_DIR}/doc/examples/seg-example.json", "${MODULE_TEMP_DIR}/makeNRRD-meta.json", ())),
    DcmqiTest("labelmap_meta_roundtrip", depends=("segimage2itkimage_makeNRRD_from_labelmap_direct",),
              comparejson=("${CMAKE_SOURCE_DIR}/doc/examples/seg-example.json",
                           "${MODULE_TEMP_DIR}/makeNRRD_labelmap_direct-meta.json", ())),
    DcmqiTest("labelmap_gapped_meta_roundtrip", depends=("segimage2itkimage_makeNRRD_from_labelmap_gapped",),
              comparejson=("${CMAKE_SOURCE_DIR}/doc/examples/seg-example_liver_spine_gapped_merged.json",
                           "${MODULE_TEMP_DIR}/makeNRRD_labelmap_gapped-meta.json", ())),
    DcmqiTest("multi_seg_meta_roundtrip", depends=("segimage2itkimage_makeNRRD_multiple_segment_files",),
              comparejson=("${CMAKE_SOURCE_DIR}/doc/examples/seg-example_multiple_segments.json",
                           "${MODULE_TEMP_DIR}/makeNRRD_multiple_segments-meta.json", ("labelID",))),
]

TEST_SEG_SIZES = ("24x38x3", "23x38x3")

SEG_PHANTOMS = [
    test
    for size in TEST_SEG_SIZES
    for test in (
        DcmqiTest(
            f"itkimage2segimage_makeSEG_{size}",
            "itkimage2segimage --inputMetadata ${CMAKE_SOURCE_DIR}/doc/examples/seg-example.json"
            f" --inputImageList ${{BASELINE}}/{size}/nrrd/label.nrrd --inputDICOMDirectory ${{BASELINE}}/{size}/image"
            f" --outputDICOM ${{MODULE_TEMP_DIR}}/{size}_seg.dcm --skip 0",
        ),
        reader(f"segimage2itkimage_makeNRRD_{size}", f"${{MODULE_TEMP_DIR}}/{size}_seg.dcm", size,
               f"itkimage2segimage_makeSEG_{size}",
               (f"${{BASELINE}}/{size}/nrrd/label.nrrd", f"${{MODULE_TEMP_DIR}}/{size}-1.nrrd")),
    )
]


def bin2label(name: str, source: str, output: str, options: str = "", depends: str = "", will_fail: bool = False) -> DcmqiTest:
    return DcmqiTest(name, f"bin2labelsegimage --inputDICOM {source} --outputDICOM {output} {options}".strip(),
                     depends=(depends,) if depends else (), will_fail=will_fail)


SEG_BIN2LABEL = [
    *(bin2label(f"seg_phantom_{size}_to_labelmap", f"${{CMAKE_SOURCE_DIR}}/data/segmentations/{size}/seg/label.seg",
                f"${{MODULE_TEMP_DIR}}/{size}-labelmap.seg") for size in TEST_SEG_SIZES),
    bin2label("liver_to_labelmap", "${CMAKE_SOURCE_DIR}/data/segmentations/liver.dcm", "${MODULE_TEMP_DIR}/liver-labelmap.dcm"),
    *(
        test
        for variant, options in (
            ("mono8", "--compress none"),
            ("palette8", "--compress none --usePalette"),
            ("mono16", "--compress none --force16Bit"),
            ("palette16", "--compress none --usePalette --force16Bit"),
        )
        for test in (
            bin2label(f"liver_to_labelmap_{variant}", "${MODULE_TEMP_DIR}/liver.dcm",
                      f"${{MODULE_TEMP_DIR}}/liver-labelmap-{variant}.dcm", options, "itkimage2segimage_makeSEG"),
            reader(f"segimage2itkimage_labelmap_{variant}", f"${{MODULE_TEMP_DIR}}/liver-labelmap-{variant}.dcm",
                   f"labelmap_{variant}", f"liver_to_labelmap_{variant}",
                   ("${BASELINE}/liver_seg.nrrd", f"${{MODULE_TEMP_DIR}}/labelmap_{variant}-1.nrrd")),
        )
    ),
    reader("segimage2itkimage_sparse_labelmap_ppv_fill", "${BASELINE}/sparse-labelmap-ppv5.dcm", "sparse_ppv5", "",
           ("${BASELINE}/sparse_labelmap_ppv5_seg.nrrd", "${MODULE_TEMP_DIR}/sparse_ppv5-1.nrrd")),
    reader("segimage2itkimage_sparse_labelmap_noppv_segment0", "${BASELINE}/sparse-labelmap-noppv.dcm", "sparse_noppv", "",
           ("${BASELINE}/sparse_labelmap_noppv_seg.nrrd", "${MODULE_TEMP_DIR}/sparse_noppv-1.nrrd")),
    bin2label("partial_overlaps_to_labelmap", "${CMAKE_SOURCE_DIR}/data/segmentations/partial_overlaps.dcm",
              "${MODULE_TEMP_DIR}/partial_overlaps-labelmap.dcm", will_fail=True),
]

SEG = SEG_ITK2DCM + SEG_DCM2ITK + SEG_PHANTOMS + SEG_BIN2LABEL


# testing/paramaps-CMakeLists.txt. ${BASELINE} = data/paramaps/.
def pm_writer(name: str, metadata: str, image: str, output: str) -> DcmqiTest:
    return DcmqiTest(
        name,
        f"itkimage2paramap --inputMetadata ${{CMAKE_SOURCE_DIR}}/doc/examples/{metadata} --inputImage ${{BASELINE}}/{image}"
        f" --inputDICOMList ${{BASELINE}}/pm-example-slice.dcm --outputDICOM ${{MODULE_TEMP_DIR}}/{output}",
    )


def pm_reader(name: str, dicom: str, prefix: str, depends: str, baseline: str) -> DcmqiTest:
    return DcmqiTest(
        name,
        f"paramap2itkimage --inputDICOM ${{MODULE_TEMP_DIR}}/{dicom} --outputDirectory ${{MODULE_TEMP_DIR}} --prefix {prefix}",
        depends=(depends,),
        compare=((f"${{BASELINE}}/{baseline}", f"${{MODULE_TEMP_DIR}}/{prefix}-pmap.nrrd"),),
    )


PARAMAP = [
    hello("itkimage2paramap"),
    pm_writer("itkimage2paramap_makeParametricMap", "pm-example.json", "pm-example.nrrd", "paramap.dcm"),
    pm_writer("itkimage2paramap_makeParametricMapFP", "pm-example-float.json", "pm-example-float.nrrd", "paramap-float.dcm"),
    pm_writer("itkimage2paramap_makeParametricMapNoDerImg256x256", "pm-example.json", "pm-example-3slices-256x256.nrrd",
              "paramap-3slices-256x256.dcm"),
    pm_writer("itkimage2paramap_makeParametricMapNoModifier", "pm-example_no_modifier.json", "pm-example-3slices-256x256.nrrd",
              "paramap-3slices-256x256.dcm"),
    pm_writer("itkimage2paramap_makeParametricMapNoDerImg252x255", "pm-example.json", "pm-example-3slices-252x255.nrrd",
              "paramap-3slices-252x255.dcm"),
    DcmqiTest("itkimage2paramap_makeParametricMap_dciodvfy", depends=("itkimage2paramap_makeParametricMap",),
              dciodvfy="${MODULE_TEMP_DIR}/paramap.dcm"),
    DcmqiTest("itkimage2paramap_makeParametricMapFP_dciodvfy", depends=("itkimage2paramap_makeParametricMapFP",),
              dciodvfy="${MODULE_TEMP_DIR}/paramap-float.dcm"),
    hello("paramap2itkimage"),
    pm_reader("paramap2itkimage_makeNRRDParametricMap", "paramap.dcm", "makeNRRDParametricMap",
              "itkimage2paramap_makeParametricMap", "pm-example.nrrd"),
    DcmqiTest("paramap_meta_roundtrip", depends=("paramap2itkimage_makeNRRDParametricMap",),
              comparejson=("${CMAKE_SOURCE_DIR}/doc/examples/pm-example.json",
                           "${MODULE_TEMP_DIR}/makeNRRDParametricMap-meta.json", ())),
    pm_reader("paramap2itkimage_makeNRRDParametricMapFP", "paramap-float.dcm", "makeNRRDParametricMapFP",
              "itkimage2paramap_makeParametricMapFP", "pm-example-float.nrrd"),
    DcmqiTest("paramap_FP_meta_roundtrip", depends=("paramap2itkimage_makeNRRDParametricMapFP",),
              comparejson=("${CMAKE_SOURCE_DIR}/doc/examples/pm-example-float.json",
                           "${MODULE_TEMP_DIR}/makeNRRDParametricMapFP-meta.json", ())),
    pm_reader("paramap2itkimage_makeNRRDParametricMapNoDerImg256x256", "paramap-3slices-256x256.dcm",
              "makeNRRDParametricMap-3slices-256x256", "itkimage2paramap_makeParametricMapNoDerImg256x256",
              "pm-example-3slices-256x256.nrrd"),
    pm_reader("paramap2itkimage_makeNRRDParametricMapNoDerImg252x255", "paramap-3slices-252x255.dcm",
              "makeNRRDParametricMap-3slices-252x255", "itkimage2paramap_makeParametricMapNoDerImg252x255",
              "pm-example-3slices-252x255.nrrd"),
]


# testing/sr-CMakeLists.txt. ${EXAMPLES} = doc/examples, ${SEGMENTATIONS_DIR} = data/segmentations.
def sr_writer(name: str, metadata: str, context: str) -> DcmqiTest:
    return DcmqiTest(
        name,
        f"tid1500writer --inputMetadata ${{EXAMPLES}}/{metadata}.json --inputImageLibraryDirectory ${{DICOM_DIR}}"
        f" --inputCompositeContextDirectory {context} --outputDICOM ${{MODULE_TEMP_DIR}}/{metadata}.dcm",
    )


def sr_reader(name: str, metadata: str, depends: str) -> DcmqiTest:
    return DcmqiTest(
        name,
        f"tid1500reader --inputDICOM ${{MODULE_TEMP_DIR}}/{metadata}.dcm --outputMetadata ${{MODULE_TEMP_DIR}}/{metadata}.json",
        depends=(depends,),
    )


SR_IGNORED = ("activitySession", "timePoint", "imageLibrary", "compositeContext", "procedureReported")

TID1500 = [
    hello("tid1500writer"),
    sr_writer("tid1500writer_nan", "sr-tid1500-example-nan", "${CMAKE_SOURCE_DIR}/data/sr-example"),
    sr_writer("tid1500writer_example", "sr-tid1500-example", "${CMAKE_SOURCE_DIR}/data/sr-example"),
    sr_writer("tid1500writer_ct-liver", "sr-tid1500-ct-liver-example", "${SEGMENTATIONS_DIR}"),
    sr_writer("tid1500writer_qualitative", "sr-tid1500-qualitative", "${CMAKE_SOURCE_DIR}/data/sr-example"),
    DcmqiTest("tid1500writer_example_dciodvfy", depends=("tid1500writer_example",),
              dciodvfy="${MODULE_TEMP_DIR}/sr-tid1500-example.dcm"),
    DcmqiTest("tid1500writer_ct-liver_dciodvfy", depends=("tid1500writer_ct-liver",),
              dciodvfy="${MODULE_TEMP_DIR}/sr-tid1500-ct-liver-example.dcm"),
    hello("tid1500reader"),
    sr_reader("tid1500reader_example", "sr-tid1500-example", "tid1500writer_example"),
    sr_reader("tid1500reader_ct-liver", "sr-tid1500-ct-liver-example", "tid1500writer_ct-liver"),
    sr_reader("tid1500reader_qualitative", "sr-tid1500-qualitative", "tid1500writer_qualitative"),
    DcmqiTest("tid1500_meta_roundtrip", depends=("tid1500reader_ct-liver",),
              comparejson=("${EXAMPLES}/sr-tid1500-ct-liver-example.json",
                           "${MODULE_TEMP_DIR}/sr-tid1500-ct-liver-example.json", SR_IGNORED)),
]

#: The tests of dcmqi's CMake files not translated, and why.
NOT_TRANSLATED = {
    "itkimage2segimage_handlerOverloadEquivalence": "a C++ API test (two overloads of one dcmqi function); "
    "its intent, file and in-memory inputs giving the same SEG, is test_file_and_in_memory_inputs_give_the_same_seg",
}

#: The warnings qidicom must print for dcmqi's inputs (every other run must print none, so a
#: pipeline's log stays quiet on dcmqi's own examples). dcmqi prints these situations to
#: stdout among its progress lines, or not at all.
WARNINGS = {
    # dcmqi's comment: the missing middle slice is filled with 0 "and a warning is logged".
    "segimage2itkimage_sparse_labelmap_noppv_segment0": ("have no frame and there is no Pixel Padding Value",
                                                         "segment 0 ('Background') is described"),
    "segimage2itkimage_sparse_labelmap_ppv_fill": ("segment 0 ('Background') is described",),
    # One MR slice for a multi-slice map: frames outside its plane reference no source image.
    **{name: ("not a series covering its",) for name in (
        "itkimage2paramap_makeParametricMap", "itkimage2paramap_makeParametricMapFP",
        "itkimage2paramap_makeParametricMapNoDerImg256x256", "itkimage2paramap_makeParametricMapNoDerImg252x255")},
    # pm-example_no_modifier.json's BodyPartExamined "Prostate" is not a Code String (upper case).
    "itkimage2paramap_makeParametricMapNoModifier": ("not a series covering its", "BodyPartExamined 'Prostate'"),
    # dcmqi's SR examples reference images of another patient than their composite context.
    **{name: ("belong to patient '99000'",) for name in ("tid1500writer_nan", "tid1500writer_example", "tid1500writer_qualitative")},
}

ALL_TESTS = {test.name: test for test in SEG + PARAMAP + TID1500}
assert set(WARNINGS) <= set(ALL_TESTS)
MODULE_OF = {
    **{test.name: "seg" for test in SEG},
    **{test.name: "pmap" for test in PARAMAP},
    **{test.name: "tid1500" for test in TID1500},
}
assert len(ALL_TESTS) == len(SEG) + len(PARAMAP) + len(TID1500), "dcmqi test names are unique"


# --------------------------------------------------------------------------- how dcmqi's CI compares


def image_and_lps_affine(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Voxels [i, j, k] and the 4x4 index-to-LPS affine of a NRRD (pynrrd) or NIfTI (nibabel) file.

    Read with the libraries directly, not with qidicom's reader, so a reader bug cannot hide a
    writer bug.
    """
    if path.name.endswith(".nrrd"):
        data, header = nrrd.read(str(path))
        affine = np.eye(4)
        affine[:3, :3] = np.asarray(header["space directions"], float).T
        affine[:3, 3] = np.asarray(header.get("space origin", (0, 0, 0)), float)
        space = header.get("space", "left-posterior-superior")
        if space in ("right-anterior-superior", "RAS"):
            affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
        elif space not in ("left-posterior-superior", "LPS"):
            raise AssertionError(f"{path.name}: unexpected NRRD space '{space}'")
    else:
        image = nibabel.load(str(path))
        data = np.asanyarray(image.dataobj)
        affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ image.affine  # NIfTI world space is RAS
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    return data, affine


def assert_same_image(expected: Path, actual: Path, tolerance_mm: float = 1e-3) -> None:
    """As dcmqi's ``--compare``: same size, origin, spacing and direction (within tolerance) and
    the same value in every voxel."""
    assert actual.is_file(), f"{actual.name} was not written (files there: {sorted(p.name for p in actual.parent.iterdir())})"
    want, want_affine = image_and_lps_affine(expected)
    got, got_affine = image_and_lps_affine(actual)
    assert got.shape == want.shape, f"{actual.name}: size {got.shape}, expected {want.shape} as in {expected.name}"
    want_spacing = np.linalg.norm(want_affine[:3, :3], axis=0)
    got_spacing = np.linalg.norm(got_affine[:3, :3], axis=0)
    np.testing.assert_allclose(got_spacing, want_spacing, atol=tolerance_mm, err_msg=f"{actual.name}: spacing")
    np.testing.assert_allclose(got_affine[:3, 3], want_affine[:3, 3], atol=tolerance_mm, err_msg=f"{actual.name}: origin")
    np.testing.assert_allclose(got_affine[:3, :3] / got_spacing, want_affine[:3, :3] / want_spacing, atol=tolerance_mm,
                               err_msg=f"{actual.name}: direction")
    different = np.count_nonzero(got != want)
    assert different == 0, (
        f"{actual.name}: {different} of {want.size} voxels differ from {expected.name} "
        f"(values {np.unique(got)[:10].tolist()} vs {np.unique(want)[:10].tolist()})"
    )


def comparejson_problems(expected, actual, ignored: tuple[str, ...] = (), where: str = "$") -> list[str]:
    """dcmqi's comparejson rule: every key of ``expected`` (at any depth) is in ``actual`` with an
    equal value of the same JSON type; lists match item by item and in length; keys named in
    ``ignored`` (and ``@schema``, which dcmqi always ignores) are skipped. Extra keys are fine.

    Returns one line per difference, with its JSON path.
    """
    ignored = ("@schema", *ignored)
    if type(expected) is not type(actual):
        return [f"{where}: expected {type(expected).__name__} {expected!r}, got {type(actual).__name__} {actual!r}"]
    if isinstance(expected, dict):
        problems = []
        for key, value in expected.items():
            if key in ignored:
                continue
            if key not in actual:
                problems.append(f"{where}.{key}: missing")
            else:
                problems += comparejson_problems(value, actual[key], ignored, f"{where}.{key}")
        return problems
    if isinstance(expected, list):
        if len(expected) != len(actual):
            return [f"{where}: {len(actual)} items, expected {len(expected)}: {actual!r}"]
        return [p for i, (e, a) in enumerate(zip(expected, actual)) for p in comparejson_problems(e, a, ignored, f"{where}[{i}]")]
    return [] if expected == actual else [f"{where}: expected {expected!r}, got {actual!r}"]


def test_comparejson_rule_itself():
    """The comparison must be able to fail: types, values, lengths, missing keys; not extras."""
    expected = {"@schema": "x", "a": 1, "b": [{"c": "1"}], "d": {"e": [1, 2]}, "labelID": 3}
    assert comparejson_problems(expected, {"a": 1, "b": [{"c": "1", "extra": 0}], "d": {"e": [1, 2]}, "labelID": 3}) == []
    assert comparejson_problems(expected, {"a": 1.0, "b": [{"c": "1"}], "d": {"e": [1, 2]}, "labelID": 3}) == [
        "$.a: expected int 1, got float 1.0"]
    assert comparejson_problems(expected, {"a": 1, "b": [{"c": 1}], "d": {"e": [1]}}) == [
        "$.b[0].c: expected str '1', got int 1", "$.d.e: 1 items, expected 2: [1]", "$.labelID: missing"]
    assert comparejson_problems(expected, {"a": 1, "b": [{"c": "1"}], "d": {"e": [1, 2]}, "labelID": 4}, ("labelID",)) == []
    assert comparejson_problems(True, 1) == ["$: expected bool True, got int 1"]


# --------------------------------------------------------------------------- running them


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str

    @property
    def error(self) -> str:
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        return lines[-1] if lines else f"exit status {self.returncode}, nothing on stderr"


def run_qidicom(argv: list[str]) -> Outcome:
    """``qidicom <argv>`` in this process, as the console script runs it."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exit_:  # --help, and argparse's usage errors
            code = exit_.code if isinstance(exit_.code, int) else 1
    return Outcome(code, out.getvalue(), err.getvalue())


def assert_warnings(stderr: str, expected: tuple[str, ...]) -> None:
    """stderr holds only warning lines, each matching one of ``expected``, and every one of
    ``expected`` is there."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    unexpected = [line for line in lines if not (line.startswith("warning: ") and any(e in line for e in expected))]
    assert unexpected == [], f"unexpected output on stderr: {unexpected}"
    missing = [e for e in expected if not any(e in line for line in lines)]
    assert missing == [], f"no warning saying {missing}; stderr: {lines}"


@dataclass
class Suite:
    """dcmqi's CMake variables on this machine, and each test's outcome (each command runs once)."""

    shared: Path
    temp: Path
    outcomes: dict[str, Outcome] = field(default_factory=dict)

    def variables(self, name: str) -> dict[str, str]:
        data = self.shared / "data" / "dcmqi"
        module = MODULE_OF[name]
        baseline = data / ("segmentations" if module != "pmap" else "paramaps")
        return {
            "EXAMPLES": str(self.shared / "reference" / "dcmqi" / "examples"),
            "BASELINE": str(baseline),
            "SEGMENTATIONS_DIR": str(data / "segmentations"),
            "DICOM_DIR": str(data / "segmentations" / "ct-3slice"),
            "MODULE_TEMP_DIR": str(self.temp / module),
        }

    def expand(self, name: str, text: str) -> str:
        """A CMake string with dcmqi's paths mapped: ${CMAKE_SOURCE_DIR}/doc/examples is
        ../shared/reference/dcmqi/examples, ${CMAKE_SOURCE_DIR}/data is ../shared/data/dcmqi."""
        text = text.replace("${CMAKE_SOURCE_DIR}/doc/examples", "${EXAMPLES}")
        text = text.replace("${CMAKE_SOURCE_DIR}/data", str(self.shared / "data" / "dcmqi"))
        return Template(text).substitute(self.variables(name))

    def path(self, name: str, text: str) -> Path:
        return Path(self.expand(name, text))

    def run(self, name: str) -> Outcome | None:
        """Run a test's prerequisites, then its command (once); None for a check-only test."""
        test = ALL_TESTS[name]
        for dependency in test.depends:
            outcome = self.run(dependency)
            if outcome is not None and outcome.returncode != 0 and not ALL_TESTS[dependency].will_fail:
                pytest.fail(f"prerequisite {dependency} failed: {outcome.error}", pytrace=False)
        if not test.command:
            return None
        if name not in self.outcomes:
            (self.temp / MODULE_OF[name]).mkdir(parents=True, exist_ok=True)
            argv = [self.expand(name, word) for word in shlex.split(test.command)]
            self.outcomes[name] = run_qidicom(argv)
        return self.outcomes[name]

    def check(self, name: str) -> None:
        """Run a dcmqi test and make dcmqi's checks."""
        test = ALL_TESTS[name]
        outcome = self.run(name)
        if test.hello:
            assert outcome.returncode == 0, outcome.error
            tool = test.command.split()[0]
            missing = [o for o in DCMQI_OPTIONS[tool] if not re.search(re.escape(o) + r"(?![A-Za-z0-9])", outcome.stdout)]
            assert missing == [], f"qidicom {tool} does not take dcmqi's {', '.join(missing)}"
        elif test.will_fail:
            assert outcome.returncode != 0, f"{name} must fail (dcmqi's WILL_FAIL), but it succeeded"
            lines = [line for line in outcome.stderr.splitlines() if line.strip()]
            assert len(lines) == 1 and lines[0].startswith("error: ") and "overlap" in lines[0], outcome.stderr
            output = self.path(name, shlex.split(test.command)[shlex.split(test.command).index("--outputDICOM") + 1])
            assert not output.exists(), f"a failed run left {output.name} behind"
        elif outcome is not None:
            assert outcome.returncode == 0, f"qidicom {test.command.split()[0]}: {outcome.error}"
            assert_warnings(outcome.stderr, WARNINGS.get(name, ()))
        for baseline, output in test.compare:
            assert_same_image(self.path(name, baseline), self.path(name, output))
        if test.comparejson:
            expected, actual, ignored = test.comparejson
            problems = comparejson_problems(
                json.loads(self.path(name, expected).read_text()), json.loads(self.path(name, actual).read_text()), ignored
            )
            assert problems == [], "\n".join(problems)
        if test.dciodvfy:
            path = self.path(name, test.dciodvfy)
            assert dciodvfy_errors(path, self.temp) == []


@pytest.fixture(scope="session")
def suite(shared, tmp_path_factory) -> Suite:
    return Suite(shared, tmp_path_factory.mktemp("dcmqi-suite"))


@pytest.mark.parametrize("name", [test.name for test in SEG])
def test_seg(suite, name):
    suite.check(name)


@pytest.mark.parametrize("name", [test.name for test in PARAMAP])
def test_paramap(suite, name):
    suite.check(name)


@pytest.mark.parametrize("name", [test.name for test in TID1500])
def test_tid1500(suite, name):
    suite.check(name)


# --------------------------------------------------------------------------- stricter than dcmqi's baseline


def output_of(suite: Suite, test_name: str) -> Path:
    """The SEG a writer test of the table makes (running it first)."""
    outcome = suite.run(test_name)
    assert outcome.returncode == 0, f"{test_name} failed: {outcome.error}"
    words = shlex.split(ALL_TESTS[test_name].command)
    return suite.path(test_name, words[words.index("--outputDICOM") + 1])


BINARY_WRITERS = [
    "itkimage2segimage_makeSEG",
    "itkimage2segimage_makeSEG_deflate",
    "itkimage2segimage_makeSEG_merged_segment_files_from_partial_overlap",
    "itkimage2segimage_makeSEG_multiple_segment_files",
    "itkimage2segimage_makeSEG_multiple_segment_files_reordered",
    "itkimage2segimage_makeSEG_24x38x3",
    "itkimage2segimage_makeSEG_23x38x3",
]
LABELMAP_WRITERS = [
    "itkimage2segimage_makeSEG_labelmap",
    "itkimage2segimage_makeSEG_labelmap_multi",
    "itkimage2segimage_makeSEG_labelmap_multi_labelID",
    "itkimage2segimage_makeSEG_labelmap_gapped_labelID",
    "seg_phantom_24x38x3_to_labelmap",
    "seg_phantom_23x38x3_to_labelmap",
    "liver_to_labelmap",
    "liver_to_labelmap_mono8",
    "liver_to_labelmap_palette8",
    "liver_to_labelmap_mono16",
    "liver_to_labelmap_palette16",
]


@pytest.mark.parametrize("name", [n for n in BINARY_WRITERS if f"{n}_dciodvfy" not in ALL_TESTS])
def test_every_binary_seg_passes_dciodvfy(suite, name):
    """dcmqi runs dciodvfy on three of its binary SEGs; every binary SEG it writes must pass."""
    path = output_of(suite, name)
    assert dciodvfy_errors(path, suite.temp) == []


@pytest.mark.parametrize("name", LABELMAP_WRITERS)
def test_every_labelmap_seg_is_conformant(suite, name):
    """dcmqi does not run dciodvfy on labelmaps: its own fail for a missing Patient Orientation
    (General Image, Type 2C, required when there is no Frame of Reference for a multi-frame
    image... which current dciodvfy asks of every LABELMAP SEG). Ours carry it, and the palette
    variants carry a palette that covers every stored value, so the only line Debian's dciodvfy
    (2022, older than the LABELMAP IOD) may print is that it does not know the IOD."""
    path = output_of(suite, name)
    dataset = pydicom.dcmread(path)
    assert dataset.SegmentationType == "LABELMAP"
    assert "PatientOrientation" in dataset, "Patient Orientation (General Image, Type 2C) is missing"
    known = [UNKNOWN_IOD]
    numbers = [int(item.SegmentNumber) for item in dataset.SegmentSequence]
    if numbers != list(range(1, len(numbers) + 1)):
        # Segment numbers of a LABELMAP are its pixel values and need only be unique (dcmqi
        # issue 537); this dciodvfy applies the BINARY rule to them.
        known.insert(0, "Error - SegmentNumber not monotonically increasing from one by one - have SegmentSequence "
                        f"item number 2 (from one) with SegmentNumber of {numbers[1]}")
    assert dciodvfy_errors(path, suite.temp) == known


def on_grid(array: np.ndarray, affine: np.ndarray, target_affine: np.ndarray, target_shape) -> np.ndarray:
    """``array`` (with its index-to-LPS ``affine``) placed voxel for voxel on a target grid; the
    grids must share voxel centres (any axis order or flip). Fails if a voxel falls outside."""
    index_map = np.linalg.solve(target_affine, affine)  # source index -> target index
    assert np.allclose(index_map, np.round(index_map), atol=1e-3), "the grids do not share voxel centres"
    index_map = np.round(index_map).astype(int)
    source = np.indices(array.shape).reshape(3, -1)
    target = index_map[:3, :3] @ source + index_map[:3, 3:]
    assert (target >= 0).all() and (target < np.asarray(target_shape)[:, None]).all(), "voxels fall outside the grid"
    placed = np.zeros(target_shape, array.dtype)
    placed[tuple(target)] = array.reshape(-1)
    return placed


@pytest.mark.parametrize("name", BINARY_WRITERS + LABELMAP_WRITERS)
def test_every_seg_reads_in_highdicom_with_the_same_voxels(suite, name):
    """An independent reader, highdicom, finds the same segments with the same voxels at the
    same places as qidicom's reader (whose output the table compares with dcmqi's baselines):
    dcmqi reads its SEGs back only with its own code."""
    from qidicom.seg import read_segmentation

    path = output_of(suite, name)
    ours = read_segmentation(path)
    theirs = hd.seg.segread(path)
    assert list(theirs.segment_numbers) == [segment.number for segment in ours.segments]
    for segment in ours.segments:
        volume = theirs.get_volume(segment_numbers=[segment.number], combine_segments=False, allow_missing_positions=True)
        placed = on_grid(volume.array[..., 0], volume.affine, ours.affine, segment.array.shape)
        different = np.count_nonzero((placed != 0) != segment.array)
        assert different == 0, f"segment {segment.number}: {different} voxels differ between highdicom and qidicom"


READERS = [test.name for test in SEG + PARAMAP if test.command.startswith(("segimage2itkimage", "paramap2itkimage")) and not test.hello]
#: Files a reader writes beyond those dcmqi's test compares.
UNCOMPARED = {"segimage2itkimage_makeNRRD_merged_segment_files_from_partial_overlaps": ("-3.nrrd",)}


@pytest.mark.parametrize("name", READERS)
def test_readers_write_exactly_dcmqis_files(suite, name):
    """dcmqi compares the files it expects but would not notice one more (a background label
    map, a stray group): a reader writes the compared images and its meta JSON, nothing else."""
    suite.check(name)
    words = shlex.split(ALL_TESTS[name].command)
    prefix = words[words.index("--prefix") + 1]
    folder = suite.path(name, words[words.index("--outputDirectory") + 1])
    # the prefixes share a folder (makeNRRD, makeNRRD_deflate, ...): match "<prefix>-<what>" whole
    written = sorted(p.name for p in folder.iterdir() if re.fullmatch(re.escape(prefix) + r"-(\d+\.nrrd|pmap\.nrrd|meta\.json)", p.name))
    expected = sorted({suite.path(name, output).name for _, output in ALL_TESTS[name].compare}
                      | {f"{prefix}-meta.json"} | {prefix + suffix for suffix in UNCOMPARED.get(name, ())})
    assert written == expected


def test_partial_overlaps_third_group_and_no_more(suite):
    """dcmqi compares only groups 1 and 2 of the partial-overlaps SEG; the third (PURPLE) must
    match too, and no fourth file may appear."""
    name = "segimage2itkimage_makeNRRD_merged_segment_files_from_partial_overlaps"
    suite.check(name)
    output = suite.temp / "seg"
    prefix = "makeNRRD_merged_segment_files_from_partial_overlaps"
    assert_same_image(suite.shared / "data/dcmqi/segmentations/partial_overlaps-3.nrrd", output / f"{prefix}-3.nrrd")
    assert not (output / f"{prefix}-4.nrrd").exists()


def test_merged_liver_spine_heart_has_two_groups(suite):
    suite.check("segimage2itkimage_makeNRRD_merged_segment_file")
    assert not (suite.temp / "seg" / "makeNRRD_merged_segment_file-3.nrrd").exists()


@pytest.mark.parametrize("variant", ["mono8", "palette8", "mono16", "palette16"])
def test_bin2labelsegimage_variants_keep_the_metadata(suite, variant):
    """dcmqi checks only the voxels of its four bin2labelsegimage variants; the metadata must
    survive too (seg-example.json by comparejson), and a palette SEG reports each segment's
    colour from its palette."""
    suite.check(f"segimage2itkimage_labelmap_{variant}")
    actual = json.loads((suite.temp / "seg" / f"labelmap_{variant}-meta.json").read_text())
    expected = json.loads((suite.shared / "reference/dcmqi/examples/seg-example.json").read_text())
    assert comparejson_problems(expected, actual) == []
    dataset = pydicom.dcmread(suite.temp / "seg" / f"liver-labelmap-{variant}.dcm")
    assert dataset.PhotometricInterpretation == ("PALETTE COLOR" if variant.startswith("palette") else "MONOCHROME2")
    assert int(dataset.BitsAllocated) == (16 if variant.endswith("16") else 8)


def test_sparse_labelmaps_have_no_background_segment(suite):
    """Background (0) or the Pixel Padding Value is not a segment: one label map file, and the
    meta JSON lists segment 1 only (dcmqi compares the voxels only)."""
    for name, prefix in (("segimage2itkimage_sparse_labelmap_ppv_fill", "sparse_ppv5"),
                         ("segimage2itkimage_sparse_labelmap_noppv_segment0", "sparse_noppv")):
        suite.check(name)
        output = suite.temp / "seg"
        assert sorted(p.name for p in output.glob(f"{prefix}-*")) == [f"{prefix}-1.nrrd", f"{prefix}-meta.json"]
        meta = json.loads((output / f"{prefix}-meta.json").read_text())
        assert [[s["labelID"] for s in group] for group in meta["segmentAttributes"]] == [[1]]


@pytest.mark.parametrize("output_type", ["nii", "nifti"])
def test_nifti_output_named_as_dcmqi_names_it(suite, output_type, tmp_path):
    """``--outputType nii`` (and nifti) writes ``<prefix>-<N>.nii.gz``, as dcmqi 1.5.7 does, with
    the same voxels and geometry as the NRRD baseline."""
    liver = output_of(suite, "itkimage2segimage_makeSEG")
    outcome = run_qidicom(["segimage2itkimage", "--inputDICOM", str(liver), "--outputDirectory", str(tmp_path),
                           "--outputType", output_type, "--prefix", "nii"])
    assert outcome.returncode == 0, outcome.error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nii-1.nii.gz", "nii-meta.json"]
    assert_same_image(suite.shared / "data/dcmqi/segmentations/liver_seg.nrrd", tmp_path / "nii-1.nii.gz")


PM_WRITERS = [
    "itkimage2paramap_makeParametricMap",
    "itkimage2paramap_makeParametricMapFP",
    "itkimage2paramap_makeParametricMapNoDerImg256x256",
    "itkimage2paramap_makeParametricMapNoModifier",
    "itkimage2paramap_makeParametricMapNoDerImg252x255",
]


def option(suite: Suite, name: str, flag: str) -> Path:
    """The value of one option in a table test's command line, expanded."""
    words = shlex.split(ALL_TESTS[name].command)
    return suite.path(name, words[words.index(flag) + 1])


def run_writer_to(suite: Suite, name: str, output: Path) -> Path:
    """Run a table test's writer command as dcmqi gives it, but writing ``output``."""
    words = [suite.expand(name, word) for word in shlex.split(ALL_TESTS[name].command)]
    words[words.index("--outputDICOM") + 1] = str(output)
    outcome = run_qidicom(words)
    assert outcome.returncode == 0, f"{name}: {outcome.error}"
    return output


def as_code_string(metadata: dict) -> dict:
    """Body Part Examined is a Code String (upper case only, PS3.5 6.2): the map carries
    pm-example_no_modifier.json's "Prostate" as "PROSTATE", and reads back so."""
    if "BodyPartExamined" in metadata:
        metadata = dict(metadata, BodyPartExamined=metadata["BodyPartExamined"].upper())
    return metadata


@pytest.mark.parametrize("name", PM_WRITERS)
def test_every_parametric_map_is_conformant_and_reads_back(suite, name, tmp_path):
    """dcmqi runs dciodvfy on two of its five maps and reads back three: every map must pass
    dciodvfy, be a Parametric Map to highdicom, and give back the input map's voxels and the
    metadata (comparejson) through paramap2itkimage."""
    path = run_writer_to(suite, name, tmp_path / "pm.dcm")
    assert dciodvfy_errors(path, tmp_path) == []
    pm = hd.pm.ParametricMap.from_dataset(pydicom.dcmread(path))
    assert pm.SOPClassUID == "1.2.840.10008.5.1.4.1.1.30"
    outcome = run_qidicom(["paramap2itkimage", "--inputDICOM", str(path), "--outputDirectory", str(tmp_path), "--prefix", "check"])
    assert outcome.returncode == 0, outcome.error
    assert_same_image(option(suite, name, "--inputImage"), tmp_path / "check-pmap.nrrd")
    expected = as_code_string(json.loads(option(suite, name, "--inputMetadata").read_text()))
    problems = comparejson_problems(expected, json.loads((tmp_path / "check-meta.json").read_text()))
    assert problems == [], "\n".join(problems)


SR_WRITERS = ["tid1500writer_nan", "tid1500writer_example", "tid1500writer_ct-liver", "tid1500writer_qualitative"]


def measurements_without_value(dataset: pydicom.Dataset) -> list[pydicom.Dataset]:
    """NUM content items whose Measured Value Sequence is empty (anywhere in the tree)."""
    found = []
    for item in dataset.get("ContentSequence", []):
        if item.ValueType == "NUM" and len(item.get("MeasuredValueSequence", [])) == 0:
            found.append(item)
        found += measurements_without_value(item)
    return found


@pytest.mark.parametrize("name", SR_WRITERS)
def test_every_sr_is_conformant_and_round_trips(suite, name, tmp_path):
    """dcmqi runs dciodvfy on two of its four SRs and compares one read-back JSON: all four
    must pass dciodvfy, be TID 1500 to highdicom, and read back to their JSON under dcmqi's
    ignore list."""
    path = run_writer_to(suite, name, tmp_path / "sr.dcm")
    assert dciodvfy_errors(path, tmp_path) == []
    dataset = pydicom.dcmread(path)
    assert dataset.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    empty = measurements_without_value(dataset)
    if name == "tid1500writer_nan":
        # A NaN measurement is a NUM with an empty Measured Value Sequence and a Numeric Value
        # Qualifier (PS3.3 C.18.1.1); highdicom 0.28's parser cannot take such an item, so
        # it is checked here with pydicom.
        assert empty and all(item.NumericValueQualifierCodeSequence[0].CodeValue == "114000" for item in empty)
    else:
        assert empty == []
        hd.sr.srread(path)
    outcome = run_qidicom(["tid1500reader", "--inputDICOM", str(path), "--outputMetadata", str(tmp_path / "back.json")])
    assert outcome.returncode == 0, outcome.error
    expected = json.loads(option(suite, name, "--inputMetadata").read_text())
    for measurement in expected["Measurements"]:
        for item in measurement["measurementItems"]:
            if item["value"].lower() == "nan":
                # Units live in the Measured Value Sequence's item, which a NaN lacks: they
                # cannot be stored, so they cannot come back. (dcmqi drops the whole item.)
                del item["units"]
    problems = comparejson_problems(expected, json.loads((tmp_path / "back.json").read_text()), SR_IGNORED)
    assert problems == [], "\n".join(problems)


def test_file_and_in_memory_inputs_give_the_same_seg(suite):
    """dcmqi's itkimage2segimage_handlerOverloadEquivalence (a C++ API test) asks that its two
    entry points give equivalent SEGs. Ours: the command line (files) and the library called
    with bytes and a dict, as the browser app does, write the same segments, frames and pixels."""
    from qidicom.seg import segmentation_from_files

    liver = pydicom.dcmread(output_of(suite, "itkimage2segimage_makeSEG"))
    data = suite.shared / "data" / "dcmqi" / "segmentations"
    metadata = json.loads((suite.shared / "reference/dcmqi/examples/seg-example.json").read_text())
    in_memory = pydicom.dcmread(io.BytesIO(segmentation_from_files(
        [(data / "liver_seg.nrrd").read_bytes()], metadata, [(data / "ct-3slice" / f"0{n}.dcm").read_bytes() for n in (1, 2, 3)]
    ).data))
    assert in_memory.PixelData == liver.PixelData
    for keyword in ("NumberOfFrames", "SegmentSequence", "SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence",
                    "ReferencedSeriesSequence", "PatientID", "StudyInstanceUID", "FrameOfReferenceUID"):
        assert in_memory.get(keyword) == liver.get(keyword), keyword


def test_bin2labelsegimage_takes_dcmqis_options():
    """dcmqi defines no hello test for bin2labelsegimage; its options must be taken all the same."""
    outcome = run_qidicom(["bin2labelsegimage", "--help"])
    assert outcome.returncode == 0, outcome.error
    missing = [o for o in DCMQI_OPTIONS["bin2labelsegimage"] if not re.search(re.escape(o) + r"(?![A-Za-z0-9])", outcome.stdout)]
    assert missing == [], f"qidicom bin2labelsegimage does not take dcmqi's {', '.join(missing)}"


def test_console_script_runs_dcmqis_command_line(suite, tmp_path):
    """The table runs qidicom in-process; a pipeline runs the ``qidicom`` console script. One
    dcmqi command line through it: same SEG voxels, one-line errors on stderr, exit status."""
    import subprocess
    import sys

    script = Path(sys.executable).with_name("qidicom")
    if not script.exists():
        pytest.skip(f"no qidicom console script beside {sys.executable} (install the package with pip)")
    words = [suite.expand("itkimage2segimage_makeSEG", w) for w in shlex.split(ALL_TESTS["itkimage2segimage_makeSEG"].command)]
    words[words.index("--outputDICOM") + 1] = str(tmp_path / "liver.dcm")
    result = subprocess.run([str(script), *words], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    result = subprocess.run([str(script), "segimage2itkimage", "--inputDICOM", str(tmp_path / "liver.dcm"), "--outputDirectory",
                             str(tmp_path), "--prefix", "cli"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert_same_image(suite.shared / "data/dcmqi/segmentations/liver_seg.nrrd", tmp_path / "cli-1.nrrd")
    result = subprocess.run([str(script), "segimage2itkimage", "--inputDICOM", str(tmp_path / "missing.dcm"), "--outputDirectory",
                             str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1 and "missing.dcm" in result.stderr


def dcmqi_test_names(cmake: str) -> list[str]:
    """The test names a dcmqi CMakeLists.txt defines, its variables and foreach loops expanded
    (read in order: a variable may be set again further down)."""
    variables: dict[str, list[str]] = {}
    loop: tuple[str, list[str]] | None = None
    names = []

    def expand(text: str) -> list[str]:
        return [v for word in text.split() for v in (variables.get(word[2:-1], []) if word.startswith("${") else [word])]

    statements = r"^\s*set\((\w+)\s+([^)\n]*)\)|^\s*foreach\((\w+)\s+([^)]*)\)|^\s*(endforeach)|dcmqi_add_test\(\s*NAME\s+(\S+)"
    for match in re.finditer(statements, cmake, re.M):
        set_name, set_values, loop_variable, loop_values, end_loop, test_name = match.groups()
        if set_name:
            variables[set_name] = set_values.split()
        elif loop_variable:
            loop = (loop_variable, expand(loop_values))
        elif end_loop:
            loop = None
        else:
            for item in loop[1] if loop else [None]:
                name = test_name.replace("${" + loop[0] + "}", item) if loop else test_name
                names.append(re.sub(r"\$\{(\w+)\}", lambda m: variables[m.group(1)][0], name))
    return names


def test_every_dcmqi_test_is_in_the_table(shared):
    """Every test dcmqi's three CMake files define is translated above, or listed as not
    translatable with the reason."""
    testing = shared / "reference" / "dcmqi" / "testing"
    defined = [name for part in ("seg", "paramaps", "sr") for name in dcmqi_test_names((testing / f"{part}-CMakeLists.txt").read_text())]
    assert len(defined) == len(set(defined)) > 70  # the parser found them all, once each
    assert sorted(set(defined) - set(ALL_TESTS) - set(NOT_TRANSLATED)) == []
    assert sorted(set(ALL_TESTS) - set(defined)) == []


# --------------------------------------------------------------------------- dcmqi reads what qidicom wrote here

def dcmqi_bin() -> Path | None:
    """The bin folder of dcmqi 1.5.7's virtual environment ($DCMQI_VENV, or where tests/run.sh
    puts it), or None."""
    import os

    repo = Path(__file__).resolve().parents[1]
    candidates = [Path(os.environ["DCMQI_VENV"]) / "bin"] if os.environ.get("DCMQI_VENV") else []
    for candidate in candidates + [repo / "bench" / ".dcmqi-venv" / "bin", repo / ".dcmqi-venv" / "bin"]:
        if (candidate / "segimage2itkimage").exists() and list(candidate.parent.glob("lib/python*/site-packages/dcmqi-1.5.7.dist-info")):
            return candidate
    return None


#: Readers of the table whose input qidicom wrote: dcmqi 1.5.7 must read those files to the same
#: baselines. Integer maps are left out: qidicom keeps them as integers (with a real-world value
#: mapping), and dcmqi's paramap2itkimage reads only Float Pixel Data.
READERS_OF_OUR_OUTPUT = [
    name for name in READERS
    if ALL_TESTS[name].depends and (ALL_TESTS[name].command.startswith("segimage2itkimage") or name.endswith("ParametricMapFP"))
]


@pytest.mark.parametrize("name", READERS_OF_OUR_OUTPUT)
def test_dcmqi_reads_what_qidicom_wrote_to_its_baselines(suite, name, tmp_path):
    """dcmqi's reader test, run with dcmqi 1.5.7 itself on the object qidicom wrote from dcmqi's
    inputs: dcmqi's own baselines must come out."""
    import subprocess

    bin_dir = dcmqi_bin()
    if bin_dir is None:
        pytest.skip("dcmqi 1.5.7 is not installed (`bash bench/setup_dcmqi.sh`, which tests/run.sh runs, installs it)")
    for dependency in ALL_TESTS[name].depends:
        outcome = suite.run(dependency)
        assert outcome.returncode == 0, f"prerequisite {dependency} failed: {outcome.error}"
    words = [suite.expand(name, word) for word in shlex.split(ALL_TESTS[name].command)]
    words[words.index("--outputDirectory") + 1] = str(tmp_path)
    result = subprocess.run([str(bin_dir / words[0]), *words[1:]], capture_output=True, text=True)
    assert result.returncode == 0, f"dcmqi {words[0]}: {(result.stdout + result.stderr)[-500:]}"
    for baseline, output in ALL_TESTS[name].compare:
        assert_same_image(suite.path(name, baseline), tmp_path / suite.path(name, output).name)
