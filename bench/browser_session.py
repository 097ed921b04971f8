"""Drive the built site in Debian's chromium with Playwright: shared by the browser tests
(tests/test_browser_app.py) and the browser figures (bench/browser_*.py).

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

ROOT = Path(__file__).resolve().parent.parent
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
