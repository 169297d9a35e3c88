"""`snapd restore` end to end: the real CLI against moto, the EC2 simulator and a fake Kubernetes.

Replicas are seeded in the destination region with snapd's full tag set
(`simworld.replicas`); copies and volumes take a fraction of a second in the
simulator, and snapd polls every 0.1s, so every restore finishes in about a second.
The pure planning (names, zones, tokens, volume parameters) is checked in-process below.
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import kubernetes_validate
import pytest
import yaml

from simworld.ec2sim import Ec2Simulator
from simworld.fake_kube import FakeKube
from simworld.moto_server import MotoWorld
from simworld.replicas import SeededReplica, make_source, seed_replica
from simworld.velero_bucket import NATIVE, VeleroBucket, Volume
from snapd import manifests, restore_plan
from snapd import restore as restore_command
from snapd import tags as tags_mod
from snapd.aws import AwsClients
from snapd.cli import build_parser, restore_request
from snapd.config import Settings
from snapd.errors import ConfigError
from snapd.models import Replica
from snapd.models import Volume as VolumeRecord
from tests.integration.cli import SNAPD, Result, run_snapd

SRC = "eu-west-1"
DST = "eu-central-1"
SCOPE = "velero-backups/cluster-a"
BACKUP = "daily-20240501020000"
K8S_VERSION = "1.30"


@dataclass
class World:
    """The simulated AWS + Kubernetes a `snapd restore` subprocess runs against."""

    sim: Ec2Simulator
    kube: FakeKube
    env: dict[str, str]
    cwd: Path
    seeded: list[SeededReplica] = field(default_factory=list)

    def restore(self, *args: str, **env: str) -> Result:
        return run_snapd("restore", *args, env={**self.env, **env}, cwd=self.cwd, timeout=60)

    def seed(
        self, namespace: str, pvc: str, *, backup: str = BACKUP, **options: Any
    ) -> SeededReplica:
        state = options.pop("state", "completed")
        progress = options.pop("progress", 0)
        region = options.pop("destination_region", DST)
        index = len(self.seeded)
        source = make_source(
            backup,
            namespace,
            pvc,
            snapshot_id=f"snap-{index:017x}",
            volume_id=f"vol-{index:017x}",
            **options,
        )
        seeded = seed_replica(
            self.sim,
            source,
            scope=SCOPE,
            source_region=SRC,
            destination_region=region,
            state=state,
            progress=progress,
        )
        self.seeded.append(seeded)
        return seeded

    def ec2(self, region: str) -> Any:
        return boto3.client("ec2", region_name=region)

    def volumes(self, region: str) -> list[dict[str, Any]]:
        return list(self.ec2(region).describe_volumes()["Volumes"])

    def snapshots(self, region: str) -> list[dict[str, Any]]:
        return list(self.ec2(region).describe_snapshots(OwnerIds=["self"])["Snapshots"])

    def calls(self, action: str, region: str | None = None) -> int:
        if region is None:
            return self.sim.calls[action]
        return self.sim.region_calls[region, action]

    def pvs(self) -> list[dict[str, Any]]:
        return self.kube.objects("PersistentVolume")

    def namespace(self, name: str) -> None:
        self.kube.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


def other_pv(
    namespace: str,
    pvc: str,
    *,
    backup: str,
    volume_id: str,
    name: str | None = None,
    claim_uid: str | None = None,
) -> dict[str, Any]:
    """A PV of 20 GiB in eu-west-1b claiming `namespace/pvc` that this restore did not make:
    named as snapd names it unless `name` is given, bound when `claim_uid` is."""
    pv = manifests.build_pv(
        name=name or manifests.build_pv_name(namespace, pvc, backup),
        volume_id=volume_id,
        size_gib=20,
        availability_zone="eu-west-1b",
        claim_namespace=namespace,
        claim_name=pvc,
        backup=backup,
    )
    if claim_uid is not None:
        pv["spec"]["claimRef"]["uid"] = claim_uid
    return pv


def tag_dict(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags") or []}


def pvc_docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def validate(manifest: dict[str, Any]) -> None:
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


# --------------------------------------------------------------------------- end to end


def test_restore_to_the_source_region_copies_back_and_rebuilds_the_volume(world: World) -> None:
    """Default target: copy back, recorded type/IOPS/throughput/size/AZ, PV, pvc.yaml, cleanup."""
    replica = world.seed("shop", "data-db-0")
    world.kube.put(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data-db-0", "namespace": "shop"},
            "spec": {"volumeName": "pvc-0123", "accessModes": ["ReadWriteOnce"]},
        }
    )
    world.kube.put(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": "pvc-0123"},
            "spec": {"persistentVolumeReclaimPolicy": "Delete"},
        }
    )

    result = world.restore(BACKUP, "data-db-0")

    assert result.code == 0, result.stderr
    assert world.calls("CopySnapshot", SRC) == 1
    assert "copy-back snap-" in result.stderr
    assert "% " not in result.stdout
    assert any(line.endswith("%") for line in result.stderr.splitlines())
    [volume] = world.volumes(SRC)
    assert volume["AvailabilityZone"] == "eu-west-1b"
    assert (volume["VolumeType"], volume["Iops"], volume["Throughput"], volume["Size"]) == (
        "gp3",
        4000,
        250,
        20,
    )
    tags = tag_dict(volume)
    assert tags[tags_mod.RESTORE_OF] == replica.snapshot_id
    assert tags[tags_mod.RESTORE_BACKUP] == BACKUP
    assert (tags[tags_mod.RESTORE_NAMESPACE], tags[tags_mod.RESTORE_PVC]) == ("shop", "data-db-0")
    assert tags[tags_mod.RESTORE_SCOPE] == SCOPE
    assert "snapd.io/cluster" not in tags, "Velero would copy it onto DR snapshots"
    # The copy-back is deleted once the volume exists.
    assert world.snapshots(SRC) == []
    assert volume["SnapshotId"] in result.stdout

    [pv] = [p for p in world.pvs() if p["metadata"]["name"] != "pvc-0123"]
    validate(pv)
    spec = pv["spec"]
    assert spec["csi"] == {
        "driver": "ebs.csi.aws.com",
        "volumeHandle": volume["VolumeId"],
        "fsType": "xfs",
    }
    assert spec["capacity"] == {"storage": "20Gi"}
    assert spec["storageClassName"] == "gp3"
    assert spec["persistentVolumeReclaimPolicy"] == "Retain"
    assert spec["claimRef"]["namespace"] == "shop"
    assert spec["claimRef"]["name"] == "data-db-0"
    zones = [
        e["values"]
        for term in spec["nodeAffinity"]["required"]["nodeSelectorTerms"]
        for e in term["matchExpressions"]
    ]
    assert zones == [["eu-west-1b"], ["eu-west-1b"]]
    assert pv["metadata"]["labels"]["snapd.io/backup"] == BACKUP

    [pvc] = pvc_docs(world.cwd / "pvc.yaml")
    validate(pvc)
    assert pvc["metadata"]["name"] == "data-db-0"
    assert pvc["metadata"]["namespace"] == "shop"
    assert pvc["spec"]["volumeName"] == pv["metadata"]["name"]
    assert pvc["spec"]["storageClassName"] == "gp3"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "20Gi"
    for step in (
        "kubectl delete pvc data-db-0 -n shop",
        "wait until `kubectl get pvc data-db-0 -n shop` no longer finds it",
        "kubectl create -f pvc.yaml",
        "--target-pvc data-db-0-restored",
        "kubectl patch pv pvc-0123",  # its reclaim policy is Delete: the operator is warned
    ):
        assert step in result.stdout
    assert "does not exist now" not in result.stdout


def test_keep_snapshot_keeps_the_tagged_copy_back_and_a_beside_restore_gets_its_own_claim(
    world: World,
) -> None:
    """--keep-snapshot keeps the copy-back, tagged with scope/backup/PVC/replica; targets obeyed."""
    replica = world.seed("shop", "data-db-0")
    world.namespace("restored")

    result = world.restore(
        BACKUP,
        "data-db-0",
        "-n",
        "shop",
        "--keep-snapshot",
        "--completion-duration",
        "15m",
        "--target-namespace",
        "restored",
        "--target-pvc",
        "data-copy",
        "--output",
        "beside.yaml",
    )

    assert result.code == 0, result.stderr
    [copy_back] = world.snapshots(SRC)
    tags = tag_dict(copy_back)
    assert tags["snapd.io/cluster"] == SCOPE
    assert tags[tags_mod.RESTORE_OF] == replica.snapshot_id
    assert (tags[tags_mod.RESTORE_BACKUP], tags[tags_mod.RESTORE_PVC]) == (BACKUP, "data-db-0")
    assert "snapd.io/source-snapshot-id" not in tags, "a copy-back is not a replica"
    assert copy_back["SnapshotId"] in result.stdout
    assert "kept" in result.stdout
    assert world.sim.completion_minutes == {copy_back["SnapshotId"]: 15}, "a time-based copy"
    [pv] = world.pvs()
    assert pv["spec"]["claimRef"]["namespace"] == "restored"
    assert pv["spec"]["claimRef"]["name"] == "data-copy"
    [pvc] = pvc_docs(world.cwd / "beside.yaml")
    assert (pvc["metadata"]["namespace"], pvc["metadata"]["name"]) == ("restored", "data-copy")
    assert "kubectl create -f beside.yaml" in result.stdout


def test_restore_inside_the_destination_region_makes_no_copy(world: World) -> None:
    """--target-region = destination: volume straight from the replica, same AZ letter, said so."""
    replica = world.seed("shop", "data-db-0")

    result = world.restore(BACKUP, "data-db-0", "--target-region", DST)

    assert result.code == 0, result.stderr
    assert world.calls("CopySnapshot") == 0
    [volume] = world.volumes(DST)
    assert volume["SnapshotId"] == replica.snapshot_id
    assert volume["AvailabilityZone"] == "eu-central-1b"
    assert "using eu-central-1b (same letter as recorded eu-west-1b)" in result.stdout
    [pv] = world.pvs()
    validate(pv)
    assert pv["spec"]["csi"]["volumeHandle"] == volume["VolumeId"]
    assert world.snapshots(DST) != [], "the replica itself is never deleted"


def test_a_zone_letter_the_region_lacks_lists_the_zones_and_az_flag_fixes_it(
    world: World,
) -> None:
    """No 'c' zone in us-west-1: exit 2 listing its zones; --availability-zone then works."""
    env = {"SNAPD_DESTINATION_REGION": "us-west-1"}
    world.seed("shop", "data-db-0", availability_zone="eu-west-1c", destination_region="us-west-1")

    refused = world.restore(BACKUP, "data-db-0", "--target-region", "us-west-1", **env)
    chosen = world.restore(
        BACKUP,
        "data-db-0",
        "--target-region",
        "us-west-1",
        "--availability-zone",
        "us-west-1b",
        "--dry-run",
        **env,
    )

    assert refused.code == 2
    assert "us-west-1a, us-west-1b" in refused.stderr
    assert "--availability-zone" in refused.stderr
    assert chosen.code == 0, chosen.stderr
    assert "in us-west-1b" in chosen.stdout
    assert world.calls("CreateVolume") == 0


def test_all_restores_every_pvc_into_one_pvc_file(world: World) -> None:
    """--all: each PVC of the backup gets a volume and a PV; pvc.yaml has one PVC per document."""
    for namespace, pvc in (("shop", "data-db-0"), ("shop", "data-db-1"), ("web", "uploads")):
        world.seed(namespace, pvc)
    world.seed("shop", "data-db-0", backup="daily-20240502020000")  # another backup: untouched

    result = world.restore(BACKUP, "--all")

    assert result.code == 0, result.stderr
    assert world.calls("CopySnapshot") == 3
    assert len(world.volumes(SRC)) == 3
    pvs = world.pvs()
    assert len(pvs) == 3
    for pv in pvs:
        validate(pv)
    docs = pvc_docs(world.cwd / "pvc.yaml")
    for doc in docs:
        validate(doc)
    assert sorted((d["metadata"]["namespace"], d["metadata"]["name"]) for d in docs) == [
        ("shop", "data-db-0"),
        ("shop", "data-db-1"),
        ("web", "uploads"),
    ]
    assert {d["spec"]["volumeName"] for d in docs} == {p["metadata"]["name"] for p in pvs}
    assert world.snapshots(SRC) == []
    # Each target namespace is looked up once, not once per PVC restored into it.
    namespace_reads = [
        r.path
        for r in world.kube.requests
        if r.method == "GET" and r.path.startswith("/api/v1/namespaces/") and r.path.count("/") == 4
    ]
    assert sorted(namespace_reads) == ["/api/v1/namespaces/shop", "/api/v1/namespaces/web"]


def test_all_reports_a_failing_pvc_and_restores_the_others(world: World) -> None:
    """--all: a pending replica is reported with its progress; the rest restore; exit 1."""
    world.seed("shop", "data-db-0")
    world.seed("web", "uploads", state="pending", progress=30)

    result = world.restore(BACKUP, "--all", "--target-region", DST)

    assert result.code == 1
    assert "web/uploads" in result.stderr
    assert "pending (30%" in result.stderr
    assert len(world.volumes(DST)) == 1
    [doc] = pvc_docs(world.cwd / "pvc.yaml")
    assert doc["metadata"]["name"] == "data-db-0"


def test_rerun_of_a_completed_restore_makes_nothing_new(world: World) -> None:
    """Re-run: one volume, one PV, 'already restored' with names, pvc.yaml untouched, exit 0."""
    world.seed("shop", "data-db-0")
    first = world.restore(BACKUP, "data-db-0")
    assert first.code == 0, first.stderr
    pvc_file = world.cwd / "pvc.yaml"
    edited = "# edited by the operator\n" + pvc_file.read_text()
    pvc_file.write_text(edited)

    again = world.restore(BACKUP, "data-db-0")

    assert again.code == 0, again.stderr
    [volume] = world.volumes(SRC)
    [pv] = world.pvs()
    assert "already restored shop/data-db-0" in again.stdout
    assert volume["VolumeId"] in again.stdout
    assert pv["metadata"]["name"] in again.stdout
    assert world.calls("CopySnapshot") == 1
    assert world.calls("CreateVolume") == 1
    assert pvc_file.read_text() == edited
    assert "left untouched" in again.stdout


def test_a_lost_create_volume_answer_never_makes_a_second_volume(world: World) -> None:
    """CreateVolume done but its answer lost: botocore's retry gets the same volume (token)."""
    replica = world.seed("shop", "data-db-0")
    world.sim.inject("CreateVolume", "InternalError", after_action=True)

    result = world.restore(BACKUP, "data-db-0", "--target-region", DST)

    assert result.code == 0, result.stderr
    assert world.calls("CreateVolume") == 2
    [volume] = world.volumes(DST)
    assert volume["SnapshotId"] == replica.snapshot_id


