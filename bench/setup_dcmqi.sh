#!/usr/bin/env bash
# Create bench/.dcmqi-venv and install the peer, dcmqi (native binaries in a pip wheel), there.
# Idempotent: re-running with the pinned version already installed does nothing.
#   bash bench/setup_dcmqi.sh            # default pinned version
#   DCMQI_VERSION=1.5.7 bash bench/setup_dcmqi.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${DCMQI_VENV:-$here/.dcmqi-venv}"
version="${DCMQI_VERSION:-1.5.7}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
installed="$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("dcmqi"))' 2>/dev/null || true)"
if [ "$installed" != "$version" ]; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "dcmqi==$version"
fi
for tool in itkimage2segimage segimage2itkimage itkimage2paramap paramap2itkimage tid1500writer tid1500reader; do
  if [ ! -x "$venv/bin/$tool" ]; then
    echo "setup_dcmqi: $venv/bin/$tool missing" >&2
    exit 1
  fi
done
echo "dcmqi $version in $venv/bin"
