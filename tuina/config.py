"""Node configuration from the YAML ``env:`` block: declared, typed, validated once at start."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
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


# The rig's constants: one arm, one tool, one force cap, one workspace, one body region for
# every node of a graph. A graph's nodes read them from the rig file their RIG names.
RIG_KEYS = ("ROBOT", "TOOL_LENGTH_M", "FORCE_CAP_N", "WORKSPACE_MIN", "WORKSPACE_MAX",
            "BALL_RADIUS_M", "ROI_MIN", "ROI_MAX", "MAX_JOINT_SPEED")
RIG_PARAM = Param("RIG", "path", "", "-", "rig file (YAML of " + ", ".join(RIG_KEYS)
                  + ") this node reads its rig keys from, relative to the graph's folder; "
                  "empty: the defaults below")


def rig_values(node: str, written: str, path: str) -> dict[str, str]:
    """The keys of the rig file at ``path`` (``written`` in the env) as env strings;
    ConfigError for a missing file or a key that is not the rig's."""
    import yaml

    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{node}: env RIG={written!r}: no rig file at {file.resolve()}; RIG "
                          "is relative to the graph's folder (e.g. RIG: rigs/fr3.yml), or give "
                          "an absolute path")
    data = yaml.safe_load(file.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{node}: rig file {path} must map rig keys to values")
    for key in data:
        if key not in RIG_KEYS:
            raise ConfigError(f"{node}: rig file {path}: {key} is not a rig key; a rig sets "
                              + ", ".join(RIG_KEYS))
    return env_strings(data)


def load(node: str, params: Sequence[Param],
         environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read and validate every declared key; raise ConfigError naming the key and the fix.
    With RIG set, the node's rig keys come from that rig file and only from there."""
    env = os.environ if environ is None else environ
    keys = {p.key for p in params}
    if "RIG" in keys and str(env.get("RIG") or "").strip():
        rig_path = resolve_path(str(env["RIG"]).strip(), env)
        rig = {k: v for k, v in rig_values(node, str(env["RIG"]).strip(), rig_path).items()
               if k in keys}
        for key in rig:
            if str(env.get(key) or "").strip():
                raise ConfigError(f"{node}: {key} is set in the node's env: block and by the "
                                  f"rig {env['RIG']}; a rig constant is set in the rig file only")
        env = {**env, **rig}
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


def graph_env(graph: Path, env: Mapping[str, Any] | None) -> dict[str, str]:
    """A node's ``env:`` block of the graph file ``graph`` as that node reads it under
    ``dora run``: its paths relative to the graph's folder."""
    strings = env_strings(env)
    # as dora runs it: the node's own env over the daemon's, the graph's folder its cwd
    root = strings.get(ROOT_ENV) or os.environ.get(ROOT_ENV) or str(Path(graph).resolve().parent)
    return {**strings, ROOT_ENV: root}
