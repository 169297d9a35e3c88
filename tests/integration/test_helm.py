"""The Helm chart, rendered by a real `helm` (v4, installed by `make tools`).

Every rendered built-in object passes kubernetes-validate strictly; the Prometheus
operator's objects appear only when the cluster serves monitoring.coreos.com/v1 and the
values allow them; and what the chart installs agrees with the kustomize base — the same
hardened pod, the same Lease-only RBAC, the same alert rules and dashboard.
"""

from __future__ import annotations

import copy
import functools
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from snapd.config import Settings, load_settings
from tests.integration.test_deploy import BASE, RULES, schema_errors
from tests.integration.test_deploy import render as kustomize

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "snapd"
MINIMAL = CHART / "ci" / "minimal-values.yaml"
FULL = CHART / "ci" / "full-values.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "snapd.json"
MONITORING = (
    "--api-versions",
    "monitoring.coreos.com/v1",
    "--api-versions",
    "monitoring.coreos.com/v1/ServiceMonitor",
    "--api-versions",
    "monitoring.coreos.com/v1/PrometheusRule",
)
RELEASE, NAMESPACE = "snapd", "snapd"
REGENERATE = "run `make manifests` (scripts/generate_manifests.py) and commit the result"

Obj = dict[str, Any]


def helm_binary() -> str:
    """`.venv/bin/helm` from `make tools`, else a helm on PATH; missing fails, never skips."""
    beside = Path(sys.executable).with_name("helm")
    if beside.is_file():
        return str(beside)
    found = shutil.which("helm")
    if found is None:
        pytest.fail("helm is not installed: run `make tools` (installs .venv/bin/helm)")
    return found


def helm(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [helm_binary(), *args], capture_output=True, text=True, timeout=120, check=False, cwd=cwd
    )


@functools.cache
def template(*args: str) -> tuple[Obj, ...]:
    """`helm template snapd CHART -n snapd ARGS` as objects (fails the test on an error)."""
    result = helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args)
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def kinds(objects: tuple[Obj, ...]) -> list[str]:
    return sorted(obj["kind"] for obj in objects)


