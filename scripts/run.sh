#!/usr/bin/env bash
# The one command that sets up and runs the daemon: scripts/run.sh [edgeinfer run args]
# With no arguments: the embedded default (bundled model on the bundled demo clip, local store only).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/edgeinfer run "$@"
