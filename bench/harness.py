"""Shared pieces of the qidicom-vs-dcmqi benchmarks: finding the two tools, running one
command with wall time, CPU time and peak RSS of the child, machine facts, and tables.

Nothing here asserts a time: the benchmarks report figures only.
"""

from __future__ import annotations

import datetime
import glob
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
DEFAULT_DCMQI_VENV = BENCH / ".dcmqi-venv"


# --------------------------------------------------------------------------- tools


@dataclass
class Tool:
    name: str  # "qidicom" or "dcmqi"
    argv_prefix: dict[str, list[str]]  # subcommand -> argv before the options
    env: dict[str, str] = field(default_factory=dict)
    version: str = "?"
    how: str = ""

    def argv(self, subcommand: str, options: list[str]) -> list[str]:
        return [*self.argv_prefix[subcommand], *options]


SUBCOMMANDS = ["itkimage2segimage", "segimage2itkimage", "itkimage2paramap", "paramap2itkimage"]


def find_qidicom(spec: str | None = None) -> Tool:
    """The qidicom command: --qidicom / $QIDICOM (a command line), else <repo>/.venv/bin/qidicom,
    else the `qidicom` script beside this interpreter, else `qidicom` on PATH, else
    `python -m qidicom.cli` with PYTHONPATH=<repo>/pylib."""
    env: dict[str, str] = {}
    spec = spec or os.environ.get("QIDICOM")
    if spec:
        base = shlex.split(spec)
        how = f"given: {spec}"
    elif (REPO / ".venv" / "bin" / "qidicom").exists():
        base = [str(REPO / ".venv" / "bin" / "qidicom")]
        how = "repo .venv/bin/qidicom"
    elif (Path(sys.executable).parent / "qidicom").exists():
        # the console script of the interpreter running the benchmark (skips a pyenv shim)
        base = [str(Path(sys.executable).parent / "qidicom")]
        how = f"{base[0]}"
    elif shutil.which("qidicom"):
        base = [shutil.which("qidicom")]
        how = f"qidicom on PATH ({base[0]})"
    else:
        base = [sys.executable, "-m", "qidicom.cli"]
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "pylib"), os.environ.get("PYTHONPATH")]))
        how = f"{sys.executable} -m qidicom.cli (PYTHONPATH={REPO / 'pylib'})"
    tool = Tool("qidicom", {sub: [*base, sub] for sub in SUBCOMMANDS}, env, how=how)
    tool.version = _qidicom_version(base, env)
    return tool


def snapshot_qidicom(ref: str = "HEAD", work: Path | None = None) -> Tool:
    """qidicom as committed at `ref`: `git archive ref pylib schemas` unpacked under
    bench/work/snapshots/<sha>/, byte-compiled, and run as `python -m qidicom.cli` with
    PYTHONPATH there.
    Others edit the shared work tree while a benchmark runs; a snapshot keeps every run on the
    same code and ties the figures to a commit."""
    import tarfile
    import io

    sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", f"{ref}^{{commit}}"],
                         capture_output=True, text=True)
    if sha.returncode != 0:
        raise SystemExit(f"no such git ref: {ref}: {sha.stderr.strip()}")
    sha = sha.stdout.strip()
    target = (work or BENCH / "work") / "snapshots" / sha[:12]
    if not (target / "pylib" / "qidicom" / "cli.py").exists():
        archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", sha, "pylib", "schemas"],
                                 capture_output=True, check=True).stdout
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(target)
    # Byte-compiled as pip compiles an installed package; otherwise every run would compile
    # qidicom's modules first (~0.04 s), more so where PYTHONDONTWRITEBYTECODE is set.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(target / "pylib")], check=True)
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(target / "pylib"), os.environ.get("PYTHONPATH")]))}
    base = [sys.executable, "-m", "qidicom.cli"]
    tool = Tool("qidicom", {sub: [*base, sub] for sub in SUBCOMMANDS}, env,
                how=f"commit {sha[:10]} ({ref}) snapshot, {sys.executable} -m qidicom.cli")
    text = subprocess.run([*base, "--version"], capture_output=True, text=True, env={**os.environ, **env}).stdout.strip()
    tool.version = f"{text or '?'}, git {sha[:10]}"
    return tool


def qidicom_from_args(spec: str | None, ref: str) -> Tool:
    """--qidicom CMD wins; else --qidicom-ref REF (default HEAD) snapshot; REF 'worktree' = live tree."""
    if spec or os.environ.get("QIDICOM") or ref == "worktree":
        return find_qidicom(spec)
    return snapshot_qidicom(ref)


