"""Running the real `snapd` command as a subprocess, the way an operator would."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

SNAPD = str(Path(sys.executable).with_name("snapd"))
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    """Exit code and the two streams, kept apart (stdout is the command's output alone)."""

    code: int
    stdout: str
    stderr: str


class ForkServer:
    """Client of `tests/integration/forkserver.py`: each `run` is a `snapd` process of its
    own, forked from a server that imported snapd once (see that module for why)."""

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.forkserver"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self._lock = threading.Lock()
        self._next_id = 0
        self._started: dict[int, Future[int]] = {}  # request id → pid
        self._exits: dict[int, Future[int]] = {}  # pid → exit code
        self._early: dict[int, int] = {}  # exits read before their pid was known
        self._reader = threading.Thread(target=self._read, name="forkserver-reader", daemon=True)
        self._reader.start()

    def run(
        self, args: tuple[str, ...], env: Mapping[str, str], timeout: float, cwd: Path | None
    ) -> Result:
        """`snapd ARGS` in a forked child; its exit code and streams. On timeout the child
        is killed and `subprocess.TimeoutExpired` raised, as `subprocess.run` does."""
        with tempfile.TemporaryDirectory(prefix="snapd-run-") as tmp:
            out, err = Path(tmp, "stdout"), Path(tmp, "stderr")
            pid, exited = self._start(
                {
                    "argv": [SNAPD, *args],
                    "env": dict(env),
                    "cwd": str(cwd) if cwd else None,
                    "stdout": str(out),
                    "stderr": str(err),
                }
            )
            try:
                code = exited.result(timeout=timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                    os.kill(pid, signal.SIGKILL)
                exited.result(timeout=30)
                raise subprocess.TimeoutExpired([SNAPD, *args], timeout) from None
            return Result(code, out.read_text(), err.read_text())

    def close(self) -> None:
        stdin: IO[bytes] | None = self._process.stdin
        if stdin is not None:
            stdin.close()
        self._process.wait(timeout=30)
        self._reader.join(timeout=30)
        if self._process.stdout is not None:
            self._process.stdout.close()

    def _start(self, request: dict[str, Any]) -> tuple[int, Future[int]]:
        with self._lock:
            self._next_id += 1
            started: Future[int] = Future()
            self._started[self._next_id] = started
            line = json.dumps({"id": self._next_id, **request}) + "\n"
            stdin = self._process.stdin
            assert stdin is not None
            stdin.write(line.encode())
            stdin.flush()
        pid = started.result(timeout=60)
        return pid, self._exit_of(pid)

    def _exit_of(self, pid: int) -> Future[int]:
        with self._lock:
            exited = self._exits.setdefault(pid, Future())
            if pid in self._early:
                exited.set_result(self._early.pop(pid))
            return exited

    def _read(self) -> None:
        stdout = self._process.stdout
        assert stdout is not None
        for line in stdout:
            message = json.loads(line)
            with self._lock:
                if "id" in message:
                    self._started.pop(message["id"]).set_result(message["pid"])
                elif message["pid"] in self._exits:
                    self._exits.pop(message["pid"]).set_result(message["code"])
                else:
                    self._early[message["pid"]] = message["code"]


_server: ForkServer | None = None


def use_fork_server(server: ForkServer | None) -> None:
    """Make `run_snapd` fork its commands from `server` (None: start the console script)."""
    global _server  # noqa: PLW0603 - one server per test worker, set by a session fixture
    _server = server


def run_snapd(
    *args: str,
    env: Mapping[str, str],
    timeout: float = 120,
    cwd: Path | None = None,
) -> Result:
    """`snapd ARGS` with only `env` (plus PATH/HOME) in its environment; bounded in time."""
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    if _server is not None:
        return _server.run(args, {**base, **env}, timeout, cwd)
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
