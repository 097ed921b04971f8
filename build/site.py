#!/usr/bin/env python3
"""Build and serve qidicom's offline web app.

    python3 build/site.py build   # writes dist/, a self-contained static site
    python3 build/site.py serve   # builds if the inputs changed, then serves dist/ on localhost

Every input is pinned by sha256 in build/lock.toml and the build stops at the first mismatch.
Downloads are cached under build/cache/ and reused while their hash still matches, so a
rebuild after editing the app or the library takes seconds.
"""

from __future__ import annotations

import argparse
import base64
import email.parser
import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import types
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = ROOT / "build"
CACHE = BUILD_DIR / "cache"
LOCK_FILE = BUILD_DIR / "lock.toml"
WEBAPP = ROOT / "webapp"
DIST = ROOT / "dist"
SHARED = ROOT.parent / "shared"
SAMPLE_SOURCES = {
    "series": SHARED / "data/dcmqi/segmentations/ct-3slice",
    "labelmap": SHARED / "data/dcmqi/segmentations/liver_seg.nrrd",
    "metadata": SHARED / "reference/dcmqi/examples/seg-example.json",
}
# Markers of the browser runtime, used to decide which declared dependencies apply there.
PYODIDE_MARKERS = {
    "python_version": "3.12",
    "python_full_version": "3.12.7",
    "sys_platform": "emscripten",
    "platform_system": "Emscripten",
    "platform_machine": "wasm32",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "extra": "",
}
# Fixed zip timestamp so rebuilt wheels are byte-identical.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


class BuildError(Exception):
    """A build input is missing or differs from build/lock.toml."""


def log(message: str) -> None:
    print(f"[site] {message}", flush=True)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def require_hash(path: Path, expected: str, what: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise BuildError(
            f"{what}: {path.name} has sha256 {actual}, but build/lock.toml pins {expected}. "
            "Refusing to build with an input that differs from the lock."
        )


def cached_if_valid(path: Path, expected: str) -> bool:
    """True when a cached download exists and still has the pinned hash."""
    return path.is_file() and sha256_of(path) == expected


def canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args], check=True)


# ---------------------------------------------------------------------------------------
# Deterministic wheels


def write_wheel(path: Path, files: dict[str, bytes]) -> None:
    """Write a wheel with a fresh RECORD, sorted entries and fixed timestamps."""
    dist_info = next(name.split("/")[0] for name in files if name.split("/")[0].endswith(".dist-info"))
    record_name = f"{dist_info}/RECORD"
    files = {name: data for name, data in files.items() if name != record_name}
    rows = []
    for name in sorted(files):
        digest = base64.urlsafe_b64encode(hashlib.sha256(files[name]).digest()).rstrip(b"=").decode()
        rows.append(f"{name},sha256={digest},{len(files[name])}")
    rows.append(f"{record_name},,")
    files[record_name] = ("\n".join(rows) + "\n").encode()
    # dist-info last, as wheel tools write it
    write_zip(path, files, order=lambda n: (n.startswith(dist_info), n))


