"""A fake Kubernetes API server over HTTP: exactly the endpoints snapd uses, real semantics.

No real API server can run on these machines (docs/ebs.md#kubernetes-api-server) and kmock does
not honour label selectors, so this is a small purpose-built one. It serves, from memory:

- `GET /version` (and `/version/`, which kubernetes_asyncio asks for);
- PersistentVolumes: `/api/v1/persistentvolumes[/{name}]` — list (`labelSelector` with
  `=`, `==`, `!=`, `in`, `notin`, `key`, `!key`; `fieldSelector` on metadata.name), create,
  get, replace, merge/JSON patch, delete;
- PersistentVolumeClaims: `/api/v1/namespaces/{ns}/persistentvolumeclaims[/{name}]`, the same;
- Leases: `/apis/coordination.k8s.io/v1/namespaces/{ns}/leases[/{name}]`, the same;
- Namespaces: `/api/v1/namespaces[/{name}]` (seed them with `put`; PVCs do not need one).

Two kubeconfigs are written: `kubeconfig` (a static bearer token) and `kubeconfig-exec`,
whose user runs an exec credential plugin (`token-plugin.py`, as EKS runs
`aws eks get-token`) that issues signed tokens living `token_lifetime` seconds and says so
in `expirationTimestamp`; the server answers an expired or forged one with 401, like an
API server checking a token's expiry.

Like the real server it generates `metadata.uid`, a monotonic `resourceVersion` and
`creationTimestamp`; answers errors with `Status` bodies (`AlreadyExists` 409, `NotFound`
404, `Conflict` 409 on a stale `resourceVersion`, `Invalid` 422 with causes, `BadRequest`
400, `Unauthorized` 401); validates the fields snapd depends on (a PV without capacity,
access modes or a volume source is 422); requires `resourceVersion` on Lease updates; and
leaves `kind`/`apiVersion` out of list items.

It runs in a background thread with its own event loop on 127.0.0.1 and a free port, and
writes a kubeconfig (context `fake`, bearer token checked), so in-process async code, sync
test code and `snapd` subprocesses (`KUBECONFIG=...`) all reach it the same way.
"""

from __future__ import annotations

import asyncio
import copy
import hmac
import json
import re
import secrets
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

CONTEXT = "fake"
UNREACHABLE_CONTEXT = "fake-unreachable"
TOKEN = "fake-token"
SERVER_VERSION = {
    "major": "1",
    "minor": "30",
    "gitVersion": "v1.30.0-snapd-fake",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-04-17T00:00:00Z",
    "goVersion": "go1.22.2",
    "compiler": "gc",
    "platform": "linux/amd64",
}

#: Life of the exec plugin's tokens unless a test sets another (EKS's tokens: 15 minutes).
DEFAULT_TOKEN_LIFETIME = 900.0
#: The exec credential plugin (run by the kubeconfig loader with the settings file as its
#: argument): prints an ExecCredential with a token signed by the server's secret.
_TOKEN_PLUGIN = """\
import hashlib, hmac, json, sys, time
from datetime import datetime, timezone

settings = json.load(open(sys.argv[1], encoding="utf-8"))
expires = str(int((time.time() + float(settings["lifetime"])) * 1000))  # epoch ms
signature = hmac.new(settings["secret"].encode(), expires.encode(), hashlib.sha256).hexdigest()
stamp = datetime.fromtimestamp(int(expires) / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
json.dump(
    {
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "kind": "ExecCredential",
        "status": {"token": f"exec.{expires}.{signature}", "expirationTimestamp": stamp},
    },
    sys.stdout,
)
"""

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_QUANTITY = re.compile(r"^[+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+|Ki|Mi|Gi|Ti|Pi|Ei|[mkMGTPE])?$")
_ACCESS_MODES = ("ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod")
_VOLUME_SOURCES = (
    "csi",
    "awsElasticBlockStore",
    "hostPath",
    "local",
    "nfs",
    "iscsi",
    "fc",
    "gcePersistentDisk",
    "azureDisk",
    "azureFile",
    "cephfs",
    "rbd",
    "cinder",
    "flexVolume",
    "vsphereVolume",
    "portworxVolume",
)
_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt")


