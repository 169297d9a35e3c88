"""The manifests render with kustomize, validate against Kubernetes' schemas, and agree.

`kubectl kustomize` (kubectl bundles kustomize v5) renders deploy/base and the example
overlay; kubernetes-validate checks every built-in object strictly. The Prometheus
operator's custom resources have no schema there, so their structure is checked here.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from snapd.config import load_settings, parse_duration

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "base"
EXAMPLE = ROOT / "deploy" / "overlays" / "example"
RULES = ROOT / "deploy" / "prometheus" / "snapd-rules.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "snapd.json"
K8S_VERSION = kubernetes_validate.latest_version()
CUSTOM_GROUPS = ("monitoring.coreos.com/",)

Obj = dict[str, Any]


@functools.cache
def render(path: Path) -> tuple[Obj, ...]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is not installed: these tests need `kubectl kustomize` (v5)")
    result = subprocess.run(
        [kubectl, "kustomize", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"kubectl kustomize {path} failed:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def one(objects: tuple[Obj, ...], kind: str) -> Obj:
    found = [obj for obj in objects if obj["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def container(objects: tuple[Obj, ...]) -> Obj:
    containers = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def settings_configmap(objects: tuple[Obj, ...]) -> Obj:
    """The ConfigMap of SNAPD_* settings (the other one holds the Grafana dashboard)."""
    found = [
        obj
        for obj in objects
        if obj["kind"] == "ConfigMap" and "grafana_dashboard" not in obj["metadata"]["labels"]
    ]
    assert len(found) == 1, f"expected one settings ConfigMap, found {len(found)}"
    return found[0]


def config(objects: tuple[Obj, ...]) -> dict[str, str]:
    return dict(settings_configmap(objects)["data"])


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


LAYOUTS = [pytest.param(BASE, id="base"), pytest.param(EXAMPLE, id="example")]


@pytest.mark.parametrize("path", LAYOUTS)
def test_every_builtin_object_is_valid_kubernetes(path: Path) -> None:
    """The API server would accept every object: strict schema, no unknown fields."""
    assert schema_errors(render(path)) == []


def schema_errors(objects: Iterable[dict[str, Any]]) -> list[str]:
    """`Kind/name: why` for each built-in object the API server's strict schema refuses
    (custom resources have no schema there; their structure is checked apart)."""
    errors = []
    for obj in objects:
        if obj["apiVersion"].startswith(CUSTOM_GROUPS):
            continue
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except (
            kubernetes_validate.ValidationError,
            kubernetes_validate.SchemaNotFoundError,
        ) as exc:
            errors.append(
                f"{obj['kind']}/{obj['metadata']['name']}: {getattr(exc, 'message', exc)}"
            )
    return errors


@pytest.mark.parametrize("path", LAYOUTS)
def test_all_parts_are_there(path: Path) -> None:
    """One apply brings the daemon, its identity, its Lease rights, metrics and alerts."""
    kinds = sorted(obj["kind"] for obj in render(path))
    expected = [
        "ConfigMap",
        "ConfigMap",
        "Deployment",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "PrometheusRule",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    ]
    if path == EXAMPLE:
        expected = sorted([*expected, "Namespace"])
    assert kinds == expected


@pytest.mark.parametrize("path", LAYOUTS)
def test_pod_is_hardened(path: Path) -> None:
    """Non-root 65532, read-only root, no privilege escalation, no capabilities, seccomp."""
    objects = render(path)
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["enableServiceLinks"] is False
    sc = container(objects)["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == 65532
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    mounts = {m["mountPath"]: m["name"] for m in container(objects)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]], "tarballs are spooled to an emptyDir at /tmp"


@pytest.mark.parametrize("path", LAYOUTS)
def test_shutdown_drain_fits_in_the_grace_period(path: Path) -> None:
    """Kubernetes waits longer than SNAPD_DRAIN_TIMEOUT before it kills the pod."""
    objects = render(path)
    grace = one(objects, "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    drain = parse_duration(config(objects)["SNAPD_DRAIN_TIMEOUT"]).total_seconds()
    assert grace > drain + 5, f"terminationGracePeriodSeconds {grace} vs drain {drain}s"


@pytest.mark.parametrize("path", LAYOUTS)
def test_probes_and_settings_reach_the_container(path: Path) -> None:
    """Probes hit /healthz and /readyz on the metrics port; settings come from the ConfigMap."""
    objects = render(path)
    c = container(objects)
    assert c["ports"] == [{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}]
    assert config(objects)["SNAPD_METRICS_PORT"] == "8080"
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert c["args"] == ["run"]
    cm_name = settings_configmap(objects)["metadata"]["name"]
    assert c["envFrom"] == [{"configMapRef": {"name": cm_name}}]
    env = {e["name"]: e for e in c["env"]}
    assert env["SNAPD_LEADER_ELECTION"]["value"] == "true"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert all(key.startswith("SNAPD_") for key in config(objects))


def test_example_settings_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    """The example overlay's ConfigMap is a complete, valid snapd configuration."""
    objects = render(EXAMPLE)
    for key, value in config(objects).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SNAPD_LEADER_ELECTION", "true")
    monkeypatch.setenv("POD_NAMESPACE", one(objects, "Deployment")["metadata"]["namespace"])
    settings = load_settings({})
    settings.require("velero_bucket", "schedules", "source_region", "destination_region")
    assert settings.leader_election is True
    assert settings.source_region != settings.destination_region
    assert settings.lease_namespace == "snapd"


