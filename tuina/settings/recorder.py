"""The recorder node's env keys, declared once: read by the node and by every tool that
builds its configuration."""

from __future__ import annotations

from tuina.config import Param

PARAMS = [
    Param("RECORDING_DIR", "path", "", "-", "the recording folder (created; must be new)"),
    Param("GRAPH_FILE", "path", "", "-", "the graph being recorded, stored in the manifest"),
    Param("MANDATORY", "bool", False, "-",
          "the session must not go on unrecorded: a failed recording sends estop"),
    Param("TOPICS", "str", "", "-", "comma-separated node/output topics listed in the "
          "manifest even when they carry no message"),
    Param("END_WITH_INPUTS", "str", "", "-", "comma-separated inputs whose closing ends the "
          "recording (leave out those of dynamic nodes, which may never connect); empty: "
          "record until the graph stops"),
]
