# Shared set-up for tools/demo.sh and tools/test.sh: a virtual environment in .venv with the package installed.
# TORCH_SPEC picks the torch build (default: the CPU wheel this kind of machine has on disk; on a GPU machine use
# e.g. TORCH_SPEC="torch>=2.1"). EXTRAS picks the package extras.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then "$PY" -m venv .venv; fi
VPY=.venv/bin/python
STAMP=.venv/.fico-itr-installed-${EXTRAS:-base}
if [ ! -f "$STAMP" ] || [ setup.py -nt "$STAMP" ] || [ settings.ini -nt "$STAMP" ]; then
  "$VPY" -m pip install -q --disable-pip-version-check "${TORCH_SPEC:-torch==2.13.0}" -e ".[${EXTRAS:-plots}]" 2>&1 \
    | grep -v -E "^WARNING: Location .* is ignored" || true
  "$VPY" -c "import fico_itr, torch" || { echo "installation failed" >&2; exit 1; }
  touch "$STAMP"
fi
