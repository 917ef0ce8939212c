"""The package layering the README's Layout section states, derived from the code with `ast`.

Every import between gradaudit's packages and top-level modules (at module level or inside a
function) must point to the same layer or a lower one, and the import graph between them must
have no cycle: the executor stands alone, the loaders use it, the analyses read the LayerGraph,
the renderers read results, and only the application layer ties them together.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).resolve().parents[1] / "gradaudit"

# Lowest first. A unit is a subpackage of gradaudit or one of its top-level modules.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"version", "errors", "i18n", "optimizers", "activations", "diagnosis", "schema"}),
    frozenset({"limits", "graph", "weight_stats", "model", "loss", "results", "gate"}),
    frozenset({"onnx_exec"}),
    frozenset({"loaders"}),
    frozenset({"static"}),
    frozenset({"probe"}),
    frozenset({"rules"}),
    frozenset({"remedies"}),
    frozenset({"report"}),
    frozenset({"config", "hard_limits", "output_guard", "terminal", "baseline", "pipeline", "fixer",
               "testing", "cli", "__init__", "__main__"}),
)
LAYER_OF = {unit: index for index, layer in enumerate(LAYERS) for unit in layer}


def _unit(module: str, package: Path) -> str | None:
    """The unit a dotted `gradaudit...` module name belongs to (None outside gradaudit)."""
    parts = module.split(".")
    if parts[0] != "gradaudit":
        return None
    if len(parts) == 1:
        return "__init__"
    if (package / parts[1]).is_dir() or (package / f"{parts[1]}.py").is_file():
        return parts[1]
    return "__init__"  # a name defined in gradaudit/__init__.py (`from gradaudit import __version__`)


def _imported_modules(path: Path, package: Path) -> set[str]:
    module_parts = ("gradaudit",) + path.relative_to(package).with_suffix("").parts
    if module_parts[-1] == "__init__":
        module_parts = module_parts[:-1] + ("__init__",)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module_parts[: len(module_parts) - node.level]
                found.add(".".join(base + ((node.module,) if node.module else ())))
            elif node.module == "gradaudit":
                found.update(f"gradaudit.{alias.name}" for alias in node.names)
            elif node.module:
                found.add(node.module)
    return found


def import_graph(package: Path = PACKAGE) -> nx.DiGraph:
    """unit -> units it imports, over every file of the package."""
    graph = nx.DiGraph()
    for path in sorted(package.rglob("*.py")):
        source = _unit("gradaudit." + ".".join(path.relative_to(package).with_suffix("").parts), package)
        graph.add_node(source)
        for module in _imported_modules(path, package):
            target = _unit(module, package)
            if target is not None and target != source:
                graph.add_edge(source, target)
    return graph


def test_every_unit_has_a_layer():
    assert set(import_graph()) <= set(LAYER_OF), "add the new module to LAYERS (and the README's Layout)"


def test_no_import_points_to_a_higher_layer():
    upward = sorted((a, b) for a, b in import_graph().edges if LAYER_OF[b] > LAYER_OF[a])
    assert not upward, f"imports against the layering: {upward}"


def test_no_import_cycle_between_units():
    cycles = list(nx.simple_cycles(import_graph()))
    assert not cycles, f"import cycles: {cycles}"


def test_the_executor_stands_alone():
    reached = set(import_graph().successors("onnx_exec"))
    assert not reached & {"loaders", "static", "probe", "rules", "remedies", "report"}


def test_the_checker_sees_a_violation(tmp_path: Path):
    """The graph really follows imports, relative ones and those inside functions included."""
    fake = tmp_path / "gradaudit"
    for unit in ("static", "report", "probe"):
        (fake / unit).mkdir(parents=True)
        (fake / unit / "__init__.py").write_text("")
    (fake / "static" / "bad.py").write_text("from ..report import render\n")
    (fake / "probe" / "late.py").write_text("def f():\n    import gradaudit.rules.rule_registry\n")
    (fake / "rules.py").write_text("")
    edges = set(import_graph(fake).edges)
    assert ("static", "report") in edges and ("probe", "rules") in edges
