"""The CLI as a new user meets it: guard rails against silent misconfiguration, and the habits
kubectl and velero users bring (`-n`, `-o`, `--help`, completion, Ctrl-C, a quiet terminal).

Every test runs the real `snapd` command as a subprocess against moto, the EC2 simulator and
a Velero bucket, and checks what the user sees: stdout, stderr and the exit code.
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from simworld.ec2sim import Ec2Simulator
from simworld.moto_server import MotoWorld
from simworld.velero_bucket import NATIVE, VeleroBucket, Volume
from snapd import __version__, tags
from tests.integration.cli import SNAPD, Result, run_snapd
from tests.integration.daemon import Scrape, running, wait_until
from tests.integration.test_cli_sync import (
    BUCKET,
    DST,
    NOW,
    SRC,
    expected_ids,
    interrupt_while_copying,
    replicas,
    seed,
    settings_env,
    tag_map,
)

ANSI = "\x1b["


def run_on_terminal(*args: str, env: Mapping[str, str], timeout: float = 120) -> Result:
    """`snapd ARGS` with stderr on a pseudo-terminal (as in an operator's shell)."""
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [SNAPD, *args],
        env={**base, **env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
    )
    os.close(slave)
    out: list[bytes] = []
    reader = threading.Thread(target=lambda: out.append(process.stdout.read()))  # type: ignore[union-attr]
    reader.start()
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed its end of the terminal
                break
            if not data:
                break
            chunks.append(data)
        code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
        reader.join(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
    stderr = b"".join(chunks).decode().replace("\r\n", "\n")
    return Result(code, b"".join(out).decode(), stderr)


def one_line(result: Result) -> str:
    """The one error line of a failed command, whatever JSON log lines came before it."""
    lines = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert len(lines) == 1, result.stderr
    return lines[0]


# --------------------------------------------------------------------------- guard rails


def test_destination_equal_to_source_region_is_exit_2(moto: MotoWorld) -> None:
    """Copies in the source region are no DR: exit 2, one line naming the setting."""
    result = run_snapd("sync", "--dry-run", env=settings_env(moto, SNAPD_DESTINATION_REGION=SRC))

    assert result.code == 2
    line = one_line(result)
    assert "SNAPD_DESTINATION_REGION" in line
    assert f"{SRC} is also the source region" in line
    assert result.stdout == ""


def test_a_watched_schedule_without_backups_is_named_everywhere(
    moto: MotoWorld, ec2sim: Ec2Simulator
) -> None:
    """`nightly` (a typo) beside `daily`: one warning naming it and the schedules found, in the
    sync and status text, their JSON and YAML, and the log."""
    ec2sim.copy_duration = 0.1
    bucket = seed(moto, days=1)
    bucket.backup(
        "hourly-1",
        schedule="hourly",
        volumes=[Volume("shop", "db", 20, f"{SRC}a", NATIVE, "gp3")],
        start=NOW - timedelta(hours=1),
    )
    env = settings_env(moto, SNAPD_SCHEDULES="daily,nightly")
    warning = (
        f"schedule nightly has no backups in s3://{BUCKET}/backups/; schedules found: daily, hourly"
    )

    dry = run_snapd("sync", "--dry-run", env=env)
    dry_json = run_snapd("sync", "--dry-run", "-o", "json", env=env)
    synced = run_snapd("sync", "-o", "yaml", env=env)
    status = run_snapd("status", env=env)
    status_json = run_snapd("status", "-o", "json", env=env)

    for result in (dry, dry_json, synced, status, status_json):
        assert result.code == 0, result.stderr
    assert dry.stdout.count(f"warning: {warning}") == 1
    assert status.stdout.count(f"warning: {warning}") == 1
    expected = [{"setting": "schedules", "schedule": "nightly", "warning": warning}]
    assert json.loads(dry_json.stdout)["settings_warnings"] == expected
    assert yaml.safe_load(synced.stdout)["settings_warnings"] == expected
    assert json.loads(status_json.stdout)["settings_warnings"] == expected
    logged = [
        event
        for event in map(json.loads, dry.stderr.splitlines())
        if event["event"] == "settings.suspicious"
    ]
    assert [e["warning"] for e in logged] == [warning]


def test_the_daemon_exports_schedules_and_warns_once(moto: MotoWorld, ec2sim: Ec2Simulator) -> None:
    """`snapd run`: per-schedule series (0 for the typo), build info, one warning line for
    many cycles."""
    ec2sim.copy_duration = 0.1
    bucket = seed(moto, days=2)
    newest = max(b.start for b in bucket.backups.values())
    env = settings_env(
        moto, SNAPD_SCHEDULES="daily,nightly", SNAPD_SYNC_INTERVAL="0.3s", SNAPD_METRICS_PORT="0"
    )

    with running(env) as daemon:

        def three_cycles() -> Scrape | None:
            scrape = daemon.scrape()
            done = (scrape.value("snapd_sync_cycles_total", result="success") or 0) >= 3
            return scrape if done else None

        scrape = wait_until(three_cycles, timeout=60, what="three cycles")
        assert daemon.stop() == 0, daemon.stderr

    assert scrape.value("snapd_schedule_backups", schedule="daily") == 2
    assert scrape.value("snapd_schedule_last_backup_timestamp_seconds", schedule="daily") == (
        newest.timestamp()
    )
    assert scrape.value("snapd_schedule_backups", schedule="nightly") == 0
    assert scrape.value("snapd_schedule_last_backup_timestamp_seconds", schedule="nightly") == 0
    assert scrape.value("snapd_build_info", version=__version__) == 1
    assert len(daemon.events("settings.suspicious")) == 1


def test_a_wrong_source_region_is_named_with_the_region_velero_recorded(
    moto: MotoWorld, ec2sim: Ec2Simulator
) -> None:
    """Every source missing in us-east-1 while Velero's files say eu-west-1 zones: the skip
    reasons and the warning name eu-west-1 and SNAPD_SOURCE_REGION."""
    bucket = seed(moto, days=1)
    env = settings_env(moto, SNAPD_SOURCE_REGION="us-east-1")

    result = run_snapd("sync", "--dry-run", "-o", "json", env=env)

    assert result.code == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["copy"] == []
    skipped = {s["source_snapshot_id"]: s["reason"] for s in plan["skipped"]}
    assert set(skipped) == expected_ids(bucket)
    for reason in skipped.values():
        assert "not found in us-east-1" in reason
        assert SRC in reason
        assert "SNAPD_SOURCE_REGION" in reason
    [warning] = plan["settings_warnings"]
    assert warning["setting"] == "source_region"


def test_a_bucket_that_does_not_exist_names_the_setting(moto: MotoWorld) -> None:
    """NoSuchBucket: exit 1 naming the bucket and SNAPD_VELERO_BUCKET."""
    result = run_snapd("sync", "--dry-run", env=settings_env(moto, SNAPD_VELERO_BUCKET="no-such"))

    assert result.code == 1
    line = one_line(result)
    assert "NoSuchBucket" in line
    assert "bucket no-such does not exist" in line
    assert "SNAPD_VELERO_BUCKET" in line


# --------------------------------------------------------------------------- config errors


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("velero_bucket: bkt\nschedules: [daily\n", "line 3"),
        (
            "velero_bucket: bkt\nschedule: daily\n",
            "line 2: unknown setting 'schedule'; did you mean 'schedules'?",
        ),
        ("velero_bucket: bkt\nmax_in_flight: 50\n", "invalid setting max_in_flight in config file"),
    ],
    ids=["yaml-error", "unknown-key", "bad-value"],
)
def test_config_file_errors_name_the_file_and_line(
    moto: MotoWorld, tmp_path: Path, text: str, expected: str
) -> None:
    """A problem in --config names the file (and the line), exit 2, one line."""
    config = tmp_path / "snapd.yaml"
    config.write_text(text)
    env = {**moto.env(), "SNAPD_SOURCE_REGION": SRC, "SNAPD_DESTINATION_REGION": DST}

    result = run_snapd("sync", "--dry-run", "--config", str(config), env=env)

    assert result.code == 2
    line = one_line(result)
    assert str(config) in line
    assert expected in line
    assert line.startswith("snapd: ")
    assert "snapd: snapd" not in line


