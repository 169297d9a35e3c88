"""`snapd sync` with leader election: it takes the Lease, or refuses while another holds it."""

from __future__ import annotations

from datetime import UTC, datetime

from simworld.ec2sim import Ec2Simulator
from simworld.fake_kube import FakeKube
from simworld.moto_server import MotoWorld
from tests.integration.cli import run_snapd
from tests.integration.test_cli_sync import DST, replicas, seed, settings_env


def lease_env(moto: MotoWorld, fake_kube: FakeKube) -> dict[str, str]:
    return settings_env(
        moto,
        SNAPD_LEADER_ELECTION="true",
        SNAPD_LEASE_NAMESPACE="snapd",
        SNAPD_LEASE_DURATION="30s",
        KUBECONFIG=str(fake_kube.kubeconfig_path),
    )


def test_sync_refuses_while_run_holds_the_lease(
    moto: MotoWorld, ec2sim: Ec2Simulator, fake_kube: FakeKube
) -> None:
    """While a live `snapd run` holds the Lease, `snapd sync` copies nothing, exits 1 and
    names the holder."""
    seed(moto, days=1)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    fake_kube.put(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "snapd", "namespace": "snapd"},
            "spec": {
                "holderIdentity": "snapd-7d9f-abcde",
                "leaseDurationSeconds": 30,
                "acquireTime": now,
                "renewTime": now,
            },
        }
    )
    result = run_snapd("sync", env=lease_env(moto, fake_kube))
    assert result.code == 1
    assert "snapd-7d9f-abcde" in result.stderr
    assert ec2sim.calls["CopySnapshot"] == 0


def test_sync_takes_and_releases_the_lease(
    moto: MotoWorld, ec2sim: Ec2Simulator, fake_kube: FakeKube
) -> None:
    """With the Lease free, `snapd sync` takes it, copies, and releases it at the end."""
    ec2sim.copy_duration = 0.1
    seed(moto, days=1)
    result = run_snapd("sync", env=lease_env(moto, fake_kube))
    assert result.code == 0, result.stderr
    assert len(replicas(moto, DST)) == 2
    (lease,) = fake_kube.objects("Lease", "snapd")
    assert not lease["spec"].get("holderIdentity")
