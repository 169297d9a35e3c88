"""`snapd restore` says where it goes: the kube context and API server before any change, a
second PV for an already-claimed PVC refused, an unknown context refused, a dry-run whose
placeholder volume reads as one. The real CLI against moto, the simulator and the fake API.
"""

from __future__ import annotations

import yaml

from simworld.fake_kube import CONTEXT
from snapd import manifests
from tests.integration.test_restore import BACKUP, World, other_pv

OTHER_BACKUP = "daily-20240502020000"
#: A claimRef uid: the PV was bound to that claim (its current or former volume).
BOUND_UID = "4f6a2c1e-0000-4000-8000-000000000001"


def test_restore_names_the_kube_context_and_api_server_before_any_change(world: World) -> None:
    """The first line on stderr names the context and API server, before the copy-back starts;
    the summary names them again."""
    world.seed("shop", "data-db-0")

    result = world.restore(BACKUP, "data-db-0")

    assert result.code == 0, result.stderr
    target = f"kube context {CONTEXT} (API server {world.kube.url})"
    lines = result.stderr.splitlines()
    said = lines.index(f"snapd restore: PersistentVolumes go to {target}")
    started = next(i for i, line in enumerate(lines) if "restore.copy_back_started" in line)
    assert said < started
    assert result.stdout.splitlines()[0] == f"PersistentVolumes in {target}"


def test_dry_run_names_the_target_and_marks_the_placeholder_volume(world: World) -> None:
    """--dry-run says where the PV would go; its volume id is an obvious placeholder."""
    world.seed("shop", "data-db-0")

    result = world.restore(BACKUP, "data-db-0", "--dry-run")

    assert result.code == 0, result.stderr
    assert result.stdout.startswith(
        f"# PersistentVolumes would go to kube context {CONTEXT} (API server {world.kube.url})\n"
    )
    assert "# vol-TO-BE-CREATED below is a placeholder" in result.stdout
    pv = next(d for d in yaml.safe_load_all(result.stdout) if d and d["kind"] == "PersistentVolume")
    assert pv["spec"]["csi"]["volumeHandle"] == "vol-TO-BE-CREATED"
    assert world.calls("CopySnapshot") == 0


def test_a_second_pv_for_an_already_claimed_pvc_is_refused(world: World) -> None:
    """Restoring another backup into a PVC that a restored PV already waits for: exit 1 naming
    that PV and the way out; no copy, no volume, no second PV. --target-pvc restores beside."""
    world.seed("shop", "data-db-0")
    world.seed("shop", "data-db-0", backup=OTHER_BACKUP)
    assert world.restore(BACKUP, "data-db-0").code == 0
    [first_pv] = world.pvs()
    copies, volumes = world.calls("CopySnapshot"), world.calls("CreateVolume")

    dry = world.restore(OTHER_BACKUP, "data-db-0", "--dry-run")
    second = world.restore(OTHER_BACKUP, "data-db-0", "--pvc-file", "other.yaml")

    name = first_pv["metadata"]["name"]
    assert dry.code == 1
    assert f"already claimed by PersistentVolume {name}" in dry.stdout
    assert second.code == 1
    assert f"PVC shop/data-db-0 is already claimed by PersistentVolume {name}" in second.stderr
    assert "--target-pvc" in second.stderr
    assert f"kubectl delete pv {name}" in second.stderr
    assert (world.calls("CopySnapshot"), world.calls("CreateVolume")) == (copies, volumes)
    assert [p["metadata"]["name"] for p in world.pvs()] == [name]
    assert not (world.cwd / "other.yaml").exists()

    beside = world.restore(
        OTHER_BACKUP, "data-db-0", "--target-pvc", "data-db-0-b", "--pvc-file", "b.yaml"
    )
    assert beside.code == 0, beside.stderr
    assert len(world.pvs()) == 2