class ApiError(Exception):
    """An error answer: becomes a `Status` body with this code and reason."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


Cause = tuple[str, str, str]  # (field, reason, message)
Validator = Callable[[dict[str, Any]], list[Cause]]


def _required(path: str) -> Cause:
    return (path, "FieldValueRequired", f"{path}: Required value")


def _invalid(path: str, value: object, detail: str) -> Cause:
    return (path, "FieldValueInvalid", f"{path}: Invalid value: {json.dumps(value)}: {detail}")


def _unsupported(path: str, value: object, supported: tuple[str, ...]) -> Cause:
    choices = ", ".join(json.dumps(item) for item in supported)
    return (
        path,
        "FieldValueNotSupported",
        f"{path}: Unsupported value: {json.dumps(value)}: supported values: {choices}",
    )


def _forbidden(path: str, detail: str) -> Cause:
    return (path, "FieldValueForbidden", f"{path}: Forbidden: {detail}")


def _check_access_modes(modes: object, path: str) -> list[Cause]:
    if not isinstance(modes, list) or not modes:
        return [_required(path)]
    return [
        _unsupported(f"{path}[{i}]", mode, _ACCESS_MODES)
        for i, mode in enumerate(modes)
        if mode not in _ACCESS_MODES
    ]


def _check_quantity(value: object, path: str) -> list[Cause]:
    if not isinstance(value, str | int) or not _QUANTITY.match(str(value)):
        return [_invalid(path, value, "must be a quantity, e.g. 10Gi")]
    if float(re.sub(r"[A-Za-z]+$", "", str(value)) or 0) <= 0:
        return [_invalid(path, value, "must be greater than zero")]
    return []


def _check_volume_mode(value: object, path: str) -> list[Cause]:
    if value is not None and value not in ("Block", "Filesystem"):
        return [_unsupported(path, value, ("Block", "Filesystem"))]
    return []


def _check_node_affinity(affinity: object, path: str) -> list[Cause]:
    if not isinstance(affinity, dict):
        return [_invalid(path, affinity, "must be an object")]
    required = affinity.get("required")
    if required is None:
        return []
    terms = required.get("nodeSelectorTerms") if isinstance(required, dict) else None
    terms_path = f"{path}.required.nodeSelectorTerms"
    if not isinstance(terms, list) or not terms:
        return [_required(terms_path)]
    causes: list[Cause] = []
    for t, term in enumerate(terms):
        expressions = term.get("matchExpressions") if isinstance(term, dict) else None
        for e, expr in enumerate(expressions or []):
            at = f"{terms_path}[{t}].matchExpressions[{e}]"
            operator, values = expr.get("operator"), expr.get("values") or []
            if not expr.get("key"):
                causes.append(_required(f"{at}.key"))
            if operator not in _OPERATORS:
                causes.append(_unsupported(f"{at}.operator", operator, _OPERATORS))
            elif operator in ("In", "NotIn") and not values:
                causes.append(
                    (
                        f"{at}.values",
                        "FieldValueRequired",
                        f"{at}.values: Required value: must be specified when `operator` is "
                        "'In' or 'NotIn'",
                    )
                )
    return causes


def validate_pv(obj: dict[str, Any]) -> list[Cause]:
    """The checks of ValidatePersistentVolume that matter for a restored EBS volume."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [_required("spec")]
    causes: list[Cause] = []
    capacity = spec.get("capacity")
    if not isinstance(capacity, dict) or not capacity:
        causes.append(_required("spec.capacity"))
    elif "storage" not in capacity or len(capacity) > 1:
        causes.append(_unsupported("spec.capacity", sorted(capacity), ("storage",)))
    else:
        causes += _check_quantity(capacity["storage"], "spec.capacity[storage]")
    causes += _check_access_modes(spec.get("accessModes"), "spec.accessModes")
    sources = [name for name in _VOLUME_SOURCES if spec.get(name) is not None]
    if not sources:
        causes.append(
            ("spec", "FieldValueRequired", "spec: Required value: must specify a volume type")
        )
    elif len(sources) > 1:
        causes.append(_forbidden(f"spec.{sources[1]}", "may not specify more than 1 volume type"))
    csi = spec.get("csi")
    if isinstance(csi, dict):
        if not csi.get("driver"):
            causes.append(_required("spec.csi.driver"))
        if not csi.get("volumeHandle"):
            causes.append(_required("spec.csi.volumeHandle"))
    policy = spec.get("persistentVolumeReclaimPolicy")
    if policy is not None and policy not in ("Delete", "Recycle", "Retain"):
        causes.append(
            _unsupported(
                "spec.persistentVolumeReclaimPolicy", policy, ("Delete", "Recycle", "Retain")
            )
        )
    causes += _check_volume_mode(spec.get("volumeMode"), "spec.volumeMode")
    if spec.get("nodeAffinity") is not None:
        causes += _check_node_affinity(spec["nodeAffinity"], "spec.nodeAffinity")
    claim = spec.get("claimRef")
    if claim is not None:
        if not isinstance(claim, dict) or not claim.get("name"):
            causes.append(_required("spec.claimRef.name"))
        if not isinstance(claim, dict) or not claim.get("namespace"):
            causes.append(_required("spec.claimRef.namespace"))
    return causes


