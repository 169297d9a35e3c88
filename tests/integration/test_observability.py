"""What an operator sees of a running snapd: metrics, health probes, logs, `status -o json`.

Every test drives the real `snapd` CLI as a subprocess against the moto server, the EC2
simulator and a seeded Velero bucket (and the fake Kubernetes API for leader election).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from functools import partial
from typing import Any

from simworld.ec2sim import KMS_KEY_NOT_ACCESSIBLE, Ec2Simulator, ManualClock
from simworld.fake_kube import FakeKube
from simworld.moto_server import MotoWorld
from simworld.velero_bucket import BuiltBackup, VeleroBucket
from snapd.aws import AwsClients
from snapd.config import Settings
from snapd.metrics import Metrics
from snapd.service import Engine
from snapd.tags import format_time
from tests.integration.cli import SNAPD, run_snapd
from tests.integration.daemon import (
    Daemon,
    Scrape,
    child_env,
    running,
    running_many,
    wait_until,
)
from tests.integration.test_cli_sync import BUCKET, DST, SRC, replicas, seed, settings_env

WAIT = 30.0  # bound on every wait for the daemon to do something

#: Series the contract names that exist from the first scrape (labelled ones at zero).
#: `snapd_aws_errors_total` and `snapd_recovery_point_timestamp_seconds` have no label
#: values before something happens, so they are not here.
FIRST_SCRAPE_SERIES: list[tuple[str, dict[str, str]]] = [
    # Label values spelled out from docs/contract.md#metrics, not imported: the contract is
    # the reference.
    *(("snapd_sync_cycles_total", {"result": r}) for r in ("success", "failure")),
    *(("snapd_copies_failed_total", {"reason": r}) for r in ("rejected", "error_state", "timeout")),
    *(("snapd_prunes_total", {"result": r}) for r in ("deleted", "failed", "held_back")),
    ("snapd_last_successful_sync_timestamp_seconds", {}),
    ("snapd_copies_started_total", {}),
    ("snapd_copies_completed_total", {}),
    ("snapd_copies_in_flight", {}),
    ("snapd_copy_duration_seconds_count", {}),
    ("snapd_backlog_snapshots", {}),
    ("snapd_velero_backups_unreadable", {}),
    ("snapd_leader", {}),
]

SECRET_KEY = "snapd-test-SECRET-7f3a9c1e5b2d4806"
SESSION_TOKEN = "snapd-test-SESSION-TOKEN-0e4b8d2a6c1f9357"


def only_backup(bucket: VeleroBucket) -> tuple[str, BuiltBackup]:
    """Name and record of the one backup a `seed(..., days=1)` bucket holds."""
    ((name, built),) = bucket.backups.items()
    return name, built


def test_metrics_move_as_copies_complete_and_fail(moto: MotoWorld, ec2sim: Ec2Simulator) -> None:
    """/metrics shows copies, failures, cycles, recovery points, leader; alert series from start."""
    ec2sim.copy_duration = 0.2
    bucket = seed(moto, days=1)
    name, built = only_backup(bucket)
    broken, good = built.snapshots
    assert broken.snapshot_id
    assert good.snapshot_id
    ec2sim.fail_copies(broken.snapshot_id, times=100)
    # The broken copy ends in `error` after the one early prune pass (at 1 s), which would
    # otherwise sweep it from under the copier — the race the last test below pins down.
    ec2sim.copy_durations[broken.snapshot_id] = 3.0
    env = settings_env(moto, SNAPD_SYNC_INTERVAL="1s", SNAPD_COPY_RETRIES="1")

    with running(env) as daemon:
        first = daemon.scrape()
        missing = [
            (n, labels) for n, labels in FIRST_SCRAPE_SERIES if first.value(n, **labels) is None
        ]
        assert missing == [], f"series missing from the first scrape: {missing}"

        def settled() -> Scrape | None:
            s = daemon.scrape()
            done = (
                (s.value("snapd_copies_completed_total") or 0) >= 1
                and (s.value("snapd_copies_failed_total", reason="error_state") or 0) >= 1
                and s.series("snapd_recovery_point_timestamp_seconds")
                and s.value("snapd_copies_in_flight") == 0
                and (s.value("snapd_sync_cycles_total", result="success") or 0) >= 1
            )
            return s if done else None

        def explain() -> str:
            snapd = {k: v for k, v in daemon.scrape().samples.items() if "bucket" not in k[0]}
            return f"metrics: {snapd}\nstderr:\n{daemon.stderr}"

        scrape = wait_until(
            settled, timeout=WAIT, what="a completed and a failed copy in /metrics", explain=explain
        )
        assert daemon.stop() == 0, daemon.stderr

    assert (scrape.value("snapd_copies_started_total") or 0) > 0
    assert scrape.value("snapd_copies_completed_total") == 1  # the good copy, once
    assert scrape.value("snapd_copies_failed_total", reason="error_state") == 1  # 1 try, given up
    assert scrape.value("snapd_copies_failed_total", reason="rejected") == 0
    assert scrape.value("snapd_copies_failed_total", reason="timeout") == 0
    assert scrape.value("snapd_copy_duration_seconds_count") == 1
    assert scrape.value("snapd_copies_in_flight") == 0
    assert scrape.value("snapd_backlog_snapshots") == 0
    assert scrape.value("snapd_sync_cycles_total", result="failure") == 0
    last_sync = scrape.value("snapd_last_successful_sync_timestamp_seconds") or 0
    assert 0 < last_sync <= time.time()
    assert scrape.value("snapd_leader") == 1
    assert scrape.series("snapd_recovery_point_timestamp_seconds") == {
        (("namespace", good.volume.namespace), ("pvc", good.volume.pvc)): built.start.timestamp()
    }, f"recovery point of {name} expected for {good.volume.pvc} only"


def is_ready(daemon: Daemon) -> bool:
    """Whether /readyz says ready; an answer slower than the GET's timeout (a loaded
    machine) is "not yet", and the caller's bounded wait asks again."""
    try:
        return daemon.get("/readyz") == (200, "ready\n")
    except TimeoutError:
        return False


