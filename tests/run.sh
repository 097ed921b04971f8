#!/usr/bin/env bash
# The one test command (README, .ci/run): installs what the suite needs, then runs pytest.
# Safe to run again; each step is skipped when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# System tools: dciodvfy (dicom3tools) checks conformance, dcmtk's dcmconv inflates
# deflated files for it (Debian's dciodvfy cannot read them); Debian's chromium runs the
# browser tests. Installed only when missing and we may install (root).
missing=()
command -v dciodvfy >/dev/null || missing+=(dicom3tools)
command -v dcmconv >/dev/null || missing+=(dcmtk)
command -v chromium >/dev/null || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "warning: missing ${missing[*]}; tests that need them will be skipped" >&2
  fi
fi

# The project in its own virtual environment, with the test extras.
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e ".[test,batch,notebooks]"

# dcmqi 1.5.7 (native tools in a pip wheel) in its own virtual environment, for the tests
# where dcmqi reads our objects and we read its (tests/test_dcmqi_interop.py, and in
# tests/test_dcmqi_suite.py dcmqi reading what we made from its inputs; they look in
# $DCMQI_VENV). If it cannot be installed (no wheel for this platform, no network), those
# tests skip and say why.
export DCMQI_VENV="${DCMQI_VENV:-$PWD/bench/.dcmqi-venv}"
if ! bash bench/setup_dcmqi.sh >/dev/null; then
  echo "warning: dcmqi could not be installed in $DCMQI_VENV (bench/setup_dcmqi.sh); the tests against dcmqi will be skipped" >&2
fi

exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
