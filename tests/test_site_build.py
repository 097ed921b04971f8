"""The offline site's build (build/site.py): pinned inputs, what ships, the bundled server."""

from __future__ import annotations

import hashlib
import http.client
import importlib.util
import json
import re
import socket
import subprocess
import sys
import time
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DIST = ROOT / "dist"


def load_build_module(name: str):
    spec = importlib.util.spec_from_file_location(f"qidicom_build_{name}", ROOT / "build" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


site = load_build_module("site")


@pytest.fixture(scope="session")
def dist() -> Path:
    """dist/, built (or found up to date) once per test run."""
    result = subprocess.run([sys.executable, str(ROOT / "build" / "site.py"), "build", "--if-needed"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return DIST


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_shipped_wheels_are_exactly_the_pruned_lock(dist):
    lock = json.loads((dist / "pyodide" / "pyodide-lock.json").read_text())
    listed = {entry["file_name"]: entry for entry in lock["packages"].values()}
    shipped = {path.name for path in (dist / "pyodide").glob("*.whl")}
    assert shipped == set(listed)
    for name, entry in listed.items():
        assert sha256(dist / "pyodide" / name) == entry["sha256"], name
        for dependency in entry["depends"]:
            assert dependency in lock["packages"], f"{entry['name']} depends on unshipped {dependency}"
    # Start-up stays lean: the Panel/Bokeh JavaScript bundles do not ship to Python, and pandas
    # (for the slice preview's Bokeh data sources) only in the stage loaded when a preview opens.
    stages = json.loads((dist / "app" / "packages.json").read_text())
    assert "pandas" in lock["packages"] and "pandas" in stages["preview"]
    assert not {"pandas", "python-dateutil", "pytz", "six"} & set(stages["ui"] + stages["convert"])
    assert set(stages["preview"]) <= set(lock["packages"])
    assert lock["info"]["version"] == "0.27.7"
    with zipfile.ZipFile(dist / "pyodide" / listed_file(lock, "panel")) as panel:
        assert not [n for n in panel.namelist() if n.startswith("panel/dist/")]


def listed_file(lock: dict, name: str) -> str:
    return lock["packages"][name]["file_name"]


def test_official_builds_match_the_official_lock(dist):
    pins = tomllib.loads((ROOT / "build" / "lock.toml").read_text())["pyodide"]
    official = json.loads((site.CACHE / "npm" / "pyodide-0.27.7" / "package" / "pyodide-lock.json").read_text())
    shipped = json.loads((dist / "pyodide" / "pyodide-lock.json").read_text())["packages"]
    # The preview stage's official builds (pandas) with their closure in the official lock.
    names = site.official_closure(pins["packages"] + pins["preview_packages"], official)
    assert {"pandas", "python-dateutil", "pytz", "six"} <= set(names)
    for name in names:
        entry = official["packages"][name]
        assert shipped[name]["sha256"] == entry["sha256"] == sha256(dist / "pyodide" / entry["file_name"])


def test_static_assets_come_from_the_pinned_wheels(dist):
    lock = tomllib.loads((ROOT / "build" / "lock.toml").read_text())
    for package, mapping in lock["static"].items():
        pin = next(p for p in lock["wheel"] if p["name"] == package)
        with zipfile.ZipFile(site.CACHE / "wheels" / pin["file"]) as archive:
            for source, target in mapping.items():
                if not source.endswith("/"):
                    assert (dist / "static" / target).read_bytes() == archive.read(source)


def test_page_declares_a_self_only_connect_policy(dist):
    html = (dist / "index.html").read_text()
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1)
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["connect-src"] == "'self'"
    assert directives["default-src"] == "'self'"
    assert "'unsafe-eval'" not in directives["script-src"].split()
    # Every script and stylesheet the page names is a relative path inside dist/.
    for url in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert "//" not in url and (dist / url).is_file(), url


def test_service_worker_precaches_every_file(dist):
    worker = (dist / "sw.js").read_text()
    files = json.loads(re.search(r"const FILES = (\[.*?\]);", worker, re.S).group(1))
    # The tutorials (lite/) have their own service worker (tests/test_lite_build.py): opening
    # the app does not download them.
    expected = {f"./{p.relative_to(dist)}" for p in dist.rglob("*")
                if p.is_file() and p.relative_to(dist).parts[0] != "lite"} - {"./sw.js", "./serve.py", "./build-info.json"}
    assert set(files) - {"./"} == expected


def test_a_changed_input_hash_stops_the_build(tmp_path):
    lock_text = (ROOT / "build" / "lock.toml").read_text()
    pin = re.search(r'name = "mdurl"\nversion = "[^"]+"\nfile = "[^"]+"\nsha256 = "([0-9a-f]{64})"', lock_text)
    tampered = tmp_path / "lock.toml"
    tampered.write_text(lock_text.replace(pin.group(1), "0" * 64))
    with pytest.raises(site.BuildError, match=r"mdurl.*sha256.*differs from the lock"):
        site.build(out=tmp_path / "dist", lock_file=tampered)
    assert not (tmp_path / "dist").exists()


def test_wheels_built_from_sdists_are_reproducible():
    lock = tomllib.loads((ROOT / "build" / "lock.toml").read_text())
    for pin in lock["sdist"]:
        first = sha256(site.build_wheel_from_sdist(pin))
        second = sha256(site.build_wheel_from_sdist(pin))
        assert first == second
        with zipfile.ZipFile(site.build_wheel_from_sdist(pin)) as wheel:
            names = wheel.namelist()
        assert not [n for n in names if n.endswith((".c", ".so", ".pyx"))]
        assert any(n.endswith("/__init__.py") for n in names)


def test_without_shared_data_the_build_ships_no_sample_files(tmp_path, monkeypatch):
    """On a fresh machine "Load sample data" is made in the browser (qidicom.samples): the build
    only writes an empty manifest for the second choice, and needs neither numpy nor pydicom."""
    monkeypatch.setenv("QIDICOM_HIDE_SHARED", "1")
    monkeypatch.setitem(sys.modules, "numpy", None)  # any import of them now fails
    monkeypatch.setitem(sys.modules, "pydicom", None)
    manifest = site.copy_sample(tmp_path)
    assert manifest == {"source": None, "series": [], "labelmap": [], "metadata": []}
    assert list((tmp_path / "sample").iterdir()) == []


def test_with_shared_data_dcmqi_sample_is_copied_as_the_second_choice(shared, tmp_path):
    manifest = site.copy_sample(tmp_path)
    assert manifest["source"].startswith("dcmqi")
    sources = {"series": sorted(site.SAMPLE_SOURCES["series"].iterdir()),
               "labelmap": [site.SAMPLE_SOURCES["labelmap"]], "metadata": [site.SAMPLE_SOURCES["metadata"]]}
    for role, paths in sources.items():
        copied = [tmp_path / "sample" / name for name in manifest[role]]
        assert [path.name for path in copied] == [path.name for path in paths]
        assert [path.read_bytes() for path in copied] == [path.read_bytes() for path in paths]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_bundled_server_serves_wasm_and_the_policy(dist):
    port = free_port()
    server = subprocess.Popen([sys.executable, str(dist / "serve.py"), str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert "http://localhost:" in server.stdout.readline()
        deadline = time.monotonic() + 10
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                connection.request("GET", "/pyodide/pyodide.asm.wasm")
                response = connection.getresponse()
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert response.status == 200
        assert response.getheader("Content-Type") == "application/wasm"
        assert "connect-src 'self'" in response.getheader("Content-Security-Policy")
        assert response.read() == (dist / "pyodide" / "pyodide.asm.wasm").read_bytes()
    finally:
        server.terminate()
        server.wait(timeout=10)


def fake_vendoring_wheel(cache: Path, pins: dict, file_name: str, data: bytes) -> dict:
    """A stand-in for the PyPI wheel that vendors official builds, already in the cache."""
    wheel = cache / "vendoring" / pins["vendoring_wheel_file"]
    wheel.parent.mkdir(parents=True)
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(pins["vendoring_wheel_dir"] + file_name, data)
    return dict(pins, vendoring_wheel_sha256=sha256(wheel))


@pytest.mark.parametrize("corrupt", [False, True])
def test_official_builds_fall_back_to_the_vendoring_wheel_and_are_verified(dist, tmp_path, monkeypatch, corrupt):
    """No mirror and no route to the Pyodide release: the vendored copy is used, if it verifies."""
    pins = tomllib.loads((ROOT / "build" / "lock.toml").read_text())["pyodide"]
    official = json.loads((site.CACHE / "npm" / "pyodide-0.27.7" / "package" / "pyodide-lock.json").read_text())
    entry = official["packages"]["sqlite3"]
    good = (dist / "pyodide" / entry["file_name"]).read_bytes()
    monkeypatch.setattr(site, "CACHE", tmp_path)
    pins = fake_vendoring_wheel(tmp_path, dict(pins, release_url="http://127.0.0.1:9/"), entry["file_name"],
                                good[:100] + bytes([good[100] ^ 0xFF]) + good[101:] if corrupt else good)
    empty_mirror = tmp_path / "mirror"
    empty_mirror.mkdir()
    if corrupt:
        with pytest.raises(site.BuildError, match="no verified copy of sqlite3.*mirror.*missing.*hash differs"):
            site.fetch_official_package(entry, pins, empty_mirror)
    else:
        path = site.fetch_official_package(entry, pins, empty_mirror)
        assert path.read_bytes() == good
