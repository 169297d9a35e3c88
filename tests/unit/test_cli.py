"""Command-line parsing: settings flags and --config work before or after the subcommand."""

from __future__ import annotations

from pathlib import Path

import pytest

from snapd.cli import main, parse
from snapd.errors import ConfigError


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "snapd.yaml"
    path.write_text("velero_bucket: from-file\nmax_in_flight: 3\nschedules: daily\n")
    return path


@pytest.mark.parametrize(
    "argv",
    [
        ["--config", "{cfg}", "--max-in-flight", "7", "sync", "--dry-run"],
        ["sync", "--dry-run", "--config", "{cfg}", "--max-in-flight", "7"],
        ["--config", "{cfg}", "sync", "--max-in-flight", "7", "--dry-run"],
    ],
    ids=["before", "after", "mixed"],
)
def test_flags_and_config_anywhere(config: Path, argv: list[str]) -> None:
    """`--config` and setting flags are accepted before or after the subcommand."""
    args, settings = parse([a.replace("{cfg}", str(config)) for a in argv])
    assert args.command == "sync"
    assert args.dry_run
    assert settings.velero_bucket == "from-file"
    assert settings.max_in_flight == 7


def test_boolean_setting_flags() -> None:
    """Boolean settings have --x and --no-x flags."""
    _, on = parse(["sync", "--copy-failed-backups"])
    _, off = parse(["sync", "--no-copy-failed-backups"])
    assert on.copy_failed_backups is True
    assert off.copy_failed_backups is False


def test_unknown_flag_is_a_usage_error() -> None:
    """A mistyped flag is refused as a usage error, not ignored."""
    with pytest.raises(ConfigError, match="--max-inflight"):
        parse(["sync", "--max-inflight", "3"])


def test_usage_error_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """The process answers a usage error with exit 2 and one line on stderr."""
    assert main(["frobnicate"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1