def test_a_pv_bound_to_the_pvc_before_does_not_block_a_restore(world: World) -> None:
    """A PV whose claim was bound (claimRef with a uid: the PVC's current or former volume)
    is no rival: the replace-the-PVC procedure goes on."""
    world.seed("shop", "data-db-0")
    world.kube.put(
        other_pv(
            "shop",
            "data-db-0",
            backup="velero-made",
            volume_id="vol-0aaaaaaaaaaaaaaaa",
            name="pvc-0123",
            claim_uid=BOUND_UID,
        )
    )

    result = world.restore(BACKUP, "data-db-0")

    assert result.code == 0, result.stderr
    assert len(world.pvs()) == 2


def test_an_unknown_context_is_exit_2_before_any_change(world: World) -> None:
    """A --context the kubeconfig lacks: one line naming it and the contexts there, exit 2."""
    world.seed("shop", "data-db-0")

    result = world.restore(BACKUP, "data-db-0", "--context", "prod-typo")

    assert result.code == 2
    [line] = [x for x in result.stderr.splitlines() if not x.startswith("{")]  # no JSON logs
    assert "'prod-typo'" in line
    assert f"contexts there: {CONTEXT}" in line
    assert world.calls("CopySnapshot") == 0
    assert world.pvs() == []


def test_all_reads_kubernetes_in_a_few_lists_and_still_sees_every_conflict(
    world: World,
) -> None:
    """--all reads every PV in one LIST and each target namespace's PVCs in one LIST — no GET
    per PVC — and still refuses a foreign PV of a target's name and a PVC another restored PV
    claims, and sees the PV a target PVC is bound to (its reclaim policy is warned about)."""
    for namespace, pvc in (
        ("shop", "data-db-0"),
        ("shop", "data-db-1"),
        ("shop", "data-db-2"),
        ("web", "uploads"),
    ):
        world.seed(namespace, pvc)
    foreign = manifests.build_pv_name("shop", "data-db-1", BACKUP)
    world.kube.put(other_pv("shop", "data-db-1", backup=BACKUP, volume_id="vol-0ffffffffffffffff"))
    rival = manifests.build_pv_name("shop", "data-db-2", OTHER_BACKUP)
    world.kube.put(
        other_pv("shop", "data-db-2", backup=OTHER_BACKUP, volume_id="vol-0eeeeeeeeeeeeeeee")
    )
    bound = other_pv(
        "web",
        "uploads",
        backup="velero-made",
        volume_id="vol-0aaaaaaaaaaaaaaaa",
        name="pvc-0123",
        claim_uid=BOUND_UID,
    )
    bound["spec"]["persistentVolumeReclaimPolicy"] = "Delete"
    world.kube.put(bound)
    claim = manifests.build_pvc(
        name="uploads", namespace="web", volume_name="pvc-0123", size_gib=20
    )
    world.kube.put(claim)
    before = len(world.kube.requests)

    result = world.restore(BACKUP, "--all")

    assert result.code == 1
    assert foreign in result.stderr
    assert "vol-0ffffffffffffffff" in result.stderr
    assert f"already claimed by PersistentVolume {rival}" in result.stderr
    assert "Careful: PVC web/uploads is bound to PV pvc-0123" in result.stdout
    assert world.calls("CopySnapshot") == 2  # shop/data-db-0 and web/uploads only
    docs = [d for d in yaml.safe_load_all((world.cwd / "pvc.yaml").read_text()) if d]
    assert sorted((d["metadata"]["namespace"], d["metadata"]["name"]) for d in docs) == [
        ("shop", "data-db-0"),
        ("web", "uploads"),
    ]
    reads = sorted(r.path for r in world.kube.requests[before:] if r.method == "GET")
    assert reads == [
        "/api/v1/namespaces/shop",
        "/api/v1/namespaces/shop/persistentvolumeclaims",
        "/api/v1/namespaces/web",
        "/api/v1/namespaces/web/persistentvolumeclaims",
        "/api/v1/persistentvolumes",
    ]