def test_a_value_from_the_file_is_blamed_on_the_file_not_the_environment(
    moto: MotoWorld, tmp_path: Path
) -> None:
    """The same bad value from the environment names SNAPD_MAX_IN_FLIGHT instead."""
    config = tmp_path / "snapd.yaml"
    config.write_text("max_in_flight: 50\n")
    from_file = run_snapd("settings", "--config", str(config), env=moto.env())
    from_env = run_snapd("settings", env={**moto.env(), "SNAPD_MAX_IN_FLIGHT": "50"})

    assert from_file.code == from_env.code == 2
    assert f"in config file {config} line 1" in one_line(from_file)
    assert "SNAPD_MAX_IN_FLIGHT" in one_line(from_env)


# --------------------------------------------------------------------------- kubectl habits


def test_list_and_status_filter_by_namespace_and_speak_yaml(
    moto: MotoWorld, ec2sim: Ec2Simulator
) -> None:
    """`list -n`, `status -n`, `status -o yaml`, `list -o yaml` as kubectl users expect."""
    ec2sim.copy_duration = 0.1
    bucket = VeleroBucket(BUCKET, region=SRC, endpoint_url=moto.url)
    bucket.backup(
        "daily-1",
        schedule="daily",
        volumes=[
            Volume("shop", "db", 20, f"{SRC}a", NATIVE, "gp3"),
            Volume("blog", "db", 5, f"{SRC}b", NATIVE, "gp3"),
        ],
        start=NOW - timedelta(hours=2),
    )
    env = settings_env(moto)
    assert run_snapd("sync", env=env).code == 0

    listed = run_snapd("list", "-n", "shop", "-o", "yaml", env=env)
    status = run_snapd("status", "-n", "blog", "-o", "yaml", env=env)

    assert listed.code == 0, listed.stderr
    assert [(r["namespace"], r["pvc"]) for r in yaml.safe_load(listed.stdout)] == [("shop", "db")]
    assert status.code == 0, status.stderr
    document = yaml.safe_load(status.stdout)
    assert [(p["namespace"], p["pvc"]) for p in document["pvcs"]] == [("blog", "db")]
    assert document["schedules"][0]["replicated"] == 2


