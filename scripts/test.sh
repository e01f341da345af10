#!/usr/bin/env bash
# Sets up a virtualenv in .venv (Python 3.11+), installs Transom with its test extras and
# the system packages the tests drive (xmlsec1 for pysaml2, Debian chromium for the browser
# test, when running as root with apt-get), then runs the whole test suite.
# Extra arguments go to pytest. TRANSOM_TEST_DATABASE_URL=postgresql+psycopg://... runs the
# suite against PostgreSQL instead of SQLite.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'

need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
command -v xmlsec1 >/dev/null 2>&1 || need_apt+=(xmlsec1)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${need_apt[*]} with apt-get" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "note: ${need_apt[*]} missing and apt-get unavailable; tests that need them will be skipped" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# The host, every built-in plugin (each its own distribution under plugins/, installed the
# way a third-party plugin would be) and every worked example under examples/ (third-party
# plugins tested with the kit; pyproject's testpaths collects their tests). pip's output goes
# to a log shown only when it fails.
packages=(-e '.[test]')
for plugin in plugins/*/pyproject.toml examples/*/pyproject.toml; do packages+=(-e "$(dirname "$plugin")"); done
if ! { .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip \
       && .venv/bin/python -m pip install -q --disable-pip-version-check "${packages[@]}"; } >.venv/install.log 2>&1; then
  cat .venv/install.log >&2
  echo "error: installing Transom's test dependencies failed (log above)" >&2
  exit 1
fi
# Two workers by default (the machines have two cores); pass -n 0 to run in one process.
exec .venv/bin/python -m pytest -n auto "$@"
