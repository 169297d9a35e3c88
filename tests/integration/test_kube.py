"""kube.py through kubernetes_asyncio over HTTP against the fake API server, and its builders."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from simworld.fake_kube import CONTEXT, UNREACHABLE_CONTEXT, FakeKube
from snapd import kube, manifests
from snapd.errors import ConfigError, KubeError

K8S_VERSION = "1.30"


def pv_manifest(name: str = "snapd-restore-a", **overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "name": name,
        "volume_id": "vol-0123456789abcdef0",
        "size_gib": 10,
        "availability_zone": "eu-west-1a",
        "claim_namespace": "shop",
        "claim_name": "data-db-0",
        "backup": "daily-20240101000000",
        "source_namespace": "shop",
        "source_pvc": "data-db-0",
        "scope": "velero-bucket/cluster-a",
        "storage_class": "gp3",
        "fs_type": "xfs",
        "access_modes": ("ReadWriteOnce",),
        "volume_mode": "Filesystem",
    }
    arguments.update(overrides)
    return manifests.build_pv(**arguments)


# --------------------------------------------------------------------------- connecting


async def test_connect_reaches_the_server_named_by_kubeconfig_and_context(
    fake_kube: FakeKube,
) -> None:
    """A kubeconfig + context reach the API server and its credentials are accepted."""
    async with await kube.connect(
        context=CONTEXT, kubeconfig=str(fake_kube.kubeconfig_path)
    ) as kube_client:
        version = await kube_client.get_version()
    assert version["gitVersion"].startswith("v1.30")
    assert kube_client.host == fake_kube.url
    assert fake_kube.requests[-1].path in ("/version", "/version/")


# N802: the test names the environment variable as it is spelled.
async def test_connect_uses_KUBECONFIG_when_nothing_is_given(fake_kube: FakeKube) -> None:  # noqa: N802
    """With no arguments the KUBECONFIG variable's current context is used."""
    async with await kube.connect() as kube_client:
        await kube_client.get_version()
    assert kube_client.host == fake_kube.url


async def test_connect_without_any_configuration_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No kubeconfig, no in-cluster service: one clear error naming KUBECONFIG and --context."""
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(KubeError, match=r"no kubeconfig found; set KUBECONFIG or pass --context"):
        await kube.connect()


async def test_connect_with_an_unknown_context_fails_clearly(fake_kube: FakeKube) -> None:
    """A --context the kubeconfig does not have is a configuration error (exit 2) that names
    it and the contexts there are, before any request."""
    with pytest.raises(ConfigError, match=r"'nope'.*contexts there: fake, fake-unreachable"):
        await kube.connect(context="nope", kubeconfig=str(fake_kube.kubeconfig_path))
    assert fake_kube.requests == []


async def test_connect_names_the_current_context(fake_kube: FakeKube) -> None:
    """Without --context the client knows the kubeconfig's current context by name."""
    async with await kube.connect(kubeconfig=str(fake_kube.kubeconfig_path)) as kube_client:
        assert kube_client.context == "fake"
        assert kube_client.host == fake_kube.url


