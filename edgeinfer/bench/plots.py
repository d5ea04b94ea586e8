"""PNG plots (matplotlib, Agg backend; in the ``bench`` extra)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _log2_ticks(ax: Any, values: list[int]) -> None:
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(set(values)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())


def _title(run: dict[str, Any]) -> str:
    m, model = run["machine"], run["model"]
    return f"{model.get('file', '?')} on {m.get('cpu_model', '?')} ({m.get('cores_usable', m.get('cores_logical'))} cores)"


def e2e_cdf(run: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    rows = [r for r in run["results"] if r["e2e_cdf"]]
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        key = (
            f"{r['cameras']} camera(s)"
            if r["camera_fps"] is None
            else f"{r['cameras']} camera(s) @ {r['camera_fps']:g} fps"
        )
        groups[key].append(r)
    n = max(1, len(groups))
    cols = min(3, n)
    fig, axes = plt.subplots(
        (n + cols - 1) // cols, cols, figsize=(5 * cols, 3.6 * ((n + cols - 1) // cols)), squeeze=False
    )
    for ax, (key, members) in zip(axes.flat, groups.items(), strict=False):
        for r in members:
            xs = np.asarray(r["e2e_cdf"])
            ax.plot(xs, np.linspace(0, 1, len(xs)), label=f"batch {r['max_batch_size']}")
        ax.set_title(key)
        ax.set_xscale("log")
        ax.set_xlabel("end-to-end latency (ms, log)")
        ax.set_ylabel("fraction of frames")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(groups) :]:
        ax.axis("off")
    fig.suptitle("End-to-end latency CDF - " + _title(run), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def throughput_vs_batch(run: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    rows = [r for r in run["results"] if r["camera_fps"] is None]
    by_cams: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_cams[r["cameras"]].append(r)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for cams, members in sorted(by_cams.items()):
        members.sort(key=lambda r: r["max_batch_size"])
        xs = [r["max_batch_size"] for r in members]
        ys = [r["pipeline_fps"] for r in members]
        lo = [r["pipeline_fps"] - r["spread"]["pipeline_fps"][0] for r in members]
        hi = [r["spread"]["pipeline_fps"][1] - r["pipeline_fps"] for r in members]
        ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, label=f"pipeline, {cams} camera(s)")
    limit: dict[int, list[float]] = defaultdict(list)
    for r in rows:
        limit[r["max_batch_size"]].append(r["limit_fps"])
    if limit:
        xs = sorted(limit)
        ax.plot(xs, [float(np.median(limit[x])) for x in xs], "k--", marker="s", label="limit (bare invoke)")
    naive = [r["naive_fps"] for r in rows if r["naive_fps"]]
    if naive:
        ax.axhline(float(np.median(naive)), color="gray", linestyle=":", label="naive loop")
    _log2_ticks(ax, [r["max_batch_size"] for r in rows])
    ax.set_xlabel("max_batch_size")
    ax.set_ylabel("frames/s (all cameras)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Throughput vs batch size - " + _title(run), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def latency_vs_cameras(run: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    rows = [r for r in run["results"] if r["camera_fps"] is None and r["latency_ms"].get("e2e")]
    by_batch: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_batch[r["max_batch_size"]].append(r)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for batch, members in sorted(by_batch.items()):
        members.sort(key=lambda r: r["cameras"])
        xs = [r["cameras"] for r in members]
        (line,) = ax.plot(
            xs, [r["latency_ms"]["e2e"]["p50"] for r in members], marker="o", label=f"p50, batch {batch}"
        )
        ax.plot(
            xs,
            [r["latency_ms"]["e2e"]["p99"] for r in members],
            marker="x",
            linestyle="--",
            color=line.get_color(),
            label=f"p99, batch {batch}",
        )
    _log2_ticks(ax, [r["cameras"] for r in rows])
    ax.set_yscale("log")
    ax.set_xlabel("cameras (unlimited fps each)")
    ax.set_ylabel("end-to-end latency (ms, log)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("Latency vs camera count - " + _title(run), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_plots(run: dict[str, Any], directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in (
        ("e2e_latency_cdf.png", e2e_cdf),
        ("throughput_vs_batch.png", throughput_vs_batch),
        ("latency_vs_cameras.png", latency_vs_cameras),
    ):
        path = directory / name
        draw(run, path)
        written.append(path)
    return written