def test_probes_answer_while_running(moto: MotoWorld, ec2sim: Ec2Simulator) -> None:
    """The kubelet's probes pass: /readyz once started, /healthz while running."""
    # A stalled loop failing /healthz is covered in test_metrics_http.py.
    seed(moto, days=1)
    with running(settings_env(moto, SNAPD_SYNC_INTERVAL="1s")) as daemon:
        wait_until(partial(is_ready, daemon), timeout=WAIT, what="/readyz")
        assert daemon.get("/healthz") == (200, "ok\n")
        # Still alive after it has done real work (a cycle and its copies).
        wait_until(
            lambda: daemon.scrape().value("snapd_copies_completed_total") == 2,
            timeout=WAIT,
            what="both copies completed",
        )
        assert daemon.get("/healthz") == (200, "ok\n")
        assert daemon.stop() == 0, daemon.stderr


def lease_holder(fake_kube: FakeKube) -> str | None:
    lease = fake_kube.get("Lease", "snapd", "default")
    return lease["spec"].get("holderIdentity") if lease else None


def identity(daemon: Daemon) -> str | None:
    """The holder identity a daemon logged when it took the Lease (None: it never led)."""
    started = daemon.events("leader.started")
    return str(started[-1]["identity"]) if started else None


def lease_story(*daemons: Daemon) -> str:
    """Each daemon's lease and leader log lines, for a failure message."""
    lines = []
    for daemon in daemons:
        events = [e for e in daemon.events() if e["event"].startswith(("lease.", "leader."))]
        story = [(e["event"], e.get("reason"), e["timestamp"]) for e in events]
        lines.append(f"{daemon.name}: {story}")
    return "\n".join(lines)