@pytest.mark.parametrize(
    ("command", "own"),
    [
        ("sync", ["--dry-run", "--timeout DURATION", "default: 12h", "{text,json,yaml}"]),
        ("list", ["-n NAMESPACE, --namespace NAMESPACE", "{table,wide,json,yaml}", "--schedule"]),
        ("status", ["{text,json,yaml}", "-n NAMESPACE"]),
        (
            "restore",
            ["BACKUP", "PVC to restore", "--pvc-file FILE, --output FILE", "default: pvc.yaml"],
        ),
    ],
)
def test_each_help_shows_its_own_flags_an_example_and_points_at_settings(
    command: str, own: list[str]
) -> None:
    """`snapd CMD --help`: its flags with help and defaults, examples, and a pointer to
    `snapd settings` instead of every global setting."""
    result = run_snapd(command, "--help", env={"COLUMNS": "200"})

    assert result.code == 0
    for text in own:
        assert text in result.stdout
    assert "examples:\n  snapd " + command in result.stdout
    assert "`snapd settings`" in result.stdout
    assert "--max-in-flight" not in result.stdout
    assert len(result.stdout.splitlines()) < 60


def test_settings_version_and_usage_errors(moto: MotoWorld) -> None:
    """`snapd settings` shows values and origins; `snapd version`; usage errors are one line
    with the command's name once and the flag it likely meant."""
    env = {**moto.env(), "SNAPD_SCHEDULES": "daily"}
    settings = run_snapd("settings", "--max-in-flight", "7", "-o", "json", env=env)
    version = run_snapd("version", env={})
    typo = run_snapd("sync", "--max-inflight", "3", env=env)
    unknown = run_snapd("frobnicate", env=env)

    assert settings.code == 0, settings.stderr
    rows = {row["name"]: row for row in json.loads(settings.stdout)}
    assert rows["max_in_flight"]["value"] == 7
    assert rows["max_in_flight"]["source"] == "--max-in-flight"
    assert rows["schedules"]["source"] == "SNAPD_SCHEDULES"
    assert rows["poll_interval"] == {**rows["poll_interval"], "value": "15s", "source": "default"}
    assert (version.code, version.stdout) == (0, f"snapd {__version__}\n")
    for result, text in ((typo, "did you mean --max-in-flight?"), (unknown, "frobnicate")):
        assert result.code == 2
        assert result.stdout == ""
        line = one_line(result)
        assert text in line
        assert "snapd: snapd" not in line
        assert "snapd sync: snapd sync" not in line