def test_a_run_that_died_after_create_volume_is_finished_by_the_next(world: World) -> None:
    """A run failing after CreateVolume: the re-run finds the volume by its tags and reuses it."""
    world.seed("shop", "data-db-0")
    world.sim.inject("CreateVolume", "UnauthorizedOperation", after_action=True)

    crashed = world.restore(BACKUP, "data-db-0", "--target-region", DST)
    again = world.restore(BACKUP, "data-db-0", "--target-region", DST)

    assert crashed.code == 1
    assert again.code == 0, again.stderr
    assert len(world.volumes(DST)) == 1
    assert world.calls("CreateVolume") == 1
    assert len(world.pvs()) == 1


def test_a_pv_of_the_target_name_pointing_elsewhere_is_exit_1_before_any_change(
    world: World,
) -> None:
    """A PV named like ours but on another volume: exit 1, nothing copied or created."""
    world.seed("shop", "data-db-0")
    name = manifests.build_pv_name("shop", "data-db-0", BACKUP)
    world.kube.put(other_pv("shop", "data-db-0", backup=BACKUP, volume_id="vol-0ffffffffffffffff"))

    result = world.restore(BACKUP, "data-db-0")

    assert result.code == 1
    assert name in result.stderr
    assert "vol-0ffffffffffffffff" in result.stderr
    assert world.calls("CopySnapshot") == 0
    assert world.calls("CreateVolume") == 0
    assert not (world.cwd / "pvc.yaml").exists()