def write_zip(path: Path, files: dict[str, bytes], order=None) -> None:
    """A zip with sorted entries and fixed timestamps: same files, same bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    with zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for name in sorted(files, key=order):
            info = zipfile.ZipInfo(name, ZIP_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, files[name])
    temporary.replace(path)


def read_wheel(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist() if not name.endswith("/")}


def wheel_metadata(files: dict[str, bytes]) -> email.message.Message:
    name = next(n for n in files if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
    return email.parser.BytesParser().parsebytes(files[name])


def top_level_imports(files: dict[str, bytes]) -> list[str]:
    names = set()
    for name in files:
        first = name.split("/")[0]
        if first.endswith((".dist-info", ".data")) or first == "__pycache__":
            continue
        if "/" in name:
            names.add(first)
        elif first.endswith(".py"):
            names.add(first[:-3])
    return sorted(names)


def declared_dependencies(files: dict[str, bytes]) -> list[str]:
    try:
        from packaging.requirements import Requirement
    except ImportError:  # a bare venv: pip carries its own copy
        from pip._vendor.packaging.requirements import Requirement

    result = []
    for line in wheel_metadata(files).get_all("Requires-Dist") or []:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate(PYODIDE_MARKERS):
            result.append(canonical(requirement.name))
    return result


# ---------------------------------------------------------------------------------------
# Inputs


def fetch_pyodide_core(pins: dict) -> Path:
    """The npm package pyodide@VERSION, verified and unpacked; returns its package/ dir."""
    version = pins["version"]
    npm_dir = CACHE / "npm"
    tarball = npm_dir / f"pyodide-{version}.tgz"
    if not cached_if_valid(tarball, pins["npm_tarball_sha256"]):
        npm_dir.mkdir(parents=True, exist_ok=True)
        log(f"npm pack pyodide@{version}")
        subprocess.run(["npm", "pack", "--silent", f"pyodide@{version}"], cwd=npm_dir, check=True,
                       stdout=subprocess.DEVNULL)
        require_hash(tarball, pins["npm_tarball_sha256"], "Pyodide npm package")
    unpacked = npm_dir / f"pyodide-{version}"
    stamp = unpacked / ".sha256"
    if not stamp.is_file() or stamp.read_text() != pins["npm_tarball_sha256"]:
        shutil.rmtree(unpacked, ignore_errors=True)
        unpacked.mkdir(parents=True)
        with tarfile.open(tarball) as archive:
            archive.extractall(unpacked, filter="data")
        stamp.write_text(pins["npm_tarball_sha256"])
    package = unpacked / "package"
    require_hash(package / "pyodide-lock.json", pins["official_lock_sha256"], "official pyodide-lock.json")
    return package


def default_mirror() -> Path | None:
    candidate = SHARED / "pyodide-0.27.7"
    return candidate if candidate.is_dir() else None


def fetch_official_package(entry: dict, pins: dict, mirror: Path | None) -> Path:
    """One official Pyodide build, from the mirror, the release CDN or the vendoring wheel."""
    file_name, expected = entry["file_name"], entry["sha256"]
    target = CACHE / "pyodide-packages" / file_name
    if cached_if_valid(target, expected):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tried = []
    if mirror is not None:
        candidate = mirror / file_name
        if candidate.is_file():
            shutil.copyfile(candidate, target)
            if sha256_of(target) == expected:
                log(f"{file_name}: from mirror {mirror}")
                return target
            tried.append(f"mirror {mirror} (hash differs)")
        else:
            tried.append(f"mirror {mirror} (missing)")
    try:
        with urllib.request.urlopen(pins["release_url"] + file_name, timeout=20) as response:
            target.write_bytes(response.read())
        if sha256_of(target) == expected:
            log(f"{file_name}: from the Pyodide release")
            return target
        tried.append("Pyodide release (hash differs)")
    except (urllib.error.URLError, OSError) as error:
        tried.append(f"Pyodide release ({error})")
    try:
        vendoring = fetch_vendoring_wheel(pins)
        with zipfile.ZipFile(vendoring) as archive:
            target.write_bytes(archive.read(pins["vendoring_wheel_dir"] + file_name))
        if sha256_of(target) == expected:
            log(f"{file_name}: from {pins['vendoring_wheel']}")
            return target
        tried.append(f"{pins['vendoring_wheel']} (hash differs)")
    except (BuildError, KeyError, subprocess.CalledProcessError) as error:
        tried.append(f"{pins['vendoring_wheel']} ({error})")
    if target.exists():
        target.unlink()
    raise BuildError(f"no verified copy of {file_name} (sha256 {expected}); tried: " + "; ".join(tried))


def fetch_vendoring_wheel(pins: dict) -> Path:
    target = CACHE / "vendoring" / pins["vendoring_wheel_file"]
    if not cached_if_valid(target, pins["vendoring_wheel_sha256"]):
        target.parent.mkdir(parents=True, exist_ok=True)
        pip("download", "-q", "--no-deps", "--only-binary=:all:", "-d", str(target.parent), pins["vendoring_wheel"])
        require_hash(target, pins["vendoring_wheel_sha256"], "vendoring wheel")
    return target


def fetch_pure_wheel(pin: dict) -> Path:
    target = CACHE / "wheels" / pin["file"]
    if cached_if_valid(target, pin["sha256"]):
        return target
    log(f"downloading {pin['name']}=={pin['version']}")
    with tempfile.TemporaryDirectory() as scratch:
        pip("download", "-q", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
            "--implementation", "py", "--abi", "none", "--platform", "any", "-d", scratch,
            f"{pin['name']}=={pin['version']}")
        downloaded = Path(scratch) / pin["file"]
        if not downloaded.is_file():
            raise BuildError(f"pip did not produce {pin['file']}: got {os.listdir(scratch)}")
        require_hash(downloaded, pin["sha256"], f"{pin['name']} wheel")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(downloaded, target)
    return target


def build_wheel_from_sdist(pin: dict) -> Path:
    """A pure-Python wheel made from the pinned sdist's Python sources only."""
    sdist = CACHE / "sdist" / pin["file"]
    if not cached_if_valid(sdist, pin["sha256"]):
        log(f"downloading sdist {pin['name']}=={pin['version']}")
        with tempfile.TemporaryDirectory() as scratch:
            pip("download", "-q", "--no-deps", "--no-binary=:all:", "-d", scratch,
                f"{pin['name']}=={pin['version']}")
            downloaded = Path(scratch) / pin["file"]
            if not downloaded.is_file():
                raise BuildError(f"pip did not produce {pin['file']}: got {os.listdir(scratch)}")
            require_hash(downloaded, pin["sha256"], f"{pin['name']} sdist")
            sdist.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(downloaded, sdist)
    files: dict[str, bytes] = {}
    pkg_info = b""
    licence = {}
    with tarfile.open(sdist) as archive:
        for member in archive.getmembers():
            if not member.isfile():
                continue
            parts = member.name.split("/")[1:]  # drop the "name-version/" prefix
            if parts == ["PKG-INFO"]:
                pkg_info = archive.extractfile(member).read()
            elif len(parts) == 1 and parts[0].upper().startswith("LICENSE"):
                licence[parts[0]] = archive.extractfile(member).read()
            elif (len(parts) > 2 and parts[0] == pin["source_root"] and parts[1] in pin["packages"]
                  and parts[-1].endswith((".py", ".typed", ".pyi"))):
                files["/".join(parts[1:])] = archive.extractfile(member).read()
    if not pkg_info or not files:
        raise BuildError(f"{pin['file']}: unexpected sdist layout")
    metadata = email.parser.BytesParser().parsebytes(pkg_info)
    dist_info = f"{metadata['Name'].replace('-', '_')}-{metadata['Version']}.dist-info"
    files[f"{dist_info}/METADATA"] = pkg_info
    files[f"{dist_info}/WHEEL"] = (
        "Wheel-Version: 1.0\nGenerator: qidicom build/site.py\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    ).encode()
    files[f"{dist_info}/top_level.txt"] = ("\n".join(pin["packages"]) + "\n").encode()
    for name, data in licence.items():
        files[f"{dist_info}/licenses/{name}"] = data
    target = CACHE / "built" / f"{metadata['Name'].replace('-', '_').lower()}-{metadata['Version']}-py3-none-any.whl"
    write_wheel(target, files)
    return target


def build_project_wheel() -> Path:
    """qidicom's own wheel, from the working tree."""
    out = CACHE / "project"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    env = dict(os.environ, SOURCE_DATE_EPOCH="315532800")
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "wheel", "-q", "--no-deps",
                    "-w", str(out), str(ROOT)], check=True, env=env)
    wheels = list(out.glob("qidicom-*.whl"))
    if len(wheels) != 1:
        raise BuildError(f"expected one qidicom wheel, got {wheels}")
    return wheels[0]


