"""Drive the built site in Debian's chromium with Playwright: the browser tests' helper
(bench/ keeps its own copy for the figures; tests import nothing from bench/).

The site is served by dist/serve.py's own handler, under a subpath (/qidicom/) to prove
the site does not assume it lives at the root. Every request the browser makes is recorded,
and anything not addressed to that local server is refused and remembered.
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
DIST = ROOT / "dist"
CHROMIUM = Path("/usr/bin/chromium")
# From the offline notes: no sandbox (root), no GPU, and nothing that phones home.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]
SUBPATH = "qidicom"


def chromium_missing_reason() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is not installed (apt-get install chromium)"
    if importlib.util.find_spec("playwright") is None:
        return "the playwright Python package is not installed (pip install playwright)"
    return None


class SiteServer:
    """dist/ served on 127.0.0.1 under /qidicom/, with the handler dist/serve.py ships."""

    def __init__(self, dist: Path = DIST):
        spec = importlib.util.spec_from_file_location("qidicom_dist_serve", dist / "serve.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        self._root = Path(tempfile.mkdtemp(prefix="qidicom-site-"))
        (self._root / SUBPATH).symlink_to(dist.resolve(), target_is_directory=True)
        self.requests: list[str] = []
        handler_class = module.Handler
        requests = self.requests

        class RecordingHandler(handler_class):
            def log_message(self, format, *args):
                requests.append(self.path)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), partial(RecordingHandler, directory=str(self._root)))
        self.origin = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.url = f"{self.origin}/{SUBPATH}/"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "SiteServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        """Cut the network: the server is gone, so only the service worker can answer."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()

    def __exit__(self, *exc) -> None:
        self.stop()
        shutil.rmtree(self._root, ignore_errors=True)


@dataclass
class BrowserLog:
    requests: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@contextlib.contextmanager
def browser_context(server: SiteServer, viewport=(1200, 1400)) -> Iterator[tuple[object, BrowserLog]]:
    """A fresh chromium profile; yields (context, log)."""
    from playwright.sync_api import sync_playwright

    log = BrowserLog()
    profile = tempfile.mkdtemp(prefix="qidicom-chromium-")
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile, executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
                viewport={"width": viewport[0], "height": viewport[1]}, accept_downloads=True,
            )

            def on_route(route):
                url = route.request.url
                if url.startswith(server.origin + "/") or url.startswith(("blob:", "data:")):
                    route.continue_()
                else:
                    log.foreign.append(url)
                    route.abort()

            context.route("**/*", on_route)
            context.on("request", lambda request: log.requests.append(f"{request.method} {request.url}"))
            context.on("requestfailed", lambda request: log.failed.append(f"{request.url} {request.failure}"))
            context.on("response", lambda response: response.status >= 400 and log.failed.append(f"{response.url} HTTP {response.status}"))
            try:
                yield context, log
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def watch_page(page, log: BrowserLog) -> None:
    page.on("console", lambda message: log.console.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: log.errors.append(str(error)))
    page.on("worker", lambda worker: worker.on("console", lambda m: log.console.append(f"worker {m.type}: {m.text}")) if hasattr(worker, "on") else None)


def wait_ready(page, timeout_s: float = 120) -> dict:
    """Wait until the app is interactive; returns the page's timing marks (ms since navigation)."""
    # Selectors, not wait_for_function: the page's CSP (rightly) forbids the eval it needs.
    page.wait_for_selector("body[data-app-state=ready], body[data-app-state=failed]",
                           state="attached", timeout=timeout_s * 1000)
    state = page.evaluate("document.body.dataset.appState")
    if state != "ready":
        raise AssertionError("the app failed to start: " + page.inner_text("#loading-status"))
    return page.evaluate("({...window.qidicomTiming})")


def wait_for(predicate, timeout_s: float = 60, interval: float = 0.1):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError("condition not met in time")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- using the app


def shows(page, text: str) -> bool:
    """Text locators pierce Bokeh's shadow roots (the page's innerText does not)."""
    return page.get_by_text(text).count() > 0


def select_mode(page, mode: str) -> None:
    """Click a mode tab ("seg", "pm", "sr") and wait until its pickers are there."""
    page.locator(f"#modes [data-mode={mode}]").click()
    page.wait_for_selector(f"body[data-mode={mode}][data-pickers=ready]", state="attached", timeout=120_000)