def test_a_pvc_name_in_several_namespaces_needs_n(world: World) -> None:
    """Ambiguous PVC name: exit 2 listing the namespaces; -n picks one."""
    world.seed("shop", "data")
    world.seed("web", "data")

    ambiguous = world.restore(BACKUP, "data", "--dry-run")
    picked = world.restore(BACKUP, "data", "-n", "web", "--dry-run")

    assert ambiguous.code == 2
    assert "shop, web" in ambiguous.stderr
    assert "-n" in ambiguous.stderr
    assert picked.code == 0, picked.stderr
    assert "web/data" in picked.stdout


def test_unknown_backup_or_pvc_lists_what_exists(world: World) -> None:
    """Unknown backup: exit 2 listing the backups; unknown PVC: exit 2 listing the PVCs."""
    world.seed("shop", "data-db-0")
    world.seed("shop", "data-db-0", backup="daily-20240502020000")

    no_backup = world.restore("daily-20990101000000", "data-db-0")
    no_pvc = world.restore(BACKUP, "nothing-here")

    assert no_backup.code == 2
    assert "daily-20240502020000, daily-20240501020000" in no_backup.stderr
    assert no_pvc.code == 2
    assert "shop/data-db-0" in no_pvc.stderr
    assert world.calls("CopySnapshot") == 0


def test_a_pending_replica_is_refused_with_its_state_and_progress(world: World) -> None:
    """A replica still copying: exit 1 saying 'pending' and how far it is; nothing done."""
    world.seed("shop", "data-db-0", state="pending", progress=42)

    result = world.restore(BACKUP, "data-db-0")

    assert result.code == 1
    assert "pending (42%" in result.stderr
    assert world.calls("CopySnapshot") == 0
    assert world.pvs() == []


def test_a_volume_ending_in_error_fails_clearly_and_a_rerun_makes_a_new_one(
    world: World,
) -> None:
    """Volume in `error`: exit 1 naming it, no PV; the re-run makes a fresh volume and succeeds."""
    replica = world.seed("shop", "data-db-0")
    world.sim.fail_volumes_from(replica.snapshot_id)

    failed = world.restore(BACKUP, "data-db-0", "--target-region", DST)
    [broken] = world.volumes(DST)
    assert failed.code == 1
    assert broken["VolumeId"] in failed.stderr
    assert "state error" in failed.stderr
    assert not (world.cwd / "pvc.yaml").exists()
    assert world.pvs() == []

    again = world.restore(BACKUP, "data-db-0", "--target-region", DST)
    assert again.code == 0, again.stderr
    states = sorted(v["State"] for v in world.volumes(DST))
    assert states == ["available", "error"]
    [pv] = world.pvs()
    assert pv["spec"]["csi"]["volumeHandle"] != broken["VolumeId"]


