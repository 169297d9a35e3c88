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
#: Pure modules that do not meet the rule yet, and why. restore_plan takes the CLI's
#: `argparse.Namespace`, imports `kube` for its manifest builders and name checks, and
#: checks that `--output`'s directory exists; it stays listed until the restore request
#: is a typed record built by the CLI.
NOT_YET_PURE = {
    "restore_plan": "takes argparse.Namespace, imports kube, checks --output on disk",
}

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


def snapd_modules() -> set[str]:
    """Every module of the package, as `snapd.name` (the package itself excluded)."""
    return {f"snapd.{path.stem}" for path in PACKAGE.glob("*.py") if path.stem != "__init__"}


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


def test_every_module_is_in_exactly_one_layer() -> None:
    """A new module must be placed in the layers contract; import-linter ignores the rest."""
    listed = layered_modules()
    missing = sorted(snapd_modules() - set(listed))
    assert not missing, f"add these to the Layers contract in pyproject.toml: {missing}"
    twice = sorted({m for m in listed if listed.count(m) > 1})
    assert not twice, f"listed in more than one layer: {twice}"
    gone = sorted(set(listed) - snapd_modules())
    assert not gone, f"the Layers contract names modules that do not exist: {gone}"


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
    for ignored in pure_contract.get("ignore_imports", []):
        importer = ignored.split("->")[0].strip().removeprefix("snapd.")
        assert importer in NOT_YET_PURE, f"only known exceptions are ignored: {ignored}"


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
    name = module.removeprefix("snapd.")
    if name in NOT_YET_PURE:
        pytest.skip(f"{module} is not pure yet: {NOT_YET_PURE[name]}")
    problems = impurities((PACKAGE / f"{name}.py").read_text(encoding="utf-8"))
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