def slim_wheel(source: Path, patterns: list[str]) -> Path:
    """A copy of a wheel without the files matching the patterns (cached by source hash).

    A pattern ending in "/" removes that folder; otherwise it is an fnmatch pattern, in which
    "*" also matches "/".
    """
    if not patterns:
        return source
    key = hashlib.sha256((sha256_of(source) + "|".join(patterns)).encode()).hexdigest()[:16]
    target = CACHE / "slim" / key / source.name
    if target.is_file():
        return target

    def stripped(name: str) -> bool:
        return any(name.startswith(p) if p.endswith("/") else fnmatch.fnmatchcase(name, p) for p in patterns)

    files = {name: data for name, data in read_wheel(source).items() if not stripped(name)}
    write_wheel(target, files)
    return target


# ---------------------------------------------------------------------------------------
# Bytecode: compiled once here instead of in every browser at every start

SITE_PACKAGES = "/lib/python3.12/site-packages/"
STDLIB_ZIP_PREFIX = "/lib/python312.zip/"


def compile_bytecode(sources: list[tuple[Path, str, str]], core: Path) -> dict[Path, Path]:
    """{source zip: zip of its .pyc files} for (source, path prefix, layout) triples.

    Compiled by Pyodide's own interpreter (build/pycompile.mjs) so the bytecode matches the
    browser's Python exactly; cached by input hash, so only new inputs start Node.
    """
    script = BUILD_DIR / "pycompile.mjs"
    salt = sha256_of(script) + sha256_of(core / "pyodide.asm.wasm")
    results, jobs = {}, []
    for source, prefix, layout in sources:
        key = hashlib.sha256(f"{sha256_of(source)}|{salt}|{prefix}|{layout}".encode()).hexdigest()[:24]
        target = CACHE / "pyc" / f"{key}.zip"
        results[source] = target
        if not target.is_file():
            jobs.append({"source": str(source), "target": f"{target}.partial", "prefix": prefix, "layout": layout})
    if jobs:
        log(f"compiling bytecode for {len(jobs)} archives")
        jobs_file = CACHE / "pyc" / "jobs.json"
        jobs_file.parent.mkdir(parents=True, exist_ok=True)
        jobs_file.write_text(json.dumps(jobs))
        subprocess.run(["node", str(script), str(core), str(jobs_file)], check=True, stdout=subprocess.DEVNULL)
        for job in jobs:
            Path(job["target"]).replace(job["target"].removesuffix(".partial"))
    return results


