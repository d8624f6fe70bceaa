"""The console node's env keys, declared once: read by the node and by every tool that
builds its configuration."""

from __future__ import annotations

from tuina.config import RIG_PARAM, Param

PARAMS = [
    RIG_PARAM,
    Param("INSTRUCTION", "str", "", "-", "one step asked for without a person (the words the "
          "instruction box takes); empty: none"),
    Param("STROKE_PX", "floats", [], "px", "that step's drawn stroke u0,v0,u1,v1,..."),
    Param("ROUTINE", "path", "", "-", "a routine file (YAML steps: acupoint or stroke, "
          "technique, pressure) run step after step; relative to the graph's folder"),
    Param("AT_S", "float", 1.0, "s", "event time at which the first step is given", low=0),
    Param("SERVE", "bool", False, "-", "serve the console page: a person instructs, draws, "
          "adjusts and stops; the session then ends only when the person ends it"),
    Param("BIND", "str", "127.0.0.1", "-", "the page's address; any other than loopback "
          "requires TOKEN (one is made and printed when empty)"),
    Param("PORT", "int", 8765, "-", "the page's port", low=1, high=65535),
    Param("TOKEN", "str", "", "-", "the token every request and websocket must carry off "
          "loopback (?token=...)"),
    Param("IMAGE_HZ", "float", 15.0, "Hz", "camera frames sent to each page at most this "
          "often (the newest only: stale frames are dropped)", low=1, high=30),
    Param("DEADMAN", "bool", False, "-", "every page closed in the middle of a step pauses it: "
          "the tool backs off the body and holds until a page resumes (on in the live graphs)"),
    Param("DEADMAN_S", "float", 1.0, "s", "no page open for this long counts as closed",
          low=0.1),
    Param("FORCE_CAP_N", "float", 15.0, "N", "hard contact force cap (the slider stays "
          "under it)", low=1.0, high=50.0),
    Param("NICE", "int", 0, "-", "this node's nice value (higher: the page's work yields the "
          "CPU sooner; the control loop runs SCHED_FIFO above it either way, and the e-stop "
          "passes through this node)", low=0, high=19),
    Param("MIN_FORCE_N", "float", 1.0, "N", "the slider's lowest force target", low=0.1),
]