async def test_in_cluster_without_service_account_files_fails_clearly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In a pod (KUBERNETES_SERVICE_HOST set) missing token files give an in-cluster error."""
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    with pytest.raises(KubeError, match="in-cluster"):
        await kube.connect()


async def test_unreachable_server_is_a_kube_error(fake_kube: FakeKube) -> None:
    """A server nobody listens on is KubeError reason Unreachable, not an aiohttp error."""
    async with await kube.connect(
        context=UNREACHABLE_CONTEXT, kubeconfig=str(fake_kube.kubeconfig_path)
    ) as kube_client:
        with pytest.raises(KubeError) as caught:
            await kube_client.get_pv("anything")
    assert caught.value.reason == "Unreachable"
    assert caught.value.status is None


async def test_rejected_credentials_are_a_401_kube_error(
    fake_kube: FakeKube, tmp_path: Path
) -> None:
    """A wrong token is KubeError 401 Unauthorized."""
    config = yaml.safe_load(fake_kube.kubeconfig_path.read_text())
    config["users"][0]["user"]["token"] = "wrong"
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    async with await kube.connect(kubeconfig=str(path)) as kube_client:
        with pytest.raises(KubeError) as caught:
            await kube_client.list_pvs()
    assert (caught.value.status, caught.value.reason) == (401, "Unauthorized")


async def test_an_exec_plugin_token_is_renewed_when_it_expires(fake_kube: FakeKube) -> None:
    """Tokens from the kubeconfig's exec plugin (as `aws eks get-token`) that expire are
    fetched again before a request; the same client keeps working past their life."""
    fake_kube.set_token_lifetime(0.5)
    async with await kube.connect(kubeconfig=str(fake_kube.exec_kubeconfig_path)) as kube_client:
        await kube_client.get_version()
        first = fake_kube.exec_tokens_seen[-1]
        await asyncio.sleep(0.6)
        await kube_client.get_version()
    assert fake_kube.exec_tokens_seen[-1] != first
    assert all(r.status == 200 for r in fake_kube.requests)


def exec_token(fake_kube: FakeKube) -> str:
    """A token from the fake's exec plugin, run as the kubeconfig loader runs it."""
    config = yaml.safe_load(fake_kube.exec_kubeconfig_path.read_text())
    command = config["users"][0]["user"]["exec"]
    result = subprocess.run(
        [command["command"], *command["args"]],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return str(json.loads(result.stdout)["status"]["token"])


def status_of(fake_kube: FakeKube, token: str) -> int:
    request = urllib.request.Request(  # noqa: S310 - the fake's http://127.0.0.1 URL
        f"{fake_kube.url}/version", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - same URL
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_the_fake_rejects_expired_and_forged_exec_tokens(fake_kube: FakeKube) -> None:
    """The fake API server checks an exec token's signature and expiry, like a real one."""
    fake_kube.set_token_lifetime(0.3)
    token = exec_token(fake_kube)
    assert status_of(fake_kube, token) == 200
    deadline = time.monotonic() + 10
    while status_of(fake_kube, token) == 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert status_of(fake_kube, token) == 401
    prefix, expires, _ = token.split(".")
    forged = f"{prefix}.{int(expires) + 3_600_000}.{'0' * 64}"
    assert status_of(fake_kube, forged) == 401


async def test_get_namespace(kube_client: kube.KubeClient, fake_kube: FakeKube) -> None:
    """A namespace that exists comes back; one that does not is None."""
    fake_kube.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})
    found = await kube_client.get_namespace("shop")
    assert found is not None
    assert found["metadata"]["name"] == "shop"
    assert await kube_client.get_namespace("nowhere") is None


# N802: the test names the environment variable as it is spelled.
def test_a_subprocess_reaches_the_fake_through_KUBECONFIG(fake_kube: FakeKube) -> None:  # noqa: N802
    """A child process (like the snapd CLI) finds the fake through KUBECONFIG alone."""
    fake_kube.put(pv_manifest("snapd-from-parent"))
    script = (
        "import asyncio, json\n"
        "from snapd import kube\n"
        "async def main():\n"
        "    async with await kube.connect() as c:\n"
        "        print(json.dumps([p['metadata']['name'] for p in await c.list_pvs()]))\n"
        "asyncio.run(main())\n"
    )
    env = {**os.environ, **fake_kube.env()}
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["snapd-from-parent"]


# --------------------------------------------------------------------------- PersistentVolumes


async def test_create_then_get_returns_the_stored_pv(
    kube_client: kube.KubeClient, fake_kube: FakeKube
) -> None:
    """A created PV comes back with server fields and the spec as built."""
    manifest = pv_manifest()
    created = await kube_client.create_pv(manifest)
    fetched = await kube_client.get_pv("snapd-restore-a")
    assert fetched == created
    assert created["metadata"]["uid"]
    assert created["metadata"]["resourceVersion"]
    assert created["metadata"]["creationTimestamp"].endswith("Z")
    assert created["spec"]["csi"] == manifest["spec"]["csi"]
    assert created["spec"]["claimRef"]["name"] == "data-db-0"
    assert [pv["metadata"]["name"] for pv in fake_kube.objects("PersistentVolume")] == [
        "snapd-restore-a"
    ]


async def test_creating_an_existing_pv_is_409_already_exists(kube_client: kube.KubeClient) -> None:
    """A second create of the same name is KubeError 409 AlreadyExists, naming the PV."""
    await kube_client.create_pv(pv_manifest())
    with pytest.raises(KubeError) as caught:
        await kube_client.create_pv(pv_manifest())
    assert (caught.value.status, caught.value.reason) == (409, "AlreadyExists")
    assert "snapd-restore-a" in str(caught.value)