def with_bytecode(archive: Path, pyc_zip: Path, is_wheel: bool = True) -> Path:
    key = hashlib.sha256((sha256_of(archive) + sha256_of(pyc_zip)).encode()).hexdigest()[:24]
    target = CACHE / "compiled" / key / archive.name
    if not target.is_file():
        files = read_wheel(archive)
        files.update(read_wheel(pyc_zip))
        if is_wheel:
            write_wheel(target, files)
        else:
            write_zip(target, files)
    return target


def bytecode_overlay(name: str, version: str, pyc_zip: Path) -> Path:
    """A wheel holding only an official package's compiled bytecode."""
    dist_name = f"{canonical(name).replace('-', '_')}_bytecode"
    target = CACHE / "compiled" / sha256_of(pyc_zip)[:24] / f"{dist_name}-{version}-py3-none-any.whl"
    if not target.is_file():
        files = read_wheel(pyc_zip)
        dist_info = f"{dist_name}-{version}.dist-info"
        files[f"{dist_info}/METADATA"] = (
            f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: {version}\n"
            f"Summary: bytecode of the official Pyodide build of {name}, compiled by qidicom's site build\n"
        ).encode()
        files[f"{dist_info}/WHEEL"] = (
            "Wheel-Version: 1.0\nGenerator: qidicom build/site.py\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ).encode()
        write_wheel(target, files)
    return target


# ---------------------------------------------------------------------------------------
# Assembling dist/


class Package:
    def __init__(self, name: str, version: str, wheel: Path, imports: list[str], depends: list[str],
                 official: bool):
        self.name, self.version, self.wheel = name, version, wheel
        self.imports, self.depends, self.official = imports, depends, official


def resolve_depends(name: str, declared: list[str], changes: dict, shipped: set[str]) -> list[str]:
    change = changes.get(name, {})
    depends = [dep for dep in declared if dep not in change.get("drop", [])] + change.get("add", [])
    missing = [dep for dep in depends if dep not in shipped]
    if missing:
        raise BuildError(
            f"{name} depends on {missing}, which the site does not ship; add them to build/lock.toml "
            "or list them under [dependency_changes] with the reason they are safe to leave out"
        )
    return sorted(set(depends))


def closure(roots: list[str], packages: dict[str, Package]) -> list[str]:
    seen: list[str] = []
    stack = list(roots)
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.append(name)
            stack.extend(packages[name].depends)
    return sorted(seen)


def official_closure(roots: list[str], official: dict) -> list[str]:
    """The roots and everything they depend on in the official lock, roots first."""
    names: list[str] = []
    stack = list(reversed(roots))
    while stack:
        name = stack.pop()
        if name not in names:
            names.append(name)
            stack.extend(reversed(official["packages"][name]["depends"]))
    return names


def collect_packages(lock: dict, mirror: Path | None, core: Path, bytecode: bool) -> dict[str, Package]:
    pins = lock["pyodide"]
    official = json.loads((core / "pyodide-lock.json").read_text())
    wanted: list[tuple[str, str, Path, list[str], list[str], bool]] = []
    for name in official_closure(pins["packages"] + pins.get("preview_packages", []), official):
        entry = official["packages"][name]
        path = fetch_official_package(entry, pins, mirror)
        wanted.append((entry["name"], entry["version"], path, entry["imports"], entry["depends"], True))
    strip = lock.get("strip", {})
    for pin in lock["wheel"]:
        path = slim_wheel(fetch_pure_wheel(pin), strip.get(pin["name"], []))
        files = read_wheel(path)
        wanted.append((pin["name"], pin["version"], path, top_level_imports(files), declared_dependencies(files), False))
    for pin in lock["sdist"]:
        path = build_wheel_from_sdist(pin)
        files = read_wheel(path)
        wanted.append((pin["name"], pin["version"], path, pin["imports"], declared_dependencies(files), False))
    project = build_project_wheel()
    files = read_wheel(project)
    wanted.append(("qidicom", wheel_metadata(files)["Version"], project, ["qidicom"], declared_dependencies(files), False))

    if bytecode:
        sources = [(path, SITE_PACKAGES, "pycache") for (_, _, path, _, _, _) in wanted]
        compiled = compile_bytecode(sources, core)
        result = []
        for name, version, path, imports, declared, official in wanted:
            if not official:
                result.append((name, version, with_bytecode(path, compiled[path]), imports, declared, official))
                continue
            # Official builds ship byte-for-byte as the official lock has them; their bytecode
            # comes as a separate package that only adds __pycache__ files beside theirs.
            result.append((name, version, path, imports, declared, official))
            if read_wheel(compiled[path]):
                overlay = bytecode_overlay(name, version, compiled[path])
                result.append((f"{name}-bytecode", version, overlay, [], [name], False))
        wanted = result

    shipped = {canonical(item[0]) for item in wanted}
    changes = lock.get("dependency_changes", {})
    packages = {}
    for name, version, path, imports, declared, is_official in wanted:
        name = canonical(name)
        depends = resolve_depends(name, [canonical(d) for d in declared], changes, shipped)
        packages[name] = Package(name, version, path, imports, depends, is_official)
    return packages


def pruned_lock(official_info: dict, packages: dict[str, Package]) -> dict:
    entries = {}
    for name in sorted(packages):
        package = packages[name]
        entries[name] = {
            "name": name,
            "version": package.version,
            "file_name": package.wheel.name,
            "install_dir": "site",
            "sha256": sha256_of(package.wheel),
            "package_type": "package",
            "imports": package.imports,
            "depends": package.depends,
            "unvendored_tests": False,
            "shared_library": False,
        }
    return {"info": official_info, "packages": entries}


def copy_static_assets(lock: dict, out: Path) -> None:
    """BokehJS and Panel's JS/CSS, taken from the same pinned wheels the worker runs."""
    assets = lock["static"]
    for package_name, mapping in assets.items():
        pin = next(p for p in lock["wheel"] if p["name"] == package_name)
        with zipfile.ZipFile(CACHE / "wheels" / pin["file"]) as archive:
            for prefix, destination in mapping.items():
                names = [n for n in archive.namelist() if n.startswith(prefix) and not n.endswith("/")]
                if not names:
                    raise BuildError(f"{pin['file']} has nothing under {prefix}")
                for name in names:
                    if name.endswith(".map"):
                        continue
                    target = out / destination / name[len(prefix):]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(archive.read(name))


def dcmqi_sample_present() -> bool:
    """Whether dcmqi's sample is beside the checkout (../shared); QIDICOM_HIDE_SHARED=1 builds
    as a fresh machine would, without it."""
    if os.environ.get("QIDICOM_HIDE_SHARED", "") not in ("", "0"):
        return False
    return all(path.exists() for path in SAMPLE_SOURCES.values())


def copy_sample(out: Path) -> dict:
    """dcmqi's sample, when present, for the page's second sample choice.

    The default sample needs nothing from the build: the app makes it in the browser with
    qidicom.samples, so every build has it (and the build needs neither numpy nor pydicom).
    """
    sample_dir = out / "sample"
    sample_dir.mkdir(parents=True)
    manifest = {"source": None, "series": [], "labelmap": [], "metadata": []}
    if not dcmqi_sample_present():
        return manifest
    manifest["source"] = "dcmqi test data (BSD licence)"
    series_dir = sample_dir / SAMPLE_SOURCES["series"].name
    series_dir.mkdir()
    for path in sorted(SAMPLE_SOURCES["series"].iterdir()):
        shutil.copyfile(path, series_dir / path.name)
        manifest["series"].append(f"{series_dir.name}/{path.name}")
    for role in ("labelmap", "metadata"):
        shutil.copyfile(SAMPLE_SOURCES[role], sample_dir / SAMPLE_SOURCES[role].name)
        manifest[role].append(SAMPLE_SOURCES[role].name)
    return manifest


def build_lite(staging: Path, lock: dict, core: Path, packages: dict[str, Package], mirror: Path | None) -> dict:
    """The tutorials' JupyterLite site, on this build's Pyodide and wheels (build/lite.py)."""
    sys.path.insert(0, str(BUILD_DIR))
    import lite  # noqa: E402

    this_module = types.SimpleNamespace(**globals())  # its fetchers and hash checks, reused
    return lite.build_lite(this_module, staging, lock, core, packages, mirror)


def app_modules() -> list[str]:
    """The app's Python modules and packages (e.g. webapp/editor/) with their JSON data,
    as paths relative to webapp/: the worker writes them beside its working directory."""
    return sorted(str(p.relative_to(WEBAPP)) for p in WEBAPP.rglob("*")
                  if p.is_file() and p.suffix in (".py", ".json") and "__pycache__" not in p.parts)


def render_template(source: Path, replacements: dict[str, str]) -> str:
    text = source.read_text()
    for key, value in replacements.items():
        text = text.replace("{{" + key + "}}", value)
    if "{{" in text:
        raise BuildError(f"{source.name}: unreplaced placeholder")
    return text


def inputs_digest() -> str:
    """Hash of everything dist/ is made from, to tell whether a rebuild is needed."""
    digest = hashlib.sha256()
    roots = [BUILD_DIR, WEBAPP, ROOT / "pylib", ROOT / "schemas", ROOT / "pyproject.toml", ROOT / "notebooks"]
    for root in roots:
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in paths:
            if CACHE in path.parents or "__pycache__" in path.parts:
                continue
            digest.update(str(path.relative_to(ROOT)).encode())
            digest.update(path.read_bytes())
    digest.update(str(dcmqi_sample_present()).encode())
    return digest.hexdigest()


def build(mirror: Path | None = None, out: Path = DIST, lock_file: Path = LOCK_FILE, bytecode: bool = True) -> Path:
    lock = tomllib.loads(lock_file.read_text())
    mirror = mirror or default_mirror()
    log(f"compiled packages: mirror {mirror or '(none)'}")
    core = fetch_pyodide_core(lock["pyodide"])
    packages = collect_packages(lock, mirror, core, bytecode)

    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    pyodide_dir = staging / "pyodide"
    pyodide_dir.mkdir(parents=True)
    for name in lock["pyodide"]["core_files"]:
        shutil.copyfile(core / name, pyodide_dir / name)
    if bytecode:
        stdlib = core / "python_stdlib.zip"
        compiled = compile_bytecode([(stdlib, STDLIB_ZIP_PREFIX, "beside")], core)[stdlib]
        shutil.copyfile(with_bytecode(stdlib, compiled, is_wheel=False), pyodide_dir / stdlib.name)
    for package in packages.values():
        shutil.copyfile(package.wheel, pyodide_dir / package.wheel.name)
    official_info = json.loads((core / "pyodide-lock.json").read_text())["info"]
    (pyodide_dir / "pyodide-lock.json").write_text(json.dumps(pruned_lock(official_info, packages), indent=1))

    copy_static_assets(lock, staging / "static")
    manifest = copy_sample(staging)
    (staging / "sample" / "manifest.json").write_text(json.dumps(manifest, indent=1))

    app_dir = staging / "app"
    app_dir.mkdir()
    modules = app_modules()
    for name in modules:
        (app_dir / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(WEBAPP / name, app_dir / name)
    def with_overlays(names: list[str]) -> list[str]:
        return sorted(names + [f"{n}-bytecode" for n in names if f"{n}-bytecode" in packages])

    ui = with_overlays(closure(["panel", "pyodide-http"], packages))
    stages = {
        "ui": ui,
        "convert": [n for n in with_overlays(closure(["qidicom"], packages)) if n not in ui],
    }
    # Loaded by the worker when a slice preview is first opened (Bokeh's ColumnDataSource
    # imports pandas), never before the page is interactive.
    earlier = set(stages["ui"]) | set(stages["convert"])
    stages["preview"] = [n for n in with_overlays(closure(lock["pyodide"].get("preview_packages", []), packages))
                         if n not in earlier]
    stages["modules"] = modules
    (app_dir / "packages.json").write_text(json.dumps(stages, indent=1))

    replacements = {
        "PANEL_VERSION": next(p["version"] for p in lock["wheel"] if p["name"] == "panel"),
        "BOKEH_VERSION": next(p["version"] for p in lock["wheel"] if p["name"] == "bokeh"),
        "QIDICOM_VERSION": packages["qidicom"].version,
    }
    for name in ("index.html", "page.js", "worker.js", "style.css"):
        (staging / name).write_text(render_template(WEBAPP / name, replacements))
    shutil.copyfile(BUILD_DIR / "serve.py", staging / "serve.py")

    # The service worker precaches every file, so the second visit needs no network.
    files = sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file() and p.name != "serve.py")
    files_digest = hashlib.sha256()
    for name in files:
        files_digest.update(name.encode() + b"\0" + sha256_of(staging / name).encode())
    replacements["CACHE_VERSION"] = files_digest.hexdigest()[:16]
    replacements["PRECACHE"] = json.dumps(["./"] + [f"./{name}" for name in files], indent=0)
    (staging / "sw.js").write_text(render_template(WEBAPP / "sw.js", replacements))
    # The tutorials (lite/) come after the app's file list: they have their own service
    # worker, so opening the app never downloads them.
    lite_info = build_lite(staging, lock, core, packages, mirror)
    (staging / "build-info.json").write_text(json.dumps({
        "inputs_digest": inputs_digest(),
        "bytecode": bytecode,
        "cache_version": replacements["CACHE_VERSION"],
        "pyodide": lock["pyodide"]["version"],
        "packages": {name: packages[name].version for name in sorted(packages)},
        "sample": manifest.get("source"),
        "lite": lite_info,
    }, indent=1))

    shutil.rmtree(out, ignore_errors=True)
    staging.replace(out)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    log(f"wrote {out} ({size / 1e6:.1f} MB, {len(packages)} packages)")
    return out


def is_current(out: Path = DIST, bytecode: bool = True) -> bool:
    info = out / "build-info.json"
    try:
        recorded = json.loads(info.read_text())
        return recorded["inputs_digest"] == inputs_digest() and recorded["bytecode"] == bytecode
    except (OSError, ValueError, KeyError):
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    build_cmd = commands.add_parser("build", help="build dist/")
    serve_cmd = commands.add_parser("serve", help="build dist/ if needed, then serve it on localhost")
    for command in (build_cmd, serve_cmd):
        command.add_argument("--pyodide-mirror", type=Path, default=None,
                             help="directory holding official Pyodide package files (default: ../shared/pyodide-0.27.7 when present)")
        command.add_argument("--out", type=Path, default=DIST, help="output directory (default: dist/)")
        command.add_argument("--no-bytecode", action="store_true",
                             help="ship Python sources only (slower start; for comparison)")
    build_cmd.add_argument("--if-needed", action="store_true", help="skip when dist/ is up to date")
    serve_cmd.add_argument("--port", type=int, default=8000)
    serve_cmd.add_argument("--no-build", action="store_true", help="serve dist/ as it is")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            if args.if_needed and is_current(args.out, not args.no_bytecode):
                log(f"{args.out} is up to date")
            else:
                build(args.pyodide_mirror, args.out, bytecode=not args.no_bytecode)
            return 0
        if not args.no_build and not is_current(args.out, not args.no_bytecode):
            build(args.pyodide_mirror, args.out, bytecode=not args.no_bytecode)
    except BuildError as error:
        print(f"build failed: {error}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as error:
        print(f"build failed: {' '.join(map(str, error.cmd))} exited with {error.returncode}", file=sys.stderr)
        return 1
    os.execv(sys.executable, [sys.executable, str(args.out / "serve.py"), str(args.port)])


if __name__ == "__main__":
    sys.exit(main())