def _qidicom_version(base: list[str], env: dict[str, str]) -> str:
    parts = []
    try:
        out = subprocess.run([*base, "--version"], capture_output=True, text=True, timeout=60, env={**os.environ, **env})
        text = (out.stdout or out.stderr).strip().splitlines()
        if out.returncode == 0 and text:
            parts.append(text[-1].strip())
    except (OSError, subprocess.TimeoutExpired):
        pass
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "pylib"], capture_output=True, text=True).stdout.strip()
        if rev:
            parts.append(f"git {rev}{' + uncommitted pylib changes' if dirty else ''}")
    except OSError:
        pass
    return ", ".join(parts) or "?"


def find_dcmqi(venv: Path | None = None, wrapper: bool = False) -> Tool:
    """dcmqi's native binaries inside the pip package in its own venv (bench/setup_dcmqi.sh).
    By default the ELF binaries are run directly (the venv's bin/ entry points are Python
    wrappers that start an interpreter first and then call the binary); wrapper=True uses them."""
    venv = Path(venv or os.environ.get("DCMQI_VENV") or DEFAULT_DCMQI_VENV)
    if wrapper:
        bindir = venv / "bin"
    else:
        found = sorted(glob.glob(str(venv / "lib" / "python*" / "site-packages" / "dcmqi" / "bin")))
        if not found:
            raise SystemExit(f"dcmqi not found in {venv}: run bash bench/setup_dcmqi.sh")
        bindir = Path(found[-1])
    missing = [s for s in SUBCOMMANDS if not (bindir / s).exists()]
    if missing:
        raise SystemExit(f"dcmqi tools missing in {bindir}: {missing}; run bash bench/setup_dcmqi.sh")
    version = "?"
    try:
        version = subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import importlib.metadata as m; print(m.version('dcmqi'))"],
            capture_output=True, text=True, timeout=60).stdout.strip() or "?"
    except (OSError, subprocess.TimeoutExpired):
        pass
    tool = Tool("dcmqi", {sub: [str(bindir / sub)] for sub in SUBCOMMANDS}, version=version,
                how=f"{'pip wrappers' if wrapper else 'native binaries'} in {bindir}")
    return tool


def tool_help(tool: Tool, subcommand: str) -> str:
    try:
        out = subprocess.run(tool.argv(subcommand, ["--help"]), capture_output=True, text=True, timeout=60,
                             env={**os.environ, **tool.env})
        return out.stdout + out.stderr
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"<{exc}>"


# --------------------------------------------------------------------------- running


@dataclass
class Run:
    returncode: int
    wall_s: float
    cpu_s: float  # user + system of the child and its descendants
    maxrss_mb: float  # peak resident set size of the child (largest process in its tree)
    log: str  # stdout+stderr tail


# Linux counts in a child's ru_maxrss the peak RSS of the address space it replaced at exec,
# which for a child forked (or vforked) from this benchmark process is this process's own
# peak: children of a benchmark that has loaded a volume would all show at least that. So each
# command is started by a small launcher (python3 -S, ~10 MB) that forks it and reports the
# grandchild's rusage; the launcher's own start-up is outside the timed span.
_LAUNCHER = r"""
import os, sys, time
argv, result = sys.argv[2:], sys.argv[1]
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        os.write(2, f"cannot run {argv[0]}: {exc}\n".encode())
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - start
with open(result, "w") as f:
    f.write(f"{os.waitstatus_to_exitcode(status)} {wall!r} {usage.ru_utime + usage.ru_stime!r} {usage.ru_maxrss}\n")
"""


def run_once(argv: list[str], env: dict[str, str] | None = None, log_path: Path | None = None,
             timeout: float = 900.0) -> Run:
    """Run argv as a grandchild through the launcher; wall time, CPU time (user + system of the
    command and its descendants) and peak RSS (ru_maxrss of the command's process tree)."""
    import tempfile

    log_path = log_path or Path(os.devnull)
    handle, result_path = tempfile.mkstemp(prefix="qidicom-bench-", suffix=".txt")
    os.close(handle)
    try:
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([sys.executable, "-S", "-c", _LAUNCHER, result_path, *argv], stdout=log,
                                    stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                                    start_new_session=True)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        text = Path(result_path).read_text().split()
    finally:
        Path(result_path).unlink(missing_ok=True)
    tail = ""
    if log_path != Path(os.devnull):
        tail = log_path.read_bytes()[-4000:].decode("utf-8", "replace")
    if len(text) != 4:  # killed by the timeout (or the launcher failed)
        return Run(proc.returncode if proc.returncode else -9, float(timeout), 0.0, 0.0,
                   tail + f"\n<no result: timeout {timeout} s or launcher failure>")
    rc, wall, cpu, maxrss_kb = int(text[0]), float(text[1]), float(text[2]), int(text[3])
    return Run(rc, wall, cpu, maxrss_kb / 1024.0, tail)


