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
import resource
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tuina.runtime import configure, fail
from tuina.settings.viewer import PARAMS


def open_stream(cfg: dict[str, Any]) -> tuple[Any, Path | None, Any]:
    """rerun's recording stream with its sink set up; the partial file MODE save writes; the
    web viewer's process MODE serve started."""
    import rerun as rr

    rec = rr.RecordingStream("tuina")
    if cfg["MODE"] == "save":
        out = Path(cfg["RRD_FILE"])
        if not out.parent.is_dir():
            fail("viewer", f"RRD_FILE={out}: no folder {out.parent}; create it or set RRD_FILE "
                 "to a path in an existing folder")
        partial = out.with_name(out.name + ".partial")
        rec.save(partial)
        return rec, partial, None
    if cfg["MODE"] == "spawn":
        try:
            rec.spawn()
        except Exception as err:  # rerun raises its own errors when no viewer can start
            fail("viewer", f"cannot start rerun's viewer ({err}); on a machine without a "
                 "display set MODE: serve or MODE: save")
        return rec, None, None
    # rerun's own server bound to loopback (the SDK's would listen on every interface)
    rerun = shutil.which("rerun") or str(Path(sys.executable).parent / "rerun")
    server = subprocess.Popen([rerun, "--serve-web", "--bind", "127.0.0.1", "--port",
                               str(cfg["GRPC_PORT"]), "--web-viewer-port", str(cfg["WEB_PORT"])],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rec.connect_grpc(f"rerun+http://127.0.0.1:{cfg['GRPC_PORT']}/proxy")
    print(f"viewer: open http://127.0.0.1:{cfg['WEB_PORT']}/?url=rerun%2Bhttp%3A%2F%2F127.0.0.1"
          f"%3A{cfg['GRPC_PORT']}%2Fproxy", flush=True)
    return rec, None, server


def main() -> None:
    """Log every input as its view until the graph stops."""
    cfg = configure("viewer", PARAMS)
    os.nice(cfg["NICE"])
    from dora import Node

    from tuina.session_view import Rates, SessionView

    rec, partial, server = open_stream(cfg)
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
    if server is not None:
        server.terminate()
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    where = f" written to {cfg['RRD_FILE']}" if partial is not None else ""
    if partial is not None:
        os.replace(partial, cfg["RRD_FILE"])
    print(f"viewer: {shown} messages{where}, {cpu.ru_utime + cpu.ru_stime:.1f} s of CPU",
          flush=True)


if __name__ == "__main__":
    main()
