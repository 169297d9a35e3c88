"""A real `snapd run` subprocess for tests: started, probed, scraped, stopped with SIGTERM.

The daemon binds its metrics server to a free port (`SNAPD_METRICS_PORT=0`) and says which
in its `service.started` JSON log line (`metrics_port`); `Daemon.start` waits for that line.
stderr is read line by line on a thread, so tests can look at the log while it runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any, TypeVar

from prometheus_client.parser import text_string_to_metric_families

from tests.integration.cli import SNAPD

T = TypeVar("T")
Labels = tuple[tuple[str, str], ...]

#: Bound on start-up (imports, AWS clients, the metrics socket) and on a SIGTERM drain.
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0


def child_env(env: Mapping[str, str]) -> dict[str, str]:
    """`env` plus PATH/HOME/LANG/TMPDIR only: nothing of the developer's shell leaks in."""
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    return {**base, **env}


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
    explain: Callable[[], str] | None = None,
) -> T:
    """Call `probe` until it returns a truthy value (True, a non-empty list, ...) and
    return that value; fail after `timeout` seconds naming `what` (and `explain()`)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            detail = f"\n{explain()}" if explain else ""
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}{detail}")
        time.sleep(interval)


@dataclass(frozen=True)
class Scrape:
    """One parsed /metrics answer: sample name + sorted labels → value."""

    samples: dict[tuple[str, Labels], float]

    @classmethod
    def parse(cls, text: str) -> Scrape:
        return cls(
            {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text)
                for s in family.samples
            }
        )

    def value(self, name: str, **labels: str) -> float | None:
        """The sample's value, or None when the series is not exported."""
        return self.samples.get((name, tuple(sorted(labels.items()))))

    def series(self, name: str) -> dict[Labels, float]:
        """Every label set of one sample name."""
        return {labels: v for (n, labels), v in self.samples.items() if n == name}


class Daemon:
    """`snapd run` with `env`; `start()` waits for its `service.started` line."""

    def __init__(self, env: Mapping[str, str], name: str = "snapd") -> None:
        self.name = name
        self.env = child_env({**env, "SNAPD_METRICS_PORT": "0", "SNAPD_LOG_FORMAT": "json"})
        self.stderr_lines: list[str] = []
        self.stdout_lines: list[str] = []
        self.started: dict[str, Any] | None = None
        self._started_event = threading.Event()
        self.process: subprocess.Popen[str] | None = None
        self._readers: list[threading.Thread] = []

    # ---------------------------------------------------------------- life cycle

    def start(self, timeout: float = START_TIMEOUT) -> Daemon:
        """Launch and wait for the `service.started` line."""
        return self.launch().wait_started(timeout)

    def launch(self) -> Daemon:
        """Start the process; `wait_started` waits for it to serve."""
        self.process = subprocess.Popen(
            [SNAPD, "run"],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        self._readers = [
            threading.Thread(
                target=self._read, args=(self.process.stderr, True), name=f"{self.name}-stderr"
            ),
            threading.Thread(
                target=self._read, args=(self.process.stdout, False), name=f"{self.name}-stdout"
            ),
        ]
        for reader in self._readers:
            reader.start()
        return self

    def wait_started(self, timeout: float = START_TIMEOUT) -> Daemon:
        """Until the `service.started` line (bounded; the process is killed on failure)."""
        process = self._running()
        deadline = time.monotonic() + timeout
        while not self._started_event.wait(0.05):
            if process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise AssertionError(
                    f"{self.name}: no service.started line within {timeout:g}s "
                    f"(exit {process.returncode}):\n{self.stderr}"
                )
        return self

    def _read(self, stream: IO[str], is_stderr: bool) -> None:
        for line in stream:
            if not is_stderr:
                self.stdout_lines.append(line)
                continue
            self.stderr_lines.append(line)
            if self.started is None:
                event = _json(line)
                if event is not None and event.get("event") == "service.started":
                    self.started = event
                    self._started_event.set()

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, then the exit code (bounded; killed and failed if it hangs)."""
        process = self._running()
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.name}: still running {timeout:g}s after SIGTERM") from None
        self._close()
        return code

    def kill(self) -> None:
        """Teardown: SIGKILL if still running; reap it and close the pipes."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT)
        self._close()

    def _close(self) -> None:
        for reader in self._readers:
            reader.join(timeout=STOP_TIMEOUT)
        process = self._running()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()

    def _running(self) -> subprocess.Popen[str]:
        assert self.process is not None, f"{self.name} was never started"
        return self.process

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # ---------------------------------------------------------------- what it says

    @property
    def port(self) -> int:
        assert self.started is not None, f"{self.name} has not started"
        return int(self.started["metrics_port"])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)

    @property
    def stdout(self) -> str:
        return "".join(self.stdout_lines)

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """Parsed JSON log lines so far, optionally only those with event `name`."""
        parsed = [e for e in map(_json, list(self.stderr_lines)) if e is not None]
        return [e for e in parsed if name is None or e.get("event") == name]

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, str]:
        """GET `path` on the metrics server: (status, body)."""
        # The URL is the loopback address the daemon reported, never user input.
        try:
            # S310: the daemon's own http:// metrics address.
            with urllib.request.urlopen(self.url + path, timeout=timeout) as response:  # noqa: S310
                return int(response.status), response.read().decode()
        except urllib.error.HTTPError as error:
            return int(error.code), error.read().decode()

    def scrape(self) -> Scrape:
        status, text = self.get("/metrics")
        assert status == 200, f"{self.name} /metrics answered {status}: {text}"
        return Scrape.parse(text)


@contextmanager
def running(env: Mapping[str, str], name: str = "snapd") -> Iterator[Daemon]:
    """A started daemon, killed at exit if the test did not stop it."""
    with running_many(env, name) as (daemon,):
        yield daemon


@contextmanager
def running_many(env: Mapping[str, str], *names: str) -> Iterator[list[Daemon]]:
    """Daemons launched side by side (start-up overlaps), each killed at exit if still up."""
    daemons = [Daemon(env, name) for name in names]
    try:
        for daemon in daemons:
            daemon.launch()
        yield [daemon.wait_started() for daemon in daemons]
    finally:
        for daemon in daemons:
            daemon.kill()


def _json(line: str) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