def summarize(runs: list[Run]) -> dict:
    ok = [r for r in runs if r.returncode == 0]
    result = {
        "runs": len(runs),
        "ok": len(ok) == len(runs) and bool(runs),
        "returncodes": [r.returncode for r in runs],
        "wall_s": [round(r.wall_s, 4) for r in runs],
        "cpu_s": [round(r.cpu_s, 4) for r in runs],
        "maxrss_mb": [round(r.maxrss_mb, 1) for r in runs],
    }
    if ok:
        result["wall_s_median"] = round(statistics.median(r.wall_s for r in ok), 4)
        result["wall_s_min"] = round(min(r.wall_s for r in ok), 4)
        result["cpu_s_median"] = round(statistics.median(r.cpu_s for r in ok), 4)
        result["maxrss_mb_max"] = round(max(r.maxrss_mb for r in ok), 1)
    if not result["ok"]:
        bad = next((r for r in runs if r.returncode != 0), None)
        if bad is not None:
            result["error"] = bad.log[-2000:]
    return result


def prime_cache(*paths: Path) -> None:
    """Read input files once so the first timed run doesn't pay for a cold page cache."""
    for path in paths:
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        for f in files:
            with open(f, "rb") as fh:
                while fh.read(1 << 22):
                    pass


def dir_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def dicom_summary(path: Path) -> dict:
    """Header facts of an output DICOM (transfer syntax, frames, segments, bits)."""
    try:
        import pydicom

        ds = pydicom.dcmread(path, stop_before_pixels=True)
        return {
            "transfer_syntax": ds.file_meta.TransferSyntaxUID.name,
            "sop_class": ds.SOPClassUID.name,
            "frames": int(ds.get("NumberOfFrames", 1)),
            "bits_allocated": int(ds.get("BitsAllocated", 0)),
            "segmentation_type": ds.get("SegmentationType"),
            "segments": len(ds.SegmentSequence) if "SegmentSequence" in ds else None,
        }
    except Exception as exc:  # report, don't fail the benchmark
        return {"error": f"{type(exc).__name__}: {exc}"}


# --------------------------------------------------------------------------- context


def machine_info() -> dict:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "mem_gb": mem_gb,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }


def python_versions() -> dict:
    versions = {}
    for module in ("numpy", "pydicom", "highdicom", "nibabel", "nrrd"):
        try:
            versions[module] = __import__(module).__version__
        except Exception:
            versions[module] = None
    return versions


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def save_results(kind: str, payload: dict, markdown: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{kind}-{stamp}.json"
    text = json.dumps(payload, indent=1) + "\n"
    path.write_text(text)
    (RESULTS / f"{kind}-latest.json").write_text(text)
    (RESULTS / f"{kind}-latest.md").write_text(markdown)
    return path


def rc_text(returncodes: list[int]) -> str:
    """Exit codes for a failure line; a negative one is a signal (e.g. -11 = SIGSEGV, a crash)."""
    parts = []
    for rc in returncodes:
        if rc < 0 and rc != -999:
            try:
                parts.append(f"{rc} ({signal.Signals(-rc).name})")
            except ValueError:
                parts.append(str(rc))
        elif rc == -999:
            parts.append("0 but no output file")
        else:
            parts.append(str(rc))
    return "exit " + ", ".join(parts)


def fmt_size(n: int | None) -> str:
    if n is None:
        return "-"
    if n >= 1 << 20:
        return f"{n / (1 << 20):.2f} MiB"
    if n >= 1 << 10:
        return f"{n / (1 << 10):.1f} KiB"
    return f"{n} B"


def fmt_s(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def context_lines(payload: dict) -> str:
    m = payload["machine"]
    tools = payload["tools"]
    return (
        f"Machine: {m['nproc']} cores ({m['cpu_model']}), {m['mem_gb']} GB RAM, {m['platform']}; "
        f"load average at start {m['loadavg_start']}, at end {m.get('loadavg_end')}.  \n"
        f"Date: {payload['date']}. Runs per case: {payload['runs']} (median wall time reported).  \n"
        f"qidicom: {tools['qidicom']['version']} ({tools['qidicom']['how']}); Python {m['python']}, "
        + ", ".join(f"{k} {v}" for k, v in payload['python_versions'].items() if v) + ".  \n"
        f"dcmqi: {tools['dcmqi']['version']} ({tools['dcmqi']['how']})."
    )
