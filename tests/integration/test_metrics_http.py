"""/metrics, /healthz and /readyz over real HTTP, served from the test's own event loop."""

from __future__ import annotations

import asyncio
import threading
import urllib.error
import urllib.request
from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from simworld.ec2sim import ManualClock
from snapd.metrics import Health, Metrics, MetricsServer, serve_http


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


async def get(http: aiohttp.ClientSession, server: MetricsServer, path: str) -> tuple[int, str]:
    async with http.get(server.url + path) as response:
        return response.status, await response.text()


async def test_metrics_are_scraped_over_http() -> None:
    """Prometheus scrapes the contract's series, zero-valued ones included, on a free port."""
    metrics = Metrics()
    metrics.copies_started.inc(3)
    metrics.set_recovery_points({("shop", "data-db-0"): 1_700_000_000.0})
    async with (
        await serve_http(metrics, 0, Health(), host="127.0.0.1") as server,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http,
        http.get(f"http://127.0.0.1:{server.port}/metrics") as response,
    ):
        assert server.port > 0
        assert response.status == 200
        assert response.content_type == "text/plain"
        text = await response.text()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("snapd_copies_started_total", ())] == 3
    assert samples[("snapd_sync_cycles_total", (("result", "failure"),))] == 0
    assert samples[("snapd_prunes_total", (("result", "held_back"),))] == 0
    key = ("snapd_recovery_point_timestamp_seconds", (("namespace", "shop"), ("pvc", "data-db-0")))
    assert samples[key] == 1_700_000_000.0


async def test_readyz_turns_ready_when_start_up_is_done(http: aiohttp.ClientSession) -> None:
    """/readyz is 503 until start-up calls mark_ready, then 200."""
    health = Health()
    async with await serve_http(Metrics(), 0, health, host="127.0.0.1") as server:
        assert (await get(http, server, "/readyz"))[0] == 503
        health.mark_ready()
        assert await get(http, server, "/readyz") == (200, "ready\n")


async def test_healthz_fails_when_the_heartbeat_is_stale(http: aiohttp.ClientSession) -> None:
    """/healthz is 503 once the last heartbeat is older than max_lag, 200 after a new tick."""
    clock = ManualClock()
    # The heartbeat ticks once at start and then not for an hour: time is the fake clock's.
    health = Health(interval=3600, max_lag=10, clock=clock)
    async with await serve_http(Metrics(), 0, health, host="127.0.0.1") as server:
        assert await get(http, server, "/healthz") == (200, "ok\n")
        clock.now += 11
        status, text = await get(http, server, "/healthz")
        assert status == 503
        assert "last heartbeat 11.0s ago" in text
        health.tick()
        assert (await get(http, server, "/healthz"))[0] == 200


async def test_heartbeat_task_keeps_a_running_loop_alive(http: aiohttp.ClientSession) -> None:
    """While the loop runs, the heartbeat task ticks by itself and /healthz recovers."""
    clock = ManualClock()
    health = Health(interval=0.01, max_lag=10, clock=clock)
    async with await serve_http(Metrics(), 0, health, host="127.0.0.1") as server:
        clock.now += 60  # as if a minute passed with no tick
        assert not health.alive
        statuses = []
        for _ in range(500):  # bounded: 5 s at most
            statuses.append((await get(http, server, "/healthz"))[0])
            if statuses[-1] == 200:
                break
            await asyncio.sleep(0.01)
        assert statuses[-1] == 200


async def test_a_blocked_loop_does_not_answer_healthz() -> None:
    """A probe sent while the loop is blocked gets no answer (a kubelet failure); then 200."""
    loop = asyncio.get_running_loop()
    release = threading.Event()
    outcome: list[str] = []
    async with await serve_http(Metrics(), 0, Health(), host="127.0.0.1") as server:
        url = f"{server.url}/healthz"

        def probe_while_blocked() -> None:
            loop.call_soon_threadsafe(release.wait, 5)  # blocks the loop until released
            try:
                # S310: the URL is the test server's own http:// address.
                with urllib.request.urlopen(url, timeout=0.5) as response:  # noqa: S310
                    outcome.append(str(response.status))
            except (TimeoutError, urllib.error.URLError) as exc:
                outcome.append(type(exc).__name__)
            finally:
                release.set()

        await asyncio.to_thread(probe_while_blocked)
        assert outcome in (["TimeoutError"], ["URLError"])
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http,
            http.get(url) as response,
        ):
            assert response.status == 200


async def test_stop_closes_the_port() -> None:
    """After stop() nothing listens on the port any more."""
    server = await serve_http(Metrics(), 0, Health(), host="127.0.0.1")
    port = server.port
    await server.stop()
    with pytest.raises(OSError, match=r"(?i)refused|connect"):
        await asyncio.open_connection("127.0.0.1", port)


async def test_default_host_listens_on_every_interface() -> None:
    """The default binds 0.0.0.0, so the kubelet and Prometheus reach it via the pod IP."""
    async with await serve_http(Metrics(), 0, Health()) as server:
        # S104: asserting the default bind address, not binding.
        assert server.host == "0.0.0.0"  # noqa: S104
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.close()
        await writer.wait_closed()
