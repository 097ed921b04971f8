"""The tutorials run unchanged in ordinary Jupyter: each notebook executed top to bottom by
nbclient on a stock ipykernel (CPython), in a fresh folder, with no error output; the
pictures and tables the browser shows are there, and the SEG the first one writes is valid."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest

from conftest import dciodvfy_errors

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
# What each tutorial must show, besides running without an error.
EXPECTED = {
    "01-label-map-to-seg.ipynb": {"images": 1, "files": ["organs-seg.dcm"]},
    "02-geometry.ipynb": {"texts": ["GeometryError", "same segments: True", "straight SEG: True"], "files": []},
    "03-parametric-maps.ipynb": {"images": 1, "files": ["adc-pm.dcm"]},
    "04-measurement-reports.ipynb": {"images": 1, "files": ["organs-sr.dcm"]},
    "05-many-cases.ipynb": {"texts": ["3 ok", "3 skipped", "qidicom-batch-report.csv"], "files": []},
}


def missing_tools() -> str | None:
    for module in ("nbclient", "nbformat", "ipykernel", "matplotlib"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install 'qidicom[notebooks]')"
    return None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_in_cpython_jupyter(path, tmp_path):
    reason = missing_tools()
    if reason:
        pytest.skip(reason)
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    started = time.monotonic()
    # The kernel the running Python provides (ipykernel's "python3"), started in tmp_path.
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    seconds = time.monotonic() - started
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert [o for o in outputs if o.output_type == "error"] == []
    expected = EXPECTED[path.name]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= expected.get("images", 0)
    text = "\n".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    for snippet in expected.get("texts", []):
        assert snippet in text, (snippet, text[-2000:])
    for name in expected["files"]:
        assert (tmp_path / name).is_file(), name
    if path.name.startswith("01-"):
        import highdicom

        seg_file = tmp_path / "organs-seg.dcm"
        from qidicom import samples

        segments = samples.make_sample_study().seg_metadata["segmentAttributes"][0]
        assert highdicom.seg.segread(seg_file).number_of_segments == len(segments)
        assert dciodvfy_errors(seg_file) == []
    print(f"{path.name}: {seconds:.1f} s")