def complete(script: str, words: list[str]) -> list[str]:
    """What bash offers for `words` (the last one being completed) with `script` loaded."""
    program = (
        f"{script}\n"
        f"COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
        "_snapd_completion; printf '%s\\n' \"${COMPREPLY[@]}\"\n"
    )
    done = subprocess.run(
        ["bash", "-c", program], capture_output=True, text=True, timeout=30, check=True
    )
    return done.stdout.split()


def test_bash_and_zsh_completion_come_from_the_parser() -> None:
    """`snapd completion bash` completes commands, flags and -o values in a real bash;
    `snapd completion zsh` describes every command."""
    bash = run_snapd("completion", "bash", env={})
    zsh = run_snapd("completion", "zsh", env={})

    assert bash.code == zsh.code == 0
    assert complete(bash.stdout, ["snapd", "li"]) == ["list"]
    assert complete(bash.stdout, ["snapd", "list", "-o", ""]) == ["table", "wide", "json", "yaml"]
    assert complete(bash.stdout, ["snapd", "sync", "--max-in"]) == ["--max-in-flight"]
    assert "--pvc-file" in complete(bash.stdout, ["snapd", "restore", "--p"])
    assert complete(bash.stdout, ["snapd", "completion", "z"]) == ["zsh"]
    assert zsh.stdout.startswith("#compdef snapd\n")
    for command in ("run", "sync", "list", "status", "restore", "settings", "version"):
        assert f"'{command}:" in zsh.stdout
    assert "(text json yaml)" in zsh.stdout


# --------------------------------------------------------------------------- the terminal


def test_a_terminal_gets_no_settings_dump_and_no_colour_with_no_color(
    moto: MotoWorld, ec2sim: Ec2Simulator
) -> None:
    """On a terminal: no settings dump unless --log-level debug; colours unless NO_COLOR."""
    env = {**moto.env(), "SNAPD_CLUSTER": BUCKET, "SNAPD_DESTINATION_REGION": DST}

    plain = run_on_terminal("list", env=env)
    debug = run_on_terminal("list", "--log-level", "debug", env=env)
    no_color = run_on_terminal("list", "--log-level", "debug", env={**env, "NO_COLOR": "1"})

    for result in (plain, debug, no_color):
        assert result.code == 0, result.stderr
        assert result.stdout == "No replicas found.\n"
    assert "command.started" in plain.stderr
    assert "destination_region" not in plain.stderr
    assert "destination_region" in debug.stderr
    assert ANSI in debug.stderr
    assert "destination_region" in no_color.stderr
    assert ANSI not in no_color.stderr


def test_sync_progress_moves_forward_one_line_per_change(
    moto: MotoWorld, ec2sim: Ec2Simulator
) -> None:
    """Copies polled every 0.1s for 1.5s: per copy at most started, three quarters, completed;
    the [done/total] counter never goes back."""
    ec2sim.copy_duration = 1.5
    bucket = seed(moto, days=2)
    total = len(expected_ids(bucket))

    result = run_on_terminal("sync", env=settings_env(moto, SNAPD_LOG_LEVEL="warning"))

    assert result.code == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("[")]
    counters = [tuple(map(int, line[1 : line.index("]")].split("/"))) for line in lines]
    assert counters == sorted(counters), "the counter moved backwards"
    assert counters[-1] == (total, total)
    assert sum(" started " in line for line in lines) == total
    assert sum(" completed " in line for line in lines) == total
    assert len(lines) <= total * 5


def test_ctrl_c_in_sync_exits_130_and_says_copies_continue(
    moto: MotoWorld, ec2sim: Ec2Simulator
) -> None:
    """SIGINT while copies are pending: exit 130, a line saying they continue in AWS and will
    be adopted; the next sync adopts them and copies nothing twice."""
    ec2sim.copy_duration = 600.0  # pending through the interruption however slow the machine
    bucket = seed(moto)
    env = settings_env(moto)
    code, err = interrupt_while_copying(ec2sim, "sync", env=env, signum=signal.SIGINT, timeout=30)
    ec2sim.finish_pending(DST)

    assert code == 130, err
    assert "copies already started continue inside AWS" in err
    assert "adopts them" in err
    ec2sim.copy_duration = 0.1
    assert run_snapd("sync", env=env).code == 0
    sources = sorted(tag_map(s)[tags.SOURCE_SNAPSHOT_ID] for s in replicas(moto))
    assert sources == sorted(expected_ids(bucket))
