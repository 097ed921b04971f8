"""The tutorials' JupyterLite site (dist/lite/, build/lite.py): its kernel on the app's own
Pyodide and wheels, every file it lists shipped and hash-checked, nothing that names
another origin, a policy on every page, clean notebooks."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import urljoin

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def site() -> Path:
    """The built site: QIDICOM_LITE_DIST when set (a build made elsewhere), else dist/."""
    if os.environ.get("QIDICOM_LITE_DIST"):
        return Path(os.environ["QIDICOM_LITE_DIST"])
    result = subprocess.run([sys.executable, str(ROOT / "build" / "site.py"), "build", "--if-needed"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return ROOT / "dist"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def kernel_settings(site: Path) -> dict:
    config = json.loads((site / "lite" / "jupyter-lite.json").read_text())["jupyter-config-data"]
    return config["litePluginSettings"]["@jupyterlite/pyodide-kernel-extension:kernel"]


def resolve(url: str, base: str) -> str:
    """A site URL resolved as the browser does, from a base inside the site ("/site/lite/")."""
    return urljoin("http://host" + base, url).removeprefix("http://host")


def test_kernel_runs_on_the_apps_pyodide_with_no_fallback(site):
    settings = kernel_settings(site)
    assert settings["disablePyPIFallback"] is True
    # config-utils.js turns "./x" into "<folder of jupyter-lite.json>/x".
    assert resolve(settings["pyodideUrl"].removeprefix("./"), "/site/lite/") == "/site/pyodide/pyodide.js"
    assert not (site / "lite" / "static" / "pyodide").exists()
    assert not list((site / "lite").rglob("pyodide.asm.wasm")), "a second copy of Pyodide"
    options = settings["loadPyodideOptions"]
    assert resolve(options["lockFileURL"], "/site/lite/") == "/site/lite/pyodide-lock.json"
    assert "qidicom" in options["packages"]


def test_kernel_lock_lists_exactly_what_ships_and_every_hash_checks(site):
    kernel = json.loads((site / "lite" / "pyodide-lock.json").read_text())
    app = json.loads((site / "pyodide" / "pyodide-lock.json").read_text())
    assert kernel["info"] == app["info"]
    files = {}
    for name, entry in kernel["packages"].items():
        path = (site / "pyodide" / entry["file_name"]).resolve()  # relative to Pyodide's indexURL
        assert path.is_file(), f"{name}: {entry['file_name']} is not in the site"
        assert sha256(path) == entry["sha256"], name
        for dependency in entry["depends"]:
            assert dependency in kernel["packages"], f"{name} depends on unlisted {dependency}"
        files[path] = name
    # The app's wheels are used where they are, the very files (one copy each).
    for name, entry in app["packages"].items():
        assert kernel["packages"][name]["file_name"] == entry["file_name"]
        assert kernel["packages"][name]["sha256"] == entry["sha256"]
    # Everything the kernel adds is listed, and nothing else ships beside it.
    extra = {p.resolve() for p in (site / "lite" / "pyodide").iterdir()}
    assert extra <= set(files)
    bundled = {p.resolve() for p in (site / "lite").rglob("*.whl")} - extra
    unlisted = {p.name for p in bundled - set(files)}
    assert unlisted == {"widgetsnbextension-3.6.999-py3-none-any.whl"}  # piplite's ipywidgets 7 shim, never loaded
    for name in kernel_settings(site)["loadPyodideOptions"]["packages"]:
        assert name.replace("_", "-") in kernel["packages"], name


def test_official_builds_in_the_kernel_lock_match_the_official_lock(site):
    official = json.loads((ROOT / "build" / "cache" / "npm" / "pyodide-0.27.7" / "package" / "pyodide-lock.json").read_text())
    kernel = json.loads((site / "lite" / "pyodide-lock.json").read_text())["packages"]
    for name in ("ipython", "ssl", "openssl", "matplotlib", "pandas", "micropip"):
        assert kernel[name]["sha256"] == official["packages"][name]["sha256"], name


def test_lock_toml_pins_the_kernel_and_its_bundled_wheels(site):
    lock = tomllib.loads((ROOT / "build" / "lock.toml").read_text())["lite"]
    tools = {tool["name"]: tool["version"] for tool in lock["tool"]}
    assert tools["jupyterlite-core"] == "0.6.4" and tools["jupyterlite-pyodide-kernel"] == "0.6.1"
    pypi = site / "lite" / "extensions" / "@jupyterlite" / "pyodide-kernel-extension" / "static" / "pypi"
    assert {p.name for p in pypi.glob("*.whl")} == set(lock["kernel_wheels"])
    for name, expected in lock["kernel_wheels"].items():
        assert sha256(pypi / name) == expected
    info = json.loads((site / "build-info.json").read_text())["lite"]
    assert info["jupyterlite_core"] == "0.6.4"


def test_configuration_names_no_other_origin(site):
    lite = site / "lite"
    pypi = lite / "extensions" / "@jupyterlite" / "pyodide-kernel-extension" / "static" / "pypi"
    for path in [lite / "jupyter-lite.json", lite / "pyodide-lock.json", lite / "service-worker.js",
                 lite / "qidicom-lite.js", lite / "api" / "contents" / "all.json", pypi / "all.json",
                 *lite.rglob("index.html")]:
        text = path.read_text()
        urls = re.findall(r"(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}[^\s\"'<>]*", text)
        assert urls == [], f"{path.relative_to(site)}: {urls}"


def test_every_page_keeps_connect_src_self(site):
    for page in (site / "lite").rglob("index.html"):
        html = page.read_text()
        policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html)
        assert policy, f"{page.relative_to(site)} has no policy"
        directives = dict(part.strip().split(" ", 1) for part in policy.group(1).split(";"))
        assert directives["connect-src"] == "'self'"
        assert directives["default-src"] == "'self'"
        scripts = directives["script-src"].split()
        assert "'unsafe-inline'" not in scripts  # inline scripts by hash only
        inline = re.findall(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>(.*?)</script>", html, re.S)
        for body in inline:
            digest = hashlib.sha256(body.encode()).digest()
            assert f"'sha256-{base64.b64encode(digest).decode()}'" in scripts, page


def test_landing_page_links_the_tutorials_and_the_app(site):
    html = (site / "lite" / "index.html").read_text()
    assert 'href="../"' in html  # back to the app
    notebooks = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    for name in notebooks:
        assert f"lab/index.html?path={name}" in html
    listing = json.loads((site / "lite" / "api" / "contents" / "all.json").read_text())
    assert sorted(item["name"] for item in listing["content"]) == notebooks
    for name in notebooks:
        assert (site / "lite" / "files" / name).read_bytes() == (ROOT / "notebooks" / name).read_bytes()


def test_service_worker_keeps_every_lite_file_and_the_kernels_app_files(site):
    lite = site / "lite"
    worker = (lite / "service-worker.js").read_text()
    files = json.loads(re.search(r"const FILES = (\[.*?\]);", worker, re.S).group(1))
    expected = {f"./{p.relative_to(lite)}" for p in lite.rglob("*") if p.is_file()} - {"./service-worker.js"}
    assert expected <= set(files)
    for url in files:
        assert (lite / url).resolve().exists(), url
    assert "../pyodide/pyodide.asm.wasm" in files
    kernel = json.loads((lite / "pyodide-lock.json").read_text())["packages"]
    assert f"../pyodide/{kernel['qidicom']['file_name']}" in files
    # The app's own service worker does not download the tutorials.
    app_worker = (site / "sw.js").read_text()
    assert "./lite/" not in app_worker


def test_notebooks_in_the_repository_are_clean_and_small():
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        notebook = json.loads(path.read_text())
        for cell in notebook["cells"]:
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [] and cell["execution_count"] is None, path.name
        assert path.stat().st_size < 40_000, path.name


def test_build_refuses_a_notebook_with_outputs(tmp_path, monkeypatch):
    """Outputs are cleared in the repository: a notebook saved with them stops the build."""
    import importlib.util
    import types

    spec = importlib.util.spec_from_file_location("qidicom_build_lite", ROOT / "build" / "lite.py")
    lite = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lite)
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    cell = {"cell_type": "code", "id": "a", "metadata": {}, "source": ["print(1)"], "execution_count": 1,
            "outputs": [{"output_type": "stream", "name": "stdout", "text": ["1\n"]}]}
    (notebooks / "dirty.ipynb").write_text(json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    monkeypatch.setattr(lite, "NOTEBOOKS", notebooks)

    class BuildError(Exception):
        pass

    (tmp_path / "out").mkdir()
    with pytest.raises(BuildError, match=r"dirty.ipynb: cells \[0\] have outputs"):
        lite.copy_notebooks(types.SimpleNamespace(BuildError=BuildError), tmp_path / "out")
