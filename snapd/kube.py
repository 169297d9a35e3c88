"""The only door to Kubernetes: connection, PersistentVolumes, PVCs, Leases.

This module alone imports kubernetes_asyncio. Everything it hands out is a plain `dict` (the
object's JSON, as the API server sent it) or a snapd type; every library error leaves here
as a `KubeError(message, status, reason)` whose `status`/`reason` are the API server's
(`409`/`AlreadyExists`, `404`/`NotFound`, `409`/`Conflict`, `422`/`Invalid`) or `None` /
`Unreachable` / `Timeout` when no answer came.

- The manifests it creates are built, pure, in `manifests.py` (`build_pv`, `build_pvc`,
  `label_selector`, …): the restore module and `--dry-run` print what they return.
- The Lease calls (get, create, replace) serve `leader.py`, which owns leader election.

It must not decide anything about restores or cycles: callers own the policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import structlog
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config.config_exception import ConfigException

from snapd.errors import ConfigError, KubeError

log = structlog.get_logger("snapd.kube")

DEFAULT_TIMEOUT = 30.0


# --------------------------------------------------------------------------- the client


def _status_error(
    what: str, status: int, reason: str | None, body: bytes | str | None
) -> KubeError:
    """A KubeError from an HTTP error answer, using the API's `Status` body when there is one."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")
    message, api_reason = text.strip()[:300] or (reason or "no message"), reason
    with contextlib.suppress(ValueError):
        parsed = json.loads(text)
        if isinstance(parsed, dict) and parsed.get("kind") == "Status":
            message = str(parsed.get("message") or message)
            api_reason = str(parsed.get("reason") or api_reason or "")
            status = int(parsed.get("code") or status)
    shown = f"{status} {api_reason}" if api_reason else str(status)
    return KubeError(
        f"{what} failed: {message} ({shown})", status=status or None, reason=api_reason or None
    )


def _raw(manifest: Mapping[str, Any]) -> Any:
    """A plain-dict body: kubernetes_asyncio sends dicts as they are (typed as its models)."""
    return dict(manifest)