def test_leader_election_one_leader_and_fail_over(
    moto: MotoWorld, ec2sim: Ec2Simulator, fake_kube: FakeKube
) -> None:
    """Two replicas: one leader, both ready; SIGTERM the leader and the standby takes over."""
    ec2sim.copy_duration = 0.1
    seed(moto, days=1)
    env = settings_env(
        moto,
        SNAPD_SYNC_INTERVAL="1s",
        SNAPD_LEADER_ELECTION="true",
        SNAPD_LEASE_DURATION="2s",
        SNAPD_DRAIN_TIMEOUT="5s",
        KUBECONFIG=str(fake_kube.kubeconfig_path),
        POD_NAMESPACE="default",
    )
    with running_many(env, "snapd-a", "snapd-b") as (a, b):
        for daemon in (a, b):  # the standby is ready too: it serves and waits for the Lease
            wait_until(partial(is_ready, daemon), timeout=WAIT, what=f"{daemon.name} /readyz")

        def the_leader() -> Daemon | None:
            """The one daemon reporting snapd_leader 1 while the other reports 0, and
            named by the Lease. A 2s Lease may change hands on a loaded machine (a late
            renewal steps down, as it must), so the roles are read, not assumed."""
            flags = [d.scrape().value("snapd_leader") for d in (a, b)]
            if flags.count(1) != 1 or flags.count(0) != 1:
                return None
            leader = (a, b)[flags.index(1)]
            return leader if identity(leader) == lease_holder(fake_kube) else None

        wait_until(
            lambda: (
                len(replicas(moto)) == 2 and all(r["State"] == "completed" for r in replicas(moto))
            ),
            timeout=WAIT,
            what="both copies completed",
        )
        leader = wait_until(the_leader, timeout=WAIT, what="exactly one leader, holding the Lease")
        standby = b if leader is a else a
        assert standby.get("/healthz")[0] == 200
        assert standby.get("/readyz")[0] == 200
        cycles = standby.scrape().value("snapd_sync_cycles_total", result="success") or 0

        assert leader.stop() == 0, leader.stderr
        wait_until(
            lambda: standby.scrape().value("snapd_leader") == 1,
            timeout=10,
            what=f"the standby to lead after the leader's SIGTERM\n{lease_story(a, b)}",
        )
        wait_until(
            lambda: identity(standby) == lease_holder(fake_kube),
            timeout=WAIT,
            what="the Lease to name the new leader",
        )
        wait_until(
            lambda: (
                (standby.scrape().value("snapd_sync_cycles_total", result="success") or 0) > cycles
            ),
            timeout=WAIT,
            what="a cycle of the new leader",
        )
        # Each source copied once, across the fail-over: the new leader re-lists and finds
        # the replicas.
        assert ec2sim.calls["CopySnapshot"] == 2, lease_story(a, b)
        assert standby.stop() == 0, standby.stderr


def log_events(stderr: str) -> list[dict[str, Any]]:
    """Every stderr line as a JSON object; fails on any line that is not one."""
    events = []
    for number, line in enumerate(stderr.splitlines(), 1):
        value = json.loads(line)
        assert isinstance(value, dict), f"stderr line {number} is not a JSON object: {line}"
        assert isinstance(value.get("event"), str), f"stderr line {number} has no event: {line}"
        events.append(value)
    return events


def secret_env(moto: MotoWorld, **extra: str) -> dict[str, str]:
    """Settings with distinctive credentials (moto accepts any) and debug logging."""
    return settings_env(
        moto,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_SESSION_TOKEN=SESSION_TOKEN,
        SNAPD_LOG_LEVEL="debug",
        SNAPD_LOG_FORMAT="json",
        **extra,
    )


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert SECRET_KEY not in text
        assert SESSION_TOKEN not in text
        assert SECRET_KEY[-12:] not in text  # not even partly
        assert SESSION_TOKEN[-12:] not in text