def test_dry_run_prints_steps_and_manifests_and_changes_nothing(world: World) -> None:
    """--dry-run: steps and valid PV/PVC YAML on stdout; no copy, volume, PV or file."""
    world.seed("shop", "data-db-0")

    result = world.restore(BACKUP, "data-db-0", "--dry-run")

    assert result.code == 0, result.stderr
    assert "CopySnapshot" in result.stdout
    assert "CreateVolume" in result.stdout
    docs = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert [d["kind"] for d in docs] == ["PersistentVolume", "PersistentVolumeClaim"]
    for doc in docs:
        validate(doc)
    for action in ("CopySnapshot", "CreateVolume", "DeleteSnapshot"):
        assert world.calls(action) == 0
    assert world.pvs() == []
    assert not any(r.method == "POST" for r in world.kube.requests)
    assert not (world.cwd / "pvc.yaml").exists()


def test_an_existing_pvc_file_is_never_overwritten_without_force(world: World) -> None:
    """pvc.yaml exists: exit 2 before any change; --force restores and replaces it."""
    world.seed("shop", "data-db-0")
    pvc_file = world.cwd / "pvc.yaml"
    pvc_file.write_text("precious: true\n")

    refused = world.restore(BACKUP, "data-db-0")
    assert refused.code == 2
    assert "--force" in refused.stderr
    assert pvc_file.read_text() == "precious: true\n"
    assert world.calls("CopySnapshot") == 0
    assert world.calls("CreateVolume") == 0

    forced = world.restore(BACKUP, "data-db-0", "--force")
    assert forced.code == 0, forced.stderr
    [doc] = pvc_docs(pvc_file)
    assert doc["kind"] == "PersistentVolumeClaim"


def test_a_usage_error_exits_2_through_the_cli(world: World) -> None:
    """A bad name on the command line: exit 2 with the name, before any AWS call."""
    result = world.restore(BACKUP, "Data_DB")

    assert result.code == 2
    assert "'Data_DB'" in result.stderr
    assert world.calls("DescribeSnapshots") == 0


# --------------------------------------------------------------------------- a real recovery


def test_an_exec_plugin_token_that_expires_during_the_copy_back_is_renewed(
    world: World,
) -> None:
    """EKS-style kubeconfig: the exec plugin's tokens live 1s, the copy-back takes longer;
    the PV is still created (the token is renewed), and the server saw more than one token."""
    world.seed("shop", "data-db-0")
    world.kube.set_token_lifetime(1.0)
    world.sim.copy_duration = 2.5

    result = world.restore(BACKUP, "data-db-0", **world.kube.exec_env())

    assert result.code == 0, result.stderr
    assert len(world.pvs()) == 1
    assert len(set(world.kube.exec_tokens_seen)) >= 2
    assert world.snapshots(SRC) == []


def test_two_restores_of_one_replica_each_own_their_copy_back(world: World) -> None:
    """A beside restore kept its copy-back (--keep-snapshot); restoring the original PVC then
    makes and deletes its own copy-back and leaves the kept one alone."""
    world.seed("shop", "data-db-0")
    beside = world.restore(
        BACKUP, "data-db-0", "--target-pvc", "data-copy", "--keep-snapshot", "--output", "b.yaml"
    )
    assert beside.code == 0, beside.stderr
    [kept] = world.snapshots(SRC)

    original = world.restore(BACKUP, "data-db-0")

    assert original.code == 0, original.stderr
    assert world.snapshots(SRC) == [kept], "the kept copy-back of the other restore stays"
    assert tag_dict(kept)[tags_mod.RESTORE_TARGET] == "shop/data-copy"
    assert world.calls("CopySnapshot") == 2
    volumes = world.volumes(SRC)
    assert len(volumes) == 2
    assert {v["SnapshotId"] for v in volumes} != {kept["SnapshotId"]}


def test_a_refused_delete_snapshot_still_creates_the_pv_and_names_what_is_left(
    world: World,
) -> None:
    """An SCP denies DeleteSnapshot: the PV is created, exit 0, a warning names the copy-back
    and how to delete it; a later run (allowed again) deletes it."""
    world.seed("shop", "data-db-0")
    world.sim.inject("DeleteSnapshot", "UnauthorizedOperation", times=10)

    result = world.restore(BACKUP, "data-db-0")

    assert result.code == 0, result.stderr
    [pv] = world.pvs()
    [left] = world.snapshots(SRC)
    assert pv["spec"]["csi"]["volumeHandle"] == world.volumes(SRC)[0]["VolumeId"]
    assert left["SnapshotId"] in result.stderr
    assert "aws ec2 delete-snapshot --region eu-west-1" in result.stderr
    assert "--keep-snapshot" in result.stderr
    assert "left behind" in result.stdout
    assert (world.cwd / "pvc.yaml").exists()

    world.sim.reset()
    world.sim.copy_duration, world.sim.volume_duration = 0.4, 0.2
    again = world.restore(BACKUP, "data-db-0")
    assert again.code == 0, again.stderr
    assert "already restored" in again.stdout
    assert world.snapshots(SRC) == []


def test_a_refused_pv_fails_the_restore_yet_its_copy_back_is_deleted_and_a_rerun_finishes(
    world: World,
) -> None:
    """The PV and the cleanup run side by side once the volume is available: a PV the API
    refuses is the outcome (exit 1), the copy-back is deleted all the same (the volume no
    longer needs it), and the re-run makes the PV from the volume it finds — no new copy."""
    world.seed("shop", "data-db-0")
    world.kube.fail("POST", "/api/v1/persistentvolumes", code=500, times=1)

    result = world.restore(BACKUP, "data-db-0")

    assert result.code == 1
    assert "create PersistentVolume" in result.stderr
    assert world.pvs() == []
    assert world.snapshots(SRC) == []
    [volume] = world.volumes(SRC)

    again = world.restore(BACKUP, "data-db-0")

    assert again.code == 0, again.stderr
    [pv] = world.pvs()
    assert pv["spec"]["csi"]["volumeHandle"] == volume["VolumeId"]
    assert (world.calls("CopySnapshot", SRC), world.calls("CreateVolume", SRC)) == (1, 1)


