#!/usr/bin/env python3
"""Serve this folder (the qidicom web app) on http://localhost:8000/ — `python3 serve.py [PORT]`.

Any static web server works; this one only adds the right types for WebAssembly and
JavaScript modules and the same Content-Security-Policy the page declares, so that the
Python worker is held to it as well. It listens on localhost only.
"""

import functools
import http.server
import sys
from pathlib import Path

CSP = ("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; worker-src 'self'; "
       "object-src 'none'; base-uri 'self'; form-action 'none'")
# The Python worker also needs eval: Panel's Pyodide support defines a JS helper with
# pyodide.code.run_js. It is still barred from every other origin by connect-src.
WORKER_CSP = CSP.replace("'wasm-unsafe-eval'", "'wasm-unsafe-eval' 'unsafe-eval'")
# The tutorials (lite/, JupyterLab): eval, which its plugins need, and its inline bootstrap
# script (each page's own policy narrows that to the script's hash). Still connect-src 'self'.
LITE_CSP = WORKER_CSP.replace("'unsafe-eval'", "'unsafe-eval' 'unsafe-inline'").replace(
    "worker-src 'self'", "worker-src 'self' blob:")


class Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".wasm": "application/wasm", ".js": "text/javascript", ".mjs": "text/javascript",
        ".json": "application/json", ".whl": "application/zip", ".zip": "application/zip",
        ".nrrd": "application/octet-stream", ".dcm": "application/dicom",
    }

    def end_headers(self):
        path = self.path.split("?")[0]
        policy = LITE_CSP if "/lite/" in path else WORKER_CSP if path.endswith("/worker.js") else CSP
        self.send_header("Content-Security-Policy", policy)
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format, *args):  # one line per request, without the date noise
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    handler = functools.partial(Handler, directory=str(Path(__file__).resolve().parent))
    with http.server.ThreadingHTTPServer(("127.0.0.1", port), handler) as server:
        print(f"qidicom is at http://localhost:{server.server_address[1]}/  (Ctrl+C stops it)", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
