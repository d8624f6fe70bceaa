"""Each node's env keys (``PARAMS``) and the configuration they build, declared once; and the
check of a whole graph's env before it starts (every value, one rig)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from tuina.config import RIG_KEYS, ConfigError, Param, graph_env, load


def node_settings(node_path: str) -> list[Param] | None:
    """The env keys of the node a graph runs as ``path: tuina-<node>``; None for any other."""
    if not node_path.startswith("tuina-"):
        return None
    try:
        module = importlib.import_module(f"tuina.settings.{node_path[6:].replace('-', '_')}")
    except ModuleNotFoundError:
        return None
    return module.PARAMS


def graph_problems(graph: Path) -> list[str]:
    """What would keep the graph file ``graph`` from starting as it should, found before any
    node starts: an env value a node would refuse (its one line), and anything that keeps
    its nodes from one rig read from one place (a node with rig keys that names no rig file
    or another one than the others, a rig key set in a node's env: block, two nodes that
    disagree on a rig key)."""
    import yaml

    problems: list[str] = []
    refused: dict[str, list[str]] = {}  # one problem, the nodes that have it
    rigs: dict[str, str] = {}
    values: dict[str, dict[str, Any]] = {}
    for node in yaml.safe_load(Path(graph).read_text())["nodes"]:
        params = node_settings(str(node.get("path", "")))
        if params is None:
            continue
        env = node.get("env") or {}
        try:
            cfg = load(node["id"], params, graph_env(graph, env))
        except ConfigError as err:
            refused.setdefault(str(err).removeprefix(f"{node['id']}: "), []).append(node["id"])
            cfg = None
        keys = sorted({p.key for p in params} & set(RIG_KEYS))
        if not keys:
            continue
        rigs[node["id"]] = str(env.get("RIG") or "")
        for key in keys if cfg is not None else ():
            values.setdefault(key, {})[node["id"]] = cfg[key]
    problems += [f"{', '.join(nodes)}: {why}" for why, nodes in refused.items()]
    named = sorted(set(rigs.values()))
    if len(named) > 1 or named == [""]:
        problems.append("the nodes with rig keys must all name one rig file in RIG: "
                        + ", ".join(f"{n} {r or '(none)'}" for n, r in rigs.items()))
    for key, by_node in values.items():
        if len({json.dumps(v) for v in by_node.values()}) > 1:
            problems.append(f"the nodes disagree on {key}: "
                            + ", ".join(f"{n} {v}" for n, v in by_node.items()))
    return problems


def graph_refusal(command: str, graph: Path) -> str | None:
    """The one error line ``tuina COMMAND`` gives for a graph it must not start: no file,
    or its ``graph_problems``; None when it may start."""
    if not Path(graph).is_file():
        return (f"tuina {command}: error: no dataflow at {Path(graph).resolve()}; the graphs are "
                "in dataflows/")
    if problems := graph_problems(graph):
        return f"tuina {command}: error: {graph}: " + "; ".join(problems)
    return None
