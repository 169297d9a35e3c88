"""Running the real `snapd` command as a subprocess, the way an operator would."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

SNAPD = str(Path(sys.executable).with_name("snapd"))


@dataclass
class Result:
    """Exit code and the two streams, kept apart (stdout is the command's output alone)."""

    code: int
    stdout: str
    stderr: str


def run_snapd(
    *args: str,
    env: Mapping[str, str],
    timeout: float = 120,
    cwd: Path | None = None,
) -> Result:
    """`snapd ARGS` with only `env` (plus PATH/HOME) in its environment; bounded in time."""
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    completed = subprocess.run(
        [SNAPD, *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=cwd,
    )
    return Result(completed.returncode, completed.stdout, completed.stderr)
