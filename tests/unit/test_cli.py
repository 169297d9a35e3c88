"""Command-line parsing: settings flags and --config work before or after the subcommand."""

from __future__ import annotations

import subprocess
import sys
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


#: Libraries that take most of a second to import; a command that does not talk to AWS
#: or Kubernetes must not load them (the e2e tests start the CLI hundreds of times).
HEAVY = ("aioboto3", "aiobotocore", "botocore", "kubernetes_asyncio")

_LOADED = """
import contextlib, io, sys
from snapd.cli import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
    main(sys.argv[1:])
print(",".join(sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[0].split(",")))))
"""


def heavy_imports(*argv: str) -> set[str]:
    """The heavy libraries loaded once `snapd ARGV` has run (in a fresh interpreter)."""
    code = _LOADED.replace("sys.argv[0]", repr(",".join(HEAVY)))
    result = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True, timeout=60
    )
    return {name for name in result.stdout.strip().split(",") if name}


@pytest.mark.parametrize(
    "argv",
    [("version",), ("--help",), ("sync", "--help"), ("completion", "bash"), ("settings",)],
    ids=["version", "help", "command-help", "completion", "settings"],
)
def test_local_commands_load_neither_aws_nor_kubernetes(argv: tuple[str, ...]) -> None:
    """`version`, `--help`, `completion` and `settings` start without the AWS/Kubernetes SDKs."""
    assert heavy_imports(*argv) == set()


def test_aws_commands_load_no_kubernetes_client() -> None:
    """`sync`, `list`, `status` and `dr-manifests` run from `snapd.commands`: no Kubernetes."""
    code = "import sys, snapd.commands; print('kubernetes_asyncio' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False"