async def test_getting_a_missing_pv_returns_none(kube_client: kube.KubeClient) -> None:
    """A PV that does not exist is None, not an error."""
    assert await kube_client.get_pv("does-not-exist") is None


async def test_deleting_a_pv_removes_it_and_reports_whether_it_was_there(
    kube_client: kube.KubeClient,
) -> None:
    """delete_pv is True the first time and False once the PV is gone."""
    await kube_client.create_pv(pv_manifest())
    assert await kube_client.delete_pv("snapd-restore-a") is True
    assert await kube_client.get_pv("snapd-restore-a") is None
    assert await kube_client.delete_pv("snapd-restore-a") is False


async def test_label_selectors_filter_pvs(kube_client: kube.KubeClient) -> None:
    """Equality, inequality, set and existence selectors return only matching PVs."""
    for name, backup in (("pv-a", "backup-a"), ("pv-b", "backup-b"), ("pv-c", "backup-c")):
        await kube_client.create_pv(pv_manifest(name, backup=backup))

    async def names(selector: str) -> list[str]:
        return [pv["metadata"]["name"] for pv in await kube_client.list_pvs(selector)]

    assert await names("snapd.io/backup=backup-b") == ["pv-b"]
    assert await names("snapd.io/backup==backup-b") == ["pv-b"]
    assert await names("snapd.io/backup!=backup-b") == ["pv-a", "pv-c"]
    assert await names("snapd.io/backup in (backup-a, backup-c)") == ["pv-a", "pv-c"]
    assert await names("snapd.io/backup notin (backup-a)") == ["pv-b", "pv-c"]
    assert await names("app.kubernetes.io/managed-by=snapd,snapd.io/backup=backup-a") == ["pv-a"]
    assert await names("snapd.io/backup") == ["pv-a", "pv-b", "pv-c"]
    assert await names("!snapd.io/backup") == []
    assert await names("snapd.io/backup=other") == []
    every = await kube_client.list_pvs()
    assert [pv["kind"] for pv in every] == ["PersistentVolume"] * 3


async def test_restore_selector_finds_pvs_with_hashed_label_values(
    kube_client: kube.KubeClient,
) -> None:
    """Names too long for a label value are hashed alike in labels and selectors."""
    long_backup = "nightly-" + "x" * 80
    await kube_client.create_pv(pv_manifest("pv-long", backup=long_backup))
    await kube_client.create_pv(pv_manifest("pv-short", backup="short"))
    wanted = manifests.restore_labels(
        backup=long_backup, namespace="shop", pvc="data-db-0", scope="velero-bucket/cluster-a"
    )
    found = await kube_client.list_pvs(manifests.label_selector(wanted))
    assert [pv["metadata"]["name"] for pv in found] == ["pv-long"]
    assert found[0]["metadata"]["annotations"]["snapd.io/backup"] == long_backup
    assert len(found[0]["metadata"]["labels"]["snapd.io/backup"]) <= 63


async def test_a_malformed_selector_is_a_400_kube_error(kube_client: kube.KubeClient) -> None:
    """The server's 400 BadRequest for a bad selector surfaces as a KubeError."""
    with pytest.raises(KubeError) as caught:
        await kube_client.list_pvs("snapd.io/backup in (")
    assert (caught.value.status, caught.value.reason) == (400, "BadRequest")


async def test_an_incomplete_pv_is_422_invalid_with_the_fields_named(
    kube_client: kube.KubeClient,
) -> None:
    """A PV without capacity, access modes or source is 422 Invalid naming each field."""
    bad = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "bad"}, "spec": {}}
    with pytest.raises(KubeError) as caught:
        await kube_client.create_pv(bad)
    assert (caught.value.status, caught.value.reason) == (422, "Invalid")
    for field in ("spec.capacity", "spec.accessModes", "must specify a volume type"):
        assert field in str(caught.value)


