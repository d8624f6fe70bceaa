"""viewer: the session in rerun, live, on the event-time timeline.

Inputs (any subset; each named by the stream it carries): ``rgb``, ``depth``, ``camera_info``,
``targets``, ``target_pose``, ``trajectory``, ``robot_state``, ``command``, ``body_motion``,
``ground_truth`` and ``events`` / ``events_*``. Give ``rgb`` and ``depth`` ``queue_size: 1``:
a frame the viewer has not taken yet is replaced by the newer one.
Outputs: none.

The views are ``tuina.session_view``'s (``tuina export --rrd`` writes the same from a
recording). MODE chooses where they go: an .rrd file, rerun's native viewer, or its web
viewer. The node runs at NICE and logs heavy views at most at their rates, so it never holds
the control loop back; nothing it does reaches the robot.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from tuina.runtime import configure, fail
from tuina.settings.viewer import PARAMS


def open_stream(cfg: dict[str, Any]) -> tuple[Any, Path | None]:
    """rerun's recording stream with its sink set up; the partial file MODE save writes."""
    import rerun as rr

    rec = rr.RecordingStream("tuina")
    if cfg["MODE"] == "save":
        out = Path(cfg["RRD_FILE"])
        if not out.parent.is_dir():
            fail("viewer", f"RRD_FILE={out}: no folder {out.parent}; create it or set RRD_FILE "
                 "to a path in an existing folder")
        partial = out.with_name(out.name + ".partial")
        rec.save(partial)
        return rec, partial
    if cfg["MODE"] == "spawn":
        try:
            rec.spawn()
        except Exception as err:  # rerun raises its own errors when no viewer can start
            fail("viewer", f"cannot start rerun's viewer ({err}); on a machine without a "
                 "display set MODE: serve or MODE: save")
        return rec, None
    uri = rec.serve_grpc()
    rr.serve_web_viewer(web_port=cfg["WEB_PORT"], open_browser=False, connect_to=uri)
    print(f"viewer: open http://127.0.0.1:{cfg['WEB_PORT']}", flush=True)
    return rec, None


def main() -> None:
    """Log every input as its view until the graph stops."""
    cfg = configure("viewer", PARAMS)
    os.nice(cfg["NICE"])
    from dora import Node

    from tuina.session_view import Rates, SessionView

    rec, partial = open_stream(cfg)
    view = SessionView(rec, cfg["ARM"], Rates(cfg["IMAGE_HZ"], cfg["CLOUD_HZ"], cfg["ARM_HZ"]))
    node = Node()
    shown = 0
    for event in node:
        if event["type"] == "STOP":
            break
        if event["type"] != "INPUT" or "stamp_ns" not in event["metadata"]:
            continue
        try:
            view.show(event["id"], int(event["metadata"]["stamp_ns"]), event["value"],
                      event["metadata"])
            shown += 1
        except (ValueError, KeyError) as err:  # a message off the contract: shown, skipped
            print(f"viewer: {event['id']} not shown ({err})", file=sys.stderr, flush=True)
    rec.flush()
    rec.disconnect()
    if partial is not None:
        os.replace(partial, cfg["RRD_FILE"])
        print(f"viewer: {shown} messages written to {cfg['RRD_FILE']}", flush=True)


if __name__ == "__main__":
    main()
