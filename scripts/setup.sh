#!/usr/bin/env bash
# Set up .venv with edgeinfer installed (editable). Usage: scripts/setup.sh [dev]
#
# Installs only when needed: .venv missing or broken, pyproject.toml changed since the last install, or an
# extra asked for that the last install did not have (a dev install also serves plain runs). The stamp
# .venv/.edgeinfer-setup holds the sha256 of pyproject.toml and the extras installed, so a box with a
# complete .venv starts offline and without pip's ~10 s. EDGEINFER_SETUP=force reinstalls anyway.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
STAMP="$VENV/.edgeinfer-setup"
extra=${1:-}

pyproject_hash() { sha256sum pyproject.toml | cut -d' ' -f1; }

# Exit 0 when the stamp says this install is current and the venv's edgeinfer is this checkout's.
setup_is_current() {
  [ "${EDGEINFER_SETUP:-}" != force ] || return 1
  [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] || return 1
  [ "$(head -n 1 "$STAMP")" = "$(pyproject_hash)" ] || return 1
  if [ -n "$extra" ]; then
    tail -n +2 "$STAMP" | grep -qxF -- "$extra" || return 1
  fi
  # moved or copied checkout, or a Python upgrade that broke the venv: reinstall
  [ "$("$VENV/bin/python" -I -c 'import edgeinfer, os; print(os.path.dirname(os.path.realpath(edgeinfer.__file__)))' 2>/dev/null)" \
    = "$(pwd -P)/edgeinfer" ]
}

if setup_is_current; then
  exit 0
fi

# keep the extras an earlier install had (a changed pyproject.toml must not drop the dev tools)
extras=$({ [ -z "$extra" ] || echo "$extra"; [ ! -f "$STAMP" ] || tail -n +2 "$STAMP"; } | sort -u | paste -sd, -)
if ! "$VENV/bin/python" -c '' 2>/dev/null; then  # missing, or its Python is gone
  "$PY" -m venv --clear "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi
rm -f "$STAMP"  # a failed install below leaves no stamp: the next start tries again
"$VENV/bin/python" -m pip install --quiet -e ".${extras:+[$extras]}"
{ pyproject_hash; [ -z "$extras" ] || echo "$extras" | tr , '\n'; } > "$STAMP"
