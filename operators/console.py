"""The operator's console, free of the runtime: routine files, the queue of steps a session
runs, who may talk to the console's server, and the state every open page is shown."""

from __future__ import annotations

import hmac
import ipaddress
import json
import math
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tuina.operators.instructions import (
    PRESSURE_WORDS,
    TECHNIQUE_WORDS,
    UnknownAcupoint,
    parse_instruction,
)


class RoutineError(ValueError):
    """A routine file that cannot be run; the message names the problem and the fix."""


@dataclass(frozen=True)
class Step:
    """One step of a session: what is asked, in the words the parser takes, and an optional
    stroke drawn on the camera image (flat pixels u0, v0, u1, v1, ...; one point: a click,
    pressed or kneaded there)."""

    text: str
    stroke_px: tuple[float, ...] = ()

    def check(self) -> None:
        """UnknownAcupoint / ValueError when the grounding node would refuse this step."""
        if len(self.stroke_px) % 2:
            raise ValueError("a drawn stroke needs pairs of pixels u,v")
        if not all(math.isfinite(v) for v in self.stroke_px):
            raise ValueError("a drawn stroke's pixels must be finite numbers")
        parsed = parse_instruction(self.text, require_acupoint=not self.stroke_px)
        if len(self.stroke_px) == 2 and parsed.technique == "stroke":
            raise ValueError("a stroke needs at least two points; one point (a click) is "
                             "pressed or kneaded")


def step_from_entry(entry: Any, where: str) -> Step:
    """One routine entry -> a Step; RoutineError naming the entry and the fix."""
    if not isinstance(entry, dict):
        raise RoutineError(f"{where}: a step is a mapping with 'acupoint' or 'stroke', got "
                           f"{entry!r}")
    unknown = set(entry) - {"acupoint", "stroke", "technique", "pressure", "duration_s"}
    if unknown:
        raise RoutineError(f"{where}: unknown key(s) {sorted(unknown)}; a step takes "
                           "acupoint or stroke, technique, pressure, duration_s")
    technique = str(entry.get("technique", "stroke" if "stroke" in entry else "press"))
    pressure = str(entry.get("pressure", "moderate"))
    if technique not in TECHNIQUE_WORDS:
        raise RoutineError(f"{where}: technique {technique!r}; use one of "
                           f"{', '.join(TECHNIQUE_WORDS)}")
    if pressure not in PRESSURE_WORDS:
        raise RoutineError(f"{where}: pressure {pressure!r}; use one of "
                           f"{', '.join(PRESSURE_WORDS)}")
    if ("acupoint" in entry) == ("stroke" in entry):
        raise RoutineError(f"{where}: give either 'acupoint' (a name the instruction box "
                           "takes) or 'stroke' (pixels u0,v0,u1,v1,... drawn on the image)")
    hold = ""
    if "duration_s" in entry:
        duration = entry["duration_s"]
        if isinstance(duration, bool) or not isinstance(duration, (int, float)):
            raise RoutineError(f"{where}: duration_s must be a number of seconds, got "
                               f"{duration!r}")
        hold = f" for {duration:g} s"
    if "acupoint" in entry:
        step = Step(f"{technique} {entry['acupoint']} with {pressure} pressure{hold}")
    else:
        try:
            pixels = tuple(float(v) for v in entry["stroke"])
        except (TypeError, ValueError):
            raise RoutineError(f"{where}: stroke must be a list of pixel numbers "
                               f"u0,v0,u1,v1,...; got {entry['stroke']!r}") from None
        step = Step(f"{technique} with {pressure} pressure{hold}", pixels)
    try:
        step.check()
    except (UnknownAcupoint, ValueError) as err:
        raise RoutineError(f"{where}: {err}") from None
    return step


