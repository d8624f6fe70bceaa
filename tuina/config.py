"""Node configuration from the YAML ``env:`` block: declared, typed, validated once at start."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


class ConfigError(ValueError):
    """A bad ``env:`` value; its message is the one line the user sees."""


@dataclass(frozen=True)
class Param:
    """One ``env:`` key of a node."""

    key: str
    kind: str  # float | int | str | path | bool | floats | choice
    default: Any
    unit: str
    doc: str
    low: float | None = None
    high: float | None = None
    choices: Sequence[str] = ()
    length: int | None = None  # for floats


def _parse(param: Param, raw: str, environ: Mapping[str, str] | None = None) -> Any:
    kind = param.kind
    if kind == "float":
        value: Any = float(raw)
    elif kind == "int":
        value = int(raw)
    elif kind == "bool":
        low = raw.strip().lower()
        if low not in {"1", "0", "true", "false", "yes", "no", "on", "off"}:
            raise ValueError("expected true or false")
        value = low in {"1", "true", "yes", "on"}
    elif kind == "floats":
        value = [float(x) for x in raw.replace(";", ",").split(",") if x.strip()]
        if param.length is not None and len(value) != param.length:
            raise ValueError(f"expected {param.length} comma-separated numbers")
    elif kind == "choice":
        value = raw.strip()
        if value not in param.choices:
            raise ValueError(f"expected one of {', '.join(param.choices)}")
    elif kind == "path":
        value = resolve_path(raw.strip(), environ)
    else:
        value = raw
    numbers = value if isinstance(value, list) else [value]
    for x in numbers:
        if isinstance(x, (int, float)) and not isinstance(x, bool):
            if x != x:
                raise ValueError("NaN is not allowed")
            if param.low is not None and x < param.low:
                raise ValueError(f"must be >= {param.low}")
            if param.high is not None and x > param.high:
                raise ValueError(f"must be <= {param.high}")
    return value


ROOT_ENV = "TUINA_ROOT"


def resolve_path(path: str, environ: Mapping[str, str] | None = None) -> str:
    """A relative path against ``TUINA_ROOT`` when that is set, else as given (relative to
    the node's working folder: the graph's folder under ``dora run``). A daemon of a graph
    spread over machines runs nodes in a folder of its own; exporting TUINA_ROOT (the
    checkout's dataflows/ folder) before ``dora daemon`` makes the graph's paths mean the
    same on every machine."""
    root = (os.environ if environ is None else environ).get(ROOT_ENV, "")
    if not path or os.path.isabs(path) or not root:
        return path
    return os.path.normpath(os.path.join(root, path))


def load(node: str, params: Sequence[Param],
         environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read and validate every declared key; raise ConfigError naming the key and the fix."""
    env = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    for p in params:
        raw = env.get(p.key)
        if raw is None or str(raw).strip() == "":
            out[p.key] = resolve_path(p.default, env) if p.kind == "path" else p.default
            continue
        try:
            out[p.key] = _parse(p, str(raw), env)
        except ValueError as err:
            unit = f" [{p.unit}]" if p.unit and p.unit != "-" else ""
            raise ConfigError(f"{node}: env {p.key}={raw!r} is invalid ({err}); "
                              f"set it in the node's env: block{unit}, e.g. {p.key}: "
                              f"{_format(p.default)}") from None
    return out


def _format(value: Any) -> str:
    if isinstance(value, list):
        return '"' + ",".join(str(v) for v in value) + '"'
    return str(value)


def table(params: Sequence[Param]) -> str:
    """Markdown table of a node's env keys, for docs/reference.md."""
    rows = ["| key | type | unit | default | meaning |", "|---|---|---|---|---|"]
    for p in params:
        kind = p.kind if p.kind != "choice" else " / ".join(p.choices)
        default = f"`{_format(p.default)}`" if _format(p.default) != "" else "(empty)"
        rows.append(f"| `{p.key}` | {kind} | {p.unit} | {default} | {p.doc} |")
    return "\n".join(rows)


def env_strings(env: Mapping[str, Any] | None) -> dict[str, str]:
    """A graph YAML's ``env:`` block as the strings a node reads (booleans lower-case,
    lists comma-separated)."""
    out = {}
    for key, value in (env or {}).items():
        if isinstance(value, bool):
            out[key] = str(value).lower()
        elif isinstance(value, (list, tuple)):
            out[key] = ",".join(str(v) for v in value)
        else:
            out[key] = str(value)
    return out

