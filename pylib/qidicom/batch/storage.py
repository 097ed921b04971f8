"""Where a batch reads and writes: local paths, or fsspec URLs where a backend is installed.

Locations are plain strings. ``file://`` URLs become local paths at once, so local files
always take the same road as the CLI (a path handed to the library, an atomic rename on
writing); other URLs go through fsspec, whose object stores write whole objects anyway.
"""

from __future__ import annotations

import os
import posixpath
import re
import secrets
import shutil
from pathlib import Path
from typing import Iterable
from urllib.parse import unquote, urlsplit

from qidicom.errors import InputError

#: What a finished case records beside its output (see qidicom.batch.cases).
SIDECAR_SUFFIX = ".qidicom-batch.json"

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(location: str) -> bool:
    return bool(_URL.match(location))


def resolve(value: str, base: str) -> str:
    """``value`` as an absolute location: relative ones are taken from ``base``."""
    value = value.strip()
    if value.lower().startswith("file://"):
        return os.path.normpath(unquote(urlsplit(value).path))
    if is_url(value):
        return value
    expanded = os.path.expanduser(value)
    if os.path.isabs(expanded):
        return os.path.normpath(expanded)
    if is_url(base):
        return posixpath.join(base.rstrip("/") + "/", value)
    return os.path.normpath(os.path.join(base, expanded))


def parent(location: str) -> str:
    if is_url(location):
        return location.rstrip("/").rsplit("/", 1)[0]
    return os.path.dirname(os.path.abspath(location))


def filesystem(url: str):
    """The fsspec filesystem and path for a URL, or a clear error naming what to install."""
    try:
        import fsspec
    except ImportError:
        raise InputError(f"{url}: URLs need fsspec (pip install 'qidicom[batch]')") from None
    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as error:
        protocol = url.split("://", 1)[0]
        raise InputError(f"{url}: no fsspec backend for '{protocol}://' is installed ({error})") from None


def problem(location: str, directory: bool) -> str | None:
    """Why a location cannot be read as a file (or folder), or None."""
    try:
        if is_url(location):
            fs, path = filesystem(location)
            if not fs.exists(path):
                return f"{location}: not found"
            if fs.isdir(path) != directory:
                return f"{location}: is {'not ' if directory else ''}a folder"
            return None
    except InputError as error:
        return str(error)
    except OSError as error:  # an unreachable store, a refused credential
        return f"{location}: cannot be reached ({error})"
    path = Path(location)
    if not path.exists():
        return f"{location}: not found"
    if path.is_dir() != directory:
        return f"{location}: {'not a folder' if directory else 'is a folder, a file was expected'}"
    return None


def read_bytes(location: str) -> bytes:
    if is_url(location):
        fs, path = filesystem(location)
        return fs.cat_file(path)
    try:
        return Path(location).read_bytes()
    except OSError as error:
        raise InputError(f"{location}: cannot be read ({error.strerror or error})") from None


def read_tree(location: str) -> list[tuple[str, bytes]]:
    """Every file under a folder, as (relative name, bytes), in name order; hidden files are
    left out as the library's own folder reading leaves them out."""
    files = []
    if is_url(location):
        fs, root = filesystem(location)
        root = root.rstrip("/")
        for path in sorted(fs.find(root)):
            relative = path[len(root):].lstrip("/")
            if not relative.rsplit("/", 1)[-1].startswith("."):
                files.append((relative, fs.cat_file(path)))
        return files
    root_path = Path(location)
    for path in sorted(p for p in root_path.rglob("*") if p.is_file() and not p.name.startswith(".")):
        files.append((str(path.relative_to(root_path)), path.read_bytes()))
    return files


def tree_names(location: str) -> list[str]:
    """The file paths under a local folder, in the order read_tree gives them."""
    root = Path(location)
    return [str(p) for p in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))]


def exists(location: str) -> bool:
    if is_url(location):
        fs, path = filesystem(location)
        return fs.exists(path)
    return os.path.exists(location)


def size(location: str) -> int | None:
    """Bytes in a file, or in all files of a folder; None when absent."""
    if is_url(location):
        fs, path = filesystem(location)
        if not fs.exists(path):
            return None
        if fs.isdir(path):
            return sum(fs.size(p) for p in fs.find(path))
        return fs.size(path)
    path = Path(location)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.is_file() else None


def remove_partials(location: str) -> None:
    """Delete what an earlier, killed attempt at this output left mid-write.

    ``write_file_atomically`` writes ``.<name>.<random>`` beside the target and folders are
    built as ``.<name>.partial-<random>``; only this case writes this name.
    """
    if is_url(location):
        return
    target = Path(location)
    if not target.parent.is_dir():
        return
    name = glob_escape(target.name)
    patterns = [f".{name}.{'?' * 8}", f".{name}.partial-{'?' * 8}", f".{name}.old-{'?' * 8}", f".{name}{SIDECAR_SUFFIX}.{'?' * 8}"]
    for leftover in (path for pattern in patterns for path in target.parent.glob(pattern)):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def write_file(location: str, data: bytes) -> None:
    """Write one file whole or not at all."""
    if is_url(location):
        fs, path = filesystem(location)
        fs.makedirs(posixpath.dirname(path), exist_ok=True)
        fs.pipe_file(path, data)
        return
    from qidicom.writers import write_file_atomically

    os.makedirs(os.path.dirname(os.path.abspath(location)), exist_ok=True)
    write_file_atomically(location, data)


def write_tree(location: str, files: Iterable[tuple[str, bytes]]) -> None:
    """Write a folder of files; locally it appears whole, by renaming a finished folder."""
    files = list(files)
    if is_url(location):
        fs, root = filesystem(location)
        fs.makedirs(root, exist_ok=True)
        for name, data in files:
            fs.pipe_file(root.rstrip("/") + "/" + name, data)
        return
    target = Path(location)
    target.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(4)
    building = target.parent / f".{target.name}.partial-{token}"
    building.mkdir()
    try:
        for name, data in files:
            path = building / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        if target.exists():
            # Replaced by an up-to-date run: move the old folder aside, then drop it.
            retired = target.parent / f".{target.name}.old-{token}"
            os.replace(target, retired)
            os.replace(building, target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(building, target)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
