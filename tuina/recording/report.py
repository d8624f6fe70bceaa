"""``tuina report``: what a recording shows, as tables, PNG plots and one HTML page.

Per topic: messages, rate and the largest gap (event time), lost messages, and the hop
latency of each output from the message that triggered it (the lineage in its metadata,
both times taken at the recorder). The session: its own summary (``summary.json``, kept in
the recording: every figure defined once, by the session node), and the plots: the force
the controller measured and the world's true contact force against the target (drawn from
the first touch of each contact phase on), the tool's path against the planned one, and
the tracker's motion against the truth where the recording has it. Two figures are the
report's own: ``tool_to_plan_mm_p95`` (95th percentile of each robot state's tool distance
to the nearest planned point, the whole run) and ``tracking_error_mm_mean`` (mean over
every body-motion message of the distance between the tracker's translation and the
world's body translation since the same reference frame). polars does the analysis,
matplotlib the plots.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml

from tuina.recording import RecordingError, read_manifest, read_topic
from tuina.runtime import parse_lineage


def load(folder: Path, manifest: dict[str, Any], topic: str,
         columns: tuple[str, ...] | None = None) -> pl.DataFrame | None:
    """One topic (or some of its columns) as a polars frame; None when it carried nothing."""
    if manifest["topics"].get(topic, {}).get("count", 0) == 0:
        return None
    return pl.from_arrow(read_topic(folder, topic, partial=True, columns=columns))


def input_topics(graph: str) -> dict[str, dict[str, str]]:
    """node -> input -> ``node/output`` it reads, from the recorded graph."""
    spec = yaml.safe_load(graph) if graph else {"nodes": []}
    out: dict[str, dict[str, str]] = {}
    for node in spec.get("nodes", []):
        out[node["id"]] = {name: (m["source"] if isinstance(m, dict) else str(m))
                           for name, m in (node.get("inputs") or {}).items()}
    return out


def topic_table(folder: Path, manifest: dict[str, Any]) -> pl.DataFrame:
    """Counts, rates, gaps, lost messages and hop latencies per topic (no payload is read)."""
    inputs = input_topics(manifest.get("graph", ""))
    recv_by_seq: dict[str, dict[int, int]] = {}
    rows = []
    frames = {t: load(folder, manifest, t, ("stamp_ns", "recv_ns", "metadata"))
              for t in manifest["topics"]}
    for topic, frame in frames.items():
        if frame is not None:
            recv_by_seq[topic] = dict(zip(frame["seq"].to_list(), frame["recv_ns"].to_list(),
                                          strict=True))
    for topic, info in sorted(manifest["topics"].items()):
        frame = frames[topic]
        row: dict[str, Any] = {"topic": topic, "count": info["count"], "lost": info["lost"],
                               "rate_hz": None, "max_gap_ms": None, "hop_ms_p50": None,
                               "hop_ms_p99": None}
        if frame is not None and frame.height > 1:
            stamps = frame["stamp_ns"].sort()
            span = (stamps[-1] - stamps[0]) * 1e-9
            row["rate_hz"] = (frame.height - 1) / span if span > 0 else None
            row["max_gap_ms"] = float(stamps.diff().max()) * 1e-6
        if frame is not None:
            node = topic.split("/")[0]
            hops = []
            for meta, recv in zip(frame["metadata"].to_list(), frame["recv_ns"].to_list(),
                                  strict=True):
                m = json.loads(meta)
                trigger = m.get("trigger", "")
                source = inputs.get(node, {}).get(trigger)
                seq = parse_lineage(m.get("inputs", "")).get(trigger)
                start = recv_by_seq.get(source, {}).get(seq) if source else None
                if start is not None:
                    hops.append((recv - start) * 1e-6)
            if hops:
                row["hop_ms_p50"] = float(np.percentile(hops, 50))
                row["hop_ms_p99"] = float(np.percentile(hops, 99))
        rows.append(row)
    return pl.DataFrame(rows, schema={"topic": pl.String, "count": pl.Int64, "lost": pl.Int64,
                                      "rate_hz": pl.Float64, "max_gap_ms": pl.Float64,
                                      "hop_ms_p50": pl.Float64, "hop_ms_p99": pl.Float64})


def _payload(frame: pl.DataFrame, field: str) -> pl.Series:
    return frame.select(pl.col("payload").list.first().struct.field(field))[field]


def session_series(folder: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """The time series the plots and the figures are made of (seconds from the first)."""
    out: dict[str, Any] = {}
    commands = load(folder, manifest, "force-controller/command")
    truth = load(folder, manifest, "world/ground_truth")
    motion = load(folder, manifest, "icp-tracker/body_motion")
    # one clock for every plot: seconds from the first of these messages (event time)
    t0 = min((f["stamp_ns"].min() for f in (commands, truth, motion) if f is not None),
             default=0)
    if commands is not None:
        measured = _payload(commands, "force_measured_n").to_numpy()
        phases = _payload(commands, "phase").to_list()
        out["force"] = {"t": ((commands["stamp_ns"] - t0) * 1e-9).to_numpy(),
                        "measured": measured,
                        "target": touched_target(_payload(commands, "force_target_n").to_numpy(),
                                                 measured),
                        "phase": phases}
        if truth is not None:
            force = np.stack(_payload(truth, "contact_force").to_numpy())
            out["force"]["true_t"] = ((truth["stamp_ns"] - t0) * 1e-9).to_numpy()
            out["force"]["true"] = np.linalg.norm(force, axis=1)
    states = load(folder, manifest, "robot/robot_state")
    plans = load(folder, manifest, "planner/trajectory")
    if states is not None and plans is not None:
        tool = np.stack(_payload(states, "tool_position").to_numpy())
        planned = np.asarray(_payload(plans, "positions")[-1]).reshape(-1, 3)
        out["path"] = {"tool": tool, "planned": planned}
    if motion is not None:
        moved = np.stack(_payload(motion, "translation").to_numpy())
        series = {"t": ((motion["stamp_ns"] - t0) * 1e-9).to_numpy(),
                  "motion_mm": np.linalg.norm(moved, axis=1) * 1e3}
        if truth is not None:
            body = np.stack(_payload(truth, "body_position").to_numpy())
            by_stamp = dict(zip(truth["stamp_ns"].to_list(), body, strict=True))
            refs = _payload(motion, "reference_stamp_ns").to_list()
            err = [np.linalg.norm((by_stamp[s] - by_stamp[r]) - m) * 1e3
                   if s in by_stamp and r in by_stamp else np.nan
                   for s, r, m in zip(motion["stamp_ns"].to_list(), refs, moved, strict=True)]
            series["error_mm"] = np.asarray(err)
        out["tracking"] = series
    return out


def touched_target(target: np.ndarray, measured: np.ndarray, touch_n: float = 1.0
                   ) -> np.ndarray:
    """The force target from the first touch (measured force over ``touch_n``) of each
    stretch that asks for a force to its end, NaN elsewhere: the plan asks for the force
    while the tool still searches for the surface, not a force anything could hold yet."""
    shown = np.full(len(target), np.nan)
    touched = False
    for i, wanted in enumerate(target):
        touched = wanted > 0 and (touched or measured[i] > touch_n)
        if touched:
            shown[i] = wanted
    return shown


def session_summary(folder: Path) -> dict[str, Any] | None:
    """The session node's summary kept in the recording (``summary.json``), if any."""
    path = folder / "summary.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise RecordingError(f"{path} is not valid JSON ({err}); the session summary is "
                             "damaged, the topics can still be read") from err