def validate_pvc(obj: dict[str, Any]) -> list[Cause]:
    """The checks of ValidatePersistentVolumeClaim that a proposed claim can fail."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [_required("spec")]
    causes = _check_access_modes(spec.get("accessModes"), "spec.accessModes")
    resources = spec.get("resources")
    requests = resources.get("requests") if isinstance(resources, dict) else None
    if not isinstance(requests, dict) or "storage" not in requests:
        causes.append(_required("spec.resources[storage]"))
    else:
        causes += _check_quantity(requests["storage"], "spec.resources[storage]")
    causes += _check_volume_mode(spec.get("volumeMode"), "spec.volumeMode")
    return causes


def validate_lease(obj: dict[str, Any]) -> list[Cause]:
    """ValidateLeaseSpec: positive duration, non-negative transitions."""
    spec = obj.get("spec") or {}
    causes: list[Cause] = []
    duration = spec.get("leaseDurationSeconds")
    if duration is not None and (not isinstance(duration, int) or duration <= 0):
        causes.append(_invalid("spec.leaseDurationSeconds", duration, "must be greater than 0"))
    transitions = spec.get("leaseTransitions")
    if transitions is not None and (not isinstance(transitions, int) or transitions < 0):
        causes.append(
            _invalid("spec.leaseTransitions", transitions, "must be greater than or equal to 0")
        )
    return causes


def validate_namespace(obj: dict[str, Any]) -> list[Cause]:
    """ValidateNamespace: the name is a DNS-1123 label (at most 63 characters)."""
    name = str((obj.get("metadata") or {}).get("name", ""))
    if len(name) > 63 or not re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", name):
        return [
            _invalid(
                "metadata.name",
                name,
                "a lowercase RFC 1123 label must consist of "
                "lower case alphanumeric characters or '-'",
            )
        ]
    return []


def _decode_lease(obj: dict[str, Any]) -> None:
    """MicroTime fields that do not parse fail decoding (400), as in the real server."""
    spec = obj.get("spec") or {}
    for name in ("acquireTime", "renewTime"):
        value = spec.get(name)
        if value is None:
            continue
        try:
            if not isinstance(value, str) or not value.endswith("Z"):
                raise ValueError(value)
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ApiError(
                400,
                "BadRequest",
                f'Lease in version "v1" cannot be handled as a Lease: parsing time '
                f"{json.dumps(value)} as RFC3339 micro time failed",
            ) from None


@dataclass(frozen=True)
class Resource:
    """One resource type the fake serves."""

    plural: str
    kind: str
    group: str
    version: str
    namespaced: bool
    validate: Validator
    unconditional_update: bool
    status: dict[str, Any] | None = None
    defaults: dict[str, Any] = field(default_factory=dict)
    decode: Callable[[dict[str, Any]], None] | None = None

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """`persistentvolumes`, `leases.coordination.k8s.io`: how Status messages name it."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


RESOURCES = {
    r.plural: r
    for r in (
        Resource(
            "persistentvolumes",
            "PersistentVolume",
            "",
            "v1",
            namespaced=False,
            validate=validate_pv,
            unconditional_update=True,
            status={"phase": "Available"},
            defaults={"persistentVolumeReclaimPolicy": "Retain", "volumeMode": "Filesystem"},
        ),
        Resource(
            "persistentvolumeclaims",
            "PersistentVolumeClaim",
            "",
            "v1",
            namespaced=True,
            validate=validate_pvc,
            unconditional_update=True,
            status={"phase": "Pending"},
            defaults={"volumeMode": "Filesystem"},
        ),
        Resource(
            "namespaces",
            "Namespace",
            "",
            "v1",
            namespaced=False,
            validate=validate_namespace,
            unconditional_update=True,
            status={"phase": "Active"},
        ),
        Resource(
            "leases",
            "Lease",
            "coordination.k8s.io",
            "v1",
            namespaced=True,
            validate=validate_lease,
            unconditional_update=False,
            decode=_decode_lease,
        ),
    )
}


# --------------------------------------------------------------------------- selectors

