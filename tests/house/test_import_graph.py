"""The package's floors: no import cycle between vocabadapt's subpackages, and `audit` needs no torch.

The graph is read from the source with `ast`, imports inside functions included (a lazy import is
still a dependency: it only moves the failure to run time), so a cycle cannot hide in a function body.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "vocabadapt"
ROOT = PACKAGE.parent


def _unit(module: str) -> str:
    """The node a module belongs to: its subpackage (vocabadapt.init), or the top-level module itself."""
    parts = module.split(".")
    return ".".join(parts[:2])


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """{unit: units it imports} over every .py file of the package (TYPE_CHECKING imports excluded)."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        module = _module_name(path)
        is_pkg = path.name == "__init__.py"
        package = module if is_pkg else module.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip: set[int] = set()
        for node in ast.walk(tree):
            # `if TYPE_CHECKING:` imports are for annotations only and never run.
            if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING":
                skip |= {id(n) for n in ast.walk(node)}
        targets: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.startswith("vocabadapt")}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    name = ".".join(base + ([node.module] if node.module else []))
                else:
                    name = node.module or ""
                if not name.startswith("vocabadapt"):
                    continue
                if node.module is None or name == "vocabadapt":  # `from .. import x`: x is a module
                    targets |= {f"{name}.{a.name}" for a in node.names}
                else:
                    targets.add(name)
        unit = _unit(module)
        graph.setdefault(unit, set()).update(_unit(t) for t in targets if _unit(t) not in (unit, "vocabadapt"))
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a list of nodes (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m) :] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_the_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    # vocabadapt.stages.transplant imports vocabadapt.init at module level; vocabadapt.cli imports the
    # stages inside its command functions only.
    assert "vocabadapt.init" in graph["vocabadapt.stages"]
    assert "vocabadapt.run" in graph["vocabadapt.cli"]


# Edges left out of the cycle check, each with its reason. The runner (vocabadapt.run.runner) is the top
# floor: it loads vocabadapt.stages.STAGES when a run starts, while the stages read run.layout and
# run.context. Moving the runner out of run/ would move vocabadapt.run.runner, which benchmarks/ imports
# (the benchmarks-as-a-package step of issue 24 is the time to do it).
ALLOWED_EDGES = {("vocabadapt.run", "vocabadapt.stages")}


def test_no_import_cycle_between_subpackages():
    graph = import_graph()
    for a, b in ALLOWED_EDGES:
        graph[a].discard(b)
    cycle = find_cycle(graph)
    assert cycle is None, f"import cycle between subpackages: {' -> '.join(cycle or [])}"


def test_config_and_registry_import_nothing_above_them():
    graph = import_graph()
    assert graph["vocabadapt.registry"] == set()
    assert graph["vocabadapt.config"] <= {"vocabadapt.registry", "vocabadapt.errors", "vocabadapt.io"}


def test_audit_of_the_research_config_runs_without_torch():
    code = (
        "import sys\n"
        "from vocabadapt.cli import main\n"
        "rc = main(['audit', 'configs/research.yaml'])\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'numpy') if m in sys.modules)\n"
        "print('HEAVY', heavy, 'RC', rc)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    last = [line for line in out.stdout.splitlines() if line.startswith("HEAVY")]
    assert last, out.stdout + out.stderr
    assert "'torch'" not in last[-1], last[-1]
