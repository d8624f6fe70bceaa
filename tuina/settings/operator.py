"""The operator node's env keys, declared once: read by the node and by every tool that
builds its configuration."""

from __future__ import annotations

from tuina.config import Param

PARAMS = [
    Param("INSTRUCTION", "str", "press Zusanli with moderate pressure", "-",
          "what the operator asks for"),
    Param("STROKE_PX", "floats", [], "px", "optional drawn stroke u0,v0,u1,v1,..."),
    Param("AT_S", "float", 1.0, "s", "event time at which the instruction is given", low=0),
]
