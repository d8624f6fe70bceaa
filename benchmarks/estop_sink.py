"""A stand-in for the robot node's e-stop input: prints how long after the press each e-stop
arrived (the same metadata and ``press_age_ms`` the robot node reports with). Used by
benchmarks/console.py."""

from __future__ import annotations

from dora import Node

from tuina.estop import press_age_ms


def main() -> None:
    for event in Node():
        if event["type"] == "INPUT" and event["id"].startswith("estop"):
            age = press_age_ms(event["metadata"])
            print(f"estop-age-ms {age:.3f}" if age is not None else "estop-age-ms nan",
                  flush=True)
        elif event["type"] == "STOP":
            break


if __name__ == "__main__":
    main()
