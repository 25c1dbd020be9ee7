#!/usr/bin/env bash
# Set up (first run only) and run the whole test suite:
#  1. the notebooks and fico_itr/ agree (nbdev_clean + nbdev_export on a scratch copy change nothing);
#  2. a report of the public API's size (tools/api_report.py; it prints, it never fails);
#  3. every notebook executes and its stored outputs are what it produces (tools/outputs.py check: run as nbdev_test
#     runs it, cells flagged slow or gpu skipped, outputs compared cell by cell);
#  4. pytest tests/ (peer cross-checks, property tests, compat).
EXTRAS=dev,plots,peers source "$(dirname "$0")/env.sh"
if [ ! -d .peers/fico-itr-1.0.0/fico_itr ]; then   # the peer imports as fico_itr too: keep it in its own folder
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --target .peers/fico-itr-1.0.0 fico-itr==1.0.0 2>&1 \
    | grep -v -E "^WARNING: Location .* is ignored" || true
fi
if ! command -v chromium >/dev/null 2>&1; then   # the docs test screenshots every page in headless Chromium
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "WARNING: could not install chromium: tests/test_docs.py will be skipped" >&2
fi
export HF_HUB_OFFLINE=1 PYTHONHASHSEED=0 OMP_WAIT_POLICY=PASSIVE

echo "== notebooks and library agree"
scratch=$(mktemp -d); trap 'rm -rf "$scratch"' EXIT
cp -r nbs fico_itr settings.ini setup.py README.md _quarto.yml "$scratch"/
(cd "$scratch" && "$OLDPWD"/.venv/bin/nbdev_clean >/dev/null && "$OLDPWD"/.venv/bin/nbdev_export)
if ! diff -rq --exclude=__pycache__ "$scratch/fico_itr" fico_itr || ! diff -rq --exclude=.ipynb_checkpoints "$scratch/nbs" nbs; then
  echo "FAIL: nbdev_clean + nbdev_export change files: edit the notebooks in nbs/, run nbdev_clean and nbdev_export, commit both" >&2
  exit 1
fi

echo "== public API (a report: it prints, it never fails)"
.venv/bin/python tools/api_report.py || true

echo "== notebooks execute and their stored outputs are current"
timeout 1200 .venv/bin/python tools/outputs.py check --workers 2 ${NBDEV_FLAGS:+--flags "$NBDEV_FLAGS"}

echo "== pytest"
timeout 1800 .venv/bin/python -m pytest tests -q -p no:cacheprovider "$@"
