"""operator: the person at the console. Sends the instruction of the session.

Inputs: ``camera_info`` (the clock: the instruction goes out once the camera runs).
Outputs: ``instruction``.
"""

from __future__ import annotations

from tuina.messages import CAMERA_FRAME, Instruction
from tuina.runtime import Outputs, configure, events, stamp_of
from tuina.settings.operator import PARAMS


def main() -> None:
    """Send the instruction once, at AT_S of camera time."""
    cfg = configure("operator", PARAMS)
    if len(cfg["STROKE_PX"]) % 2:
        from tuina.runtime import fail

        fail("operator", "STROKE_PX needs pairs of pixel coordinates u,v")
    from dora import Node

    node = Node()
    out = Outputs(node)
    sent = False
    for event in events(node, lineage=out.lineage):
        stamp = stamp_of(event)
        if not sent and stamp >= cfg["AT_S"] * 1e9:
            msg = Instruction(cfg["INSTRUCTION"], list(cfg["STROKE_PX"]))
            out.send("instruction", msg.to_arrow(), stamp, CAMERA_FRAME)
            print(f"operator: {cfg['INSTRUCTION']!r}", flush=True)
            sent = True


if __name__ == "__main__":
    main()
