"""The simulated world stays readable: no function in `simworld/` is longer than 80 lines.

The simulators are test infrastructure that every end-to-end test leans on, and a long
function there (a patch of moto, a benchmark part) is where a change to one AWS behaviour
ends up touching five. Split it into functions named after what they do instead
(docs/architecture.md keeps the package map).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SIMWORLD = ROOT / "simworld"

#: The longest a function may be, counted from its `def` line to its last line
#: (decorators and the docstring included).
MAX_LINES = 80


def function_lengths(package: Path) -> list[tuple[str, int]]:
    """(`module.py:qualified.name`, lines) of every function and method under `package`,
    nested ones included."""
    found: list[tuple[str, int]] = []
    for path in sorted(package.rglob("*.py")):
        module = path.relative_to(package.parent).as_posix()
        _collect(ast.parse(path.read_text(), str(path)), module, "", found)
    return found


def _collect(node: ast.AST, module: str, prefix: str, found: list[tuple[str, int]]) -> None:
    """Walk `node`'s children, naming each function by the classes and functions around it."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            name = f"{prefix}{child.name}"
            if not isinstance(child, ast.ClassDef):
                start = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                found.append((f"{module}:{name}", (child.end_lineno or start) - start + 1))
            _collect(child, module, f"{name}.", found)
        else:
            _collect(child, module, prefix, found)


def test_no_simworld_function_is_longer_than_80_lines() -> None:
    """Every offender is listed with its length, longest first."""
    lengths = function_lengths(SIMWORLD)
    assert len(lengths) > 100, "the walk found too few functions: is SIMWORLD right?"
    offenders = sorted((item for item in lengths if item[1] > MAX_LINES), key=lambda item: -item[1])
    assert not offenders, f"functions longer than {MAX_LINES} lines: " + ", ".join(
        f"{name} ({lines})" for name, lines in offenders
    )


def test_the_walk_measures_nested_functions_and_methods(tmp_path: Path) -> None:
    """A long closure or method counts under its qualified name, decorators included."""
    package = tmp_path / "pkg"
    package.mkdir()
    body = "\n".join(f"            x{i} = {i}" for i in range(85))
    (package / "mod.py").write_text(
        "class Sim:\n"
        "    @staticmethod\n"
        "    def patch() -> None:\n"
        "        def inner() -> None:\n"
        f"{body}\n"
        "        inner()\n"
    )
    lengths = dict(function_lengths(package))
    assert lengths == {"pkg/mod.py:Sim.patch": 89, "pkg/mod.py:Sim.patch.inner": 86}
