"""Every document the code, tests and docs point at is in the repository, anchors included.

The design lives in `docs/`; a comment that cites a file outside the repository, or a
section that was renamed, leaves the next reader with a rule they cannot look up. These
tests read every source and document file and check each `*.md` reference (and its
`#anchor`, GitHub's heading slug) against the files in the repository — whatever documents
exist, so a new one in `docs/` is covered without editing a list.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Where references live: product, simulated world, tests, docs, benchmark notes, manifests.
SCANNED_DIRS = ("snapd", "simworld", "tests", "docs", "bench", "deploy")
SCANNED_FILES = ("README.md", "Makefile", "Dockerfile", "pyproject.toml")
SCANNED_SUFFIXES = frozenset({".py", ".md", ".yaml", ".yml", ".toml"})
SKIPPED_DIRS = frozenset({"__pycache__", ".venv", ".mypy_cache", ".pytest_cache"})

#: A document path: `docs/ebs.md`, `README.md#snapddown`, `(contract.md#restore)`.
_REFERENCE = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[\w.-]+\.md)(?:#([\w-]+))?")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)

#: Ways of citing the design documents that stayed outside the repository, or an issue
#: tracker a reader of the code cannot see. (This file spells them out, so it is not scanned.)
_OUTSIDE = (
    re.compile(r"\bDESIGN\b"),
    re.compile(r"\bSTYLE(\.md)?\b"),
    re.compile(r"\b(aws-ebs|velero-format|peers)\.md\b"),
    re.compile(r"\b(aws-ebs|velero-format)\s+(\u00a7|Part\s)"),
    re.compile(r"\bissue\s+#?\d+", re.IGNORECASE),
    re.compile("\u00a7"),
)


def scanned_files() -> Iterator[Path]:
    """Every text file in the scanned places (generated caches skipped)."""
    for name in SCANNED_FILES:
        yield ROOT / name
    for top in SCANNED_DIRS:
        for path in sorted((ROOT / top).rglob("*")):
            parts = set(path.relative_to(ROOT).parts)
            if path.is_file() and path.suffix in SCANNED_SUFFIXES and not parts & SKIPPED_DIRS:
                yield path


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces → `-`."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(document: Path) -> set[str]:
    """The heading anchors of a Markdown file (headings inside code fences do not count)."""
    text = _FENCE.sub("", document.read_text(encoding="utf-8"))
    return {github_slug(match) for match in _HEADING.findall(text)}


def resolve(reference: str, source: Path) -> Path | None:
    """A referenced document: from the repository root, beside the citing file, or — for a
    bare file name such as `RESULTS.md` — the one file of that name in the repository."""
    for base in (ROOT, source.parent):
        candidate = base / reference
        if candidate.is_file():
            return candidate
    if "/" not in reference:
        found = [p for p in scanned_files() if p.name == reference]
        if len(found) == 1:
            return found[0]
    return None


def references() -> Iterator[tuple[Path, int, str, str | None]]:
    """(file, line number, document path, anchor) for every `*.md` reference."""
    for path in scanned_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for match in _REFERENCE.finditer(line):
                yield path, number, match.group(1), match.group(2)


def test_the_scan_sees_the_references_it_is_meant_to_check() -> None:
    """The scan finds the docs' own cross-references and code's pointers into docs/."""
    found = {(p.relative_to(ROOT).as_posix(), ref) for p, _, ref, _ in references()}
    assert ("snapd/planner.py", "docs/contract.md") in found
    assert ("docs/architecture.md", "contract.md") in found
    assert ("deploy/prometheus/snapd-rules.yaml", "README.md") in found


def test_every_referenced_document_exists_with_its_anchor() -> None:
    """A `*.md` path in code, tests or docs names a file in the repository, and its
    `#anchor` names one of that file's headings."""
    problems = []
    for path, number, reference, anchor in references():
        where = f"{path.relative_to(ROOT)}:{number}"
        document = resolve(reference, path)
        if document is None:
            problems.append(f"{where}: {reference} is not in the repository")
        elif anchor is not None and anchor not in anchors(document):
            problems.append(f"{where}: {reference} has no heading with anchor #{anchor}")
    assert not problems, "broken document references:\n" + "\n".join(problems)


def test_nothing_cites_documents_outside_the_repository() -> None:
    """No pointer to the design notes that never entered the repository, or to issue
    numbers: the rules a comment relies on are in docs/."""
    this_file = Path(__file__).resolve()
    problems = []
    for path in scanned_files():
        if path.resolve() == this_file:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if any(pattern.search(line) for pattern in _OUTSIDE):
                problems.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not problems, "point these into docs/ instead:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("heading", "slug"),
    [
        ("Tags: the database", "tags-the-database"),
        ("velero-backup.json", "velero-backupjson"),
        ("What moto lacks and the simulator adds", "what-moto-lacks-and-the-simulator-adds"),
        ("SnapdDown", "snapddown"),
        ("`snapd restore` step 2", "snapd-restore-step-2"),
    ],
    ids=["colon", "dots", "plain", "camel", "code"],
)
def test_anchor_slugs_follow_github(heading: str, slug: str) -> None:
    """Anchors are checked the way GitHub renders them, so a link that works there passes."""
    assert github_slug(heading) == slug
