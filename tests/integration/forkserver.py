"""A fork server for the end-to-end tests: `snapd` commands as real processes, without paying
the interpreter's start and snapd's imports (~0.8 s of CPU) once per command.

The suite runs `snapd` a few hundred times. The server is one Python process per test
worker that imports snapd's command modules once and then, for each command, forks a child
that does what the `snapd` console script does: `sys.exit(snapd.cli.main())`, with the
command's argv, environment, working directory and its own stdout/stderr files. So each
command is still its own process, with its own pid, exit code, signals and streams; only
the imports and botocore's parsed data files are shared (copy-on-write, see
`_share_botocore_data`). Nothing in the server runs a thread or an event loop, so forking it
is safe.

Protocol, one JSON object per line: the client writes `{"id", "argv", "env", "cwd",
"stdout", "stderr"}`; the server answers `{"id", "pid"}` at once and `{"pid", "code"}` when
that child exits (a pidfd per child tells it, so several commands may run at once).
`tests/integration/cli.py` is the client; the server is started by a session fixture
(`tests/integration/conftest.py`). Commands a test must watch as they run (signals,
terminals, daemons) start the console script with `subprocess.Popen` as before.
"""

from __future__ import annotations

import json
import os
import random
import select
import signal
import sys
from typing import Any

#: What the server imports before it forks: every module a command may load.
PRELOAD = ("snapd.cli", "snapd.commands", "snapd.service", "snapd.restore", "snapd.dr")
#: The AWS services snapd calls, whose models the server reads before it forks.
AWS_SERVICES = ("ec2", "s3", "rbin", "sts")


def _share_botocore_data() -> None:
    """Read botocore's data files (service models, endpoints, rules) once for every command.

    botocore parses them into a cache per session (ec2's model alone is 0.06 s of JSON), and
    each `snapd` command makes its own session, so each command parsed them again: ~0.12 s
    of CPU a command, over a few hundred commands. Here every session of the server and its
    children gets one loader, filled before the fork, as every client of one session shares
    one loader in botocore itself: the same data, the same requests, less parsing.
    A session given its own data path (`AWS_DATA_PATH`) still gets a loader of its own.
    """
    import botocore.loaders
    import botocore.session

    shared = botocore.loaders.create_loader()
    own_loader = botocore.session.create_loader

    def create_loader(search_path_string: str | None = None) -> botocore.loaders.Loader:
        return shared if search_path_string is None else own_loader(search_path_string)

    botocore.session.create_loader = create_loader
    session = botocore.session.get_session()
    for service in AWS_SERVICES:
        # Explicit keys: building a client must not look for credentials (or reach IMDS).
        session.create_client(
            service, region_name="us-east-1", aws_access_key_id="-", aws_secret_access_key="-"
        )


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
    _share_botocore_data()
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
