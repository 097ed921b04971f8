"""qidicom.reverse: which kind an object is, the CLI readers' files as one zip, an SR's
measurements as a table and CSV."""

from __future__ import annotations

import csv
import io
import json
import zipfile

import pytest

from qidicom import reverse
from qidicom.cli import main
from qidicom.sr import report_from_files


def without_time_stamp(data: bytes) -> bytes:
    if data.startswith(b"NRRD"):
        head, _, rest = data.partition(b"\n# on ")
        return head + rest.partition(b"\n")[2]
    return data


@pytest.fixture(scope="module")
def objects(sample_files, tmp_path_factory):
    directory = tmp_path_factory.mktemp("objects")
    pm = directory / "pm.dcm"
    assert main(["itkimage2paramap", "--inputImage", str(sample_files["adc_map"]), "--inputDICOMDirectory",
                 str(sample_files["mr"]), "--inputMetadata", str(sample_files["pm_metadata"]), "--outputDICOM", str(pm)]) == 0
    sr = directory / "sr.dcm"
    sr.write_bytes(report_from_files(sample_files["sr_metadata"], sample_files["ct"], [sample_files["seg"]]).data)
    return {"seg": sample_files["seg"], "pm": pm, "sr": sr, "dir": directory}


def test_kinds_and_a_readable_refusal(objects, sample_files):
    for kind in ("seg", "pm", "sr"):
        assert reverse.object_kind(objects[kind]) == kind
    ct_file = sorted(sample_files["ct"].iterdir())[0]
    with pytest.raises(reverse.InputError, match="CT Image Storage object; qidicom reads back"):
        reverse.object_kind(ct_file)


@pytest.mark.parametrize("kind,tool,options", [
    ("seg", "segimage2itkimage", []), ("seg", "segimage2itkimage", ["--mergeSegments"]),
    ("pm", "paramap2itkimage", []), ("sr", "tid1500reader", []),
])
def test_zip_holds_what_the_cli_writes(objects, tmp_path, kind, tool, options):
    files, _ = reverse.reader_files(objects[kind].read_bytes(), merge_segments="--mergeSegments" in options)
    archive = zipfile.ZipFile(io.BytesIO(reverse.files_zip(files)))
    out = tmp_path / "cli"
    out.mkdir()
    if kind == "sr":
        assert main([tool, "--inputDICOM", str(objects[kind]), "--outputMetadata", str(out / "meta.json")]) == 0
    else:
        assert main([tool, "--inputDICOM", str(objects[kind]), "--outputDirectory", str(out), *options]) == 0
    cli_files = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(archive.namelist()) == sorted(cli_files)
    for name, data in cli_files.items():
        if name.endswith(".json"):
            assert json.loads(archive.read(name)) == json.loads(data)
        else:  # pynrrd stamps the time of writing in a comment
            assert without_time_stamp(archive.read(name)) == without_time_stamp(data)
    assert reverse.files_zip(files) == reverse.files_zip(files)  # same files, same bytes


def test_report_table_rows_and_csv(objects, sample_study):
    files, _ = reverse.reader_files(objects["sr"])
    document = json.loads(files[0].data)
    rows = reverse.report_table(document)
    groups = sample_study.sr_metadata["Measurements"]
    assert len(rows) == sum(len(g["measurementItems"]) for g in groups)
    first = rows[0]
    assert first["tracking_identifier"] == groups[0]["TrackingIdentifier"] and first["segment"] == 1
    assert first["quantity"] == "Volume" and first["units"] == "mm3"
    assert float(first["value"]) == pytest.approx(float(groups[0]["measurementItems"][0]["value"]))
    assert rows[1]["derivation"] == "Mean"
    table = list(csv.DictReader(io.StringIO(reverse.report_csv(document).decode())))
    assert [row["value"] for row in table] == [row["value"] for row in rows]
