"""The layering of docs/architecture.md, checked on the code.

Algorithms and kernels never import each other (the trainer joins them through
``kernels.select``); the agent knows no kernel; the API never calls into the CLI; a local
run never enters the Ray package; there are no import cycles, no module over 450 lines and
no private name imported across modules.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "policygrad"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """Every ``from policygrad… import names`` and ``import policygrad…`` in a file, at any depth."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("policygrad"):
            out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.startswith("policygrad")]
    return out


def imported_modules(path: Path) -> set[str]:
    """The policygrad modules a file imports (``from pkg import module`` counts as the module)."""
    out = set()
    for module, names in imports(path):
        out |= {f"{module}.{n}" if f"{module}.{n}" in MODULES else module for n in names} or {module}
    return out


def test_no_private_name_is_imported_across_modules():
    private = [
        (name, module, n)
        for name, path in MODULES.items()
        for module, names in imports(path)
        for n in names
        if n.startswith("_")
    ]
    assert private == []


def test_no_module_is_over_450_lines():
    assert [(n, c) for n, p in MODULES.items() if (c := len(p.read_text().splitlines())) > 450] == []


@pytest.mark.parametrize(
    "importer,forbidden",
    [
        ("policygrad.algorithms", "policygrad.kernels"),
        ("policygrad.kernels", "policygrad.algorithms"),
        ("policygrad.agent", "policygrad.kernels"),
        ("policygrad.learners", "policygrad.kernels"),
        ("policygrad.rollout", "policygrad.kernels"),
        ("policygrad.__init__", "policygrad.cli"),
        ("policygrad.evaluation", "policygrad.cli"),
    ],
)
def test_layers_import_only_downward(importer, forbidden):
    paths = [p for n, p in MODULES.items() if n == importer or n.startswith(importer + ".")]
    if importer == "policygrad.__init__":
        paths = [PACKAGE / "__init__.py"]
    assert paths
    bad = [
        (str(p.relative_to(SRC)), m)
        for p in paths
        for m in imported_modules(p)
        if m == forbidden or m.startswith(forbidden + ".")
    ]
    assert bad == []


def test_there_are_no_import_cycles():
    graph = {name: {m for m in imported_modules(path) if m in MODULES and m != name} for name, path in MODULES.items()}
    # A package's __init__ importing its own submodules is not a cycle through them.
    for name in graph:
        graph[name] = {m for m in graph[name] if not m.startswith(name + ".")}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycles.append(trail[trail.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert cycles == []


def test_a_local_run_enters_neither_the_ray_package_nor_the_cli(tmp_path):
    code = (
        "import sys, policygrad; "
        f"policygrad.train('a2c', 'CartPole-v1', out={str(tmp_path / 'run')!r}, total_steps=400, eval_every=0, "
        "eval_episodes=1); "
        "print(sorted(m for m in sys.modules if m.startswith(('policygrad.distributed', 'policygrad.cli', 'ray'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