@pytest.mark.parametrize("region", [SRC, DST])
def test_redoing_a_restore_after_deleting_its_volume_makes_a_new_one(
    world: World, region: str
) -> None:
    """The operator deletes the restored PV and volume to redo the restore: the spent
    ClientToken does not stop it; one new volume, one PV, no copy-back left behind."""
    world.seed("shop", "data-db-0")
    first = world.restore(BACKUP, "data-db-0", "--target-region", region)
    assert first.code == 0, first.stderr
    [old] = world.volumes(region)
    [pv] = world.pvs()
    world.ec2(region).delete_volume(VolumeId=old["VolumeId"])
    assert world.kube.remove("PersistentVolume", pv["metadata"]["name"])

    redo = world.restore(BACKUP, "data-db-0", "--target-region", region, "--force")

    assert redo.code == 0, redo.stderr
    [new] = world.volumes(region)
    assert new["VolumeId"] != old["VolumeId"]
    [pv] = world.pvs()
    assert pv["spec"]["csi"]["volumeHandle"] == new["VolumeId"]
    if region == SRC:
        assert world.snapshots(SRC) == []


@pytest.mark.parametrize(
    ("namespace", "pvc"),
    [("shop", "p" * 253), ("n" * 63, "q" * 200), ("shop", "r" * 252)],
)
def test_names_as_long_as_kubernetes_allows_restore(world: World, namespace: str, pvc: str) -> None:
    """A 253-character PVC, or a 63-character namespace and a 200-character PVC: the dry-run
    and the real run agree, tags fit EC2, and the "restore beside" name is a valid other name."""
    world.seed(namespace, pvc)

    dry = world.restore(BACKUP, pvc, "--dry-run")
    result = world.restore(BACKUP, pvc)

    assert dry.code == 0, dry.stderr
    assert result.code == 0, result.stderr
    [volume] = world.volumes(SRC)
    assert all(len(v) <= 256 for v in tag_dict(volume).values())
    assert tag_dict(volume)[tags_mod.RESTORE_PVC] == pvc
    [pv] = world.pvs()
    validate(pv)
    [line] = [x for x in result.stdout.splitlines() if "--target-pvc" in x]
    beside = line.split("--target-pvc ")[1].split()[0]
    assert beside != pvc
    manifests.validate_dns1123_subdomain(beside, "beside name")
    assert world.snapshots(SRC) == []


@pytest.mark.parametrize("keep", [False, True])
def test_a_lost_copy_snapshot_answer_leaves_no_duplicate_copy_back(
    world: World, keep: bool
) -> None:
    """CopySnapshot made a copy but its answer was lost; botocore's retry made another. Both
    are this restore's: both are deleted — with --keep-snapshot, all but the one used."""
    world.seed("shop", "data-db-0")
    world.sim.inject("CopySnapshot", "InternalError", after_action=True)

    result = world.restore(BACKUP, "data-db-0", *(["--keep-snapshot"] if keep else []))

    assert result.code == 0, result.stderr
    assert world.calls("CopySnapshot", SRC) == 2
    [volume] = world.volumes(SRC)
    left = [s["SnapshotId"] for s in world.snapshots(SRC)]
    assert left == ([volume["SnapshotId"]] if keep else [])


def test_an_interrupted_run_and_an_immediate_rerun_leave_no_copy_back(world: World) -> None:
    """Ctrl-C after CopySnapshot, then a re-run at once while that copy is not yet visible
    (EC2's eventual consistency): the re-run makes its own, and deletes both at the end."""
    world.seed("shop", "data-db-0")
    world.sim.copy_duration = 2.0
    world.sim.invisible_for = 3600.0
    first = start_restore(world, BACKUP, "data-db-0")
    wait_for(lambda: world.calls("CopySnapshot", SRC) >= 1, first)
    first.send_signal(signal.SIGINT)
    first.wait(timeout=120)  # a bound for a hang, with room for a loaded machine
    rerun = start_restore(world, BACKUP, "data-db-0")
    wait_for(lambda: world.calls("CopySnapshot", SRC) >= 2, rerun)
    world.sim.invisible_for = 0.0
    deadline = time.monotonic() + 120
    while rerun.poll() is None:  # eventual consistency catches up during the copy-back
        assert time.monotonic() < deadline, "the re-run never ended"
        world.sim.make_visible(SRC)
        time.sleep(0.05)

    assert rerun.returncode == 0
    assert world.snapshots(SRC) == []
    assert len(world.volumes(SRC)) == 1
    assert len(world.pvs()) == 1


def start_restore(world: World, *args: str) -> subprocess.Popen[bytes]:
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    return subprocess.Popen(
        [SNAPD, "restore", *args],
        env={**base, **world.env},
        cwd=world.cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_for(condition: Callable[[], bool], process: subprocess.Popen[bytes]) -> None:
    """Until `condition` holds (bounded: 60s), failing if the process ended first."""
    deadline = time.monotonic() + 60
    while not condition():
        assert process.poll() is None, "snapd restore ended before the step"
        assert time.monotonic() < deadline, "the step never came"
        time.sleep(0.02)


@pytest.mark.parametrize("step", ["CopySnapshot", "CreateVolume", "PersistentVolume"])
def test_kill_9_at_any_step_then_rerun_converges(world: World, step: str) -> None:
    """kill -9 right after a step: the re-run ends with one volume, one PV, no copy-back."""
    world.seed("shop", "data-db-0")
    world.sim.copy_duration = 2.0
    world.sim.volume_duration = 1.0
    process = start_restore(world, BACKUP, "data-db-0")
    if step == "PersistentVolume":
        wait_for(lambda: bool(world.pvs()), process)
    else:
        wait_for(lambda: world.calls(step, SRC) >= 1, process)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)

    again = world.restore(BACKUP, "data-db-0", "--force")

    assert again.code == 0, again.stderr
    assert len(world.volumes(SRC)) == 1
    assert len(world.pvs()) == 1
    assert world.snapshots(SRC) == []
    assert world.calls("CopySnapshot", SRC) == 1


