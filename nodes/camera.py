"""camera: the RGB-D sensor of the simulated world, with a D455-like depth model.

Inputs: ``rgb``, ``depth`` (clean render), ``camera_info`` from the world.
Outputs: ``rgb``, ``depth`` (z16, 1 mm, noise and holes), ``camera_info``.
The noise of a frame is seeded by (SEED, stamp_ns), so a replay draws the same noise.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tuina.operators.sensor import DepthNoise, apply_depth_noise

from tuina.messages import CAMERA_FRAME, CameraInfo, decode_depth, encode_depth
from tuina.runtime import Outputs, configure, events, fail, stamp_of
from tuina.settings.camera import PARAMS


def load_extrinsics(path: str) -> list[float] | None:
    """base_T_camera from a calibration file, or None when no file is configured."""
    if not path:
        return None
    try:
        data = json.loads(Path(path).read_text())
        T = np.asarray(data["base_T_camera"], float).reshape(4, 4)
    except (OSError, KeyError, ValueError) as err:
        raise ValueError(f"cannot read extrinsics from {path}: {err}; run `tuina calibrate` "
                         "or clear EXTRINSICS_FILE") from None
    return T.ravel().tolist()


def main() -> None:
    """Forward frames through the sensor model."""
    cfg = configure("camera", PARAMS)
    try:
        extrinsics = load_extrinsics(cfg["EXTRINSICS_FILE"])
    except ValueError as err:
        fail("camera", str(err))
    from dora import Node

    node = Node()
    out = Outputs(node)
    noise = DepthNoise(hole_rate=cfg["HOLE_RATE"])
    fx = None
    for event in events(node, lineage=out.lineage):
        stamp = stamp_of(event)
        if event["id"] == "camera_info":
            info = CameraInfo.from_arrow(event["value"])
            info.depth_scale = cfg["DEPTH_SCALE"]
            if extrinsics is not None:
                info.base_T_camera = extrinsics
            fx = info.fx
            out.send("camera_info", info.to_arrow(), stamp, CAMERA_FRAME)
        elif event["id"] == "rgb":
            out.send("rgb", event["value"], stamp, CAMERA_FRAME,
                     width=event["metadata"]["width"], height=event["metadata"]["height"],
                     encoding=event["metadata"]["encoding"])
        elif event["id"] == "depth":
            depth = decode_depth(event["value"], event["metadata"])
            if cfg["DEPTH_NOISE"]:
                rng = np.random.default_rng([cfg["SEED"], stamp])
                focal = fx if fx is not None else depth.shape[0] / 2 / np.tan(np.radians(29))
                depth = apply_depth_noise(depth, focal, noise, rng)
            out.send_encoded("depth", encode_depth(
                depth, out.header("depth", stamp, CAMERA_FRAME), cfg["DEPTH_SCALE"]))


if __name__ == "__main__":
    main()