def summary(series: dict[str, Any]) -> dict[str, float]:
    """The report's own figures (defined in the module docstring)."""
    out: dict[str, float] = {}
    if "path" in series:
        tool, planned = series["path"]["tool"], series["path"]["planned"]
        d = np.min(np.linalg.norm(tool[:, None, :] - planned[None, :, :], axis=2), axis=1)
        out["tool_to_plan_mm_p95"] = float(np.percentile(d, 95) * 1e3)
    if "tracking" in series and "error_mm" in series["tracking"]:
        out["tracking_error_mm_mean"] = float(np.nanmean(series["tracking"]["error_mm"]))
    return out


def plots(series: dict[str, Any], folder: Path) -> list[Path]:
    """force.png, path.png, tracking.png (those the recording has data for)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    if "force" in series:
        f = series["force"]
        fig, ax = plt.subplots(figsize=(8, 3.5))
        ax.plot(f["t"], f["measured"], label="measured (the controller's wrench estimate)")
        if "true" in f:
            ax.plot(f["true_t"], f["true"], label="true contact force (world)", alpha=0.8)
        ax.plot(f["t"], f["target"], "--", label="target (from the first touch)")
        ax.set(xlabel="time (s)", ylabel="contact force (N)", title="Contact force")
        ax.legend()
        written.append(_save(fig, folder / "force.png"))
    if "path" in series:
        p = series["path"]
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.plot(p["planned"][:, 0], p["planned"][:, 1], "--", label="planned")
        ax.plot(p["tool"][:, 0], p["tool"][:, 1], label="tool")
        ax.set(xlabel="x (m)", ylabel="y (m)", title="Tool path (base frame, top view)")
        ax.axis("equal")
        ax.legend()
        written.append(_save(fig, folder / "path.png"))
    if "tracking" in series:
        tr = series["tracking"]
        fig, ax = plt.subplots(figsize=(8, 3.5))
        ax.plot(tr["t"], tr["motion_mm"], label="body motion (tracker)")
        if "error_mm" in tr:
            ax.plot(tr["t"], tr["error_mm"], label="error against the truth")
        ax.set(xlabel="time (s)", ylabel="mm", title="Body tracking")
        ax.legend()
        written.append(_save(fig, folder / "tracking.png"))
    return written


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def write_html(path: Path, title: str, topics: pl.DataFrame, headline: dict[str, Any],
               images: list[Path], manifest: dict[str, Any]) -> None:
    """One self-contained page: tables and the plots inlined as base64 PNG."""
    def cell(value: Any) -> str:
        return "" if value is None else (f"{value:.3f}" if isinstance(value, float)
                                         else html.escape(str(value)))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in topics.columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>"
                   for row in topics.iter_rows())
    numbers = "".join(f"<tr><td>{html.escape(k)}</td><td>{cell(v)}</td></tr>"
                      for k, v in headline.items())
    pictures = "".join(
        f'<img alt="{p.stem}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode()}">' for p in images)
    state = "complete" if manifest.get("complete") else (
        "INCOMPLETE: " + manifest.get("incomplete_reason", "ended early"))
    path.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>Recording {html.escape(state)}.</p>"
        f"<h2>Session</h2><table>{numbers}</table><h2>Topics</h2><table><tr>{head}</tr>"
        f"{body}</table><h2>Plots</h2>{pictures}</body></html>")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``tuina report`` options."""
    parser.add_argument("recording", help="recording folder")
    parser.add_argument("-o", "--output", default=None,
                        help="where the plots and report.html go (default <recording>/report)")