def test_gp3_throughput_of_a_native_velero_snapshot_is_restored(
    moto: MotoWorld, ec2sim: Ec2Simulator, fake_kube: FakeKube, tmp_path: Path
) -> None:
    """Velero's native record has no throughput: snapd reads it from the source volume while
    it exists, the replica carries it, and the restored volume gets it (not 125 MiB/s)."""
    ec2sim.copy_duration, ec2sim.volume_duration = 0.4, 0.2
    bucket = VeleroBucket("velero-test", region=SRC, endpoint_url=moto.url)
    volume = Volume("shop", "db", 20, f"{SRC}a", NATIVE, "gp3", iops=6000, throughput=500)
    bucket.backup(BACKUP, schedule="daily", volumes=[volume], start=datetime.now(UTC))
    env = {
        **moto.env(),
        **fake_kube.env(),
        "SNAPD_VELERO_BUCKET": "velero-test",
        "SNAPD_SCHEDULES": "daily",
        "SNAPD_SOURCE_REGION": SRC,
        "SNAPD_DESTINATION_REGION": DST,
        "SNAPD_POLL_INTERVAL": "0.1",
    }
    assert run_snapd("sync", env=env).code == 0

    result = run_snapd("restore", BACKUP, "db", "--target-region", DST, env=env, cwd=tmp_path)

    assert result.code == 0, result.stderr
    [restored] = boto3.client("ec2", region_name=DST).describe_volumes()["Volumes"]
    assert (restored["VolumeType"], restored["Iops"], restored["Throughput"]) == (
        "gp3",
        6000,
        500,
    )


def test_a_pvc_file_of_another_backup_is_not_offered(world: World) -> None:
    """pvc.yaml holds another backup's PVC: a re-run that is already restored (exit 0) says
    the file is not its own instead of "kubectl create -f pvc.yaml"."""
    world.seed("shop", "data-db-0")
    world.seed("shop", "data-db-0", backup="daily-20240502020000")
    assert world.restore(BACKUP, "data-db-0").code == 0
    # Beside the first one: a second PV claiming data-db-0 itself would be refused.
    beside = ("--target-pvc", "data-db-0-b")
    other = world.restore("daily-20240502020000", "data-db-0", *beside, "--output", "other.yaml")
    assert other.code == 0, other.stderr
    kept = (world.cwd / "pvc.yaml").read_text()

    again = world.restore("daily-20240502020000", "data-db-0", *beside)

    assert again.code == 0, again.stderr
    assert "already restored" in again.stdout
    assert "not this restore's" in again.stderr
    assert "--force" in again.stderr
    assert "kubectl create -f pvc.yaml" not in again.stdout
    assert (world.cwd / "pvc.yaml").read_text() == kept


def test_a_changed_kms_key_is_refused_and_the_summary_shows_the_real_volume(
    world: World,
) -> None:
    """A re-run with --kms-key-id over an unencrypted restored volume: refused, naming the
    volume and what to do; the first run's summary said "not encrypted"."""
    world.seed("shop", "data-db-0")
    first = world.restore(BACKUP, "data-db-0")
    assert first.code == 0, first.stderr
    assert "not encrypted" in first.stdout
    [volume] = world.volumes(SRC)
    key = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"

    again = world.restore(BACKUP, "data-db-0", "--kms-key-id", key)

    assert again.code == 1
    assert "restored" not in again.stdout.split()[0], "never reported as restored"
    assert volume["VolumeId"] in again.stderr
    assert "not encrypted" in again.stderr
    assert len(world.volumes(SRC)) == 1


def test_a_released_pv_is_not_already_restored(world: World) -> None:
    """The restored PV was bound, then its PVC deleted: the PV is Released (claimRef.uid of
    a PVC that is gone). A re-run says so and what to do, exit 1; with the PVC bound it is
    'already restored'."""
    world.seed("shop", "data-db-0")
    assert world.restore(BACKUP, "data-db-0").code == 0
    [pv] = world.pvs()
    claim = world.kube.put(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data-db-0", "namespace": "shop"},
            "spec": {"volumeName": pv["metadata"]["name"], "accessModes": ["ReadWriteOnce"]},
        }
    )
    pv["spec"]["claimRef"]["uid"] = claim["metadata"]["uid"]
    world.kube.put(pv)
    bound = world.restore(BACKUP, "data-db-0")
    assert bound.code == 0, bound.stderr
    assert "already restored" in bound.stdout

    pv["spec"]["claimRef"]["uid"] = "0b9c4a1e-0000-4000-8000-000000000000"
    pv["status"] = {"phase": "Released"}
    world.kube.put(pv)
    released = world.restore(BACKUP, "data-db-0")

    assert released.code == 1
    assert "Released" in released.stderr
    assert "kubectl patch pv" in released.stderr
    assert "already restored" not in released.stdout


def test_all_restores_the_pvcs_whose_zone_exists_and_reports_the_other(world: World) -> None:
    """--all in a region without the recorded zone letter of one PVC: that PVC is reported
    (exit 1) with the zones to choose from; the others are restored."""
    env = {"SNAPD_DESTINATION_REGION": "us-west-1"}
    world.seed("shop", "data-db-0", availability_zone="eu-west-1a", destination_region="us-west-1")
    world.seed("web", "uploads", availability_zone="eu-west-1c", destination_region="us-west-1")

    result = world.restore(BACKUP, "--all", "--target-region", "us-west-1", **env)

    assert result.code == 1
    assert "web/uploads" in result.stderr
    assert "us-west-1a, us-west-1b" in result.stderr
    [volume] = world.volumes("us-west-1")
    assert volume["AvailabilityZone"] == "us-west-1a"
    [doc] = pvc_docs(world.cwd / "pvc.yaml")
    assert doc["metadata"]["name"] == "data-db-0"


def test_a_target_namespace_that_does_not_exist_is_refused_before_any_change(
    world: World,
) -> None:
    """--target-namespace with a typo: exit 1 before anything is copied; the dry-run says so.
    The source namespace missing in a fresh DR cluster only adds `kubectl create namespace`."""
    world.seed("shop", "data-db-0")

    dry = world.restore(BACKUP, "data-db-0", "--target-namespace", "restord", "--dry-run")
    typo = world.restore(BACKUP, "data-db-0", "--target-namespace", "restord")

    assert dry.code == 1
    assert "namespace restord" in dry.stdout
    assert typo.code == 1
    assert "kubectl create namespace restord" in typo.stderr
    assert world.calls("CopySnapshot") == 0

    fresh = world.restore(BACKUP, "data-db-0")
    assert fresh.code == 0, fresh.stderr
    assert "kubectl create namespace shop" in fresh.stdout


