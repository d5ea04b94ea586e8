"""Percentiles and the median/spread of repeated measurements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p95", 95.0), ("p99", 99.0))


def summarize(samples: Sequence[float] | np.ndarray) -> dict[str, float] | None:
    """p50/p90/p95/p99/max (and n, mean) of samples; None when there are none."""
    values = np.asarray(samples, dtype=float)
    if values.size == 0:
        return None
    qs = np.percentile(values, [q for _, q in PERCENTILES])
    out = {key: float(v) for (key, _), v in zip(PERCENTILES, qs, strict=True)}
    out["max"] = float(values.max())
    out["mean"] = float(values.mean())
    out["n"] = int(values.size)
    return out


def cdf_points(samples: Sequence[float] | np.ndarray, points: int = 201) -> list[float]:
    """The quantiles at ``points`` evenly spaced probabilities (0..1): enough to draw a CDF."""
    values = np.asarray(samples, dtype=float)
    if values.size == 0:
        return []
    return [round(float(v), 4) for v in np.quantile(values, np.linspace(0.0, 1.0, points))]


def median_spread(values: Sequence[float | None]) -> tuple[float | None, float | None, float | None]:
    """(median, min, max) of the values that are not None."""
    present = [float(v) for v in values if v is not None]
    if not present:
        return None, None, None
    return float(np.median(present)), min(present), max(present)


def merge_latency(
    per_repeat: Sequence[dict[str, Any] | None],
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Median over repeats of each percentile, and each one's [min, max] across repeats."""
    present = [r for r in per_repeat if r]
    if not present:
        return {}, {}
    median: dict[str, float] = {}
    spread: dict[str, list[float]] = {}
    for key in (*(k for k, _ in PERCENTILES), "max", "mean"):
        med, lo, hi = median_spread([r.get(key) for r in present])
        if med is not None and lo is not None and hi is not None:
            median[key] = med
            spread[key] = [lo, hi]
    median["n"] = float(sum(int(r.get("n", 0)) for r in present))
    return median, spread
