#!/usr/bin/env bash
# The 30-minute soak: scripts/soak.sh [seconds] [pytest args]
#
# The real daemon (4 synthetic cameras, MQTT, InfluxDB line protocol into VictoriaMetrics, sensor
# traffic) with the broker and the TSDB restarted during the run; fails on RSS growth >= 5 % after
# warm-up, fd or thread growth, or any lost event, point or sensor reading. tests/integration/test_soak.py
# says what is checked; its 2-minute version runs in the default suite. Everything on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
export EDGEINFER_SOAK_S="${1:-1800}"
shift || true
python=.venv/bin/python
[ -x "$python" ] || python=python3
exec "$python" -m pytest -m soak tests/integration/test_soak.py -s -p no:cacheprovider "$@"
