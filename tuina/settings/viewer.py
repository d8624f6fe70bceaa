"""The viewer node's env keys, declared once: read by the node and by every tool that
builds its configuration."""

from __future__ import annotations

from tuina.config import Param

PARAMS = [
    Param("MODE", "choice", "save", "-", "save: write RRD_FILE (open it with `rerun FILE`); "
          "spawn: start rerun's native viewer on this machine; serve: rerun's web viewer on "
          "loopback at WEB_PORT", choices=("save", "spawn", "serve")),
    Param("RRD_FILE", "path", "recordings/session.rrd", "-", "the rerun recording MODE save "
          "writes (beside it first, renamed when the session ends)"),
    Param("WEB_PORT", "int", 9090, "-", "MODE serve: the web viewer's port on 127.0.0.1",
          low=1, high=65535),
    Param("GRPC_PORT", "int", 9876, "-", "MODE serve: the port on 127.0.0.1 the web viewer "
          "reads the session from", low=1, high=65535),
    Param("ARM", "choice", "fr3", "-", "the arm drawn from its URDF model by the joint states",
          choices=("fr3", "baxter_left")),
    Param("IMAGE_HZ", "float", 10.0, "Hz", "colour and depth images logged at most this "
          "often (the rest dropped)", low=0.1, high=60),
    Param("CLOUD_HZ", "float", 2.0, "Hz", "the body cloud logged at most this often",
          low=0.1, high=30),
    Param("ARM_HZ", "float", 30.0, "Hz", "the arm and the tool path logged at most this often",
          low=0.1, high=1000),
    Param("NICE", "int", 10, "-", "this node's nice value: the viewer yields the CPU to the "
          "control loop", low=0, high=19),
]
