"""Markdown tables, the CSV, and the comparison of two runs."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

STAGE_COLUMNS = ("e2e", "queue", "preprocess", "inference", "postprocess", "handoff", "output", "tracking")
PCTS = ("p50", "p90", "p95", "p99", "max")


def _f(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _with_spread(value: float | None, spread: Sequence[float | None] | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    if not spread or spread[0] is None or spread[1] is None or spread[0] == spread[1]:
        return _f(value, digits)
    return f"{value:.{digits}f} [{spread[0]:.{digits}f}-{spread[1]:.{digits}f}]"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _config(row: dict[str, Any]) -> str:
    fps = "max" if row["camera_fps"] is None else f"{row['camera_fps']:g}"
    return f"{row['cameras']} cam, b{row['max_batch_size']}, {fps} fps"


def main_table(rows: Sequence[dict[str, Any]]) -> str:
    header = (
        "config",
        "pipeline fps",
        "limit fps",
        "naive fps",
        "naive_tuned fps",
        "/limit",
        "/naive",
        "/naive_tuned",
        "mean batch",
        "e2e p50 ms",
        "e2e p99 ms",
        "p50 e2e - p50 invoke ms",
        "dropped",
        "CPU %",
        "peak RSS MB",
    )
    body = []
    for r in rows:
        s, lat, ls = r["spread"], r["latency_ms"].get("e2e", {}), r["spread"]["latency_ms"].get("e2e", {})
        body.append(
            (
                _config(r),
                _with_spread(r["pipeline_fps"], s["pipeline_fps"]),
                _with_spread(r["limit_fps"], s["limit_fps"]),
                _with_spread(r["naive_fps"], s["naive_fps"]),
                _with_spread(r.get("naive_tuned_fps"), s.get("naive_tuned_fps")),
                _with_spread(r["ratios"]["pipeline_vs_limit"], s["pipeline_vs_limit"], 2),
                _with_spread(r["ratios"]["pipeline_vs_naive"], s["pipeline_vs_naive"], 2),
                _with_spread(r["ratios"].get("pipeline_vs_naive_tuned"), s.get("pipeline_vs_naive_tuned"), 2),
                _with_spread(r["mean_batch_size"], s["mean_batch_size"], 2),
                _with_spread(lat.get("p50"), ls.get("p50")),
                _with_spread(lat.get("p99"), ls.get("p99")),
                _with_spread(r["ratios"]["p50_e2e_minus_p50_limit_ms"], s["p50_e2e_minus_p50_limit_ms"]),
                _f(r["dropped"], 0),
                _with_spread(r["cpu_percent"], s["cpu_percent"], 0),
                f"{_f(r['peak_rss_mb'], 0)} ({_f(r['peak_rss_excl_ring_mb'], 0)})",
            )
        )
    return _table(header, body)


def sweep_table(rows: Sequence[dict[str, Any]]) -> str:
    """The limit's candidates (medians over repeats) and the pipeline's own configuration."""
    header = (
        "config",
        "pipeline's detector",
        *(f"{m['instances']}x{m['threads']} b{m['batch']}" for m in rows[0]["sweep"]),
    )
    body = []
    for r in rows:
        d = r.get("detector") or {}
        mine = f"{d.get('instances')}x{d.get('threads')} b{d.get('batch')} ({d.get('how')})" if d else "-"
        if d.get("nice") is not None:
            mine += f", nice {d['nice']}"
        body.append(
            (_config(r), mine, *(f"{_f(m['fps'], 0)} fps / {_f(m['p50_ms'])} ms" for m in r["sweep"]))
        )
    return _table(header, body)


def stage_table(rows: Sequence[dict[str, Any]]) -> str:
    header = ("config", *(f"{s} ms p50/p90/p95/p99/max" for s in STAGE_COLUMNS))
    body = []
    for r in rows:
        cells = [_config(r)]
        for stage in STAGE_COLUMNS:
            lat = r["latency_ms"].get(stage) or {}
            cells.append(" / ".join(_f(lat.get(p)) for p in PCTS) if lat else "-")
        body.append(cells)
    return _table(header, body)


CPU_GROUPS = ("inference", "native", "stages", "event loop", "store", "captures", "other")


def cpu_table(rows: Sequence[dict[str, Any]]) -> str:
    """Per config, ms of CPU per processed frame in each group of threads, their sum, and the fps that
    sum allows on every usable core (the CPU-bound ceiling), also as a multiple of the naive loop."""
    rows = [r for r in rows if r.get("cpu_ms_per_frame")]
    if not rows:
        return "(not measured: per-thread CPU needs Linux /proc)"
    header = ("config", *CPU_GROUPS, "all", "CPU-bound fps", "CPU-bound / naive")
    body = []
    for r in rows:
        groups = r["cpu_ms_per_frame"]
        bound, spread = r.get("cpu_bound_fps"), r["spread"].get("cpu_bound_fps")
        body.append(
            (
                _config(r),
                *(_f(groups.get(g), 2) for g in CPU_GROUPS),
                _f(sum(groups.values()), 2),
                _with_spread(bound, spread, 0),
                _with_spread(r["ratios"].get("cpu_bound_vs_naive"), r["spread"].get("cpu_bound_vs_naive"), 2),
            )
        )
    return _table(header, body)


def targets_table(targets: Sequence[dict[str, Any]]) -> str:
    mark = {True: "met", False: "**missed**", None: "n/a"}
    return _table(
        ("target", "goal", "measured", "result", "note"),
        [(t["target"], t["goal"], t["measured"], mark[t["met"]], t.get("note", "")) for t in targets],
    )


def markdown(run: dict[str, Any]) -> str:
    m, model = run["machine"], run["model"]
    rows = run["results"]
    parts = [
        f"Machine: {m.get('cpu_model')}, {m.get('cores_usable', m.get('cores_logical'))} cores, "
        f"Python {m.get('python')}; model {model.get('file', '?')} ({model.get('backend', '?')} "
        f"{model.get('runtime_version', '?')}), input {model.get('input', {}).get('hw', '?')}",
        "",
        "Medians over repeats, [min-max across repeats]. /limit and /naive are paired per repeat. "
        "limit: the best bare configuration of the sweep below; naive: one interpreter with the runtime's "
        "default threads, one frame at a time; naive_tuned: the same with the best thread count for one "
        "interpreter. Peak RSS in parentheses: without the synthetic cameras' prerendered rings.",
        "",
        main_table(rows),
        "",
        "The limit's sweep: instances x threads, batch; bare runs, all instances at once (images/s, p50 of a run):",
        "",
        sweep_table(rows),
        "",
        "Latency per stage (medians over repeats; handoff = e2e minus the four stages before it, i.e. waiting "
        "between stages; output is per store transaction, not per frame):",
        "",
        stage_table(rows),
        "",
        "Where the CPU goes: ms of CPU per processed frame by thread group (inference: the instances' threads; "
        "native: threads Python did not start, such as a runtime's own pool; stages: prepare, decode, "
        "tracking and outcomes; medians over repeats). CPU-bound fps = usable cores x 1000 / all: the most "
        "this cost per frame allows however the work is scheduled.",
        "",
        cpu_table(rows),
        "",
        targets_table(run["targets"]),
    ]
    if run.get("errors"):
        parts += ["", "Errors:", *(f"- {e.splitlines()[0]}" for e in run["errors"])]
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------------------- CSV


def flatten(row: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in row.items():
        if key in ("e2e_cdf", "spread", "latency_ms"):
            continue
        if isinstance(value, dict):
            for k, v in value.items():
                flat[f"{key}_{k}"] = v
        else:
            flat[key] = value
    for stage in STAGE_COLUMNS:
        lat = row["latency_ms"].get(stage) or {}
        for p in (*PCTS, "mean", "n"):
            flat[f"latency_{stage}_{p}_ms" if p != "n" else f"latency_{stage}_n"] = lat.get(p)
    for key in ("pipeline_fps", "limit_fps", "naive_fps"):
        lo, hi = row["spread"][key]
        flat[f"{key}_min"], flat[f"{key}_max"] = lo, hi
    return flat


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
    flat = [flatten(r) for r in rows]
    fields: list[str] = []
    for f in flat:
        fields += [k for k in f if k not in fields]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields)
    writer.writeheader()
    writer.writerows(flat)
    return out.getvalue()


def write_csv(rows: Sequence[dict[str, Any]], path: Path) -> None:
    path.write_text(to_csv(rows), encoding="utf-8")


# ---------------------------------------------------------------------------- compare


def _overlap(a: Sequence[float | None], b: Sequence[float | None]) -> bool:
    a_lo, a_hi, b_lo, b_hi = a[0], a[1], b[0], b[1]
    if a_lo is None or a_hi is None or b_lo is None or b_hi is None:
        return True
    return not (a_hi < b_lo or b_hi < a_lo)


def compare(base: dict[str, Any], new: dict[str, Any]) -> str:
    """Same configurations side by side; a change counts only when the repeats' ranges do not overlap."""
    old_rows = {r["config"]: r for r in base["results"]}
    header = ("config", "pipeline fps", "change", "e2e p50 ms", "e2e p99 ms", "peak RSS MB", "verdict")
    body = []
    for r in new["results"]:
        o = old_rows.get(r["config"])
        if o is None:
            continue
        fps_o, fps_n = o["pipeline_fps"], r["pipeline_fps"]
        change = (fps_n / fps_o - 1) * 100 if fps_o else 0.0
        e2e_o, e2e_n = o["latency_ms"]["e2e"], r["latency_ms"]["e2e"]
        same_fps = _overlap(o["spread"]["pipeline_fps"], r["spread"]["pipeline_fps"])
        same_p50 = _overlap(o["spread"]["latency_ms"]["e2e"]["p50"], r["spread"]["latency_ms"]["e2e"]["p50"])
        if same_fps and same_p50:
            verdict = "within noise"
        elif fps_n > fps_o and e2e_n["p50"] <= e2e_o["p50"]:
            verdict = "better"
        elif fps_n < fps_o and e2e_n["p50"] >= e2e_o["p50"]:
            verdict = "worse"
        else:
            verdict = "mixed"
        body.append(
            (
                r["config"],
                f"{fps_o:.1f} -> {fps_n:.1f}",
                f"{change:+.1f}%",
                f"{e2e_o['p50']:.1f} -> {e2e_n['p50']:.1f}",
                f"{e2e_o['p99']:.1f} -> {e2e_n['p99']:.1f}",
                f"{_f(o['peak_rss_mb'], 0)} -> {_f(r['peak_rss_mb'], 0)}",
                verdict,
            )
        )
    notes = []
    if base.get("machine", {}).get("cpu_model") != new.get("machine", {}).get("cpu_model"):
        notes.append("warning: the two runs are from different CPUs")
    if base.get("model", {}).get("sha256") != new.get("model", {}).get("sha256"):
        notes.append("warning: the two runs used different models")
    return "\n".join([*notes, _table(header, body)]) + "\n"
