"""Reproducible evaluations in the simulated world (``tuina eval ...``): one module per
evaluation, each with its own options (``add_arguments``) and ``main``."""

from __future__ import annotations

import argparse
import importlib
from typing import Any

EVALUATIONS = {  # name: one-line help
    "perception": ("VBRM positioning protocol: 9 targets, near/middle/far, calibration, normals"),
    "tracking": ("follow a moving body: registration error, depth->motion time, tool-to-acupoint "
                 "distance in contact"),
    "force": ("contact scenarios: steady press, stroke, moving body; force errors, overshoot, "
              "loop rate and jitter"),
    "safety": ("fault injection mid-press: nodes killed or stalled, sensor faults, a body jerk, "
               "the e-stop; true force, release time and tool motion after release"),
    "coverage": ("every atlas acupoint asked for in a real session each: pressed (errors on the "
                 "truth), refused (the reason) or wrong"),
    "registration": ("the body off its expected pose (seeded placements): every pressable "
                     "acupoint found within 3 mm, refused, or wrong"),
    "grounding": ("acupoint grounding success at IoU 0.3/0.5/0.75 (HMR-1 Table 2) on a "
                  "MedMassage-format dataset or sim images"),
}


def add_arguments(parser: argparse.ArgumentParser, chosen: str | None = None) -> None:
    """``tuina eval NAME``: every evaluation listed, the options of ``chosen`` (the one asked
    for) read from its module, so ``tuina eval --help`` imports none of them."""
    sub = parser.add_subparsers(dest="evaluation", required=True)
    for name, text in EVALUATIONS.items():
        child = sub.add_parser(name, help=text, description=text)
        if name == chosen:
            importlib.import_module(f"tuina.evaluation.{name}").add_arguments(child)


def main(args: Any) -> int:
    """Run the evaluation asked for."""
    return importlib.import_module(f"tuina.evaluation.{args.evaluation}").main(args)
