"""The tutorials in Debian's chromium: every notebook opened in JupyterLite under a sub-path
and run whole on the site's own Pyodide, as a person would (Run > Run All Cells); the saved
notebook and the SEG it wrote are downloaded from the file browser and checked in CPython;
then the server is stopped and a tutorial opens and runs again from the service worker.
Every request is recorded: none may go to another origin."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from conftest import dciodvfy_errors

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
SUBPATH = "some/sub/path"
NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
TIMINGS = ROOT / "build" / "cache" / "lite-browser-timing.json"

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def site() -> Path:
    """The built site: QIDICOM_LITE_DIST when set (a build made elsewhere), else dist/."""
    if os.environ.get("QIDICOM_LITE_DIST"):
        return Path(os.environ["QIDICOM_LITE_DIST"])
    result = subprocess.run([sys.executable, str(ROOT / "build" / "site.py"), "build", "--if-needed"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return ROOT / "dist"


class Server:
    """The site under /some/sub/path/ with the handler it ships (serve.py), on 127.0.0.1."""

    def __init__(self, site: Path):
        spec = importlib.util.spec_from_file_location("qidicom_lite_serve", site / "serve.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)

        class Quiet(module.Handler):
            def log_message(self, *args):
                pass

        self.root = Path(tempfile.mkdtemp(prefix="qidicom-lite-site-"))
        (self.root / SUBPATH).parent.mkdir(parents=True)
        (self.root / SUBPATH).symlink_to(site.resolve(), target_is_directory=True)
        self.http = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(self.root)))
        self.origin = f"http://127.0.0.1:{self.http.server_address[1]}"
        self.url = f"{self.origin}/{SUBPATH}/"
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        if self.thread.is_alive():
            self.http.shutdown()
            self.http.server_close()
            self.thread.join()


@pytest.fixture(scope="module")
def browser(site):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("the playwright Python package is not installed")
    from playwright.sync_api import sync_playwright

    server = Server(site)
    profile = tempfile.mkdtemp(prefix="qidicom-lite-chromium-")
    downloads = Path(tempfile.mkdtemp(prefix="qidicom-lite-downloads-"))
    log = {"requests": [], "foreign": [], "failed": [], "errors": []}
    timings: dict = {}
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile, executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
                viewport={"width": 1300, "height": 1000}, accept_downloads=True)

            def route(route):
                url = route.request.url
                if url.startswith((server.origin + "/", "blob:", "data:")):
                    route.continue_()
                else:
                    log["foreign"].append(url)
                    route.abort()

            context.route("**/*", route)
            context.on("request", lambda r: log["requests"].append(r.url))
            context.on("requestfailed", lambda r: log["failed"].append(f"{r.url} {r.failure}"))
            context.on("response", lambda r: r.status >= 400 and log["failed"].append(f"{r.url} HTTP {r.status}"))
            yield {"server": server, "context": context, "log": log, "downloads": downloads, "timings": timings}
            context.close()
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)
        shutil.rmtree(profile, ignore_errors=True)
        TIMINGS.parent.mkdir(parents=True, exist_ok=True)
        TIMINGS.write_text(json.dumps(timings, indent=1))


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def open_notebook(context, server, name: str) -> tuple[object, float]:
    """Open a tutorial in JupyterLab; returns the page and seconds until the kernel is idle."""
    page = context.new_page()
    started = time.monotonic()
    page.goto(f"{server.url}lite/lab/index.html?path={name}")
    # Kernel start failures are silent in JupyterLab: wait for the kernel itself to be idle.
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=180_000)
    # The kernel is Pyodide's. (Attached, not visible: JupyterLab's toolbar may fold the
    # kernel name into its overflow menu when the notebook's toolbar is narrow.)
    page.wait_for_selector(".jp-Toolbar-kernelName:has-text('Pyodide')", state="attached", timeout=30_000)
    return page, time.monotonic() - started


def prompts(page) -> list[str]:
    return [t.strip() for t in page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()]


def run_all(page, timeout_s: float = 300) -> dict:
    """Run > Run All Cells; waits until every code cell has run. Returns seconds taken."""
    count = page.locator(".jp-CodeCell").count()
    started = time.monotonic()
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    first = None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = prompts(page)
        if first is None and done and done[0] not in ("[ ]:", "[*]:", "[]:"):
            first = time.monotonic() - started
        if len(done) == count and all(p not in ("[ ]:", "[*]:", "[]:") for p in done):
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"cells still running after {timeout_s} s: {prompts(page)}")
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
    return {"first_cell_s": round(first or 0, 2), "all_cells_s": round(time.monotonic() - started, 2)}


def download_from_file_browser(page, name: str, target_dir: Path) -> Path:
    """Right-click > Download in JupyterLab's file browser, as a person would."""
    page.locator("[title^='Refresh the file browser']").first.click()
    item = page.locator(".jp-DirListing-item", has_text=name).first
    item.wait_for(timeout=30_000)
    item.click(button="right")
    with page.expect_download() as download:
        page.locator(".lm-Menu-itemLabel", has_text="Download").first.click()
    target = target_dir / name
    download.value.save_as(target)
    return target