_SET_REQ = re.compile(r"^\s*([^\s!=,()]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQ_REQ = re.compile(r"^\s*([^\s!=,()]+)\s*(==|=|!=)\s*([^\s!=,()]*)\s*$")
_EXISTS_REQ = re.compile(r"^\s*(!?)\s*([^\s!=,()]+)\s*$")


@dataclass(frozen=True)
class Requirement:
    """One term of a selector: `key op values` (`in`, `notin`, `exists`, `!exists`)."""

    key: str
    op: str
    values: frozenset[str] = frozenset()

    def matches(self, labels: dict[str, str]) -> bool:
        if self.op == "in":
            return labels.get(self.key) in self.values
        if self.op == "notin":  # like `!=`: true when the key is absent
            return labels.get(self.key) not in self.values
        if self.op == "exists":
            return self.key in labels
        return self.key not in labels


def _split_selector(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part for part in parts if part.strip()]


def _check_label_key(key: str, selector: str) -> None:
    name = key.rsplit("/", 1)[-1]
    prefix = key.rsplit("/", 1)[0] if "/" in key else None
    if (
        len(name) > 63
        or not _LABEL_NAME.match(name)
        or (prefix is not None and not _SUBDOMAIN.match(prefix))
    ):
        raise ApiError(
            400,
            "BadRequest",
            f"unable to parse requirement: invalid label key {key!r} in {selector!r}",
        )


def parse_label_selector(selector: str) -> list[Requirement]:
    """The requirements of a label selector; a malformed one is a 400 like the real server."""
    requirements: list[Requirement] = []
    for part in _split_selector(selector):
        if match := _SET_REQ.match(part):
            key, op = match.group(1), match.group(2)
            values = frozenset(v.strip() for v in match.group(3).split(",") if v.strip())
            _check_label_key(key, selector)
            requirements.append(Requirement(key, op, values))
        elif match := _EQ_REQ.match(part):
            key, op, value = match.groups()
            _check_label_key(key, selector)
            if value and not _LABEL_VALUE.match(value):
                raise ApiError(
                    400, "BadRequest", f"unable to parse requirement: invalid label value {value!r}"
                )
            requirements.append(
                Requirement(key, "notin" if op == "!=" else "in", frozenset([value]))
            )
        elif match := _EXISTS_REQ.match(part):
            negate, key = match.groups()
            _check_label_key(key, selector)
            requirements.append(Requirement(key, "!exists" if negate else "exists"))
        else:
            raise ApiError(
                400,
                "BadRequest",
                f"unable to parse requirement: found {part.strip()!r} in {selector!r}",
            )
    return requirements


def parse_field_selector(selector: str) -> list[Requirement]:
    """`metadata.name` / `metadata.namespace` with `=`, `==`, `!=` (what every type supports).

    The requirements match against `{"metadata.name": ..., "metadata.namespace": ...}`.
    """
    requirements: list[Requirement] = []
    for part in _split_selector(selector):
        match = _EQ_REQ.match(part)
        if not match or match.group(1) not in ("metadata.name", "metadata.namespace"):
            raise ApiError(400, "BadRequest", f'field label not supported: "{part.strip()}"')
        key, op, value = match.groups()
        requirements.append(Requirement(key, "notin" if op == "!=" else "in", frozenset([value])))
    return requirements


# --------------------------------------------------------------------------- patches


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (also used for strategic merge: maps merge, lists replace)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902 add / replace / remove / test on objects and lists."""
    if not isinstance(operations, list):
        raise ApiError(400, "BadRequest", "json patch must be a list of operations")
    document = copy.deepcopy(target)
    for operation in operations:
        op, path = operation.get("op"), str(operation.get("path", ""))
        parts = [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]
        if not parts:
            raise ApiError(422, "Invalid", f"json patch: unsupported path {path!r}")
        parent = document
        try:
            for part in parts[:-1]:
                parent = parent[int(part)] if isinstance(parent, list) else parent[part]
            last: Any = parts[-1]
            if isinstance(parent, list):
                last = len(parent) if last == "-" else int(last)
            if op == "add":
                if isinstance(parent, list):
                    parent.insert(last, operation.get("value"))
                else:
                    parent[last] = operation.get("value")
            elif op == "replace":
                if isinstance(parent, dict) and last not in parent:
                    raise KeyError(last)
                parent[last] = operation.get("value")
            elif op == "remove":
                del parent[last]
            elif op == "test":
                if parent[last] != operation.get("value"):
                    raise ApiError(422, "Invalid", f"json patch: test failed at {path}")
            else:
                raise ApiError(422, "Invalid", f"json patch: unsupported op {op!r}")
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise ApiError(422, "Invalid", f"json patch: path {path!r} does not exist") from exc
    return document


# --------------------------------------------------------------------------- the server


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake answered (for assertions)."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    status: int


@dataclass
class _Hook:
    method: str
    path: str
    action: Callable[[], object]
    times: int


@dataclass
class _Fault:
    method: str
    path: str
    code: int
    reason: str
    message: str
    times: int


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _free_closed_port() -> int:
    """A port nothing listens on (for the unreachable context)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class FakeKube:
    """The running fake: `url`, `kubeconfig_path`, the store, the request log, faults."""

    def __init__(self, directory: Path, *, token: str | None = TOKEN) -> None:
        self.directory = Path(directory)
        self.token = token
        self.context = CONTEXT
        self.url = ""
        self.kubeconfig_path = self.directory / "kubeconfig"
        self.exec_kubeconfig_path = self.directory / "kubeconfig-exec"
        self._plugin_settings = self.directory / "token-plugin.json"
        self._secret = secrets.token_hex(16)
        #: Exec tokens the server saw (accepted or not), in order; a new one = a refresh.
        self.exec_tokens_seen: list[str] = []
        self._lock = threading.Lock()
        self._store: dict[str, dict[tuple[str, str], dict[str, Any]]] = {
            plural: {} for plural in RESOURCES
        }
        self._revision = 0
        self._requests: list[RecordedRequest] = []
        self._faults: list[_Fault] = []
        self._hooks: list[_Hook] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None

    # ----------------------------------------------------------------- life cycle

    def start(self) -> None:
        """Serve on 127.0.0.1 (free port) from a daemon thread; write the kubeconfig."""
        self._thread = threading.Thread(target=self._serve, name="fake-kube", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=10):
            raise RuntimeError("fake Kubernetes API did not start within 10s")
        if self._startup_error is not None:
            raise RuntimeError("fake Kubernetes API failed to start") from self._startup_error
        self._write_kubeconfig()

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        try:
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            host, port = runner.addresses[0][:2]
            self.url = f"http://{host}:{port}"
        except BaseException as exc:  # noqa: BLE001 - handed to start() and re-raised there
            self._startup_error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.close()

    def _write_kubeconfig(self) -> None:
        user: dict[str, Any] = {"token": self.token} if self.token else {}
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": CONTEXT, "cluster": {"server": self.url}},
                {
                    "name": UNREACHABLE_CONTEXT,
                    "cluster": {"server": f"http://127.0.0.1:{_free_closed_port()}"},
                },
            ],
            "users": [{"name": "fake-user", "user": user}],
            "contexts": [
                {"name": CONTEXT, "context": {"cluster": CONTEXT, "user": "fake-user"}},
                {
                    "name": UNREACHABLE_CONTEXT,
                    "context": {"cluster": UNREACHABLE_CONTEXT, "user": "fake-user"},
                },
            ],
            "current-context": CONTEXT,
            "preferences": {},
        }
        self.directory.mkdir(parents=True, exist_ok=True)
        self.kubeconfig_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        plugin = self.directory / "token-plugin.py"
        plugin.write_text(_TOKEN_PLUGIN, encoding="utf-8")
        self.set_token_lifetime(DEFAULT_TOKEN_LIFETIME)
        exec_user = {
            "exec": {
                "apiVersion": "client.authentication.k8s.io/v1beta1",
                "command": sys.executable,
                "args": [str(plugin), str(self._plugin_settings)],
                "interactiveMode": "Never",
            }
        }
        exec_config = {
            **config,
            "users": [{"name": "fake-user", "user": exec_user}],
            "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": "fake-user"}}],
            "clusters": [{"name": CONTEXT, "cluster": {"server": self.url}}],
        }
        self.exec_kubeconfig_path.write_text(
            yaml.safe_dump(exec_config, sort_keys=False), encoding="utf-8"
        )

    def set_token_lifetime(self, seconds: float) -> None:
        """Tokens the exec plugin issues from now on live `seconds` (EKS: 15 minutes)."""
        settings = {"secret": self._secret, "lifetime": seconds}
        self._plugin_settings.write_text(json.dumps(settings), encoding="utf-8")

    def exec_env(self) -> dict[str, str]:
        """Like `env()`, with the kubeconfig whose credentials come from the exec plugin."""
        return {"KUBECONFIG": str(self.exec_kubeconfig_path), "KUBERNETES_SERVICE_HOST": ""}

    def _authorized(self, header: str | None) -> None:
        """The static token, or an exec token signed by this server and not expired; else 401."""
        if self.token is None or header == f"Bearer {self.token}":
            return
        if header and header.startswith("Bearer exec."):
            token = header.removeprefix("Bearer ")
            self.exec_tokens_seen.append(token)
            _, expires, signature = [*token.split(".", 2), "", ""][:3]
            expected = hmac.new(self._secret.encode(), expires.encode(), "sha256").hexdigest()
            if not expires.isdigit() or not hmac.compare_digest(signature, expected):
                raise ApiError(401, "Unauthorized", "Unauthorized")
            if time.time() * 1000 >= int(expires):
                raise ApiError(401, "Unauthorized", "Unauthorized: the token has expired")
            return
        raise ApiError(401, "Unauthorized", "Unauthorized")

    def env(self) -> dict[str, str]:
        """Environment for a `snapd` subprocess to use this server (and no in-cluster config)."""
        return {"KUBECONFIG": str(self.kubeconfig_path), "KUBERNETES_SERVICE_HOST": ""}

    # ----------------------------------------------------------------- test controls

    def reset(self) -> None:
        """Forget every object, request and pending fault."""
        with self._lock:
            for objects in self._store.values():
                objects.clear()
            self._requests.clear()
            self._faults.clear()
            self._hooks.clear()
            self.exec_tokens_seen.clear()
        self.set_token_lifetime(DEFAULT_TOKEN_LIFETIME)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request answered since the last reset, oldest first."""
        with self._lock:
            return list(self._requests)

    def objects(self, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Stored objects of `kind` (`PersistentVolume` or `persistentvolumes`), by name."""
        resource = _resource(kind)
        with self._lock:
            found = [
                copy.deepcopy(obj)
                for (ns, _), obj in sorted(self._store[resource.plural].items())
                if namespace is None or ns == namespace
            ]
        return found

    def get(self, kind: str, name: str, namespace: str = "") -> dict[str, Any] | None:
        """One stored object, or None."""
        resource = _resource(kind)
        with self._lock:
            obj = self._store[resource.plural].get(_slot(resource, namespace, name))
            return copy.deepcopy(obj) if obj else None

    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Store `obj` as is (no validation), with fresh uid/resourceVersion; for seeding."""
        resource = _resource(str(obj.get("kind", "")))
        stored = copy.deepcopy(obj)
        metadata = stored.setdefault("metadata", {})
        with self._lock:
            self._stamp(stored, created=True)
            key = _slot(resource, metadata.get("namespace", ""), metadata["name"])
            self._store[resource.plural][key] = stored
        return copy.deepcopy(stored)

    def remove(self, kind: str, name: str, namespace: str = "") -> bool:
        """Delete one stored object as `kubectl delete` would; False when there was none."""
        resource = _resource(kind)
        with self._lock:
            key = _slot(resource, namespace, name)
            return self._store[resource.plural].pop(key, None) is not None

    def fail(
        self,
        method: str,
        path: str,
        *,
        code: int = 500,
        reason: str = "InternalError",
        message: str = "injected failure",
        times: int = 1,
    ) -> None:
        """Answer the next `times` requests of `method` whose path contains `path` with an error."""
        with self._lock:
            self._faults.append(_Fault(method.upper(), path, code, reason, message, times))

    def clear_faults(self) -> None:
        """Drop every pending `fail` and `before` (the objects stay)."""
        with self._lock:
            self._faults.clear()
            self._hooks.clear()

    def before(self, method: str, path: str, action: Callable[[], object], times: int = 1) -> None:
        """Run `action` (in the server's thread) before the next `times` matching requests.

        For races: e.g. another writer updating a Lease between an elector's read and its
        write. `action` may call `put`, `get` and `objects`.
        """
        with self._lock:
            self._hooks.append(_Hook(method.upper(), path, action, times))

    # ----------------------------------------------------------------- request handling

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body: Any = None
        status, payload = 200, dict[str, Any]()
        try:
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError as exc:
                    raise ApiError(400, "BadRequest", f"invalid JSON body: {exc}") from exc
            for action in self._due_hooks(request.method.upper(), request.path):
                action()
            with self._lock:
                status, payload = self._dispatch(request, body)
        except ApiError as failure:
            status, payload = failure.code, failure.status()
        except Exception as exc:  # noqa: BLE001 - a bug in the fake must answer, not hang
            bug = ApiError(500, "InternalError", f"fake API server error: {exc!r}")
            status, payload = bug.code, bug.status()
        with self._lock:
            self._requests.append(
                RecordedRequest(request.method, request.path, dict(request.query), body, status)
            )
        return web.json_response(payload, status=status)

    def _due_hooks(self, method: str, path: str) -> list[Callable[[], object]]:
        with self._lock:
            due = [
                hook
                for hook in self._hooks
                if hook.method in (method, "*") and hook.path in path and hook.times > 0
            ]
            for hook in due:
                hook.times -= 1
        return [hook.action for hook in due]

    def _dispatch(self, request: web.Request, body: Any) -> tuple[int, dict[str, Any]]:
        method, path = request.method.upper(), request.path
        self._authorized(request.headers.get("Authorization"))
        for fault in self._faults:
            if fault.method in (method, "*") and fault.path in path and fault.times > 0:
                fault.times -= 1
                raise ApiError(fault.code, fault.reason, fault.message)
        if path.rstrip("/") == "/version":
            if method != "GET":
                raise _method_not_allowed(method)
            return 200, dict(SERVER_VERSION)
        resource, namespace, name = _route(path)
        query = request.query
        if query.get("watch", "").lower() in ("true", "1"):
            raise ApiError(400, "BadRequest", "the fake API server does not serve watches")
        if namespace is None:  # an all-namespaces path: list only
            if method != "GET" or name is not None:
                raise _method_not_allowed(method)
            return 200, self._list(resource, None, query)
        if name is None:
            if method == "GET":
                return 200, self._list(resource, namespace, query)
            if method == "POST":
                return 201, self._create(resource, namespace, body)
        else:
            if method == "GET":
                return 200, self._read(resource, namespace, name)
            if method == "PUT":
                return 200, self._replace(resource, namespace, name, body)
            if method == "PATCH":
                content_type = request.headers.get("Content-Type", "")
                return 200, self._patch(resource, namespace, name, body, content_type)
            if method == "DELETE":
                return 200, self._delete(resource, namespace, name)
        raise _method_not_allowed(method)

    # ----------------------------------------------------------------- store operations

    def _stamp(self, obj: dict[str, Any], *, created: bool) -> None:
        self._revision += 1
        metadata = obj.setdefault("metadata", {})
        metadata["resourceVersion"] = str(self._revision)
        if created:
            metadata["uid"] = str(uuid.uuid4())
            metadata["creationTimestamp"] = _now()

    def _not_found(self, resource: Resource, name: str) -> ApiError:
        return ApiError(
            404,
            "NotFound",
            f'{resource.qualified} "{name}" not found',
            _details(resource, name),
        )

    def _check(self, resource: Resource, obj: dict[str, Any], name: str) -> None:
        causes = _validate_metadata(obj) + resource.validate(obj)
        if causes:
            messages = [message for _, _, message in causes]
            text = messages[0] if len(messages) == 1 else "[" + ", ".join(messages) + "]"
            details = _details(resource, name)
            details["causes"] = [
                {"reason": reason, "message": message.split(": ", 1)[1], "field": path}
                for path, reason, message in causes
            ]
            raise ApiError(422, "Invalid", f'{resource.kind} "{name}" is invalid: {text}', details)

    def _incoming(self, resource: Resource, namespace: str, body: Any) -> dict[str, Any]:
        """A create, replace or patch request's object as the server would store it: the body
        checked against the URL's resource, decoded, and placed in the URL's namespace."""
        obj = self._decode(resource, body)
        self._place(resource, obj, namespace)
        return obj

    def _decode(self, resource: Resource, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", f"the body of the request must be a {resource.kind}")
        if body.get("kind", resource.kind) != resource.kind:
            raise ApiError(
                400,
                "BadRequest",
                f"the kind in the body ({body.get('kind')}) does not match the expected kind "
                f"({resource.kind})",
            )
        if body.get("apiVersion", resource.api_version) != resource.api_version:
            raise ApiError(
                400,
                "BadRequest",
                f"the API version in the data ({body.get('apiVersion')}) does not match the "
                f"expected API version ({resource.api_version})",
            )
        obj = copy.deepcopy(body)
        obj["kind"], obj["apiVersion"] = resource.kind, resource.api_version
        if not isinstance(obj.get("metadata", {}), dict):
            raise ApiError(400, "BadRequest", "metadata must be an object")
        obj.setdefault("metadata", {})
        if resource.decode is not None:
            resource.decode(obj)
        return obj

    def _place(self, resource: Resource, obj: dict[str, Any], namespace: str) -> None:
        metadata = obj["metadata"]
        if resource.namespaced:
            given = metadata.get("namespace")
            if given and given != namespace:
                raise ApiError(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request",
                )
            metadata["namespace"] = namespace
        else:
            metadata.pop("namespace", None)

    def _create(self, resource: Resource, namespace: str, body: Any) -> dict[str, Any]:
        obj = self._incoming(resource, namespace, body)
        metadata = obj["metadata"]
        if not metadata.get("name") and metadata.get("generateName"):
            metadata["name"] = metadata["generateName"] + secrets.token_hex(3)[:5]
        name = metadata.get("name") or ""
        if not name:
            raise ApiError(
                422,
                "Invalid",
                f'{resource.kind} "" is invalid: metadata.name: Required value: name or '
                "generateName is required",
                _details(resource, ""),
            )
        if metadata.get("resourceVersion"):
            raise ApiError(
                500, "InternalError", "resourceVersion should not be set on objects to be created"
            )
        _apply_defaults(resource, obj)
        self._check(resource, obj, name)
        slot = _slot(resource, namespace, name)
        if slot in self._store[resource.plural]:
            raise ApiError(
                409,
                "AlreadyExists",
                f'{resource.qualified} "{name}" already exists',
                _details(resource, name),
            )
        for server_field in ("uid", "creationTimestamp", "deletionTimestamp"):
            metadata.pop(server_field, None)
        if resource.status is not None:
            obj["status"] = copy.deepcopy(resource.status)
        else:
            obj.pop("status", None)
        self._stamp(obj, created=True)
        self._store[resource.plural][slot] = obj
        return copy.deepcopy(obj)

    def _stored(self, resource: Resource, namespace: str, name: str) -> dict[str, Any]:
        obj = self._store[resource.plural].get(_slot(resource, namespace, name))
        if obj is None:
            raise self._not_found(resource, name)
        return obj

    def _read(self, resource: Resource, namespace: str, name: str) -> dict[str, Any]:
        return copy.deepcopy(self._stored(resource, namespace, name))

    def _list(self, resource: Resource, namespace: str | None, query: Any) -> dict[str, Any]:
        requirements = parse_label_selector(query.get("labelSelector", ""))
        fields = parse_field_selector(query.get("fieldSelector", ""))
        items = []
        for (ns, _), obj in sorted(self._store[resource.plural].items()):
            if namespace is not None and resource.namespaced and ns != namespace:
                continue
            labels = obj["metadata"].get("labels") or {}
            metadata_fields = {
                "metadata.name": obj["metadata"].get("name", ""),
                "metadata.namespace": obj["metadata"].get("namespace", ""),
            }
            if all(r.matches(labels) for r in requirements) and all(
                f.matches(metadata_fields) for f in fields
            ):
                item = copy.deepcopy(obj)
                item.pop("kind", None)
                item.pop("apiVersion", None)
                items.append(item)
        return {
            "kind": f"{resource.kind}List",
            "apiVersion": resource.api_version,
            "metadata": {"resourceVersion": str(self._revision)},
            "items": items,
        }

    def _replace(self, resource: Resource, namespace: str, name: str, body: Any) -> dict[str, Any]:
        obj = self._incoming(resource, namespace, body)
        given = obj["metadata"].get("name")
        if given != name:
            raise ApiError(
                400,
                "BadRequest",
                f"the name of the object ({given}) does not match the name on the URL ({name})",
            )
        current = self._stored(resource, namespace, name)
        self._check_version(resource, obj, current, name)
        return self._commit(resource, namespace, name, obj, current)

    def _patch(
        self, resource: Resource, namespace: str, name: str, body: Any, content_type: str
    ) -> dict[str, Any]:
        current = self._stored(resource, namespace, name)
        if "json-patch" in content_type:
            patched = json_patch(current, body)
        elif "merge-patch" in content_type:
            patched = merge_patch(current, body)
        else:
            raise ApiError(
                415, "UnsupportedMediaType", f"the content type {content_type!r} is not supported"
            )
        if not isinstance(patched, dict):
            raise ApiError(422, "Invalid", "the patch must leave an object")
        patched_rv = (patched.get("metadata") or {}).get("resourceVersion")
        if patched_rv != current["metadata"]["resourceVersion"]:
            self._check_version(resource, patched, current, name)
        obj = self._incoming(resource, namespace, patched)
        obj["metadata"]["name"] = name
        return self._commit(resource, namespace, name, obj, current)

    def _check_version(
        self, resource: Resource, obj: dict[str, Any], current: dict[str, Any], name: str
    ) -> None:
        version = obj["metadata"].get("resourceVersion")
        if not version:
            if resource.unconditional_update:
                return
            raise ApiError(
                422,
                "Invalid",
                f'{resource.kind} "{name}" is invalid: metadata.resourceVersion: Invalid value: '
                "0x0: must be specified for an update",
                _details(resource, name),
            )
        if version != current["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {resource.qualified} "{name}": the object has '
                "been modified; please apply your changes to the latest version and try again",
                _details(resource, name),
            )

    def _commit(
        self,
        resource: Resource,
        namespace: str,
        name: str,
        obj: dict[str, Any],
        current: dict[str, Any],
    ) -> dict[str, Any]:
        _apply_defaults(resource, obj)
        self._check(resource, obj, name)
        for server_field in ("uid", "creationTimestamp"):
            obj["metadata"][server_field] = current["metadata"][server_field]
        if "status" in current:
            obj["status"] = copy.deepcopy(current["status"])  # status is a subresource
        self._stamp(obj, created=False)
        self._store[resource.plural][_slot(resource, namespace, name)] = obj
        return copy.deepcopy(obj)

    def _delete(self, resource: Resource, namespace: str, name: str) -> dict[str, Any]:
        obj = self._stored(resource, namespace, name)
        del self._store[resource.plural][_slot(resource, namespace, name)]
        return copy.deepcopy(obj)


def _slot(resource: Resource, namespace: str, name: str) -> tuple[str, str]:
    """Where an object lives in the store: (namespace, name); cluster-scoped ones have ""."""
    return (namespace if resource.namespaced else "", name)


def _apply_defaults(resource: Resource, obj: dict[str, Any]) -> None:
    """Fill the defaults the real server's defaulting would (volumeMode, reclaim policy)."""
    spec = obj.get("spec")
    if isinstance(spec, dict):
        for name, value in resource.defaults.items():
            spec.setdefault(name, value)


def _details(resource: Resource, name: str) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name, "kind": resource.plural}
    if resource.group:
        details["group"] = resource.group
    return details