def test_sync_logs_json_events_and_never_a_secret(moto: MotoWorld, ec2sim: Ec2Simulator) -> None:
    """`snapd sync` logs JSON lines with stable events on stderr, output on stdout, no secret."""
    ec2sim.copy_duration = 0.1
    bucket = seed(moto, days=1)
    _, built = only_backup(bucket)
    result = run_snapd("sync", "-o", "json", env=secret_env(moto))
    assert result.code == 0, result.stderr
    assert_no_secret(result.stdout, result.stderr)

    output = json.loads(result.stdout)  # stdout is the command's output and nothing else
    assert output["result"]["copies_completed"] == 2
    events = log_events(result.stderr)
    assert all({"level", "timestamp"} <= set(e) for e in events)
    (cycle,) = [e for e in events if e["event"] == "cycle.completed"]
    assert isinstance(cycle["seconds"], float | int)
    assert cycle["seconds"] >= 0
    assert cycle["sources"] == 2
    assert cycle["copies_planned"] == 2
    assert cycle["copies_queued"] == 2
    assert cycle["errors"] == 0
    assert cycle["cycle"]
    started = {e["snapshot_id"]: e for e in events if e["event"] == "copy.started"}
    completed = {e["snapshot_id"]: e for e in events if e["event"] == "copy.completed"}
    assert set(started) == set(completed)
    assert {e["source_snapshot_id"] for e in started.values()} == set(built.snapshot_ids)
    assert all(e["backup"] == built.name for e in started.values())


def test_run_logs_effective_settings_at_start_and_no_secret(
    moto: MotoWorld, ec2sim: Ec2Simulator
) -> None:
    """`snapd run` logs its effective settings first (`service.started`) and never a secret."""
    ec2sim.copy_duration = 0.1
    seed(moto, days=1)
    env = secret_env(moto, SNAPD_SYNC_INTERVAL="1s", SNAPD_MAX_IN_FLIGHT="3")
    with running(env) as daemon:
        wait_until(
            lambda: daemon.scrape().value("snapd_copies_completed_total") == 2,
            timeout=WAIT,
            what="both copies completed",
        )
        assert daemon.stop() == 0, daemon.stderr
    assert_no_secret(daemon.stdout, daemon.stderr)
    assert daemon.stdout == ""
    events = log_events(daemon.stderr)
    names = [e["event"] for e in events]
    assert names.count("service.started") == 1
    # The settings line comes before any work (only library debug lines may precede it).
    assert names.index("service.started") < names.index("cycle.completed")
    started = events[names.index("service.started")]
    settings = started["settings"]
    assert settings["velero_bucket"] == BUCKET
    assert settings["schedules"] == ["daily"]
    assert settings["destination_region"] == DST
    assert settings["scope"] == BUCKET
    assert settings["sync_interval"] == "1s"
    assert settings["max_in_flight"] == 3
    assert settings["metrics_port"] == 0
    assert settings["log_level"] == "debug"
    assert started["metrics_port"] == daemon.port
    assert daemon.port > 0
    assert {"cycle.completed", "copy.started", "copy.completed", "service.stopped"} <= set(names)


def status_json(moto: MotoWorld) -> dict[str, Any]:
    result = run_snapd("status", "-o", "json", env=settings_env(moto))
    assert result.code == 0, result.stderr
    status: dict[str, Any] = json.loads(result.stdout)
    for key in ("in_flight", "backlog"):
        assert type(status[key]) is int, f"{key} must be an integer: {status[key]!r}"
    for schedule in status["schedules"]:
        assert set(schedule) >= {"name", "newest_backup", "volumes", "replicated"}
        assert type(schedule["volumes"]) is int
        assert type(schedule["replicated"]) is int
    for pvc in status["pvcs"]:
        assert set(pvc) >= {"namespace", "pvc", "recovery_point", "age_seconds"}
        assert type(pvc["age_seconds"]) is int
    return status