async def test_start_up_makes_both_regions_clients_then_freezes_what_it_made(
    moto: MotoWorld, tmp_path: Path
) -> None:
    """A full garbage collection of the start-up heap (imports, botocore's models) came
    during the burst of CopySnapshot calls: restore makes its clients first and freezes
    that heap, so the collector never scans it while a person waits."""
    request = request_of(BACKUP, "data-db-0", tmp_path=tmp_path)
    frozen = gc.get_freeze_count()
    try:
        async with AwsClients() as aws:
            await restore_command._start_up_done(aws, request)
            assert sorted(aws._clients) == [("ec2", DST), ("ec2", SRC)]
            assert gc.get_freeze_count() > frozen
    finally:
        gc.unfreeze()


# --------------------------------------------------------------------------- pure planning


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "cluster": SCOPE,
        "source_region": SRC,
        "destination_region": DST,
        **overrides,
    }
    return Settings(**values)


def request_of(*argv: str, tmp_path: Path | None = None) -> restore_plan.RestoreRequest:
    args: argparse.Namespace = build_parser().parse_args(["restore", *argv])
    if tmp_path is not None:
        args.output = str(tmp_path / "pvc.yaml")
    return restore_request(args, settings())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param((BACKUP,), "or --all", id="no-pvc-no-all"),
        pytest.param((BACKUP, "db", "--all"), "not both", id="pvc-and-all"),
        pytest.param((BACKUP, "--all", "--target-pvc", "x"), "--target-pvc", id="all-target-pvc"),
        pytest.param(("Backup!", "db"), "backup name", id="bad-backup"),
        pytest.param((BACKUP, "db", "-n", "Shop"), "namespace", id="bad-namespace"),
        pytest.param((BACKUP, "db", "--target-pvc", "a/b"), "target PVC", id="bad-target-pvc"),
        pytest.param((BACKUP, "db", "--target-region", "us-east-2"), "us-east-2", id="region"),
        pytest.param((BACKUP, "db", "--availability-zone", "us-east-1a"), "zone", id="az-region"),
        pytest.param((BACKUP, "db", "--completion-duration", "10m"), "15", id="not-15m-step"),
        pytest.param((BACKUP, "db", "--completion-duration", "49h"), "48h", id="over-48h"),
        pytest.param((BACKUP, "db", "--completion-duration", "soon"), "duration", id="garbage"),
        pytest.param((BACKUP, "db", "--output", "/nonexistent/x.yaml"), "output", id="no-dir"),
    ],
)
def test_parse_request_refuses_bad_command_lines(argv: tuple[str, ...], message: str) -> None:
    """Every bad flag combination or name is a ConfigError (exit 2) naming the problem."""
    with pytest.raises(ConfigError, match=None) as raised:
        request_of(*argv)
    assert message in str(raised.value)


def test_parse_request_defaults_to_the_source_region_and_reads_the_duration(
    tmp_path: Path,
) -> None:
    """Default target = source region (copy back); 1h30m → 90 CompletionDurationMinutes."""
    request = request_of(BACKUP, "db", "--completion-duration", "1h30m", tmp_path=tmp_path)
    assert request.target_region == SRC
    assert request.copy_back
    assert request.completion_minutes == 90
    assert not request_of(BACKUP, "db", "--target-region", DST).copy_back


@pytest.mark.parametrize(
    ("recorded", "requested", "zone", "note"),
    [
        pytest.param("eu-west-1b", None, "eu-west-1b", None, id="recorded"),
        pytest.param("eu-central-1b", None, "eu-west-1b", "same letter", id="letter"),
        pytest.param("eu-central-1b", "eu-west-1c", "eu-west-1c", None, id="flag-wins"),
        pytest.param("eu-central-1d", None, None, "eu-west-1a, eu-west-1b", id="no-letter"),
        pytest.param(None, None, None, "records no availability zone", id="unrecorded"),
        pytest.param("eu-west-1b", "eu-west-1z", None, "not a zone", id="unknown-flag"),
    ],
)
def test_choose_zone(
    recorded: str | None, requested: str | None, zone: str | None, note: str | None
) -> None:
    """Recorded AZ, else its letter in the region (said so), else exit 2 listing the zones."""
    zones = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
    if zone is None:
        with pytest.raises(ConfigError) as raised:
            restore_plan.choose_zone("eu-west-1", recorded, requested, zones)
        assert note is not None
        assert note in str(raised.value)
        return
    chosen, said = restore_plan.choose_zone("eu-west-1", recorded, requested, zones)
    assert chosen == zone
    assert (said is None) == (note is None)
    if note is not None:
        assert said is not None
        assert note in said


VOLUME_FIELDS = frozenset(f.name for f in fields(VolumeRecord))


def replica(**overrides: Any) -> Replica:
    """A replica of shop/db; `overrides` name Replica or Volume fields alike."""
    values: dict[str, Any] = {
        "snapshot_id": "snap-0abc",
        "region": DST,
        "state": "completed",
        "progress": 100,
        "scope": SCOPE,
        "source_snapshot_id": "snap-0src",
        "backup": BACKUP,
        **{k: v for k, v in overrides.items() if k not in VOLUME_FIELDS},
    }
    volume: dict[str, Any] = {
        "namespace": "shop",
        "pvc": "db",
        "availability_zone": "eu-west-1b",
        "volume_type": "gp3",
        "iops": 4000,
        "throughput": 250,
        "size_gib": 20,
        **{k: v for k, v in overrides.items() if k in VOLUME_FIELDS},
    }
    return Replica(**values, volume=VolumeRecord(**volume))


def plan_for(tmp_path: Path, *argv: str, **replica_fields: Any) -> restore_plan.RestorePlan:
    request = request_of(BACKUP, "db", *argv, tmp_path=tmp_path)
    plans, refused = restore_plan.plan_restores(
        [replica(**replica_fields)], request, ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
    )
    assert refused == []
    return plans[0]


