"""Shared fixtures and the guards every test runs under.

- One moto server and one fake Kubernetes API server per test session (per xdist worker),
  emptied around every test that uses them; `aws` and `kube_client` connect to them.
- Every test must leave nothing running: an asyncio task still pending after an async test,
  or a child process still alive after any test, fails that test (and is cleaned up, so one
  leak does not hang the session). Children started by session-, module- or class-scoped
  fixtures belong to those fixtures and are not counted.
- pytest-timeout (pyproject.toml) fails a test that hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import os
import signal
import time
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path

import pytest

from simworld.ec2sim import Ec2Simulator
from simworld.fake_kube import CONTEXT, FakeKube, fake_kube_server
from simworld.moto_server import FAKE_AWS_ENV, MotoWorld, moto_server
from snapd import kube
from snapd.aws import AwsClients
from tests.botocore_data import share_botocore_data

# No test may ever reach real AWS, whatever the developer's shell has configured.
for _name in ("AWS_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
    os.environ.pop(_name, None)
os.environ.update(FAKE_AWS_ENV)
# Every botocore session of a worker shares one loader (tests/botocore_data.py).
share_botocore_data()


@pytest.fixture(scope="session")
def moto_session() -> Iterator[MotoWorld]:
    """The session's moto server."""
    with moto_server() as world:
        yield world


@pytest.fixture
def moto(moto_session: MotoWorld) -> Iterator[MotoWorld]:
    """A clean moto world for one test."""
    moto_session.reset()
    yield moto_session
    moto_session.reset()


@pytest.fixture
def ec2sim(moto: MotoWorld) -> Iterator[Ec2Simulator]:
    """The EC2 simulator patched into the moto server, on a clean world; removed after."""
    sim = Ec2Simulator.install()
    try:
        yield sim
    finally:
        sim.uninstall()


# No test may ever reach a real Kubernetes cluster through the developer's kubeconfig or an
# in-cluster service account: tests that need Kubernetes use the `fake_kube` fixture.
os.environ.pop("KUBERNETES_SERVICE_HOST", None)
os.environ["KUBECONFIG"] = "/nonexistent/snapd-tests/kubeconfig"


@pytest.fixture(scope="session")
def fake_kube_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeKube]:
    """The session's fake Kubernetes API server (its kubeconfig in a temp dir)."""
    with fake_kube_server(tmp_path_factory.mktemp("fake-kube")) as kube:
        yield kube


@pytest.fixture
def fake_kube(fake_kube_session: FakeKube, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeKube]:
    """An empty fake Kubernetes API for one test, with KUBECONFIG pointing at it."""
    fake_kube_session.reset()
    monkeypatch.setenv("KUBECONFIG", str(fake_kube_session.kubeconfig_path))
    yield fake_kube_session
    fake_kube_session.reset()


@pytest.fixture
async def aws(ec2sim: Ec2Simulator, request: pytest.FixtureRequest) -> AsyncIterator[AwsClients]:
    """snapd's AWS door onto the simulated world. botocore's attempts per call default to
    snapd's own; a module or test can set them: `pytest.mark.aws_max_attempts(3)`."""
    marker = request.node.get_closest_marker("aws_max_attempts")
    options = {"max_attempts": marker.args[0]} if marker else {}
    async with AwsClients(**options) as clients:
        yield clients


@pytest.fixture
async def kube_client(fake_kube: FakeKube) -> AsyncIterator[kube.KubeClient]:
    """A client of the fake API server, connected through its kubeconfig and context."""
    async with await kube.connect(
        context=CONTEXT, kubeconfig=str(fake_kube.kubeconfig_path)
    ) as connected:
        yield connected


# ------------------------------------------------------------------ leaks: tasks, processes

#: How long a child process or task may take to finish after its test before it is a leak.
LEAK_GRACE_SECONDS = 5.0
#: How long an async test's leftover tasks may take to finish on their own.
TASK_GRACE_SECONDS = 1.0
_fixture_children: set[int] = set()


def _command(pid: int) -> str:
    """A process's command line, for the failure message ("" once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def _live_children() -> dict[int, str]:
    """This process's child processes that still run (zombies are done): pid → command.

    Read from `/proc/<pid>/task/<tid>/children` (Linux), which lists the children of every
    thread of ours — a cheap read, unlike a scan of every process on the machine.
    """
    children: dict[int, str] = {}
    tasks = Path(f"/proc/{os.getpid()}/task")
    for task in tasks.iterdir() if tasks.is_dir() else ():
        try:
            pids = (task / "children").read_text().split()
        except OSError:  # the thread ended while we looked
            continue
        for pid in map(int, pids):
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:  # it exited while we looked
                continue
            # The state follows the command name, which may hold spaces and parentheses.
            if stat[stat.rfind(")") + 2 :].split()[0] != "Z":
                children[pid] = _command(pid) or stat[stat.find("(") + 1 : stat.rfind(")")]
    return children


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[object], request: pytest.FixtureRequest
) -> Generator[None, object, object]:
    """Children that a longer-lived fixture starts are that fixture's, not a test's leak."""
    if fixturedef.scope == "function":
        return (yield)
    before = set(_live_children())
    try:
        return (yield)
    finally:
        _fixture_children.update(set(_live_children()) - before)


def _leaked_children(before: set[int]) -> dict[int, str]:
    """Children started during the test that are still running after the grace period."""
    deadline = time.monotonic() + LEAK_GRACE_SECONDS
    while True:
        leaked = {
            pid: command
            for pid, command in _live_children().items()
            if pid not in before and pid not in _fixture_children
        }
        if not leaked or time.monotonic() >= deadline:
            return leaked
        time.sleep(0.05)


@pytest.fixture(autouse=True)
def no_leaked_processes_or_tasks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fails the test if it leaves a child process running (killed here) or, for an async
    test, an asyncio task pending (cancelled here)."""
    if inspect.iscoroutinefunction(getattr(request, "function", None)):
        request.getfixturevalue("no_leaked_tasks")
    before = set(_live_children())
    yield
    leaked = _leaked_children(before)
    for pid in leaked:
        # It may have exited, or been reaped by its owner, since we looked.
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    if leaked:
        listing = "; ".join(f"pid {pid}: {command}" for pid, command in sorted(leaked.items()))
        pytest.fail(f"the test left child processes running (now killed): {listing}")


@pytest.fixture
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Fails an async test that leaves asyncio tasks pending on its loop (cancelled here).

    Set up before the test's other fixtures and torn down after them, so tasks that a
    fixture owns and stops in its teardown are not counted.
    """
    before = asyncio.all_tasks()
    yield
    pending = [t for t in asyncio.all_tasks() - before if t is not asyncio.current_task()]
    if pending:
        # A task that is finishing (a poller's last sleep, a cancelled task unwinding) is
        # not a leak: only one still running after the grace period is, so this cannot flake.
        _, still = await asyncio.wait(pending, timeout=TASK_GRACE_SECONDS)
        pending = [t for t in still if not t.done()]
    if not pending:
        return
    leaked = pending
    for task in leaked:
        task.cancel()
    await asyncio.wait(leaked, timeout=LEAK_GRACE_SECONDS)
    names = ", ".join(sorted(f"{t.get_name()} ({t.get_coro()!r})" for t in leaked))
    pytest.fail(f"the test left asyncio tasks pending (now cancelled): {names}")


def pytest_collection_finish(session: pytest.Session) -> None:
    """What is imported by now (moto, botocore, snapd, the tests) lives as long as the worker:
    freeze it, so that the worker's garbage collections stop walking it again and again."""
    gc.freeze()