def load_routine(path: str | Path) -> list[Step]:
    """The steps of a routine file (YAML ``steps:`` list); RoutineError naming what is wrong."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise RoutineError(f"cannot read the routine {path} ({err.strerror}); set ROUTINE "
                           "to a routine file (see dataflows/routines/)") from None
    except yaml.YAMLError as err:
        raise RoutineError(f"the routine {path} is not YAML ({' '.join(str(err).split())})"
                           ) from None
    steps = data.get("steps") if isinstance(data, dict) else None
    if not isinstance(steps, list) or not steps:
        raise RoutineError(f"the routine {path} has no 'steps:' list; write one step per "
                           "entry (acupoint or stroke, technique, pressure)")
    return [step_from_entry(entry, f"{path} step {i + 1}") for i, entry in enumerate(steps)]


class StepQueue:
    """The steps a session runs, one at a time: the first at ``first_at_ns`` of event time,
    the next once the session reports the previous one done. A console with a person at it
    takes more steps until it is finished; a routine ends with its last step."""

    def __init__(self, steps: list[Step], first_at_ns: int, open_ended: bool) -> None:
        self.waiting: deque[Step] = deque(steps)
        self.first_at_ns = first_at_ns
        self.open_ended = open_ended
        self.running: Step | None = None
        self.sent = 0
        self.finished = False

    def add(self, step: Step) -> None:
        """A step asked for on the page: runs after those waiting."""
        self.waiting.append(step)

    def due(self, stamp_ns: int) -> Step | None:
        """The step to send now, if any (nothing while one runs)."""
        if self.running is not None or self.finished or not self.waiting or \
                stamp_ns < self.first_at_ns:
            return None
        self.running = self.waiting.popleft()
        self.sent += 1
        return self.running

    @property
    def last(self) -> bool:
        """Whether the running step is the session's last: nothing waits and no person
        can add more."""
        return not self.waiting and not self.open_ended

    def step_done(self) -> None:
        self.running = None

    def finish(self) -> bool:
        """No more steps; True when nothing runs (the session can end now)."""
        self.finished = True
        self.waiting.clear()
        return self.running is None


def step_event_detail(index: int, step: Step, last: bool) -> str:
    """What a ``step`` event tells the session (JSON)."""
    return json.dumps({"index": index, "text": step.text, "drawn": bool(step.stroke_px),
                       "last": last})


# --- who may talk to the server ----------------------------------------------------------

def is_loopback(host: str) -> bool:
    """Whether a bind address only takes connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def token_ok(required: str, given: str | None) -> bool:
    """True when no token is required or the given one matches (in constant time)."""
    return not required or (given is not None and hmac.compare_digest(required, given))


def origin_ok(origin: str | None, host: str | None) -> bool:
    """A browser's Origin must name the host it talks to (no other site's page may drive the
    robot); requests without an Origin (not from a page) are judged by the token alone."""
    if origin is None:
        return True
    return bool(host) and urlsplit(origin).netloc == host


# --- what the page shows -------------------------------------------------------------------

@dataclass
class PageState:
    """Everything an open page is shown besides the image, kept for a page that opens late."""

    phase: str = ""
    force_t: deque = field(default_factory=lambda: deque(maxlen=600))
    force_n: deque = field(default_factory=lambda: deque(maxlen=600))
    force_target: deque = field(default_factory=lambda: deque(maxlen=600))
    events: deque = field(default_factory=lambda: deque(maxlen=60))
    steps: list = field(default_factory=list)
    target: dict = field(default_factory=dict)  # box, centre, stroke px of the step's target
    tool_px: list = field(default_factory=list)  # the tool and its planned path in pixels
    plan_px: list = field(default_factory=list)
    normal_px: list = field(default_factory=list)  # the target and the tip of its normal
    tracker: str = ""
    robot: str = ""
    estopped: bool = False
    paused: bool = False  # the running step is paused: the arm holds off the body
    pressure_n: float | None = None  # the force target the person set live, if any
    ended: bool = False

    def snapshot(self) -> dict[str, Any]:
        """The JSON-able state (figures rounded for the wire)."""
        return {"phase": self.phase, "force_t": [round(v, 3) for v in self.force_t],
                "force_n": [round(v, 3) for v in self.force_n],
                "force_target": [round(v, 3) for v in self.force_target],
                "events": list(self.events), "steps": self.steps, "target": self.target,
                "tool_px": self.tool_px, "plan_px": self.plan_px,
                "normal_px": self.normal_px, "tracker": self.tracker,
                "robot": self.robot, "estopped": self.estopped, "paused": self.paused,
                "pressure_n": self.pressure_n,
                "ended": self.ended}


def clamp_force(value: float, low_n: float, cap_n: float) -> float:
    """A force target the person set, within what the session allows."""
    if not math.isfinite(value):
        raise ValueError("the force target must be a number")
    return min(max(value, low_n), cap_n)
