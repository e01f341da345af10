#!/usr/bin/env bash
# Sets up .venv (Python 3.11+), installs Transom and runs `transom demo`: the host on a local
# SQLite file with a demo account and a built-in development IdP. Arguments go to `transom demo`
# (e.g. --port 8765). PYTHON=/path/to/python3.12 picks the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
log=.venv/install.log
echo "installing Transom into .venv (details: $log)" >&2
# the host and every built-in connector plugin (each its own distribution under plugins/)
packages=(-e .)
for plugin in plugins/*/pyproject.toml; do packages+=(-e "$(dirname "$plugin")"); done
if ! { .venv/bin/python -m pip install --disable-pip-version-check --upgrade pip &&
       .venv/bin/python -m pip install --disable-pip-version-check "${packages[@]}"; } >"$log" 2>&1; then
  tail -n 30 "$log" >&2
  echo "error: installing Transom failed; the full log is in $log" >&2
  exit 1
fi
exec .venv/bin/transom demo "$@"