async def test_server_errors_become_kube_errors_with_status(
    kube_client: kube.KubeClient, fake_kube: FakeKube
) -> None:
    """A 500 from the API server is KubeError status 500 with the server's reason."""
    fake_kube.fail("POST", "/persistentvolumes", code=500, reason="InternalError")
    with pytest.raises(KubeError) as caught:
        await kube_client.create_pv(pv_manifest())
    assert (caught.value.status, caught.value.reason) == (500, "InternalError")
    assert await kube_client.get_pv("snapd-restore-a") is None


# --------------------------------------------------------------------------- PVCs


async def test_pvc_create_get_and_list(kube_client: kube.KubeClient) -> None:
    """A proposed PVC can be created, read back and listed in its namespace only."""
    pvc = manifests.build_pvc(
        name="data-db-0", namespace="shop", volume_name="snapd-restore-a", size_gib=10
    )
    created = await kube_client.create_pvc(pvc)
    assert created["spec"]["volumeName"] == "snapd-restore-a"
    assert await kube_client.get_pvc("shop", "data-db-0") == created
    assert await kube_client.get_pvc("other", "data-db-0") is None
    assert [p["metadata"]["name"] for p in await kube_client.list_pvcs("shop")] == ["data-db-0"]
    assert await kube_client.list_pvcs("other") == []
    with pytest.raises(KubeError) as caught:
        await kube_client.create_pvc(pvc)
    assert caught.value.status == 409


# --------------------------------------------------------------------------- builders


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({}, id="filesystem-gp3"),
        pytest.param({"volume_mode": "Block", "fs_type": None}, id="block"),
        pytest.param({"storage_class": None}, id="no-storage-class"),
        pytest.param({"mount_options": ("noatime",)}, id="mount-options"),
        pytest.param({"access_modes": ("ReadWriteOncePod",)}, id="rwop"),
        pytest.param({"source_namespace": None, "source_pvc": None, "scope": None}, id="bare"),
        pytest.param({"backup": "b" * 200}, id="long-backup"),
    ],
)
def test_build_pv_is_a_valid_kubernetes_manifest(overrides: dict[str, Any]) -> None:
    """Every PV build_pv makes passes the Kubernetes 1.30 schema in strict mode."""
    manifest = pv_manifest(**overrides)
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    for value in manifest["metadata"]["labels"].values():
        assert len(value) <= 63


def test_build_pv_has_the_fields_a_restore_needs() -> None:
    """CSI source, Retain, claimRef, capacity and zone affinity on both topology keys."""
    manifest = pv_manifest()
    spec = manifest["spec"]
    assert spec["csi"] == {
        "driver": "ebs.csi.aws.com",
        "volumeHandle": "vol-0123456789abcdef0",
        "fsType": "xfs",
    }
    assert spec["capacity"] == {"storage": "10Gi"}
    assert spec["persistentVolumeReclaimPolicy"] == "Retain"
    assert spec["storageClassName"] == "gp3"
    assert spec["volumeMode"] == "Filesystem"
    assert spec["claimRef"]["namespace"] == "shop"
    assert spec["claimRef"]["name"] == "data-db-0"
    terms = spec["nodeAffinity"]["required"]["nodeSelectorTerms"]
    assert [t["matchExpressions"][0]["key"] for t in terms] == [
        "topology.kubernetes.io/zone",
        "topology.ebs.csi.aws.com/zone",
    ]
    assert all(t["matchExpressions"][0]["values"] == ["eu-west-1a"] for t in terms)
    annotations = manifest["metadata"]["annotations"]
    assert annotations["snapd.io/cluster"] == "velero-bucket/cluster-a"
    assert annotations["snapd.io/volume-id"] == "vol-0123456789abcdef0"


def test_build_pv_block_mode_has_no_fs_type_and_defaults_are_explicit() -> None:
    """Block volumes carry no fsType; a missing storage class is written as ""."""
    spec = pv_manifest(volume_mode="Block", storage_class=None)["spec"]
    assert "fsType" not in spec["csi"]
    assert spec["storageClassName"] == ""
    assert pv_manifest(fs_type=None)["spec"]["csi"]["fsType"] == "ext4"


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        pytest.param({"name": "Bad_Name"}, ConfigError, id="pv-name"),
        pytest.param({"claim_namespace": "a.b"}, ConfigError, id="namespace"),
        pytest.param({"volume_id": "snap-123"}, ValueError, id="volume-id"),
        pytest.param({"size_gib": 0}, ValueError, id="size"),
        pytest.param({"access_modes": ("ReadWrite",)}, ValueError, id="access-mode"),
        pytest.param({"volume_mode": "Raw"}, ValueError, id="volume-mode"),
        pytest.param({"availability_zone": ""}, ValueError, id="zone"),
    ],
)
def test_build_pv_refuses_inputs_kubernetes_would_reject(
    overrides: dict[str, Any], error: type[Exception]
) -> None:
    """Bad names are ConfigError, impossible values ValueError — before any API call."""
    with pytest.raises(error):
        pv_manifest(**overrides)