def test_status_json_before_during_and_after_a_sync(moto: MotoWorld, ec2sim: Ec2Simulator) -> None:
    """`status -o json`: backlog before a sync, copies in flight during, all replicated after."""
    bucket = seed(moto, days=1)
    name, built = only_backup(bucket)
    before = status_json(moto)
    (schedule,) = before["schedules"]
    assert (schedule["name"], schedule["newest_backup"]) == ("daily", name)
    assert (schedule["volumes"], schedule["replicated"]) == (2, 0)
    assert before["pvcs"] == []
    assert (before["in_flight"], before["backlog"]) == (0, 2)

    # Copies stay pending until the test moves the simulator's clock: no race with `status`.
    clock = ManualClock(start=time.monotonic())
    ec2sim.clock = clock
    ec2sim.copy_duration = 60.0
    sync = subprocess.Popen(
        [SNAPD, "sync"],
        env=child_env(settings_env(moto)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: ec2sim.pending_count(DST) == 2, timeout=WAIT, what="2 pending copies")
        during = status_json(moto)
        clock.advance(60.0)
        assert sync.wait(timeout=WAIT) == 0
    finally:
        if sync.poll() is None:
            sync.send_signal(signal.SIGKILL)
            sync.wait(timeout=10)
    assert during["in_flight"] == 2
    assert during["schedules"][0]["replicated"] == 0

    after = status_json(moto)
    (schedule,) = after["schedules"]
    assert (schedule["newest_backup"], schedule["volumes"], schedule["replicated"]) == (name, 2, 2)
    assert (after["in_flight"], after["backlog"]) == (0, 0)
    point = format_time(built.start)
    assert sorted((p["namespace"], p["pvc"], p["recovery_point"]) for p in after["pvcs"]) == sorted(
        (s.volume.namespace, s.volume.pvc, point) for s in built.snapshots
    )
    expected_age = time.time() - built.start.timestamp()
    assert all(abs(p["age_seconds"] - expected_age) < 120 for p in after["pvcs"])


async def test_an_error_copy_is_reported_even_when_a_prune_pass_runs_first(
    moto: MotoWorld, ec2sim: Ec2Simulator
) -> None:
    """A copy ending in `error` is counted at once with its StateMessage, prune pass or not."""
    clock = ManualClock(start=time.monotonic())  # copies end when the test says so
    ec2sim.clock = clock
    ec2sim.copy_duration = 10.0
    _, built = only_backup(seed(moto, days=1))
    broken = built.snapshots[0].snapshot_id
    assert broken
    ec2sim.fail_copies(broken, times=100)
    settings = Settings(
        velero_bucket=BUCKET,
        schedules=["daily"],
        source_region=SRC,
        destination_region=DST,
        copy_retries=1,
    )
    metrics = Metrics()
    async with AwsClients() as aws:
        engine = Engine(settings, aws, metrics)
        await engine.cycle()
        # Start both queued copies by hand: no poller runs, so the order of the prune pass
        # and the poll below is the test's, not the scheduler's (in `snapd run` the prune
        # loop and the poller race like this whenever a copy fails between two polls).
        await engine.copier._start_next()
        await engine.copier._start_next()
        tracked = {t.source_id: t.replica_id for t in engine.copier.active.values()}
        assert set(tracked) == set(built.snapshot_ids)
        clock.advance(10.0)  # one copy completed, the other in `error`
        report = await engine.prune_pass()
        await engine.copier.poll_once()

    assert tracked[broken] not in report.deleted, "the prune pass swept the copier's copy"
    failed = metrics.registry.get_sample_value(
        "snapd_copies_failed_total", {"reason": "error_state"}
    )
    assert failed == 1
    assert engine.copier.active == {}
    assert engine.copier.stats.failures[broken].reason == KMS_KEY_NOT_ACCESSIBLE