def check_outputs(notebook: dict, name: str) -> dict:
    outputs = [o for cell in notebook["cells"] if cell["cell_type"] == "code" for o in cell["outputs"]]
    errors = [o for o in outputs if o["output_type"] == "error"]
    assert errors == [], f"{name}: {[e['ename'] + ': ' + e['evalue'] for e in errors]}"
    unrun = [i for i, c in enumerate(notebook["cells"]) if c["cell_type"] == "code" and c["execution_count"] is None]
    assert unrun == [], f"{name}: cells {unrun} did not run"
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    tables = [o for o in outputs if "<table" in "".join(o.get("data", {}).get("text/html", ""))]
    return {"images": len(images), "tables": len(tables), "outputs": len(outputs)}


# What each tutorial must show, besides running without an error.
EXPECTED = {
    "01-label-map-to-seg.ipynb": {"images": 1, "tables": 2, "downloads": ["organs-seg.dcm"]},
    "02-geometry.ipynb": {"images": 0, "tables": 0, "downloads": []},
    "03-parametric-maps.ipynb": {"images": 1, "tables": 0, "downloads": []},
    "04-measurement-reports.ipynb": {"images": 1, "tables": 2, "downloads": []},
    "05-many-cases.ipynb": {"images": 0, "tables": 0, "downloads": []},
}


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_tutorial_runs_whole_in_jupyterlite(browser, name, tmp_path):
    context, server, log = browser["context"], browser["server"], browser["log"]
    page, to_idle = open_notebook(context, server, name)
    ran = run_all(page)
    page.keyboard.press("Control+s")
    page.wait_for_timeout(1000)
    saved = download_from_file_browser(page, name, tmp_path)
    found = check_outputs(json.loads(saved.read_text()), name)
    expected = EXPECTED[name]
    assert found["images"] >= expected["images"] and found["tables"] >= expected["tables"], (name, found)
    for output in expected["downloads"]:
        target = download_from_file_browser(page, output, browser["downloads"])
        assert target.stat().st_size > 0
    browser["timings"][name] = {"open_to_idle_s": round(to_idle, 2), **ran, **found}
    page.close()
    assert log["foreign"] == [], f"requests to other origins: {log['foreign']}"


def test_seg_written_in_the_browser_is_valid_in_cpython(browser):
    seg_file = browser["downloads"] / "organs-seg.dcm"
    if not seg_file.exists():
        pytest.skip("the first tutorial did not run")
    import highdicom

    from qidicom import samples, seg
    from qidicom.readers import read_image

    assert highdicom.seg.segread(seg_file).number_of_segments == 6
    assert dciodvfy_errors(seg_file) == []
    # The same voxels as the sample's label map, read here in CPython.
    study = samples.make_sample_study()
    labels = read_image(study.ct_labels)
    contents = seg.read_segmentation(seg_file)
    by_name = {s["SegmentLabel"]: s["labelID"] for s in study.seg_metadata["segmentAttributes"][0]}
    for segment in contents.segments:
        assert np.array_equal(segment.array, labels.array == by_name[segment.attributes["SegmentLabel"]])


