"""JSON that every reader accepts: a figure that was not measured (NaN, infinite) is null."""

from __future__ import annotations

import json
import math
from typing import Any


def finite(value: Any) -> Any:
    """``value`` with every non-finite float (numpy's included) replaced by None."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    if isinstance(value, float) or type(value).__name__.startswith("float"):
        number = float(value)
        return number if math.isfinite(number) else None
    return value


def dumps(value: Any, **options: Any) -> str:
    """Strict JSON text of ``value`` (no NaN or Infinity tokens)."""
    return json.dumps(finite(value), allow_nan=False, **options)


def figures(summary: dict[str, Any], absent: tuple[str, ...] = ()) -> dict[str, Any]:
    """A summary read back for arithmetic: null figures as NaN again, except the keys in
    ``absent``, whose null means "did not happen"."""
    return {k: (math.nan if v is None and k not in absent else
                figures(v, absent) if isinstance(v, dict) else v) for k, v in summary.items()}
