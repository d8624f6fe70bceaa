"""world: the simulated massage world (MuJoCo physics, RGB-D renderer, and the arm's server:
franky-sim's libfranka protocol for an FR3, rosbridge for a Baxter left arm).

Inputs: ``done`` (events of the session node; the world closes when the session is done).
Outputs: ``rgb``, ``depth`` (clean render, z16 at 0.1 mm), ``camera_info``, ``ground_truth``,
all stamped with simulation time at the frame rate.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from tuina.messages import (
    BASE_FRAME,
    CAMERA_FRAME,
    CameraInfo,
    GroundTruth,
    SessionEvent,
    encode_depth,
    encode_rgb,
)
from tuina.runtime import Outputs, configure, fail
from tuina.settings.world import PARAMS, world_config
from tuina.sim.world import MassageWorld, RenderingUnavailable, WorldConfig


def open_world(wcfg: WorldConfig) -> MassageWorld:
    """The started world (physics, renderer, the arm's server), or one error line and exit."""
    try:
        return MassageWorld(wcfg).__enter__()
    except (RenderingUnavailable, ValueError) as err:
        fail("world", str(err))
    except OSError as err:
        if wcfg.robot == "fr3":
            fail("world", f"cannot serve the simulated FR3 on {wcfg.hostname}: {err}; "
                 "set FRANKA_HOSTNAME to a free loopback address")
        fail("world", f"cannot serve the simulated Baxter's rosbridge on {wcfg.hostname}:"
             f"{wcfg.rosbridge_port}: {err}; set ROSBRIDGE_PORT to a free port")


def main() -> None:
    """Run the world until the session node says it is done."""
    cfg = configure("world", PARAMS)
    # rendering holds the GIL in long C calls; a short switch interval keeps the 1 kHz
    # physics thread on time
    sys.setswitchinterval(5e-4)
    from dora import Node

    wcfg = world_config(cfg)
    node = Node()
    out = Outputs(node)
    world = open_world(wcfg)
    try:
        fx, fy, cx, cy = world.intrinsics()
        info = CameraInfo(wcfg.width, wcfg.height, fx, fy, cx, cy, [0.0] * 5,
                          world.nominal_base_T_camera().ravel().tolist(), 1e-4).to_arrow()
        period_ns = int(1e9 / cfg["FPS"])
        next_frame = 0
        count = 0
        done_at: float | None = None
        frozen = None  # the frame a frozen camera repeats
        while True:
            event = node.next(timeout=0.002)
            if event is not None:
                if event["type"] == "STOP":
                    break
                if event["type"] == "INPUT" and event["id"] == "done":
                    ev = SessionEvent.from_arrow(event["value"])
                    if ev.kind == "done" and done_at is None:
                        done_at = time.monotonic()
            if done_at is not None and time.monotonic() - done_at > cfg["CLOSE_DELAY_S"]:
                break
            if world.stamp_ns < next_frame:
                continue
            frame = world.render(rgb=count % cfg["RGB_EVERY"] == 0)
            count += 1
            if wcfg.fault in ("camera_freeze", "depth_nan") and world.fault_active():
                if wcfg.fault == "depth_nan":
                    frame.depth[:] = np.nan
                else:
                    # the driver re-delivers its last frame, stamp and all
                    frozen = frozen or frame
                    frame = frozen
            next_frame = max(next_frame + period_ns, frame.stamp_ns)
            if frame.rgb.size:
                out.send_encoded("rgb", encode_rgb(frame.rgb, out.header(
                    "rgb", frame.stamp_ns, CAMERA_FRAME)))
            out.send_encoded("depth", encode_depth(frame.depth, out.header(
                "depth", frame.stamp_ns, CAMERA_FRAME), depth_scale=1e-4))
            out.send("camera_info", info, frame.stamp_ns, CAMERA_FRAME)
            truth = GroundTruth(**world.truth())
            out.send("ground_truth", truth.to_arrow(), frame.stamp_ns, BASE_FRAME)
    finally:
        world.__exit__(None, None, None)


if __name__ == "__main__":
    main()
