"""The replayer node's env keys, declared once: read by the node and by every tool that
builds its configuration."""

from __future__ import annotations

from tuina.config import Param

PARAMS = [
    Param("PLAN_FILE", "path", "", "-", "the replay plan tuina replay writes (JSON)"),
]