def main(args: Any) -> int:
    """``tuina report FOLDER``: print the tables, write the plots and report.html."""
    folder = Path(args.recording)
    try:
        manifest = read_manifest(folder)
        topics = topic_table(folder, manifest)
        series = session_series(folder, manifest)
        session = session_summary(folder)
    except RecordingError as err:
        print(f"tuina report: error: {err}", file=sys.stderr)
        return 2
    own = summary(series)
    headline = {**{k: v for k, v in (session or {}).items()
                   if isinstance(v, int | float | str | None) and not isinstance(v, bool)},
                **({} if session is None else {"ok": session.get("ok")}), **own}
    out = Path(args.output) if args.output else folder / "report"
    out.mkdir(parents=True, exist_ok=True)
    images = plots(series, out)
    write_html(out / "report.html", f"tuina report: {folder.name}", topics, headline, images,
               manifest)
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=160, float_precision=2):
        print(topics)
    if session is None:
        print("no session summary in this recording (summary.json): it was made before the "
              "summary was kept with it, or the session did not end")
    for key, value in headline.items():
        text = "- (not measured)" if value is None else (
            f"{value:.3f}" if isinstance(value, float) else str(value))
        print(f"{key:32s} {text}")
    if not manifest.get("complete"):
        print(f"recording INCOMPLETE: {manifest.get('incomplete_reason', 'it ended early')}")
    print(f"plots and report.html in {out}")
    return 0
