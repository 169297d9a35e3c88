"""`make demo-world`: the demo's world stays up, and another shell drives the real CLI at it."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.integration.cli import run_snapd

ROOT = Path(__file__).resolve().parents[2]


def read_env_file(path: Path) -> dict[str, str]:
    """The `export K=V` lines as a shell would `source` them."""
    env = {}
    for line in path.read_text().splitlines():
        [assignment] = shlex.split(line.removeprefix("export "))
        key, _, value = assignment.partition("=")
        env[key] = value
    return env


def test_demo_world_keeps_running_for_list_status_and_restore(tmp_path: Path) -> None:
    """The world replicates once, writes an env file, and answers `list`, `status` and a
    restore dry-run from another process until Ctrl-C, which stops it cleanly."""
    env_file = tmp_path / "demo.env"
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simworld.demo",
            "--keep-running",
            "--copy-seconds",
            "0.2",
            "--env-file",
            str(env_file),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not env_file.exists() and demo.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert env_file.exists(), "the demo world never wrote its env file"
        env = read_env_file(env_file)
        assert {"AWS_ENDPOINT_URL", "SNAPD_VELERO_BUCKET", "KUBECONFIG"} <= set(env)

        listed = run_snapd("list", "-n", "shop", "-o", "json", env=env)
        status = run_snapd("status", env=env)
        assert listed.code == 0, listed.stderr
        items = json.loads(listed.stdout)
        assert items
        assert {i["namespace"] for i in items} == {"shop"}
        assert status.code == 0, status.stderr
        backup = max(i["backup"] for i in items if i["pvc"] == "postgres-data")
        dry = run_snapd(
            "restore", backup, "postgres-data", "-n", "shop", "--dry-run", env=env, cwd=tmp_path
        )
        assert dry.code == 0, dry.stderr
        assert "kube context" in dry.stdout
    finally:
        demo.send_signal(signal.SIGINT)
        try:  # a bound for a hang, with room for a loaded machine
            output, _ = demo.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            demo.kill()  # not left to the next test's leak check
            demo.communicate(timeout=60)
            raise
    assert demo.returncode == 0, output
    assert f"source {env_file}" in output
    assert "Demo world stopped." in output
    assert not env_file.exists()
