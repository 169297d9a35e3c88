"""A fork server for the end-to-end tests: `snapd` commands as real processes, without paying
the interpreter's start and snapd's imports (~0.8 s of CPU) once per command.

The suite runs `snapd` a few hundred times. The server is one Python process per test
worker that imports snapd's command modules once and then, for each command, forks a child
that does what the `snapd` console script does: `sys.exit(snapd.cli.main())`, with the
command's argv, environment, working directory and its own stdout/stderr files. So each
command is still its own process, with its own pid, exit code, signals and streams; only
the imports and botocore's parsed data files are shared (copy-on-write, see
tests/botocore_data.py). Nothing in the server runs a thread or an event loop, so forking it
is safe.

Protocol, one JSON object per line: the client writes `{"id", "argv", "env", "cwd",
"stdout", "stderr"}`; the server answers `{"id", "pid"}` at once and `{"pid", "code"}` when
that child exits (a pidfd per child tells it, so several commands may run at once).
`tests/integration/cli.py` is the client; the server is started by a session fixture
(`tests/integration/conftest.py`). Commands a test must watch as they run (signals,
terminals, daemons) start the console script with `subprocess.Popen` as before.
"""

from __future__ import annotations

import gc
import json
import os
import random
import select
import signal
import sys
from typing import Any

from tests.botocore_data import share_botocore_data

#: What the server imports before it forks: every module a command may load.
PRELOAD = ("snapd.cli", "snapd.commands", "snapd.service", "snapd.restore", "snapd.dr")


def _child(request: dict[str, Any], pidfds: tuple[int, ...]) -> None:
    """In the forked child: become `snapd ARGV` and never return. Its stdin, stdout and
    stderr replace the server's protocol pipes (fds 0 and 1); the server's pidfds close."""
    for fd in pidfds:
        os.close(fd)
    stdin = os.open(os.devnull, os.O_RDONLY)
    stdout = os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    stderr = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
        os.dup2(fd, target)
    for fd in {stdin, stdout, stderr} - {0, 1, 2}:
        os.close(fd)
    os.environ.clear()
    os.environ.update(request["env"])
    if request.get("cwd"):
        os.chdir(request["cwd"])
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    random.seed()
    sys.argv = list(request["argv"])
    from snapd.cli import main

    sys.exit(main())


def serve() -> None:
    """Read requests on stdin until it closes; fork one child per request."""
    for module in PRELOAD:
        __import__(module)
    share_botocore_data()
    # The collector of each child would otherwise walk (and so copy, page by page) every
    # object the server imported, in its collections and again at exit: ~0.2 s of CPU a
    # command. Frozen, they are never collected in the server nor in its children.
    gc.freeze()
    requests, answers = sys.stdin.fileno(), sys.stdout.fileno()
    children: dict[int, int] = {}  # pidfd → pid
    pending = b""
    while True:
        ready, _, _ = select.select([requests, *children], [], [])
        for fd in ready:
            if fd in children:
                pid = children.pop(fd)
                os.close(fd)
                _, status = os.waitpid(pid, 0)
                _answer(answers, {"pid": pid, "code": os.waitstatus_to_exitcode(status)})
                continue
            chunk = os.read(requests, 65536)
            if not chunk:
                return
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                request = json.loads(line)
                pid = os.fork()
                if pid == 0:
                    _child(request, tuple(children))
                children[os.pidfd_open(pid)] = pid
                _answer(answers, {"id": request["id"], "pid": pid})


def _answer(fd: int, message: dict[str, Any]) -> None:
    os.write(fd, (json.dumps(message) + "\n").encode())


if __name__ == "__main__":
    serve()
