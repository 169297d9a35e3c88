"""Kubernetes objects as data: name checks and the manifests of a restore (pure).

Everything here takes strings and returns strings or plain dicts: no client, no I/O, no
kubernetes_asyncio. `kube.py` (the door to the API server) and `restore_plan.py` (the
decisions of a restore) both use it, so planning a restore never loads a Kubernetes
client (docs/architecture.md#pure-and-io).

- `validate_dns1123_label` / `validate_dns1123_subdomain` check the names a command line
  gives before they become tag filters, file names or objects (ConfigError, exit 2).
- `build_pv` / `build_pvc` / `build_pv_name` / `restore_labels` make what `snapd restore`
  creates and `--dry-run` prints; `label_value` / `label_selector` make lookups find it again.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from snapd import tags
from snapd.errors import ConfigError

EBS_CSI_DRIVER = "ebs.csi.aws.com"
#: Node labels naming a node's zone. PV node affinity lists one term per key; terms are
#: ORed, so a node labelled by either the well-known key or the EBS CSI driver's own key
#: (older drivers publish only that one) matches.
ZONE_KEYS = ("topology.kubernetes.io/zone", "topology.ebs.csi.aws.com/zone")
MANAGED_BY = "app.kubernetes.io/managed-by"
VOLUME_ID = "snapd.io/volume-id"
ACCESS_MODES = frozenset({"ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"})
VOLUME_MODES = frozenset({"Filesystem", "Block"})

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_UNSAFE = re.compile(r"[^-A-Za-z0-9_.]")

# --------------------------------------------------------------------------- validation


def validate_dns1123_label(name: str, what: str) -> str:
    """`name` if it is a DNS-1123 label (a namespace), else ConfigError naming `what`."""
    if len(name) > 63 or not _DNS1123_LABEL.match(name):
        raise ConfigError(
            f"invalid {what} {name!r}: expected a DNS-1123 label: at most 63 lower-case "
            "letters, digits or '-', starting and ending with a letter or digit"
        )
    return name


def validate_dns1123_subdomain(name: str, what: str) -> str:
    """`name` if it is a DNS-1123 subdomain (a PVC or PV name), else ConfigError naming `what`."""
    if len(name) > 253 or not _DNS1123_SUBDOMAIN.match(name):
        raise ConfigError(
            f"invalid {what} {name!r}: expected a DNS-1123 subdomain: at most 253 lower-case "
            "letters, digits, '-' or '.', each dot-separated part starting and ending with a "
            "letter or digit"
        )
    return name


# --------------------------------------------------------------------------- pure builders


def label_value(value: str) -> str:
    """`value` as a valid label value: kept when valid, else a readable prefix + hash.

    Label values are at most 63 characters of `[-A-Za-z0-9_.]`, starting and ending with a
    letter or digit. A value that does not fit (too long, or with `/` like a scope
    `bucket/prefix`) becomes `<prefix>-<10 hex of sha256(value)>`: at most 63 characters,
    deterministic, so a selector built with this same function finds it. The full, unhashed
    value is always in the annotation of the same key; check it after a label lookup.
    """
    if len(value) <= 63 and _LABEL_VALUE.match(value):
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:10]
    readable = _LABEL_UNSAFE.sub("-", value)[:52].strip("-_.")
    return f"{readable}-{digest}" if readable else digest


def label_selector(labels: Mapping[str, str]) -> str:
    """`k1=v1,k2=v2` for `list_pvs`; values go through `label_value` like the labels did."""
    return ",".join(f"{key}={label_value(value)}" for key, value in sorted(labels.items()))


def restore_labels(
    *, backup: str, namespace: str | None, pvc: str | None, scope: str | None = None
) -> dict[str, str]:
    """The unhashed identity of a restore's source (label keys → full values).

    `build_pv` writes these as labels (through `label_value`) and as annotations (verbatim);
    `label_selector(restore_labels(...))` finds the PVs of one restore again.
    """
    labels = {tags.BACKUP: backup}
    if namespace:
        labels[tags.NAMESPACE] = namespace
    if pvc:
        labels[tags.PVC] = pvc
    if scope:
        labels[tags.CLUSTER] = scope
    return labels


def build_pv_name(target_namespace: str, target_pvc: str, backup: str) -> str:
    """A stable PV name for restoring `backup` into `target_namespace/target_pvc`.

    `snapd-<namespace>-<pvc>-<8 hex>`: readable, a valid DNS-1123 subdomain (≤253), and the
    same on every re-run of the same restore, so a re-run finds its PV by name.
    """
    digest = hashlib.sha256(f"{target_namespace}\0{target_pvc}\0{backup}".encode()).hexdigest()
    readable = f"snapd-{target_namespace}-{target_pvc}"[:243].rstrip("-.")
    return f"{readable}-{digest[:8]}"


def _quantity(size_gib: int) -> str:
    if isinstance(size_gib, bool) or not isinstance(size_gib, int) or size_gib < 1:
        raise ValueError(f"size_gib must be a positive whole number of GiB, got {size_gib!r}")
    return f"{size_gib}Gi"


def _modes(access_modes: Sequence[str], volume_mode: str | None) -> tuple[list[str], str]:
    modes = list(dict.fromkeys(access_modes)) or ["ReadWriteOnce"]
    unknown = [mode for mode in modes if mode not in ACCESS_MODES]
    if unknown:
        raise ValueError(f"unknown access mode {unknown[0]!r}; expected {sorted(ACCESS_MODES)}")
    mode = volume_mode or "Filesystem"
    if mode not in VOLUME_MODES:
        raise ValueError(f"unknown volume mode {mode!r}; expected Filesystem or Block")
    return modes, mode


def build_pv(
    *,
    name: str,
    volume_id: str,
    size_gib: int,
    availability_zone: str,
    claim_namespace: str,
    claim_name: str,
    backup: str,
    source_namespace: str | None = None,
    source_pvc: str | None = None,
    scope: str | None = None,
    storage_class: str | None = None,
    fs_type: str | None = None,
    access_modes: Sequence[str] = ("ReadWriteOnce",),
    volume_mode: str | None = None,
    mount_options: Sequence[str] = (),
    zone_keys: Sequence[str] = ZONE_KEYS,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The PersistentVolume manifest of a restored EBS volume (pure; a plain dict).

    CSI `ebs.csi.aws.com` with `volumeHandle` = the new volume, `Retain` so deleting the
    claim never deletes the volume, node affinity on the volume's zone, and a `claimRef` to
    the target PVC so no other claim can bind it. `storageClassName` is `""` when the
    source had none: it must equal the PVC's for the binding to happen. `fsType` (default
    ext4, the driver's) is set only in Filesystem mode. Labels carry the source identity
    (`restore_labels`, hashed where needed by `label_value`); annotations carry it unhashed,
    plus the volume id and any `annotations` given.
    """
    validate_dns1123_subdomain(name, "PersistentVolume name")
    validate_dns1123_label(claim_namespace, "target namespace")
    validate_dns1123_subdomain(claim_name, "target PVC name")
    if not volume_id.startswith("vol-"):
        raise ValueError(f"expected an EBS volume id (vol-…), got {volume_id!r}")
    if not availability_zone:
        raise ValueError("availability_zone is required for the PV's node affinity")
    modes, mode = _modes(access_modes, volume_mode)
    identity = restore_labels(
        backup=backup, namespace=source_namespace, pvc=source_pvc, scope=scope
    )
    labels = {MANAGED_BY: "snapd", VOLUME_ID: label_value(volume_id)}
    labels.update({key: label_value(value) for key, value in identity.items()})
    notes = {**identity, VOLUME_ID: volume_id, **(annotations or {})}
    csi: dict[str, Any] = {"driver": EBS_CSI_DRIVER, "volumeHandle": volume_id}
    if mode == "Filesystem":
        csi["fsType"] = fs_type or "ext4"
    spec: dict[str, Any] = {
        "capacity": {"storage": _quantity(size_gib)},
        "accessModes": modes,
        "volumeMode": mode,
        "storageClassName": storage_class or "",
        "persistentVolumeReclaimPolicy": "Retain",
        "csi": csi,
        "claimRef": {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "namespace": claim_namespace,
            "name": claim_name,
        },
        "nodeAffinity": {
            "required": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": key, "operator": "In", "values": [availability_zone]}
                        ]
                    }
                    for key in zone_keys
                ]
            }
        },
    }
    if mount_options:
        spec["mountOptions"] = list(mount_options)
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name, "labels": labels, "annotations": notes},
        "spec": spec,
    }


def build_pvc(
    *,
    name: str,
    namespace: str,
    volume_name: str,
    size_gib: int,
    storage_class: str | None = None,
    access_modes: Sequence[str] = ("ReadWriteOnce",),
    volume_mode: str | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The proposed PVC that binds the restored PV `volume_name` (pure; a plain dict).

    `storageClassName` is always written, `""` when there is none: left out, the default
    StorageClass admission would fill it in and the claim would never bind the PV.
    """
    validate_dns1123_subdomain(name, "PVC name")
    validate_dns1123_label(namespace, "namespace")
    validate_dns1123_subdomain(volume_name, "PersistentVolume name")
    modes, mode = _modes(access_modes, volume_mode)
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        metadata["labels"] = {key: label_value(value) for key, value in labels.items()}
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": metadata,
        "spec": {
            "storageClassName": storage_class or "",
            "accessModes": modes,
            "volumeMode": mode,
            "resources": {"requests": {"storage": _quantity(size_gib)}},
            "volumeName": volume_name,
        },
    }