def of_kind(objects: tuple[Obj, ...], kind: str) -> Obj:
    found = [obj for obj in objects if obj["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def configmap(objects: tuple[Obj, ...], dashboard: bool) -> Obj:
    found = [
        obj
        for obj in objects
        if obj["kind"] == "ConfigMap"
        and ("grafana_dashboard" in obj["metadata"]["labels"]) == dashboard
    ]
    assert len(found) == 1
    return found[0]


RENDERINGS = {
    "minimal": ("-f", str(MINIMAL)),
    "minimal+operator": ("-f", str(MINIMAL), *MONITORING),
    "full": ("-f", str(FULL)),
    "full+operator": ("-f", str(FULL), *MONITORING),
}


def test_helm_is_the_pinned_v4() -> None:
    """`make tools` installs helm v4, which renders the chart (apiVersion v2)."""
    result = helm("version", "--short")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("v4."), result.stdout


@pytest.mark.parametrize("values", [None, MINIMAL, FULL], ids=["defaults", "minimal", "full"])
def test_lint_strict_passes(values: Path | None) -> None:
    """`helm lint --strict` finds nothing, with the defaults and with every value set."""
    extra = ["-f", str(values)] if values else []
    result = helm("lint", "--strict", str(CHART), *extra)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_defaults_alone_refuse_to_render_and_say_what_is_missing() -> None:
    """Without a bucket, `helm template` fails naming the value, before anything installs."""
    result = helm("template", RELEASE, str(CHART))
    assert result.returncode != 0
    for value in (
        "config.velero_bucket",
        "config.schedules",
        "config.source_region",
        "config.destination_region",
        "serviceAccount.roleArn",
    ):
        assert value in result.stderr, f"{value} not named: {result.stderr}"


def test_missing_role_arn_is_refused() -> None:
    """IRSA is how snapd reaches AWS: a ServiceAccount without the role is refused."""
    result = helm(
        "template", RELEASE, str(CHART), "-f", str(MINIMAL), "--set", "serviceAccount.roleArn="
    )
    assert result.returncode != 0
    assert "missing required values: serviceAccount.roleArn (the IRSA role" in result.stderr


@pytest.mark.parametrize("name", list(RENDERINGS))
def test_every_builtin_object_is_valid_kubernetes(name: str) -> None:
    """Every rendered built-in object passes the API server's schema, strictly."""
    assert schema_errors(template(*RENDERINGS[name])) == []


def test_operator_objects_only_when_the_cluster_serves_them() -> None:
    """No ServiceMonitor/PrometheusRule without monitoring.coreos.com/v1 (a plain install
    never fails); both with it; none when the values switch them off."""
    builtin = [
        "ConfigMap",
        "ConfigMap",
        "Deployment",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
    ]
    assert kinds(template(*RENDERINGS["minimal"])) == builtin
    assert kinds(template(*RENDERINGS["minimal+operator"])) == sorted(
        [*builtin, "PrometheusRule", "ServiceMonitor"]
    )
    switched_off = template(
        *RENDERINGS["minimal+operator"],
        "--set",
        "serviceMonitor.enabled=false",
        "--set",
        "prometheusRule.enabled=false",
    )
    assert kinds(switched_off) == builtin


def test_defaults_run_a_standby_with_leader_election_and_irsa() -> None:
    """2 replicas, leader election on, the Lease named in RBAC, the role on the SA."""
    objects = template(*RENDERINGS["minimal"])
    deployment = of_kind(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["SNAPD_LEADER_ELECTION"] == "true"
    sa = of_kind(objects, "ServiceAccount")
    assert (
        sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
        == (yaml.safe_load(MINIMAL.read_text())["serviceAccount"]["roleArn"])
    )
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]
    assert container["image"] == "snapd:0.1.0", "the chart's appVersion by default"


def test_two_workers_without_leader_election_are_refused() -> None:
    """More than one replica without the Lease would copy everything twice."""
    result = helm(
        "template", RELEASE, str(CHART), "-f", str(MINIMAL), "--set", "config.leader_election=false"
    )
    assert result.returncode != 0
    assert "leader_election must stay true" in result.stderr


# ------------------------------------------------------------------ the same as kustomize


def _pod_without_identity(deployment: Obj) -> Obj:
    """The Deployment with names, labels, selectors, image and replica count taken out:
    what is left is the pod's hardening, probes, ports, volumes and rollout strategy."""
    spec: Obj = copy.deepcopy(deployment["spec"])
    spec.pop("replicas")
    spec.pop("selector")
    pod_template = spec["template"]
    pod_template.pop("metadata")
    pod = pod_template["spec"]
    pod.pop("serviceAccountName")
    for constraint in pod["topologySpreadConstraints"]:
        constraint.pop("labelSelector")
    [container] = pod["containers"]
    container.pop("image")
    container.pop("envFrom")
    return spec


def test_deployment_matches_the_kustomize_base() -> None:
    """Same hardened pod as deploy/base: security contexts, probes, ports, resources, /tmp."""
    chart = of_kind(template(*RENDERINGS["minimal"]), "Deployment")
    base = of_kind(kustomize(BASE), "Deployment")
    assert _pod_without_identity(chart) == _pod_without_identity(base)
    [container] = chart["spec"]["template"]["spec"]["containers"]
    assert container["envFrom"] == [
        {
            "configMapRef": {
                "name": configmap(template(*RENDERINGS["minimal"]), False)["metadata"]["name"]
            }
        }
    ]


def _settings(objects: tuple[Obj, ...]) -> dict[str, str]:
    return dict(configmap(objects, False)["data"])


def test_default_settings_match_the_kustomize_base() -> None:
    """Every setting the base's ConfigMap sets, the chart sets to the same value."""
    chart = _settings(template(*RENDERINGS["minimal"]))
    base = _settings(kustomize(BASE))
    assert {key: chart.get(key) for key in base} == base


@pytest.mark.parametrize(
    "kind", ["Role", "RoleBinding", "Service", "NetworkPolicy", "PodDisruptionBudget"]
)
def test_rbac_service_and_policies_match_the_kustomize_base(kind: str) -> None:
    """Lease-only RBAC, the metrics Service, DNS+HTTPS egress and the PDB, as in the base."""
    chart = of_kind(template(*RENDERINGS["minimal"]), kind)
    base = of_kind(kustomize(BASE), kind)

    def shape(obj: Obj) -> Any:
        body = {k: v for k, v in obj.items() if k not in ("metadata", "apiVersion")}
        text = json.dumps(body, sort_keys=True)
        # Names and selector labels differ by design (release name, instance label).
        text = text.replace('"app.kubernetes.io/instance": "snapd", ', "")
        return json.loads(
            text.replace("snapd-leader-election", "LEADER").replace('"snapd"', '"NAME"')
        )

    assert shape(chart) == shape(base)


def test_prometheusrule_is_the_plain_rules_file() -> None:
    """The operator gets exactly the rules promtool tested (one source of truth)."""
    rule = of_kind(template(*RENDERINGS["minimal+operator"]), "PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    base = of_kind(kustomize(BASE), "PrometheusRule")
    assert rule["spec"] == base["spec"]


def test_servicemonitor_scrapes_the_service() -> None:
    """ServiceMonitor → Service → pods; honorLabels; the job name contains `snapd`."""
    objects = template(*RENDERINGS["full+operator"])
    monitor, service = of_kind(objects, "ServiceMonitor"), of_kind(objects, "Service")
    pod_labels = of_kind(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert all(service["metadata"]["labels"].get(k) == v for k, v in selector.items())
    assert all(pod_labels.get(k) == v for k, v in service["spec"]["selector"].items())
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint == {
        "port": "metrics",
        "path": "/metrics",
        "interval": "60s",
        "scrapeTimeout": "20s",
        "honorLabels": True,
    }
    assert "snapd" in service["metadata"]["name"], "alerts match job=~'.*snapd.*'"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_release_names_always_contain_snapd() -> None:
    """Any release name gives a Service whose name (the Prometheus job) contains snapd."""
    result = helm("template", "backups", str(CHART), "-f", str(MINIMAL))
    assert result.returncode == 0, result.stderr
    objects = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    [service] = [obj for obj in objects if obj["kind"] == "Service"]
    assert service["metadata"]["name"] == "backups-snapd"


def test_dashboard_configmap_is_the_dashboard() -> None:
    """The chart's grafana_dashboard ConfigMap holds deploy/grafana/snapd.json exactly."""
    dashboard = configmap(template(*RENDERINGS["full"]), True)
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["annotations"] == {"grafana_folder": "Backups"}
    assert dashboard["data"]["snapd.json"] == DASHBOARD.read_text(encoding="utf-8").rstrip("\n")
    off = template(*RENDERINGS["minimal"], "--set", "grafanaDashboard.enabled=false")
    assert kinds(off).count("ConfigMap") == 1


@pytest.mark.parametrize(
    ("copy_path", "source"),
    [
        pytest.param(CHART / "files" / "snapd-rules.yaml", RULES, id="rules"),
        pytest.param(CHART / "files" / "snapd.json", DASHBOARD, id="dashboard"),
    ],
)
def test_packaged_copies_are_fresh(copy_path: Path, source: Path) -> None:
    """Helm reads only inside the chart: its copies equal the sources of truth."""
    assert copy_path.read_bytes() == source.read_bytes(), (
        f"{copy_path.relative_to(ROOT)} is stale: {REGENERATE}"
    )


def test_packaged_chart_keeps_rules_and_dashboard(tmp_path: Path) -> None:
    """`helm package` carries the rules and dashboard; the package renders them."""
    result = helm("package", str(CHART), "--destination", str(tmp_path))
    assert result.returncode == 0, result.stderr
    [package] = tmp_path.glob("snapd-*.tgz")
    rendered = helm("template", RELEASE, str(package), "-f", str(MINIMAL), *MONITORING)
    assert rendered.returncode == 0, rendered.stderr
    objects = [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]
    [rule] = [obj for obj in objects if obj["kind"] == "PrometheusRule"]
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    listing = subprocess.run(
        ["tar", "tzf", str(package)], capture_output=True, text=True, timeout=60, check=True
    ).stdout.split()
    assert not [name for name in listing if "/ci/" in name], "test values stay out of the package"


# ------------------------------------------------------------------ values ↔ settings


def _schema() -> Obj:
    schema: Obj = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    return schema


def test_every_snapd_setting_is_a_value() -> None:
    """Each setting of snapd (and of the contract) is a validated value under `config`."""
    properties = set(_schema()["properties"]["config"]["properties"])
    values = set(yaml.safe_load((CHART / "values.yaml").read_text())["config"])
    # The Lease lives in the release's namespace (POD_NAMESPACE), where the Role grants it.
    fixed_by_the_chart = {"lease_namespace"}
    lacking = set(Settings.model_fields) - properties - fixed_by_the_chart
    assert sorted(lacking) == [], "values.schema.json lacks these settings"
    contract = {
        "dr_bucket",
        "dr_prefix",
        "dr_zones",
        "lock_mode",
        "lock_cool_off",
        "lock_margin",
        "copy_completion_duration",
        "upload_grace",
    }
    assert contract <= properties
    assert values == properties, "values.yaml and values.schema.json list the same settings"
    assert set(yaml.safe_load(FULL.read_text())["config"]) == properties, "full values set all"


def test_full_values_reach_snapd_as_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rendered ConfigMap is a configuration snapd accepts, with the values given."""
    objects = template(*RENDERINGS["full"])
    settings_env = _settings(objects)
    for key, value in settings_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SNAPD_LEADER_ELECTION", "true")
    settings = load_settings({})
    settings.require("velero_bucket", "schedules", "source_region", "destination_region")
    given = yaml.safe_load(FULL.read_text())["config"]
    assert settings.schedules == given["schedules"]
    assert settings.max_in_flight == given["max_in_flight"]
    assert settings.completion_minutes == 120
    assert settings.lease_name == given["lease_name"]
    assert settings_env["SNAPD_DR_ZONES"] == (
        "eu-west-1a=eu-central-1a,eu-west-1b=eu-central-1b,eu-west-1c=eu-central-1c"
    )
    known = {f"SNAPD_{name.upper()}" for name in Settings.model_fields}
    for name in sorted(set(settings_env) & known):
        field = name.removeprefix("SNAPD_").lower()
        assert getattr(settings, field) is not None, name
    role = of_kind(objects, "Role")
    assert role["rules"][1]["resourceNames"] == [given["lease_name"]]
    [container] = of_kind(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["ports"][0]["containerPort"] == given["metrics_port"]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        pytest.param("config.max_in_flight=25", "maximum", id="over-20-in-flight"),
        pytest.param("config.lock_mode=sometimes", "lock_mode", id="lock-mode"),
        pytest.param("config.source_region=Ireland", "source_region", id="region"),
        pytest.param("config.sync_interval=soon", "sync_interval", id="duration"),
        pytest.param("config.velero_buckt=x", "velero_buckt", id="unknown-setting"),
        pytest.param("config.copy_completion_duration=soon", "copy_completion_duration", id="cd"),
        pytest.param("config.dr_zones=eu-west-1a", "dr_zones", id="zones"),
    ],
)
def test_schema_refuses_bad_values(setting: str, message: str) -> None:
    """values.schema.json refuses a bad value before anything is installed, naming it."""
    result = helm("template", RELEASE, str(CHART), "-f", str(MINIMAL), "--set", setting)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_notes_tell_the_operator_how_to_verify() -> None:
    """NOTES.txt: rollout, the Lease holder, `snapd status`, the metrics, the operator case."""
    result = helm(
        "install", RELEASE, str(CHART), "-n", NAMESPACE, "-f", str(FULL), "--dry-run=client"
    )
    assert result.returncode == 0, result.stderr
    notes = result.stdout[result.stdout.index("NOTES:") :]
    assert "kubectl -n snapd rollout status deploy/prod-snapd" in notes
    assert "get lease prod-snapd-lease" in notes
    assert "snapd status" in notes
    assert "snapd_leader" in notes
    assert "time-based copies of 2h" in notes
    assert "ReadOnly" in notes, "the DR location is only ever a ReadOnly BSL"
    assert "does not serve monitoring.coreos.com/v1" in notes
