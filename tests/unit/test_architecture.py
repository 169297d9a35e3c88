"""The module layout keeps its promises: every module sits in a layer, pure modules stay pure.

import-linter (`make lint`) checks the contracts in `pyproject.toml`, but it checks only the
modules a contract names. These tests close the gaps (docs/architecture.md#pure-and-io):

- every module of `snapd/` is in the layers contract, so a new module cannot escape it;
- every pure module — the known ones, and any new one named like them — is a source of the
  "Pure modules do no I/O" forbidden-import contract;
- the pure modules' source touches no file system, clock, logging or output: things an
  import contract cannot see, because `pathlib` or `datetime` are fine to import.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "snapd"

#: Pure by name: the decisions (`planner`, `*_plan`), the file parsers (`*_files`) and
#: rewriters (`*_rewrite`), the records and the tag schema. A new module named like these
#: is held to the same rules.
PURE_NAME = re.compile(r"^(plan\w*|\w+_plan|\w+_files|\w+_rewrite|models|tags)$")

#: Calls on any object that read or write the file system (pathlib's I/O methods).
FS_METHODS = frozenset(
    {
        "read_text",
        "read_bytes",
        "write_text",
        "write_bytes",
        "exists",
        "is_file",
        "is_dir",
        "is_symlink",
        "mkdir",
        "unlink",
        "rmdir",
        "iterdir",
        "glob",
        "rglob",
        "touch",
        "stat",
        "lstat",
        "chmod",
        "rename",
        "resolve",
        "samefile",
        "symlink_to",
        "expanduser",
        "home",
        "cwd",
    }
)
#: Built-ins that do I/O.
IO_BUILTINS = frozenset({"open", "print", "input"})
#: Modules whose import alone means I/O, a clock or logging in a pure module.
IO_MODULES = frozenset(
    {
        "os",
        "shutil",
        "tempfile",
        "glob",
        "fileinput",
        "time",
        "logging",
        "structlog",
        "socket",
        "subprocess",
        "asyncio",
        "argparse",
        "sys",
    }
)
#: Reading the clock: `now` is always passed in.
CLOCK_CALLS = frozenset({"now", "utcnow", "today"})
#: `X.open(...)` is fine only on an in-memory stream: `tarfile.open(fileobj=…)`.
STREAM_OPENERS = frozenset({"tarfile", "gzip"})


def snapd_modules(package: Path = PACKAGE) -> set[str]:
    """Every module of the package, as `snapd.name` (the package itself excluded).

    A subpackage counts as one module: its contents sit in its layer.
    """
    modules = {f"snapd.{path.stem}" for path in package.glob("*.py") if path.stem != "__init__"}
    return modules | {f"snapd.{path.parent.name}" for path in package.glob("*/__init__.py")}


def module_source(module: str) -> str:
    """The source of a module, or of every file of a subpackage."""
    name = module.removeprefix("snapd.")
    single = PACKAGE / f"{name}.py"
    if single.exists():
        return single.read_text(encoding="utf-8")
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted((PACKAGE / name).rglob("*.py")))


def contracts() -> list[dict[str, Any]]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        config = tomllib.load(file)
    result: list[dict[str, Any]] = config["tool"]["importlinter"]["contracts"]
    return result


def contract(name: str) -> dict[str, Any]:
    (found,) = [c for c in contracts() if c["name"] == name]
    return found


def layered_modules() -> list[str]:
    """Modules named in the layers contract, in order (`|` and `:` separate siblings)."""
    layers = contract("Layers")["layers"]
    return [name.strip() for layer in layers for name in re.split(r"[|:]", layer)]


def pure_by_name() -> set[str]:
    return {m for m in snapd_modules() if PURE_NAME.match(m.removeprefix("snapd."))}


def pure_modules() -> set[str]:
    """Pure by name, and every module the forbidden-import contract calls pure."""
    return pure_by_name() | set(contract("Pure modules do no I/O")["source_modules"])


def layer_problems(modules: set[str]) -> list[str]:
    """What is wrong between `modules` and the layers contract (empty: nothing)."""
    listed = layered_modules()
    problems = []
    missing = sorted(modules - set(listed))
    if missing:
        problems.append(f"add these to the Layers contract in pyproject.toml: {missing}")
    twice = sorted({m for m in listed if listed.count(m) > 1})
    if twice:
        problems.append(f"listed in more than one layer: {twice}")
    gone = sorted(set(listed) - modules)
    if gone:
        problems.append(f"the Layers contract names modules that do not exist: {gone}")
    return problems


def test_every_module_is_in_exactly_one_layer() -> None:
    """A new module must be placed in the layers contract; import-linter ignores the rest."""
    assert layer_problems(snapd_modules()) == []


def test_a_new_module_or_subpackage_in_no_layer_fails(tmp_path: Path) -> None:
    """The check is not a hand-kept list: a module added to `snapd/` is found unplaced."""
    package = tmp_path / "snapd"
    package.mkdir()
    for module in snapd_modules():
        (package / f"{module.removeprefix('snapd.')}.py").touch()
    (package / "brand_new.py").touch()
    (package / "newpkg").mkdir()
    (package / "newpkg" / "__init__.py").touch()
    [problem] = layer_problems(snapd_modules(package))
    assert "snapd.brand_new" in problem
    assert "snapd.newpkg" in problem


def test_the_known_pure_modules_are_recognised_by_name() -> None:
    """The naming rule covers the modules the architecture calls pure."""
    assert pure_by_name() >= {
        "snapd.planner",
        "snapd.velero_files",
        "snapd.restore_plan",
        "snapd.models",
        "snapd.tags",
    }


def test_every_pure_module_is_in_the_forbidden_import_contract() -> None:
    """Pure modules may not import the I/O modules, AWS, Kubernetes, HTTP or argparse."""
    pure_contract = contract("Pure modules do no I/O")
    missing = sorted(pure_by_name() - set(pure_contract["source_modules"]))
    assert not missing, f"add these to 'Pure modules do no I/O' in pyproject.toml: {missing}"
    forbidden = set(pure_contract["forbidden_modules"])
    for name in ("snapd.aws", "snapd.kube", "botocore", "aioboto3", "aiobotocore"):
        assert name in forbidden
    for name in ("kubernetes_asyncio", "aiohttp", "argparse"):
        assert name in forbidden
    assert not pure_contract.get("ignore_imports"), "a pure module may not be excused"


def _call_name(node: ast.Call) -> tuple[str | None, str | None]:
    """(receiver, attribute) of `receiver.attribute(...)`, or (None, name) of `name(...)`."""
    func = node.func
    if isinstance(func, ast.Name):
        return None, func.id
    if isinstance(func, ast.Attribute):
        receiver = func.value.id if isinstance(func.value, ast.Name) else None
        return receiver, func.attr
    return None, None


def impurities(source: str) -> list[str]:
    """What in `source` touches the file system, the clock, logging or output."""
    found = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            found += [f"{line}: imports {n}" for n in names if n.split(".")[0] in IO_MODULES]
            if isinstance(node, ast.ImportFrom) and node.module == "pathlib":
                found += [
                    f"{line}: imports pathlib.{a.name}"
                    for a in node.names
                    if not a.name.startswith("Pure")
                ]
            if isinstance(node, ast.Import):
                found += [f"{line}: imports pathlib" for a in node.names if a.name == "pathlib"]
        if not isinstance(node, ast.Call):
            continue
        receiver, name = _call_name(node)
        keywords = {k.arg for k in node.keywords}
        if receiver is None and name in IO_BUILTINS:
            found.append(f"{line}: calls {name}()")
        elif receiver is not None and name in FS_METHODS:
            found.append(f"{line}: calls {receiver}.{name}()")
        elif receiver is None and name in FS_METHODS and isinstance(node.func, ast.Attribute):
            found.append(f"{line}: calls .{name}()")
        elif name == "open" and isinstance(node.func, ast.Attribute):
            in_memory = receiver in STREAM_OPENERS and "fileobj" in keywords and not node.args
            if not in_memory:
                found.append(f"{line}: calls {receiver or ''}.open() on a file")
        elif name in CLOCK_CALLS and isinstance(node.func, ast.Attribute):
            found.append(f"{line}: reads the clock ({receiver or ''}.{name}())")
    return found


@pytest.mark.parametrize(
    "module", sorted(pure_modules()), ids=lambda m: str(m).removeprefix("snapd.")
)
def test_pure_modules_touch_no_files_clock_or_output(module: str) -> None:
    """A pure module takes data and returns data: no files, no clock, no logging, no print."""
    problems = impurities(module_source(module))
    assert not problems, f"{module} is meant to be pure:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("source", "finding"),
    [
        ("open('x')", "calls open()"),
        ("from pathlib import Path\n", "imports pathlib.Path"),
        ("p.read_text()", "calls p.read_text()"),
        ("Path(x).exists()", "calls .exists()"),
        ("import os.path\n", "imports os.path"),
        ("datetime.now(UTC)", "reads the clock (datetime.now())"),
        ("import structlog\n", "imports structlog"),
        ("print('hi')", "calls print()"),
        ("tarfile.open('backup.tar.gz')", "calls tarfile.open() on a file"),
    ],
    ids=["open", "pathlib", "read_text", "exists", "os", "clock", "logging", "print", "tar"],
)
def test_the_purity_scan_catches_each_kind_of_io(source: str, finding: str) -> None:
    """Each kind of impurity the scan looks for is found (so a clean result means something)."""
    assert any(finding in problem for problem in impurities(source))


def test_the_purity_scan_allows_in_memory_streams() -> None:
    """Parsing bytes through gzip/tarfile streams is pure: nothing touches a file."""
    source = (
        "with gzip.GzipFile(fileobj=io.BytesIO(raw)) as s:\n"
        "    tarfile.open(fileobj=s, mode='r|')\n"
        "from pathlib import PurePosixPath\n"
    )
    assert impurities(source) == []