def test_example_runs_a_standby_with_its_own_role_and_image() -> None:
    """The example runs 2 replicas, a real image and a real IRSA role, in a restricted ns."""
    objects = render(EXAMPLE)
    assert one(objects, "Deployment")["spec"]["replicas"] == 2
    image = container(objects)["image"]
    assert re.fullmatch(r"\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com/snapd:[\w.]+", image)
    role = one(objects, "ServiceAccount")["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert re.fullmatch(r"arn:aws:iam::\d{12}:role/[\w+=,.@-]+", role)
    assert "REPLACE-ME" not in role
    labels = one(objects, "Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert {obj["metadata"]["namespace"] for obj in objects if obj["kind"] != "Namespace"} == {
        one(objects, "Namespace")["metadata"]["name"]
    }


def test_base_role_arn_is_a_placeholder() -> None:
    """The base cannot be applied by mistake with someone else's role."""
    sa = one(render(BASE), "ServiceAccount")
    assert "REPLACE-ME" in sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]


@pytest.mark.parametrize("path", LAYOUTS)
def test_rbac_allows_only_the_lease(path: Path) -> None:
    """The daemon may get, create and update its Lease, and nothing else."""
    objects = render(path)
    role, binding = one(objects, "Role"), one(objects, "RoleBinding")
    granted = {
        (group, resource, verb, tuple(rule.get("resourceNames", ())))
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    lease = config(objects)["SNAPD_LEASE_NAME"]
    assert granted == {
        ("coordination.k8s.io", "leases", "create", ()),
        ("coordination.k8s.io", "leases", "get", (lease,)),
        ("coordination.k8s.io", "leases", "update", (lease,)),
    }
    sa = one(objects, "ServiceAccount")["metadata"]["name"]
    assert one(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == sa
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    namespace = one(objects, "Deployment")["metadata"]["namespace"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": namespace}]


@pytest.mark.parametrize("path", LAYOUTS)
def test_prometheus_scrapes_the_pods(path: Path) -> None:
    """ServiceMonitor → Service (labels, port name) → pods (selector, port)."""
    objects = render(path)
    service, monitor = one(objects, "Service"), one(objects, "ServiceMonitor")
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert "namespaceSelector" not in monitor["spec"], "scrape the Service in its own namespace"
    assert matches(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    assert matches(service["spec"]["selector"], pod_labels)
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert endpoint["honorLabels"] is True, "keep the recovery point's own namespace label"
    [port] = service["spec"]["ports"]
    assert port["targetPort"] == "metrics"
    assert service["metadata"]["name"].endswith("snapd"), "alerts match job=~'.*snapd.*'"


@pytest.mark.parametrize("path", LAYOUTS)
def test_prometheusrule_is_the_plain_rules_file(path: Path) -> None:
    """The operator gets exactly the rules that promtool tested."""
    rule = one(render(path), "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]


def test_example_is_selected_by_kube_prometheus_stack() -> None:
    """The example's ServiceMonitor and PrometheusRule carry the operator's release label."""
    objects = render(EXAMPLE)
    for kind in ("ServiceMonitor", "PrometheusRule"):
        assert one(objects, kind)["metadata"]["labels"]["release"] == "kube-prometheus-stack"


@pytest.mark.parametrize("path", LAYOUTS)
def test_network_policy_allows_only_dns_https_and_scrapes(path: Path) -> None:
    """Egress: DNS and HTTPS (AWS, Kubernetes API); ingress: the metrics port."""
    objects = render(path)
    policy = one(objects, "NetworkPolicy")["spec"]
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert matches(policy["podSelector"]["matchLabels"], pod_labels)
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    egress = {(p["port"], p["protocol"]) for rule in policy["egress"] for p in rule["ports"]}
    assert egress == {(53, "UDP"), (53, "TCP"), (443, "TCP")}
    assert all("to" not in rule for rule in policy["egress"])
    ingress = {(p["port"], p["protocol"]) for rule in policy["ingress"] for p in rule["ports"]}
    assert ingress == {(8080, "TCP")}


@pytest.mark.parametrize("path", LAYOUTS)
def test_disruption_budget_never_blocks_a_drain(path: Path) -> None:
    """With one replica a drain still proceeds; with two, one pod stays."""
    objects = render(path)
    pdb = one(objects, "PodDisruptionBudget")["spec"]
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pdb == {"maxUnavailable": 1, "selector": pdb["selector"]}
    assert matches(pdb["selector"]["matchLabels"], pod_labels)


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    joined = re.sub(r"\\\n", " ", text)
    result = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def test_dockerfile_builds_a_small_non_root_production_image() -> None:
    """Multi-stage python:3.11-slim, locked runtime deps only, user 65532, `snapd run`."""
    instructions = dockerfile_instructions()
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    froms = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert len(froms) >= 2, "multi-stage build"
    assert ("ARG", "PYTHON_IMAGE=python:3.11-slim") in instructions
    assert froms[-1] == "${PYTHON_IMAGE}"
    assert ("USER", "65532:65532") in instructions
    assert instructions[-2:] == [("ENTRYPOINT", '["snapd"]'), ("CMD", '["run"]')]
    runs = " ".join(rest for keyword, rest in instructions if keyword == "RUN")
    assert "pip install -c constraints.txt ." in runs
    assert not re.search(r"\[(testing|dev)\]|\.\[|moto\[", text), "no test extras in the image"
    env = " ".join(rest for keyword, rest in instructions if keyword == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    # The last stage runs as 65532 from its USER line on: nothing after it may need root.
    last_stage = instructions[len(instructions) - instructions[::-1].index(("FROM", froms[-1])) :]
    after_user = last_stage[last_stage.index(("USER", "65532:65532")) :]
    assert all(keyword != "RUN" for keyword, _ in after_user)


def test_dockerignore_keeps_the_context_to_the_package() -> None:
    """Only what the image needs is sent: no .venv, tests, .git or the simulated world."""
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "ignore everything, then allow what the build copies"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert allowed == {"pyproject.toml", "constraints.txt", "README.md", "snapd"}
    # The simulated world stands beside the package, so allowing `snapd/` never sends it.
    assert not list((ROOT / "snapd").rglob("moto_server.py"))


@pytest.mark.parametrize("path", LAYOUTS)
def test_grafana_dashboard_ships_for_the_sidecar(path: Path) -> None:
    """The dashboard is a ConfigMap labelled grafana_dashboard holding deploy/grafana/snapd.json."""
    [dashboard] = [
        obj
        for obj in render(path)
        if obj["kind"] == "ConfigMap" and "grafana_dashboard" in obj["metadata"]["labels"]
    ]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["data"] == {"snapd.json": DASHBOARD.read_text(encoding="utf-8")}
    assert json.loads(dashboard["data"]["snapd.json"])["uid"] == "snapd"
