"""The README stays true: its settings table is the model's, its code map the package's."""

from __future__ import annotations

from pathlib import Path

from snapd.config import settings_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_settings_table_matches_model() -> None:
    """Every setting, default and description in the README comes from `Settings`."""
    text = README.read_text(encoding="utf-8")
    start = text.index("<!-- settings-table:start -->") + len("<!-- settings-table:start -->")
    end = text.index("<!-- settings-table:end -->")
    assert text[start:end].strip() == settings_table(), (
        "README.md's settings table is stale: paste `python -c 'from snapd.config import "
        "settings_table; print(settings_table())'` between the settings-table markers"
    )


def test_readme_shows_the_two_commands() -> None:
    """A newcomer finds `make demo` and `make test` in the README."""
    text = README.read_text(encoding="utf-8")
    assert "make demo" in text
    assert "make test" in text


def test_code_map_names_every_module() -> None:
    """The README's code map keeps up with the package: every module has its line."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Working on snapd") :]
    modules = sorted(
        p.name for p in (README.parent / "snapd").glob("*.py") if p.name != "__init__.py"
    )
    missing = [m for m in modules if f"`{m}`" not in section]
    assert missing == [], f"README 'Working on snapd' lacks {missing}"