def test_no_request_left_the_site(browser):
    log, server = browser["log"], browser["server"]
    assert log["foreign"] == []
    assert all(url.startswith((server.origin, "blob:", "data:")) for url in log["requests"])
    # The kernel ran on the app's Pyodide and wheels (dist/pyodide/), not a copy.
    assert any(url.endswith(f"/{SUBPATH}/pyodide/pyodide.asm.wasm") for url in log["requests"])
    assert not any("/lite/" in url and url.endswith("pyodide.asm.wasm") for url in log["requests"])
    # Allowed failures, all on this server: JupyterLite's heartbeat goes to the origin's root
    # (/api/service-worker-heartbeat), which only the service worker answers; its contents
    # manager asks the server for a listing (api/contents/<folder>/all.json) of any folder
    # the kernel looks at that the browser's storage does not hold; chromium asks for the
    # origin's /favicon.ico.
    allowed = ("/api/service-worker-heartbeat", "/favicon.ico")
    unexpected = [f for f in log["failed"] if not f.split(" ")[0].endswith(allowed)
                  and not (f.startswith(f"{server.url}lite/api/contents/") and "/all.json" in f)]
    assert unexpected == [], unexpected


def test_uploaded_file_reaches_the_kernel(browser, tmp_path):
    """What the notebooks tell a person to do: upload a file in the file browser, then use it
    in a cell. The label map is made here in CPython; the kernel reads it from the drive."""
    from qidicom import samples

    study = samples.make_sample_study()
    upload = tmp_path / "my-labels.nii.gz"
    upload.write_bytes(study.ct_labels[1])
    context, server = browser["context"], browser["server"]
    page, _ = open_notebook(context, server, NOTEBOOKS[0])
    with page.expect_file_chooser() as chooser:
        page.locator("[title^='Upload Files']").first.click()
    chooser.value.set_files(str(upload))
    page.locator(".jp-DirListing-item", has_text="my-labels.nii.gz").first.wait_for(timeout=30_000)
    page.locator(".jp-Cell").last.click()
    page.keyboard.press("Escape")
    page.keyboard.press("b")
    page.keyboard.press("Enter")
    page.keyboard.type('import qidicom.readers as r; v = r.read_image("my-labels.nii.gz"); print("uploaded", v.shape, int(v.array.max()))')
    page.keyboard.press("Shift+Enter")
    output = page.locator(".jp-OutputArea-output", has_text="uploaded")
    output.first.wait_for(timeout=120_000)
    from qidicom.readers import read_image

    expected = read_image(study.ct_labels)  # the same file, read in CPython
    assert output.first.inner_text().strip() == f"uploaded {expected.shape} {int(expected.array.max())}"
    page.close()


def test_app_and_tutorials_keep_their_service_workers(browser):
    """JupyterLite unregisters every service worker of the origin when it finds one whose
    version it has not recorded; qidicom-lite.js records it, so the app's worker survives."""
    context, server = browser["context"], browser["server"]
    app = context.new_page()
    app.goto(server.url)
    app.evaluate("navigator.serviceWorker.ready.then(() => true)")
    app.close()
    for _ in range(2):  # the second visit is the one that used to unregister everything
        page, _ = open_notebook(context, server, NOTEBOOKS[0])
        scopes = page.evaluate("navigator.serviceWorker.getRegistrations().then(rs => rs.map(r => r.scope))")
        page.close()
    assert sorted(scopes) == [server.url, f"{server.url}lite/"]


def test_second_visit_runs_with_the_server_stopped(browser, tmp_path):
    context, server = browser["context"], browser["server"]
    landing = context.new_page()
    landing.goto(f"{server.url}lite/")
    landing.get_by_text("available offline in this browser").wait_for(timeout=180_000)
    landing.close()
    server.stop()
    page, to_idle = open_notebook(context, server, NOTEBOOKS[0])
    ran = run_all(page)
    page.keyboard.press("Control+s")
    page.wait_for_timeout(1000)
    saved = download_from_file_browser(page, NOTEBOOKS[0], tmp_path)
    check_outputs(json.loads(saved.read_text()), NOTEBOOKS[0])
    browser["timings"]["offline " + NOTEBOOKS[0]] = {"open_to_idle_s": round(to_idle, 2), **ran}
    page.close()
