"""Never report protection that is not there: the real CLI and daemon against the simulated
world, each case the way it was found — slots held by other tools, refused copies, retries
in backoff at `--timeout`, replicas whose identity tags were removed or edited, wildcard
scopes, backup times in the future."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from simworld.ec2sim import Ec2Simulator
from simworld.moto_server import MotoWorld
from snapd import tags
from tests.integration.cli import run_snapd
from tests.integration.test_cli_sync import DST, expected_ids, replicas, seed, settings_env, tag_map


def sync_json(moto: MotoWorld, *args: str, timeout: float = 120, **env: str) -> tuple[int, Any]:
    """`snapd sync -o json ARGS`: exit code and the printed object."""
    result = run_snapd("sync", "-o", "json", *args, env=settings_env(moto, **env), timeout=timeout)
    assert result.stdout, result.stderr
    return result.code, json.loads(result.stdout)


def unprotected(output: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The sync summary's sources without a completed replica, by source snapshot id."""
    return {u["source_snapshot_id"]: u for u in output["result"]["unprotected"]}


# ------------------------------------------------------------ sync: never "ok" without copies


def test_sync_timeout_with_every_slot_held_by_other_tools_fails_naming_each_source(
    moto: MotoWorld, ec2sim: Ec2Simulator
) -> None:
    """Other tools' copies hold all 20 slots for the whole `--timeout`: nothing starts, and
    sync exits 1 naming every source as not started because the slots are taken."""
    ec2sim.add_foreign_pending(DST, 20, duration=600.0)
    bucket = seed(moto, days=1)
    code, output = sync_json(moto, "--timeout", "2s")
    assert code == 1
    assert output["result"]["ok"] is False
    missing = unprotected(output)
    assert set(missing) == expected_ids(bucket)
    for item in missing.values():
        assert item["state"] == "queued"
        assert "ResourceLimitExceeded" in item["reason"]
        assert item["replica_id"] is None
    assert [s for s in replicas(moto) if tags.CLUSTER in tag_map(s)] == []
    text = run_snapd("sync", "--timeout", "1s", env=settings_env(moto))
    assert text.code == 1
    named = [line for line in text.stdout.splitlines() if line.startswith("not protected: ")]
    assert {s for s in expected_ids(bucket) for line in named if s in line} == expected_ids(bucket)
    assert "prune skipped" in text.stdout


def test_sync_timeout_while_a_retry_waits_in_backoff_fails(
    moto: MotoWorld, ec2sim: Ec2Simulator
) -> None:
    """A copy ended in `error` and its retry still waits in backoff when `--timeout` hits:
    sync exits 1 and says the source waits to retry, and after what."""
    ec2sim.copy_duration = 0.0
    bucket = seed(moto, days=1)
    broken = sorted(expected_ids(bucket))[0]
    ec2sim.fail_copies(broken, times=1)
    # The retry's backoff is at least half a poll interval (2.5 s): past the 1.5 s timeout.
    code, output = sync_json(moto, "--timeout", "1.5s", SNAPD_POLL_INTERVAL="5s")
    assert code == 1
    missing = unprotected(output)
    assert set(missing) == {broken}
    assert missing[broken]["state"] == "queued"
    assert missing[broken]["reason"].startswith("waiting to retry (try 2 of 3) after: ")
    assert "Given key ID is not accessible" in missing[broken]["reason"]


def test_refused_copies_end_sync_within_one_poll_interval(
    moto: MotoWorld, ec2sim: Ec2Simulator
) -> None:
    """Every CopySnapshot refused (UnauthorizedOperation) and given up: sync exits 1 at once
    — long before its 12 h timeout and before one 60 s poll interval — naming each source
    and the refusal."""
    bucket = seed(moto, days=1)
    ec2sim.refuse_copies()
    code, output = sync_json(moto, timeout=45, SNAPD_POLL_INTERVAL="60s", SNAPD_COPY_RETRIES="1")
    assert code == 1
    missing = unprotected(output)
    assert set(missing) == expected_ids(bucket)
    for item in missing.values():
        assert item["state"] == "failed"
        assert "UnauthorizedOperation" in item["reason"]
    assert output["result"]["copies_failed"]
    assert ec2sim.calls["CopySnapshot"] == len(expected_ids(bucket))


def test_refused_copies_are_retried_then_reported(moto: MotoWorld, ec2sim: Ec2Simulator) -> None:
    """One source refused on every try, the other copied: sync retries the refused one
    SNAPD_COPY_RETRIES times, exits 1 naming only it."""
    ec2sim.copy_duration = 0.1
    bucket = seed(moto, days=1)
    refused, copied = sorted(expected_ids(bucket))
    ec2sim.refuse_copies(refused)
    code, output = sync_json(moto, SNAPD_COPY_RETRIES="2")
    assert code == 1
    assert set(unprotected(output)) == {refused}
    assert [tag_map(s)[tags.SOURCE_SNAPSHOT_ID] for s in replicas(moto)] == [copied]
    assert ec2sim.calls["CopySnapshot"] == 3


def ec2(moto: MotoWorld) -> Any:
    return boto3.client("ec2", region_name=DST, endpoint_url=moto.url)


# ------------------------------------------------------------ scopes: exact, or refused


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"SNAPD_CLUSTER": "team-?"}, "'?'"),
        ({"SNAPD_CLUSTER": "team-*"}, "'*'"),
        ({"SNAPD_CLUSTER": "t" * 257}, "257 characters"),
        ({"SNAPD_VELERO_PREFIX": "clusters/*"}, "velero_prefix"),
        ({"SNAPD_VELERO_PREFIX": "p" * 260}, "set cluster"),
    ],
    ids=["question-mark", "asterisk", "too-long", "wildcard-prefix", "long-default-scope"],
)
def test_a_scope_that_is_no_exact_tag_value_exits_2(
    moto: MotoWorld, ec2sim: Ec2Simulator, extra: dict[str, str], needle: str
) -> None:
    """A scope EC2 would read as a wildcard filter (or cannot store as a tag value) is a
    configuration error: one line naming the setting, exit 2, before any AWS call — never
    a listing that holds another scope's replicas, nor a failure at the first copy."""
    ec2sim.add_snapshot(DST, tags={tags.CLUSTER: "team-b", tags.PVC: "db"})
    seed(moto, days=1)
    ec2sim.calls.clear()
    result = run_snapd("sync", env=settings_env(moto, **extra))
    assert result.code == 2, result.stderr
    assert needle in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert sum(ec2sim.calls.values()) == 0