def test_build_pvc_is_valid_and_binds_the_pv() -> None:
    """The proposed PVC passes the schema and names the PV, class, size and modes."""
    pvc = manifests.build_pvc(
        name="data-db-0",
        namespace="shop",
        volume_name="snapd-restore-a",
        size_gib=10,
        storage_class=None,
        access_modes=("ReadWriteOnce",),
        volume_mode="Filesystem",
        annotations={"snapd.io/backup": "daily"},
    )
    kubernetes_validate.validate(pvc, K8S_VERSION, strict=True)
    assert pvc["metadata"] == {
        "name": "data-db-0",
        "namespace": "shop",
        "annotations": {"snapd.io/backup": "daily"},
    }
    assert pvc["spec"] == {
        "storageClassName": "",
        "accessModes": ["ReadWriteOnce"],
        "volumeMode": "Filesystem",
        "resources": {"requests": {"storage": "10Gi"}},
        "volumeName": "snapd-restore-a",
    }


def test_build_pv_name_is_stable_and_valid() -> None:
    """The same restore gets the same PV name; another backup another; always ≤253."""
    first = manifests.build_pv_name("shop", "data-db-0", "daily-1")
    assert first == manifests.build_pv_name("shop", "data-db-0", "daily-1")
    assert first != manifests.build_pv_name("shop", "data-db-0", "daily-2")
    assert first.startswith("snapd-shop-data-db-0-")
    long_name = manifests.build_pv_name("n" * 63, "p" * 253, "b" * 253)
    assert len(long_name) <= 253
    manifests.validate_dns1123_subdomain(long_name, "PV name")


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        pytest.param("daily-20240101", True, id="plain"),
        pytest.param("A.b_c-1", True, id="mixed"),
        pytest.param("x" * 63, True, id="max-length"),
        pytest.param("x" * 64, False, id="too-long"),
        pytest.param("bucket/prefix", False, id="slash"),
        pytest.param("-leading", False, id="leading-dash"),
        pytest.param("///", False, id="nothing-readable"),
    ],
)
def test_label_value_keeps_valid_values_and_hashes_the_rest(value: str, kept: bool) -> None:
    """Valid label values stay as they are; others become ≤63 valid chars, deterministically."""
    result = manifests.label_value(value)
    assert (result == value) is kept
    assert result == manifests.label_value(value)
    assert len(result) <= 63
    manifest = pv_manifest(backup=value)
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


@pytest.mark.parametrize(
    ("name", "label_ok", "subdomain_ok"),
    [
        pytest.param("shop", True, True, id="simple"),
        pytest.param("data-db-0", True, True, id="dashes"),
        pytest.param("a.b", False, True, id="dotted"),
        pytest.param("Shop", False, False, id="upper-case"),
        pytest.param("-shop", False, False, id="leading-dash"),
        pytest.param("shop-", False, False, id="trailing-dash"),
        pytest.param("", False, False, id="empty"),
        pytest.param("a" * 64, False, True, id="64-chars"),
        pytest.param("a" * 254, False, False, id="254-chars"),
        pytest.param("a_b", False, False, id="underscore"),
        pytest.param("../etc", False, False, id="path"),
    ],
)
def test_name_validation(name: str, label_ok: bool, subdomain_ok: bool) -> None:
    """DNS-1123 labels and subdomains are accepted; anything else is a ConfigError naming it."""
    for check, ok in (
        (manifests.validate_dns1123_label, label_ok),
        (manifests.validate_dns1123_subdomain, subdomain_ok),
    ):
        if ok:
            assert check(name, "PVC name") == name
        else:
            with pytest.raises(ConfigError, match="invalid PVC name"):
                check(name, "PVC name")