@pytest.mark.parametrize(
    ("fields", "expected", "absent"),
    [
        pytest.param({}, {"VolumeType": "gp3", "Iops": 4000, "Throughput": 250}, (), id="gp3"),
        pytest.param(
            {"volume_type": "io2", "iops": 9000, "throughput": 250},
            {"VolumeType": "io2", "Iops": 9000},
            ("Throughput",),
            id="io2-no-throughput",
        ),
        pytest.param(
            {"volume_type": "gp2", "iops": 300, "throughput": None},
            {"VolumeType": "gp2"},
            ("Iops", "Throughput"),
            id="gp2-no-iops",
        ),
        pytest.param(
            {"volume_type": None},
            {"Size": 20},
            ("VolumeType", "Iops", "Throughput"),
            id="unrecorded-type",
        ),
        pytest.param({"encrypted": True}, {"Encrypted": True}, ("KmsKeyId",), id="encrypted"),
    ],
)
def test_build_volume_params_sends_only_what_the_type_accepts(
    tmp_path: Path, fields: dict[str, Any], expected: dict[str, Any], absent: tuple[str, ...]
) -> None:
    """IOPS for io1/io2/gp3 only, throughput for gp3 only, size and zone always."""
    params = restore_plan.build_volume_params(plan_for(tmp_path, **fields), "snap-0copy", SCOPE)
    assert params["AvailabilityZone"] == "eu-west-1b"
    assert params["SnapshotId"] == "snap-0copy"
    assert expected.items() <= params.items()
    assert not set(absent) & set(params)


def test_kms_key_encrypts_the_volume(tmp_path: Path) -> None:
    """--kms-key-id → Encrypted=True with that KmsKeyId."""
    params = restore_plan.build_volume_params(
        plan_for(tmp_path, "--kms-key-id", "alias/restore"), "snap-0copy", SCOPE
    )
    assert (params["Encrypted"], params["KmsKeyId"]) == (True, "alias/restore")


def test_client_token_is_deterministic_short_and_changes_with_the_restore(
    tmp_path: Path,
) -> None:
    """Same restore → same token (≤64 chars); another target or zone → another token."""
    base = plan_for(tmp_path)
    token = restore_plan.build_volume_params(base, "snap-a", SCOPE)["ClientToken"]
    assert len(token) <= 64
    assert (
        restore_plan.build_volume_params(plan_for(tmp_path), "snap-b", SCOPE)["ClientToken"]
        == token
    )
    for argv in (("--target-pvc", "other"), ("--availability-zone", "eu-west-1a")):
        assert restore_plan.build_volume_params(plan_for(tmp_path, *argv), "snap-a", SCOPE)[
            "ClientToken"
        ] != (token)
    assert restore_plan.build_client_token(base.key, 1) != token


def test_io2_without_recorded_iops_is_refused_for_that_pvc_alone(tmp_path: Path) -> None:
    """A replica that cannot be rebuilt as recorded is refused with the reason, not guessed."""
    request = request_of(BACKUP, "--all", tmp_path=tmp_path)
    good = replica(pvc="good", snapshot_id="snap-1")
    bad = replica(pvc="bad", snapshot_id="snap-2", volume_type="io2", iops=None)
    plans, refused = restore_plan.plan_restores([good, bad], request, ["eu-west-1b"])
    assert [p.source_pvc for p in plans] == ["good"]
    assert [r.label for r in refused] == ["shop/bad"]
    assert "IOPS" in refused[0].reason


def test_two_pvcs_into_one_target_is_a_usage_error(tmp_path: Path) -> None:
    """--all --target-namespace with the same PVC name in two namespaces would collide."""
    request = request_of(BACKUP, "--all", "--target-namespace", "dr", tmp_path=tmp_path)
    replicas = [replica(namespace="a", snapshot_id="snap-1"), replica(namespace="b")]
    with pytest.raises(ConfigError, match="dr/db"):
        restore_plan.plan_restores(replicas, request, ["eu-west-1b"])


def test_select_prefers_a_completed_replica_among_duplicates() -> None:
    """Two copies of one PVC (a retried copy): the completed one is restored."""
    request = request_of(BACKUP, "db")
    pending = replica(snapshot_id="snap-1", state="pending", progress=10)
    done = replica(snapshot_id="snap-2")
    selection = restore_plan.select_replicas([pending, done], request)
    assert [r.snapshot_id for r in selection.replicas] == ["snap-2"]
    assert selection.refused == ()


@pytest.mark.parametrize(
    "pvc",
    ["db", "d" * 243, "d" * 244, "d" * 252, "d" * 253, "a" * 243 + "-b.c", "x" * 244 + "-restored"],
)
def test_beside_name_is_a_valid_other_name(pvc: str) -> None:
    """`<pvc>-restored`, cut to 253 without a trailing '-'/'.', never the source itself."""
    name = restore_plan.beside_name(pvc)
    manifests.validate_dns1123_subdomain(name, "beside name")
    assert name != pvc
    assert name.endswith(("-restored", "-restored-2"))


@pytest.mark.parametrize("value", ["", "shop/db", "n" * 256, "n" * 257, "m" * 317])
def test_fit_tag_value_keeps_what_fits_and_hashes_the_rest(value: str) -> None:
    fitted = restore_plan.fit_tag_value(value)
    assert len(fitted) <= 256
    assert (fitted == value) == (len(value) <= 256)
    assert restore_plan.fit_tag_value(value + "x") != fitted or value == ""


def test_all_refuses_a_pvc_whose_zone_is_missing_and_plans_the_rest(tmp_path: Path) -> None:
    """--all: the zone problem of one PVC is that PVC's refusal; one PVC alone is exit 2."""
    both = [
        replica(namespace="a"),
        replica(namespace="b", snapshot_id="snap-2", availability_zone="eu-west-1c"),
    ]
    request = request_of(BACKUP, "--all", tmp_path=tmp_path)
    plans, refused = restore_plan.plan_restores(both, request, ["eu-west-1a", "eu-west-1b"])
    assert [p.label for p in plans] == ["a/db"]
    [refusal] = refused
    assert refusal.label == "b/db"
    assert "eu-west-1a, eu-west-1b" in refusal.reason
    with pytest.raises(ConfigError, match="eu-west-1a, eu-west-1b"):
        restore_plan.plan_restores(
            both[1:], request_of(BACKUP, "db", tmp_path=tmp_path), ["eu-west-1a", "eu-west-1b"]
        )