def _method_not_allowed(method: str) -> ApiError:
    return ApiError(405, "MethodNotAllowed", f"the server does not allow this method ({method})")


def _resource(kind: str) -> Resource:
    wanted = kind.lower()
    for resource in RESOURCES.values():
        if wanted in (resource.plural, resource.kind.lower()):
            return resource
    raise KeyError(f"the fake serves no resource {kind!r}; known: {sorted(RESOURCES)}")


_ROUTES = (
    (re.compile(r"^/api/v1/(persistentvolumes)(?:/([^/]+))?/?$"), False),
    (re.compile(r"^/api/v1/namespaces/([^/]+)/(persistentvolumeclaims)(?:/([^/]+))?/?$"), True),
    (re.compile(r"^/api/v1/(namespaces)(?:/([^/]+))?/?$"), False),
    (
        re.compile(r"^/apis/coordination\.k8s\.io/v1/namespaces/([^/]+)/(leases)(?:/([^/]+))?/?$"),
        True,
    ),
    (re.compile(r"^/api/v1/(persistentvolumeclaims)/?$"), False),
    (re.compile(r"^/apis/coordination\.k8s\.io/v1/(leases)/?$"), False),
)


def _route(path: str) -> tuple[Resource, str | None, str | None]:
    """(resource, namespace — None for an all-namespaces list, name — None for the collection)."""
    for pattern, namespaced in _ROUTES:
        match = pattern.match(path)
        if not match:
            continue
        if namespaced:
            namespace, plural, name = match.groups()
            return RESOURCES[plural], namespace, name
        plural, *rest = match.groups()
        name = rest[0] if rest else None
        resource = RESOURCES[plural]
        return resource, (None if resource.namespaced else ""), name
    raise ApiError(404, "NotFound", "the server could not find the requested resource")


