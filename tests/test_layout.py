"""The import rules that keep each folder meaning one thing: operators are pure (no dora, no
tuina runtime), and nothing but the nodes' own entry points imports a node."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# benchmarks that time a node itself, through its main()
NODE_BENCHMARKS = {"benchmarks/realsense_playback.py"}


def imports_of(path: Path) -> set[str]:
    """Every module an absolute import in ``path`` names (``from a.b import c``: a.b and a.b.c)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def impure(path: Path) -> list[str]:
    """The imports of an operator module that are not pure computation."""
    return sorted(m for m in imports_of(path)
                  if m.split(".")[0] == "dora"
                  or (m.split(".")[0] == "tuina" and not m.startswith("tuina.operators")))


def node_imports(path: Path) -> list[str]:
    """The imports of ``path`` that reach into a node module."""
    return sorted(m for m in imports_of(path) if m == "tuina.nodes" or
                  m.startswith("tuina.nodes."))


def test_the_rules_see_what_breaks_them(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import dora\nfrom tuina.runtime import Outputs\n"
                   "from tuina.nodes import world\n"
                   "from tuina.operators.geometry import transform_points\nimport numpy\n")
    assert impure(bad) == ["dora", "tuina.nodes", "tuina.nodes.world", "tuina.runtime",
                           "tuina.runtime.Outputs"]
    assert node_imports(bad) == ["tuina.nodes", "tuina.nodes.world"]


def test_operators_import_no_dora_and_no_tuina_runtime():
    modules = sorted((ROOT / "operators").glob("*.py"))
    assert len(modules) > 10
    assert {p.name: impure(p) for p in modules if impure(p)} == {}


def test_nothing_but_the_entry_points_imports_a_node():
    sources = [*(ROOT / "tuina").rglob("*.py"), *(ROOT / "operators").glob("*.py"),
               *(ROOT / "benchmarks").glob("*.py")]
    offending = {str(p.relative_to(ROOT)): node_imports(p) for p in sources
                 if str(p.relative_to(ROOT)) not in NODE_BENCHMARKS and node_imports(p)}
    assert offending == {}


def test_every_node_declares_its_settings_in_tuina_settings():
    nodes = sorted(p.stem for p in (ROOT / "nodes").glob("*.py") if p.stem != "__init__")
    for name in nodes:
        source = (ROOT / "nodes" / f"{name}.py").read_text()
        assert "\nPARAMS = " not in source, f"nodes/{name}.py declares PARAMS itself"
        assert f"tuina.settings.{name}" in imports_of(ROOT / "nodes" / f"{name}.py"), name
        assert (ROOT / "tuina" / "settings" / f"{name}.py").is_file()


def sim_imports(path: Path) -> list[str]:
    """The imports of ``path`` that reach into the simulated world (its body and labels)."""
    return sorted(m for m in imports_of(path) if m == "tuina.sim" or m.startswith("tuina.sim."))


def test_the_worlds_body_and_labels_reach_no_node_but_the_world():
    # the person's body and its acupoint labels are the world's truth: a node that read them
    # would find the points from the answer
    sources = [*(ROOT / "nodes").glob("*.py"), *(ROOT / "operators").glob("*.py"),
               *(ROOT / "tuina" / "runtime").glob("*.py")]
    allowed = {"nodes/world.py"}
    offending = {str(p.relative_to(ROOT)): sim_imports(p) for p in sources
                 if str(p.relative_to(ROOT)) not in allowed and sim_imports(p)}
    assert offending == {}
    settings = {p.name: sim_imports(p) for p in (ROOT / "tuina" / "settings").glob("*.py")
                if sim_imports(p)}
    assert set(settings) == {"world.py"}
    assert "tuina.sim.person" not in imports_of(ROOT / "tuina" / "settings" / "world.py")
