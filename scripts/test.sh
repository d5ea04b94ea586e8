#!/usr/bin/env bash
# The one command that sets up and runs the whole test suite: scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/test-services.sh
scripts/setup.sh dev
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy  # strict over edgeinfer/ ([tool.mypy] in pyproject.toml)
exec .venv/bin/python -m pytest "$@"
