"""The tutorials' JupyterLite site (dist/lite/), built by build/site.py after the app.

The notebook kernel runs on the app's own Pyodide and wheels: `pyodideUrl` points at
dist/pyodide/, and the kernel's lock file (dist/lite/pyodide-lock.json) lists the app's
wheels where they already are plus the few the kernel needs besides (IPython, ssl,
matplotlib, pandas: official Pyodide builds checked against the official lock; the
kernel's own small wheels, checked against build/lock.toml). No file ships twice, and
nothing is fetched from another origin: the PyPI fallback is off and every URL in the
configuration is relative.

`jupyter lite build` (jupyterlite-core, pinned) makes the JupyterLab pages. This module then
adds what the build cannot: the notebooks and their contents index, the kernel settings,
a Content-Security-Policy on every page, a landing page that links back to the app, and
a service worker that keeps every file for offline use.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

BUILD_DIR = Path(__file__).resolve().parent
ROOT = BUILD_DIR.parent
NOTEBOOKS = ROOT / "notebooks"
TEMPLATES = BUILD_DIR / "lite_templates"
LITE = "lite"
KERNEL_PLUGIN = "@jupyterlite/pyodide-kernel-extension:kernel"
EXTENSION_STATIC = "extensions/@jupyterlite/pyodide-kernel-extension/static"
# Timestamps in the contents index, so that the same notebooks give the same bytes.
SOURCE_DATE_EPOCH = 1767225600  # 2026-01-01T00:00:00Z
# Inline scripts are allowed by hash only; eval because JupyterLab's plugins need it
# (they fail to activate with an EvalError otherwise); Pyodide compiles WebAssembly.
CSP = ("default-src 'self'; script-src 'self' 'unsafe-eval' 'wasm-unsafe-eval' {hashes}; "
       "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; "
       "connect-src 'self'; worker-src 'self' blob:; object-src 'none'; base-uri 'self'; "
       "form-action 'none'")


def build_lite(app: ModuleType, site_dir: Path, lock: dict, core: Path, packages: dict, mirror: Path | None) -> dict:
    """Write site_dir/lite/ and return what it holds, for build-info.json.

    `app` is build/site.py itself, whose fetchers and hash checks are reused here;
    `packages` are the app's packages, already in site_dir/pyodide/.
    """
    pins = lock["lite"]
    out = site_dir / LITE
    jupyter_lite_build(app, pins, out)
    kernel_lock = kernel_lockfile(app, lock, core, mirror, packages, site_dir)
    (out / "pyodide-lock.json").write_text(json.dumps(kernel_lock, indent=1))
    notebooks = copy_notebooks(app, out)
    configure_kernel(out, pins)
    secure_pages(app, out, notebooks)
    precache = write_service_worker(app, out, kernel_lock, pins)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    app.log(f"wrote {out} ({size / 1e6:.1f} MB, {len(notebooks)} notebooks)")
    return {
        "jupyterlite_core": next(t["version"] for t in pins["tool"] if t["name"] == "jupyterlite-core"),
        "jupyterlite_pyodide_kernel": next(t["version"] for t in pins["tool"] if t["name"] == "jupyterlite-pyodide-kernel"),
        "notebooks": [n["path"] for n in notebooks],
        "kernel_packages": sorted(kernel_lock["packages"]),
        "precached_files": len(precache),
    }


# ---------------------------------------------------------------------------------------
# jupyter lite build, in its own virtual environment of pinned wheels


def tool_environment(app: ModuleType, pins: dict) -> Path:
    """A venv holding exactly the pinned build tools; returns its bin/ directory."""
    wheels = [app.fetch_pure_wheel(tool) for tool in pins["tool"]]
    key = hashlib.sha256("".join(app.sha256_of(w) for w in wheels).encode()).hexdigest()[:16]
    venv = app.CACHE / f"lite-venv-{key}"
    bin_dir = venv / "bin"
    if not (venv / ".complete").is_file():
        shutil.rmtree(venv, ignore_errors=True)
        app.log("creating the JupyterLite build environment")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(bin_dir / "python"), "-m", "pip", "--disable-pip-version-check", "install", "-q",
                        "--no-deps", "--no-index", *map(str, wheels)], check=True)
        (venv / ".complete").write_text(key)
    return bin_dir


def jupyter_lite_build(app: ModuleType, pins: dict, out: Path) -> None:
    bin_dir = tool_environment(app, pins)
    with tempfile.TemporaryDirectory(prefix="qidicom-lite-") as scratch:
        # An empty lite dir and a private Jupyter data dir: nothing from this machine's
        # Jupyter installation (extensions, settings) can leak into the site.
        env = {**os.environ, "JUPYTER_DATA_DIR": f"{scratch}/data", "JUPYTER_CONFIG_DIR": f"{scratch}/config",
               "JUPYTER_PATH": "", "SOURCE_DATE_EPOCH": str(SOURCE_DATE_EPOCH)}
        lite_dir = Path(scratch) / "lite-dir"
        lite_dir.mkdir()
        subprocess.run([str(bin_dir / "jupyter-lite"), "build", "--lite-dir", str(lite_dir), "--output-dir", str(out),
                        *[arg for name in pins["apps"] for arg in ("--apps", name)],
                        "--no-sourcemaps", "--no-unused-shared-packages", "--no-libarchive"],
                       cwd=lite_dir, env=env, check=True, stdout=subprocess.DEVNULL)
    # The kernel's own wheels (shipped inside jupyterlite-pyodide-kernel) are inputs too.
    pypi = out / EXTENSION_STATIC / "pypi"
    for name, expected in pins["kernel_wheels"].items():
        app.require_hash(pypi / name, expected, "jupyterlite-pyodide-kernel's bundled wheel")
    unexpected = sorted({p.name for p in pypi.glob("*.whl")} - set(pins["kernel_wheels"]))
    if unexpected:
        raise app.BuildError(f"jupyterlite-pyodide-kernel bundles wheels build/lock.toml does not pin: {unexpected}")


# ---------------------------------------------------------------------------------------
# The kernel's packages: the app's wheels where they are, plus the kernel's own


def kernel_lockfile(app: ModuleType, lock: dict, core: Path, mirror: Path | None, packages: dict, site_dir: Path) -> dict:
    """A pyodide-lock.json for the kernel; file names are relative to dist/pyodide/."""
    official = json.loads((core / "pyodide-lock.json").read_text())
    pins = lock["lite"]
    app_lock = app.pruned_lock(official["info"], packages)
    entries = dict(app_lock["packages"])
    extra_dir = site_dir / LITE / "pyodide"
    extra_dir.mkdir(parents=True, exist_ok=True)

    def add(name: str, entry: dict, source: Path) -> None:
        shutil.copyfile(source, extra_dir / source.name)
        entries[name] = {**entry, "name": name, "file_name": f"../{LITE}/pyodide/{source.name}",
                         "sha256": app.sha256_of(extra_dir / source.name),
                         "depends": sorted({app.canonical(d) for d in entry["depends"]})}

    # Official builds: the closure of the roots in the official lock, minus what the app ships.
    stack = [app.canonical(n) for n in pins["official"]]
    while stack:
        name = stack.pop()
        if name in entries:
            continue
        entry = official["packages"][name]
        add(name, entry, app.fetch_official_package(entry, lock["pyodide"], mirror))
        stack.extend(app.canonical(d) for d in entry["depends"])
    for pin in pins["wheel"]:
        wheel = app.fetch_pure_wheel(pin)
        files = app.read_wheel(wheel)
        add(app.canonical(pin["name"]), package_entry(app, pin["version"], app.top_level_imports(files),
                                                      app.declared_dependencies(files)), wheel)
    # The kernel's own wheels stay where jupyter lite build put them (one copy).
    pypi = site_dir / LITE / EXTENSION_STATIC / "pypi"
    for file_name in pins["kernel_wheels"]:
        files = app.read_wheel(pypi / file_name)
        name = app.canonical(app.wheel_metadata(files)["Name"])
        if name == "widgetsnbextension" and not file_name.startswith("widgetsnbextension-4"):
            continue  # the ipywidgets 7 shim; piplite picks between the two, the lock holds one
        entries[name] = {**package_entry(app, app.wheel_metadata(files)["Version"], app.top_level_imports(files),
                                         app.declared_dependencies(files)),
                         "name": name, "file_name": f"../{LITE}/{EXTENSION_STATIC}/pypi/{file_name}",
                         "sha256": app.sha256_of(pypi / file_name)}
    for name, entry in entries.items():
        missing = [d for d in entry["depends"] if d not in entries]
        if missing:
            raise app.BuildError(f"kernel lock: {name} depends on {missing}, which the lite site does not ship")
    for name in pins["preload"]:
        if app.canonical(name) not in entries:
            raise app.BuildError(f"[lite] preload names {name}, which the kernel lock does not hold")
    return {"info": app_lock["info"], "packages": dict(sorted(entries.items()))}


def package_entry(app: ModuleType, version: str, imports: list[str], depends: list[str]) -> dict:
    return {"version": version, "install_dir": "site", "package_type": "package", "imports": imports,
            "depends": sorted(set(depends)), "unvendored_tests": False, "shared_library": False}


def configure_kernel(out: Path, pins: dict) -> None:
    """jupyter-lite.json: the kernel on ../pyodide/, its own lock, no PyPI, no CDN."""
    config_file = out / "jupyter-lite.json"
    config = json.loads(config_file.read_text())
    data = config["jupyter-config-data"]
    data["appName"] = "qidicom tutorials"
    settings = data.setdefault("litePluginSettings", {}).setdefault(KERNEL_PLUGIN, {})
    # "./" values are resolved against this file's folder by JupyterLite (config-utils.js);
    # loadPyodideOptions' *URL values against the site's base URL by the kernel extension.
    settings["pyodideUrl"] = "./../pyodide/pyodide.js"
    settings["disablePyPIFallback"] = True
    settings["pipliteUrls"] = [re.sub(r"\?.*$", "", url) for url in settings.get("pipliteUrls", [])]
    settings["loadPyodideOptions"] = {"lockFileURL": "pyodide-lock.json", "packages": list(pins["preload"])}
    # Tutorials are short: render every cell (JupyterLab's default renders only those in view).
    data.setdefault("settingsOverrides", {})["@jupyterlab/notebook-extension:tracker"] = {"windowingMode": "none"}
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True))


# ---------------------------------------------------------------------------------------
# Notebooks


def copy_notebooks(app: ModuleType, out: Path) -> list[dict]:
    """notebooks/*.ipynb into files/, and the contents index JupyterLite lists them from.

    jupyterlite-core builds that index with jupyter_server's FileContentsManager, which
    would bring tornado, pyzmq and a Rust jsonschema backend into the build for one flat
    directory listing; the listing is written here instead, in the same format.
    """
    files_dir = out / "files"
    files_dir.mkdir(exist_ok=True)
    when = datetime.datetime.fromtimestamp(SOURCE_DATE_EPOCH, datetime.timezone.utc).isoformat().replace("+00:00", "Z")
    models = []
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        notebook = json.loads(path.read_text())
        dirty = [i for i, cell in enumerate(notebook["cells"]) if cell.get("outputs") or cell.get("execution_count")]
        if dirty:
            raise app.BuildError(f"notebooks/{path.name}: cells {dirty} have outputs; clear them before building")
        shutil.copyfile(path, files_dir / path.name)
        models.append({"name": path.name, "path": path.name, "type": "notebook", "format": None, "mimetype": None,
                       "content": None, "writable": True, "created": when, "last_modified": when,
                       "size": path.stat().st_size, "title": notebook_title(notebook)})
    if not models:
        raise app.BuildError(f"no notebooks in {NOTEBOOKS}")
    listing = {"name": "", "path": "", "type": "directory", "format": "json", "mimetype": None, "writable": True,
               "created": when, "last_modified": when, "size": None,
               "content": [{k: v for k, v in m.items() if k != "title"} for m in models]}
    contents = out / "api" / "contents"
    contents.mkdir(parents=True, exist_ok=True)
    (contents / "all.json").write_text(json.dumps(listing, indent=1))
    return models


def notebook_title(notebook: dict) -> str:
    for cell in notebook["cells"]:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return "Untitled"


# ---------------------------------------------------------------------------------------
# Pages: policy, landing page, offline copy


def script_hashes(html: str) -> list[str]:
    hashes = []
    for attributes, body in re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S):
        if "src=" in attributes or 'type="application/json"' in attributes:
            continue
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        hashes.append(f"'sha256-{digest}'")
    return hashes


def secure_pages(app: ModuleType, out: Path, notebooks: list[dict]) -> None:
    """A policy on every page, the helper script on JupyterLab's pages, our landing page."""
    entries = "\n".join(
        f'    <li><a href="lab/index.html?path={n["path"]}">{n["title"]}</a> <code>{n["path"]}</code></li>'
        for n in notebooks)
    landing = (TEMPLATES / "index.html").read_text().replace("{{NOTEBOOKS}}", entries)
    (out / "index.html").write_text(landing)
    app_version = json.loads((out / "jupyter-lite.json").read_text())["jupyter-config-data"]["appVersion"]
    (out / "qidicom-lite.js").write_text((TEMPLATES / "qidicom-lite.js").read_text().replace("{{APP_VERSION}}", app_version))
    shutil.copyfile(TEMPLATES / "style.css", out / "qidicom-lite.css")
    for page in sorted(out.rglob("index.html")):
        html = page.read_text()
        if page != out / "index.html":
            depth = len(page.relative_to(out).parts) - 1
            helper = f'<script src="{"../" * depth}qidicom-lite.js"></script>'
            html = html.replace("<head>", "<head>\n    " + helper, 1)
        policy = CSP.format(hashes=" ".join(script_hashes(html))).replace("  ", " ")
        meta = f'<meta http-equiv="Content-Security-Policy" content="{policy}">'
        if "<head>" not in html:
            raise app.BuildError(f"{page}: no <head> to put the policy in")
        page.write_text(html.replace("<head>", "<head>\n    " + meta, 1))


def write_service_worker(app: ModuleType, out: Path, kernel_lock: dict, pins: dict) -> list[str]:
    """lite/service-worker.js: JupyterLite's drive protocol plus a copy of every file.

    JupyterLite's own worker keeps files only once fetched, never its /api/ files, and
    refetches everything it serves; ours precaches the site and the app files the kernel
    loads (Pyodide and the wheels of the preloaded and tutorial packages) on first visit.
    """
    site_dir = out.parent
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p != out / "service-worker.js")
    needed = closure(kernel_lock, [*pins["preload"], *pins["tutorial_imports"]])
    app_files = [f"../pyodide/{name}" for name in app_core_files(site_dir)]
    for name in needed:
        file_name = kernel_lock["packages"][name]["file_name"]
        if not file_name.startswith("../"):
            app_files.append(f"../pyodide/{file_name}")
    urls = ["./", "./lab/"] + [f"./{name}" for name in files] + sorted(set(app_files))
    digest = hashlib.sha256()
    for url in urls:
        path = (out / url).resolve()
        if path.is_file():
            digest.update(url.encode() + b"\0" + app.sha256_of(path).encode())
    worker = (TEMPLATES / "service-worker.js").read_text()
    worker = worker.replace("{{CACHE_VERSION}}", digest.hexdigest()[:16]).replace("{{PRECACHE}}", json.dumps(urls, indent=0))
    (out / "service-worker.js").write_text(worker)
    return urls


def app_core_files(site_dir: Path) -> list[str]:
    return sorted(p.name for p in (site_dir / "pyodide").iterdir() if p.suffix in {".js", ".mjs", ".wasm", ".zip"}
                  or p.name == "package.json")


def closure(kernel_lock: dict, roots: list[str]) -> list[str]:
    packages = kernel_lock["packages"]
    seen: list[str] = []
    stack = [r.lower().replace("_", "-") for r in roots]
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.append(name)
            stack.extend(packages[name]["depends"])
            overlay = f"{name}-bytecode"
            if overlay in packages:
                stack.append(overlay)
    return sorted(seen)
