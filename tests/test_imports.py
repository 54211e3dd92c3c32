"""No import loop among tpfit's modules: every `import` and `from tpfit... import` in tpfit/, at module level or
inside a function (a lazy import is still a dependency), read with ast. Imports under `if TYPE_CHECKING:` are
annotations only and left out. Also: pynvml is imported by hardware/nvml.py alone (tpfit's one NVML reader)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "tpfit"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _resolve(name: str) -> str | None:
    """The tpfit module an import names (`tpfit.core.plan.Plan` -> `tpfit.core.plan`)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _imports(tree: ast.AST):
    """Every Import / ImportFrom node, skipping `if TYPE_CHECKING:` bodies."""
    for node in ast.iter_child_nodes(tree):
        if _is_type_checking(node):
            yield from (n for child in node.orelse for n in _imports(ast.Module(body=[child], type_ignores=[])))
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        yield from _imports(node)


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for name, path in MODULES.items():
        out = set()
        for node in _imports(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif node.level == 0 and node.module:
                # `from tpfit.core import plan` names the module tpfit.core.plan
                targets = [f"{node.module}.{a.name}" for a in node.names]
            else:
                targets = []
            out |= {_resolve(t) for t in targets if t.split(".")[0] == "tpfit"}
        graph[name] = out - {None, name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import loop as [a, b, ..., a], or None (depth-first search, colouring modules in progress)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_loop():
    graph = import_graph()
    assert len(graph) > 100 and graph["tpfit.core.plan"] >= {"tpfit.core.rules", "tpfit.core.memory"}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_a_loop():
    # the loop this test guards against, as it was before issue #11: plan made its flags through recommend
    graph = {"tpfit.core.plan": {"tpfit.core.recommend"}, "tpfit.core.recommend": {"tpfit.core.plan"}}
    assert find_cycle(graph) == ["tpfit.core.plan", "tpfit.core.recommend", "tpfit.core.plan"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_only_hardware_nvml_imports_pynvml():
    importers = sorted(name for name, path in MODULES.items()
                       for node in _imports(ast.parse(path.read_text()))
                       if isinstance(node, ast.Import) and any(a.name == "pynvml" for a in node.names))
    assert importers == ["tpfit.hardware.nvml"]
