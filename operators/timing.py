"""Control-loop timing from the robot's side: state periods and state->command latency."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np


@dataclass
class LoopTimer:
    """Collects, in wall time given by the caller, when each robot state left and when the
    command computed from it came back (commands carry their state's stamp)."""

    keep: int = 256  # states remembered while their command is on the way
    sent: OrderedDict[int, float] = field(default_factory=OrderedDict)
    state_times: list[float] = field(default_factory=list)
    command_times: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    def published(self, stamp_ns: int, wall_s: float) -> None:
        """A robot state with this stamp was sent at wall time ``wall_s``."""
        self.sent[stamp_ns] = wall_s
        self.state_times.append(wall_s)
        while len(self.sent) > self.keep:
            self.sent.popitem(last=False)

    def commanded(self, stamp_ns: int, wall_s: float) -> None:
        """A command for the state with this stamp arrived at wall time ``wall_s``."""
        self.command_times.append(wall_s)
        start = self.sent.pop(stamp_ns, None)
        if start is not None:
            self.latencies.append(wall_s - start)

    def summary(self) -> dict[str, float]:
        """Rates (Hz), period jitter p99 (|period - median|, ms), latency p50 / p99 (ms)."""
        out: dict[str, float] = {}
        for name, times in (("state", self.state_times), ("command", self.command_times)):
            t = np.asarray(times)
            if len(t) > 2:
                periods = np.diff(t)
                out[f"{name}_hz"] = float((len(t) - 1) / (t[-1] - t[0]))
                out[f"{name}_jitter_p99_ms"] = float(
                    np.percentile(np.abs(periods - np.median(periods)), 99) * 1e3)
        if self.latencies:
            lat = np.asarray(self.latencies) * 1e3
            out["latency_p50_ms"] = float(np.percentile(lat, 50))
            out["latency_p99_ms"] = float(np.percentile(lat, 99))
        return out