class KubeClient:
    """One connection to one API server; every method returns plain dicts.

    Use `connect()` to make one; close it (`async with`, or `await close()`) when done.
    """

    def __init__(
        self, api: k8s.ApiClient, *, host: str, context: str | None, timeout: float
    ) -> None:
        self._api = api
        self.host = host
        self.context = context
        self.timeout = timeout
        self._core = k8s.CoreV1Api(api)
        self._coordination = k8s.CoordinationV1Api(api)
        self._version = k8s.VersionApi(api)

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._api.close()

    async def _call(self, what: str, request: Callable[[], Awaitable[Any]]) -> Any:
        """Run one API call, read its JSON, and translate every failure into KubeError."""
        try:
            async with asyncio.timeout(self.timeout):
                response = await request()
                try:
                    status, reason = int(response.status), response.reason
                    body = await response.read()
                finally:
                    response.release()
        except ApiException as exc:
            raise _status_error(what, int(exc.status or 0), exc.reason, exc.body) from exc
        except aiohttp.ClientError as exc:
            raise KubeError(
                f"{what} failed: cannot reach the Kubernetes API at {self.host}: {exc}",
                reason="Unreachable",
            ) from exc
        except TimeoutError as exc:
            raise KubeError(
                f"{what} failed: no answer from the Kubernetes API at {self.host} "
                f"within {self.timeout:g}s",
                reason="Timeout",
            ) from exc
        if not 200 <= status < 300:
            raise _status_error(what, status, reason, body)
        try:
            return json.loads(body) if body else {}
        except ValueError as exc:
            raise KubeError(f"{what} failed: the API answered with invalid JSON") from exc

    async def get_version(self) -> dict[str, Any]:
        """`/version`: proves the server is reachable and the credentials are accepted."""
        result: dict[str, Any] = await self._call(
            "get version", lambda: self._version.get_code(_preload_content=False)
        )
        return result

    # PersistentVolumes

    async def create_pv(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Create a PV; an existing one of that name is KubeError 409 AlreadyExists."""
        name = manifest.get("metadata", {}).get("name")
        result: dict[str, Any] = await self._call(
            f'create PersistentVolume "{name}"',
            lambda: self._core.create_persistent_volume(_raw(manifest), _preload_content=False),
        )
        return result

    async def get_pv(self, name: str) -> dict[str, Any] | None:
        """The PV called `name`, or None when there is none."""
        return await self._get_or_none(
            f'get PersistentVolume "{name}"',
            lambda: self._core.read_persistent_volume(name, _preload_content=False),
        )

    async def list_pvs(self, label_selector: str | None = None) -> list[dict[str, Any]]:
        """Every PV matching `label_selector` (all PVs when None), as complete objects."""
        kwargs: dict[str, Any] = {"_preload_content": False}
        if label_selector:
            kwargs["label_selector"] = label_selector
        return await self._list(
            "PersistentVolume",
            f"list PersistentVolumes ({label_selector or 'all'})",
            lambda: self._core.list_persistent_volume(**kwargs),
        )

    async def delete_pv(self, name: str) -> bool:
        """Delete the PV `name`; False when it was already gone."""
        found = await self._get_or_none(
            f'delete PersistentVolume "{name}"',
            lambda: self._core.delete_persistent_volume(name, _preload_content=False),
        )
        return found is not None

    # PersistentVolumeClaims

    async def get_pvc(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The PVC `namespace/name`, or None when there is none."""
        return await self._get_or_none(
            f'get PersistentVolumeClaim "{namespace}/{name}"',
            lambda: self._core.read_namespaced_persistent_volume_claim(
                name, namespace, _preload_content=False
            ),
        )

    async def list_pvcs(
        self, namespace: str, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        """The PVCs of `namespace` matching `label_selector`."""
        kwargs: dict[str, Any] = {"_preload_content": False}
        if label_selector:
            kwargs["label_selector"] = label_selector
        return await self._list(
            "PersistentVolumeClaim",
            f"list PersistentVolumeClaims in {namespace}",
            lambda: self._core.list_namespaced_persistent_volume_claim(namespace, **kwargs),
        )

    async def create_pvc(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Create a PVC in its manifest's namespace; 409 AlreadyExists when it exists."""
        metadata = manifest.get("metadata", {})
        namespace, name = metadata.get("namespace") or "default", metadata.get("name")
        result: dict[str, Any] = await self._call(
            f'create PersistentVolumeClaim "{namespace}/{name}"',
            lambda: self._core.create_namespaced_persistent_volume_claim(
                namespace, _raw(manifest), _preload_content=False
            ),
        )
        return result

    # Namespaces

    async def get_namespace(self, name: str) -> dict[str, Any] | None:
        """The Namespace `name`, or None when there is none (403 when it may not be read)."""
        return await self._get_or_none(
            f'get Namespace "{name}"',
            lambda: self._core.read_namespace(name, _preload_content=False),
        )

    # Leases

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Lease `namespace/name`, or None when there is none."""
        return await self._get_or_none(
            f'get Lease "{namespace}/{name}"',
            lambda: self._coordination.read_namespaced_lease(
                name, namespace, _preload_content=False
            ),
        )

    async def create_lease(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create a Lease; 409 AlreadyExists when another instance made it first."""
        name = body.get("metadata", {}).get("name")
        result: dict[str, Any] = await self._call(
            f'create Lease "{namespace}/{name}"',
            lambda: self._coordination.create_namespaced_lease(
                namespace, _raw(body), _preload_content=False
            ),
        )
        return result

    async def replace_lease(
        self, namespace: str, name: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Replace a Lease; 409 Conflict when its `resourceVersion` is no longer current."""
        result: dict[str, Any] = await self._call(
            f'update Lease "{namespace}/{name}"',
            lambda: self._coordination.replace_namespaced_lease(
                name, namespace, _raw(body), _preload_content=False
            ),
        )
        return result

    async def _get_or_none(
        self, what: str, request: Callable[[], Awaitable[Any]]
    ) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = await self._call(what, request)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        return result

    async def _list(
        self, kind: str, what: str, request: Callable[[], Awaitable[Any]]
    ) -> list[dict[str, Any]]:
        result = await self._call(what, request)
        items = result.get("items") or []
        # List items come without kind/apiVersion on the wire; put them back so each dict
        # is a complete object that can be printed or compared on its own.
        return [{"apiVersion": "v1", "kind": kind, **item} for item in items]


def _kubeconfig_files(context: str | None, kubeconfig: str | None) -> str | None:
    """The kubeconfig file(s) to load, or None for in-cluster; KubeError when there is none."""
    path = kubeconfig or os.environ.get("KUBECONFIG")
    if not path and not context and os.environ.get("KUBERNETES_SERVICE_HOST"):
        return None
    default_path = Path("~/.kube/config").expanduser()
    if not path and default_path.is_file():
        path = str(default_path)
    if not path:
        raise KubeError("no kubeconfig found; set KUBECONFIG or pass --context")
    existing = [part for part in path.split(os.pathsep) if part and Path(part).is_file()]
    if not existing:
        raise KubeError(f"no kubeconfig found at {path}; set KUBECONFIG or pass --context")
    return os.pathsep.join(existing)


def _credential_refresher(loader: Any) -> Callable[[Any], Awaitable[None]]:
    """kubernetes_asyncio's hook, run before each request, that keeps credentials current.

    The kubeconfig loader knows how to renew what it loaded: an exec plugin's token (EKS's
    `aws eks get-token` gives 15-minute tokens) is fetched again once its
    `expirationTimestamp` is near, OIDC and GCP tokens are refreshed, a token file is read
    again. Without this the token of `connect()` is used for the client's whole life and a
    restore that waited on a long copy-back meets 401 when it creates the PV. Serialised,
    so concurrent requests run an expired plugin once.
    """
    lock = asyncio.Lock()

    async def refresh(configuration: Any) -> None:
        async with lock:
            try:
                await loader.load_and_set(configuration)
            except (ConfigException, OSError, ValueError) as exc:
                raise KubeError(f"refreshing the Kubernetes credentials failed: {exc}") from exc

    return refresh


async def _check_context(files: str, context: str | None) -> str | None:
    """The context to use (the current one when none is named); an unknown name is exit 2.

    Asked before anything else, so a typo in `--context` never reaches another cluster and
    never reads as an unreachable API server.
    """
    try:
        contexts, current = await asyncio.to_thread(k8s_config.list_kube_config_contexts, files)
    except (ConfigException, OSError, ValueError) as exc:
        raise KubeError(f"kubeconfig {files} could not be read: {exc}") from exc
    names = [str(c.get("name")) for c in contexts or [] if isinstance(c, Mapping)]
    if context is None:
        return str(current["name"]) if isinstance(current, Mapping) and "name" in current else None
    if context not in names:
        raise ConfigError(
            f"invalid --context {context!r}: no such context in kubeconfig {files}; "
            f"contexts there: {', '.join(names) if names else 'none'} "
            "(`kubectl config get-contexts`)"
        )
    return context


async def connect(
    context: str | None = None,
    kubeconfig: str | None = None,
    *,
    request_timeout: float = DEFAULT_TIMEOUT,
) -> KubeClient:
    """A client for the cluster: kubeconfig when one is named, else in-cluster, else ~/.kube.

    Order: the `kubeconfig` argument; `$KUBECONFIG`; the pod's service account when
    `KUBERNETES_SERVICE_HOST` is set and no `context` is asked for; `~/.kube/config`.
    Otherwise KubeError. Credentials are renewed as they expire (`_credential_refresher`;
    in-cluster, kubernetes_asyncio re-reads the projected token itself); the kubeconfig is
    never written back (refreshes stay in memory). Every call of the client gives up after
    `request_timeout` seconds.
    """
    configuration = k8s.Configuration()
    files = _kubeconfig_files(context, kubeconfig)
    if files is None:
        try:
            k8s_config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration
            )
        except ConfigException as exc:
            raise KubeError(f"in-cluster Kubernetes configuration failed: {exc}") from exc
    else:
        context = await _check_context(files, context)
        try:
            loader = await k8s_config.load_kube_config(
                config_file=files,
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
        except ConfigException as exc:
            raise KubeError(f"kubeconfig {files}: {exc}") from exc
        except (OSError, ValueError) as exc:
            raise KubeError(f"kubeconfig {files} could not be read: {exc}") from exc
        configuration.refresh_api_key_hook = _credential_refresher(loader)
    return KubeClient(
        k8s.ApiClient(configuration),
        host=str(configuration.host),
        context=context,
        timeout=request_timeout,
    )
