"""The camera node's env keys, declared once: read by the node and by every tool that
builds its configuration."""

from __future__ import annotations

from tuina.config import Param

PARAMS = [
    Param("SEED", "int", 0, "-", "noise seed"),
    Param("DEPTH_NOISE", "bool", True, "-", "apply the D455-like depth model"),
    Param("DEPTH_SCALE", "float", 0.001, "m", "depth unit of the output z16 stream",
          low=1e-5, high=0.01),
    Param("HOLE_RATE", "float", 0.005, "-", "random depth dropout fraction", low=0, high=1),
    Param("EXTRINSICS_FILE", "path", "", "-",
          "JSON with base_T_camera (4x4 row-major); empty: the source's own"),
]