def _validate_metadata(obj: dict[str, Any]) -> list[Cause]:
    metadata = obj["metadata"]
    causes: list[Cause] = []
    name = metadata.get("name", "")
    if len(name) > 253 or not _SUBDOMAIN.match(name):
        causes.append(
            _invalid(
                "metadata.name",
                name,
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                "characters, '-' or '.', and must start and end with an alphanumeric character",
            )
        )
    labels = metadata.get("labels") or {}
    if not isinstance(labels, dict):
        return [*causes, _invalid("metadata.labels", labels, "must be a map")]
    for key, value in labels.items():
        base = key.rsplit("/", 1)[-1]
        prefix = key.rsplit("/", 1)[0] if "/" in key else None
        if (
            len(base) > 63
            or not _LABEL_NAME.match(base)
            or (prefix is not None and (len(prefix) > 253 or not _SUBDOMAIN.match(prefix)))
        ):
            causes.append(_invalid("metadata.labels", key, "name part must be a valid label key"))
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            causes.append(
                _invalid(
                    "metadata.labels",
                    value,
                    "a valid label must be an empty string or consist of alphanumeric "
                    "characters, '-', '_' or '.', and must start and end with an alphanumeric "
                    "character, at most 63 characters",
                )
            )
    annotations = metadata.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(
        isinstance(v, str) for v in annotations.values()
    ):
        causes.append(_invalid("metadata.annotations", annotations, "values must be strings"))
    return causes


@contextmanager
def fake_kube_server(directory: Path | str, *, token: str | None = TOKEN) -> Iterator[FakeKube]:
    """A started FakeKube whose kubeconfig is in `directory`; stopped on exit."""
    kube = FakeKube(Path(directory), token=token)
    kube.start()
    try:
        yield kube
    finally:
        kube.stop()
