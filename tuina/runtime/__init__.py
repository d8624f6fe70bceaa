"""What every tuina node shares, one module per job: ``startup`` (config at start, one-line
errors, priority), ``outputs`` (seq counters, metadata, lineage), ``replay_gate`` (the recorded
order of a deterministic replay) and ``loop`` (the event loops)."""

from tuina.runtime.loop import GONE, drained, events, stamp_of, supervised_events
from tuina.runtime.outputs import Lineage, Outputs, parse_lineage
from tuina.runtime.replay_gate import (
    REPLAY_INPUT,
    REPLAY_ORDER_ENV,
    REPLAY_STALL_ENV,
    ReplayGate,
    replay_gate,
    unwrap,
)
from tuina.runtime.startup import OPEN3D_PARAMS, PRIORITY_PARAMS, configure, fail, raise_priority

__all__ = ["GONE", "OPEN3D_PARAMS", "PRIORITY_PARAMS", "REPLAY_INPUT", "REPLAY_ORDER_ENV",
           "REPLAY_STALL_ENV", "Lineage", "Outputs", "ReplayGate", "configure", "drained",
           "events", "fail", "parse_lineage", "raise_priority", "replay_gate", "stamp_of",
           "supervised_events", "unwrap"]
