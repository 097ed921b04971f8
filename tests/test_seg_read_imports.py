"""What ``segimage2itkimage`` imports in a fresh process: only what reading a SEG needs,
not highdicom, jsonschema, pydicom's coded concepts or the SEG writers (together ~0.2 s,
half of reading a labelmap SEG)."""

from __future__ import annotations

import json
import subprocess
import sys

NOT_NEEDED = ("highdicom", "jsonschema", "pydicom.sr", "qidicom.seg.write", "qidicom.seg.build", "numpy.ma")


def test_reading_a_seg_imports_none_of_the_writers_libraries(sample_files, tmp_path):
    output = tmp_path / "out"
    command = ["segimage2itkimage", "--inputDICOM", str(sample_files["seg"]), "--outputDirectory", str(output),
               "--prefix", "seg"]
    code = f"""
import json, sys
from qidicom.cli import main
status = main({command!r})
print(json.dumps({{"status": status, "loaded": sorted(m for m in {NOT_NEEDED!r} if m in sys.modules)}}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"status": 0, "loaded": []}
    meta = json.loads((output / "seg-meta.json").read_text())
    assert meta["segmentAttributesFileMapping"] and all((output / name).is_file() for name in meta["segmentAttributesFileMapping"])
    # The colours came out without highdicom, as highdicom gives them.
    import highdicom as hd
    import pydicom

    items = {int(item.SegmentNumber): item for item in pydicom.dcmread(sample_files["seg"]).SegmentSequence}
    groups = meta["segmentAttributes"]
    assert all("RecommendedDisplayCIELabValue" in items[attributes["labelID"]] for [attributes] in groups)
    for [attributes] in groups:
        lab = [int(v) for v in items[attributes["labelID"]].RecommendedDisplayCIELabValue]
        assert attributes["recommendedDisplayRGBValue"] == list(hd.color.CIELabColor.from_dicom_value(lab).to_rgb(clip=True))
