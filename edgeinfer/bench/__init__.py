"""The benchmark harness behind ``edgeinfer bench`` (issue 5).

Each configuration runs in a fresh worker process (:mod:`edgeinfer.bench.worker`) so that peak RSS, CPU
time and startup are per configuration; the orchestrator (:mod:`edgeinfer.bench.runner`) collects the
workers' JSON, takes medians over repeats and writes JSON, CSV, a Markdown table and PNG plots.
"""

from __future__ import annotations

SCHEMA_VERSION = 1
