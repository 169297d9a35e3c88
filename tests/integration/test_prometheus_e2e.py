"""End to end: a real Prometheus scrapes a real `snapd run`, fires the shipped alert, and
answers every query of the Grafana dashboard with data.

Prometheus comes from Debian's `prometheus` package (`make tools`); a missing binary fails
the test rather than skipping it. The rules are a copy of deploy/prometheus/snapd-rules.yaml,
changed only where real time would make the test wait: `SnapdCopiesFailing` gets
`for: 0s` (explicitly, so a `for` added to the shipped rule later cannot slow this down).
Its `increase(...[30m])` range is kept as shipped: with the zero-valued series scraped
before the first failure, two samples 0 → 1 already give an increase > 0.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from simworld.ec2sim import Ec2Simulator
from simworld.moto_server import MotoWorld
from simworld.velero_bucket import VeleroBucket
from snapd import tags
from tests.integration.daemon import Daemon, running, wait_until
from tests.integration.test_cli_sync import BUCKET, DST, SRC, seed, settings_env
from tests.unit.test_dashboard import PENDING_METRICS, exported_metrics, metrics_in, queries

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "snapd-rules.yaml"
ALERT = "SnapdCopiesFailing"
JOB = "snapd"
START_TIMEOUT = 30.0
FIRE_TIMEOUT = 60.0
DR_BUCKET = "velero-dr-test"


def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path is None:
        pytest.fail("prometheus is not installed: run `make tools` (Debian package `prometheus`)")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def rules_for_test(directory: Path) -> Path:
    """The shipped rules with `for: 0s` on the alert under test; the file itself untouched."""
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    found = [r for g in document["groups"] for r in g["rules"] if r.get("alert") == ALERT]
    assert len(found) == 1, f"{ALERT} not in {RULES}"
    found[0]["for"] = "0s"
    path = directory / "snapd-rules.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


class Prometheus:
    """A Prometheus server on 127.0.0.1 scraping one snapd target every second."""

    def __init__(self, directory: Path, target_port: int) -> None:
        self.directory = directory
        self.port = free_port()
        config = {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "rule_files": [str(rules_for_test(directory))],
            "scrape_configs": [
                {"job_name": JOB, "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}]}
            ],
        }
        self.config = directory / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        self.log_path = directory / "prometheus.log"
        self._log = self.log_path.open("w", encoding="utf-8")
        self.process = subprocess.Popen(
            [
                prometheus_binary(),
                f"--config.file={self.config}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def api(self, path: str, **params: str) -> Any:
        """GET a Prometheus HTTP API path; the `data` of a successful answer."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        url = f"http://127.0.0.1:{self.port}{path}{query}"
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"prometheus exited {self.process.returncode}:\n{self.log}")
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.port}/-/ready", timeout=2
            ) as response:
                return int(response.status) == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def query(self, expr: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.api("/api/v1/query", query=expr)["result"]
        return result

    def alerts(self, state: str) -> list[dict[str, Any]]:
        return [a for a in self.api("/api/v1/alerts")["alerts"] if a["state"] == state]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[list[Prometheus]]:
    """Started servers (appended by the test) are stopped at teardown, pass or fail."""
    started: list[Prometheus] = []
    yield started
    for server in started:
        server.stop()


def start_prometheus(directory: Path, daemon: Daemon, started: list[Prometheus]) -> Prometheus:
    server = Prometheus(directory, daemon.port)
    started.append(server)
    wait_until(server.ready, timeout=START_TIMEOUT, what="prometheus /-/ready")
    return server


def test_failing_copies_fire_the_shipped_alert(
    moto: MotoWorld, ec2sim: Ec2Simulator, tmp_path: Path, prometheus_for: list[Prometheus]
) -> None:
    """Failing copies make a real Prometheus with the shipped rules fire SnapdCopiesFailing."""
    prometheus_binary()
    ec2sim.copy_duration = 0.2
    VeleroBucket(BUCKET, region=SRC, endpoint_url=moto.url)  # empty: nothing fails yet
    env = settings_env(moto, SNAPD_SYNC_INTERVAL="1s", SNAPD_COPY_RETRIES="1")
    with running(env) as daemon:
        server = start_prometheus(tmp_path, daemon, prometheus_for)
        # Prometheus must see the counter at 0 before it moves: increase() needs both.
        wait_until(
            lambda: server.query(f'snapd_copies_failed_total{{job="{JOB}",reason="error_state"}}'),
            timeout=START_TIMEOUT,
            what="the first scrape of snapd_copies_failed_total",
        )
        assert server.query(f'up{{job="{JOB}"}} == 1'), "snapd target not up"
        assert server.alerts("firing") == []

        bucket = seed(moto, days=1)
        for snapshot_id in {sid for b in bucket.backups.values() for sid in b.snapshot_ids}:
            ec2sim.fail_copies(snapshot_id, times=100)

        firing = wait_until(
            lambda: [a for a in server.alerts("firing") if a["labels"]["alertname"] == ALERT],
            timeout=FIRE_TIMEOUT,
            what=f"{ALERT} firing in Prometheus",
        )
        others = [a["labels"]["alertname"] for a in server.alerts("firing")]
        rules = [r for g in server.api("/api/v1/rules")["groups"] for r in g["rules"]]
        assert daemon.stop() == 0, daemon.stderr

    assert len(firing) == 1
    labels = firing[0]["labels"]
    assert labels["reason"] == "error_state"
    assert labels["job"] == JOB
    assert labels["severity"] == "warning"
    assert float(firing[0]["value"]) > 0
    assert "error_state" in firing[0]["annotations"]["summary"]
    assert sorted(set(others)) == [ALERT]
    # Every shipped rule loaded and evaluates without error against real snapd series.
    shipped = [r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    assert sorted(r["name"] for r in rules) == sorted(shipped)
    broken = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
    assert broken == {}


#: How long every dashboard query gets to return data once the world has produced it.
PANEL_TIMEOUT = 60.0


def dashboard_expr(expr: str) -> str:
    """A panel's query as Grafana sends it with the `job` variable set to this target."""
    return expr.replace("$job", JOB)


def seed_world_for_every_panel(moto: MotoWorld, ec2sim: Ec2Simulator) -> None:
    """Backups whose copies complete (recovery points, durations), one copy refused by AWS
    (an AWS error, a `rejected` failure), and a time-based copy an earlier process started an
    hour ago with a 15-minute promise, still pending (overdue)."""
    bucket = seed(moto, days=2)
    sources = sorted({sid for b in bucket.backups.values() for sid in b.snapshot_ids})
    ec2sim.inject("CopySnapshot", "InvalidParameterValue", message="refused for the test")
    backup = next(iter(bucket.backups.values()))
    ec2sim.add_snapshot(
        DST,
        tags={
            tags.CLUSTER: BUCKET,
            tags.SOURCE_SNAPSHOT_ID: sorted(backup.snapshot_ids)[0],
            tags.SOURCE_REGION: SRC,
            tags.BACKUP: backup.name,
            tags.SCHEDULE: "daily",
            tags.NAMESPACE: "shop",
            tags.PVC: "db",
        },
        pending_for=3600,
        completion_minutes=15,
        started_ago=3600,
    )
    assert len(sources) >= 4


def test_every_dashboard_panel_returns_data(
    moto: MotoWorld, ec2sim: Ec2Simulator, tmp_path: Path, prometheus_for: list[Prometheus]
) -> None:
    """Every query of deploy/grafana/snapd.json parses in a real Prometheus and returns data
    from a real `snapd run` (panels of metrics still pending elsewhere are listed, not run)."""
    prometheus_binary()
    ec2sim.copy_duration = 0.2
    seed_world_for_every_panel(moto, ec2sim)
    boto3.client("s3", region_name=DST, endpoint_url=moto.url).create_bucket(
        Bucket=DR_BUCKET, CreateBucketConfiguration={"LocationConstraint": DST}
    )
    # The DR location and locks, for the builds that have them (older ones ignore these).
    env = settings_env(
        moto,
        SNAPD_SYNC_INTERVAL="1s",
        SNAPD_PRUNE_INTERVAL="2s",
        SNAPD_COPY_RETRIES="2",
        SNAPD_COPY_COMPLETION_DURATION="15m",
        SNAPD_DR_BUCKET=DR_BUCKET,
        SNAPD_LOCK_MODE="governance",
    )
    exported = exported_metrics()
    checked = [(t, e) for t, e in queries() if metrics_in(e) <= exported]
    pending = sorted({t for t, e in queries() if not metrics_in(e) <= exported})
    with running(env) as daemon:
        server = start_prometheus(tmp_path, daemon, prometheus_for)
        wait_until(
            lambda: (
                (daemon.scrape().value("snapd_copies_overdue_total") or 0) >= 1
                and (daemon.scrape().value("snapd_copies_completed_total") or 0) >= 3
            ),
            timeout=FIRE_TIMEOUT,
            what="completed and overdue copies",
            explain=lambda: daemon.stderr[-4000:],
        )
        results: dict[tuple[str, str], list[dict[str, Any]]] = {}

        def all_return_data() -> bool:
            for title, expr in checked:
                if results.get((title, expr)):
                    continue
                try:
                    results[title, expr] = server.query(dashboard_expr(expr))
                except urllib.error.HTTPError as error:
                    raise AssertionError(
                        f"panel {title!r}: Prometheus refused {expr!r}: {error.read().decode()}"
                    ) from error
            return all(results.get(key) for key in checked)

        wait_until(
            all_return_data,
            timeout=PANEL_TIMEOUT,
            what="data for every dashboard panel",
            explain=lambda: (
                "no data: " + "; ".join(f"{t}: {e}" for t, e in checked if not results.get((t, e)))
            ),
        )
        assert daemon.stop() == 0, daemon.stderr
    assert pending == sorted(t for t, e in queries() if metrics_in(e) & PENDING_METRICS), (
        f"panels whose metrics this build does not export: {pending}"
    )
    aws_errors = results[next(key for key in checked if "snapd_aws_errors_total" in key[1])]
    assert {r["metric"].get("operation") for r in aws_errors} >= {"CopySnapshot"}