def choose_files(page, mode: str, role: str, paths) -> None:
    """Use the page's own file input for one of a mode's inputs, as a person would."""
    paths = [str(p) for p in (paths if isinstance(paths, (list, tuple)) else [paths])]
    page.wait_for_selector("body[data-pickers=ready]", state="attached", timeout=120_000)
    page.set_input_files(f"#{mode}-{role}", paths)


def convert_and_download(page, title: str, target: Path, timeout_s: float = 180) -> str:
    """Click "Convert to <title>", wait for this conversion's download link, save it."""
    button = page.get_by_role("button", name=f"Convert to {title}")
    button.wait_for(state="visible", timeout=timeout_s * 1000)
    page.wait_for_selector(".bk-btn-primary:not([disabled])", timeout=timeout_s * 1000)
    link = page.locator("a.qi-download")
    previous = link.get_attribute("href") if link.count() else None
    button.click()
    # Wait for this conversion's link, not the one a previous conversion left on the page.
    wait_for(lambda: (link.count() and link.get_attribute("href") != previous) or shows(page, "Conversion failed."),
             timeout_s)
    if shows(page, "Conversion failed."):
        message = page.get_by_text("Conversion failed.").first.evaluate("e => (e.parentElement || e).innerText")
        raise AssertionError(f"the conversion failed in the page: {message}")
    with page.expect_download() as download:
        link.click()
    download.value.save_as(target)
    return download.value.suggested_filename


def check_no_foreign_requests(log: BrowserLog) -> None:
    assert log.foreign == [], f"requests to other origins: {log.foreign}"
    # A request the page's CSP blocks never reaches the network (nor Playwright's request
    # log), but the browser reports it on the console.
    assert not [line for line in log.console if "Content Security Policy" in line], log.console
    assert log.failed == [], f"failed requests: {log.failed}"
    assert log.errors == []
    # page.js catches (and logs) a worker update the page could not apply, so that the
    # next ones still are: each is a bug to see here.
    assert not [line for line in log.console if "document update from the worker failed" in line], log.console
    # Files go to the worker as File objects: nothing is ever sent anywhere.
    assert [r for r in log.requests if not r.startswith("GET ")] == []


# Made afresh by every writing of an object (new UIDs, the time of writing): all else must match.
WRITE_TIME_KEYWORDS = {
    "SOPInstanceUID", "MediaStorageSOPInstanceUID", "SeriesInstanceUID", "DimensionOrganizationUID",
    "InstanceCreationDate", "InstanceCreationTime", "ContentDate", "ContentTime", "SeriesDate", "SeriesTime",
    "ContributionDateTime", "ObservationDateTime", "DateTime",
}


def comparable(dataset, also_made: tuple[str, ...] = ()) -> dict:
    """A dataset as DICOM JSON without what each writing makes afresh, pixels decoded.

    ``also_made``: keywords the writing makes afresh in this case, e.g. "UID" (an SR's
    tracking UID, made when the metadata gives none)."""
    import pydicom

    dropped = WRITE_TIME_KEYWORDS | set(also_made)

    def strip(items: dict) -> dict:  # DICOM JSON: {tag: {"vr": ..., "Value": [...]}}
        kept = {}
        for tag, element in items.items():
            if pydicom.datadict.keyword_for_tag(int(tag, 16)) in dropped:
                continue
            if element["vr"] == "SQ":
                element = dict(element, Value=[strip(item) for item in element.get("Value", [])])
            kept[tag] = element
        return kept

    as_json = dataset.to_json_dict()
    pixels = None
    if "7FE00010" in as_json or "7FE00008" in as_json or "7FE00009" in as_json:
        pixels = dataset.pixel_array.tolist()
        for tag in ("7FE00010", "7FE00008", "7FE00009"):
            as_json.pop(tag, None)
    return {"dataset": strip(as_json), "transfer_syntax": str(dataset.file_meta.TransferSyntaxUID), "pixels": pixels}


def build_site() -> Path:
    """dist/, built (or found up to date) by build/site.py."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, str(ROOT / "build" / "site.py"), "build", "--if-needed"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return DIST


@contextlib.contextmanager
def app_in_mode(dist: Path, mode: str) -> Iterator[tuple[object, BrowserLog]]:
    """The app served from ``dist``, ready, with ``mode`` chosen: its page and request log."""
    with SiteServer(dist) as server, browser_context(server) as (context, log):
        page = context.new_page()
        watch_page(page, log)
        page.goto(server.url)
        wait_ready(page)
        select_mode(page, mode)
        yield page, log
