"""`make demo`: snapd's main job on a local world — no AWS account, no network.

Starts moto in server mode on loopback with the EC2 simulator (copies stay pending for a
few seconds, with rising progress, under the 20-copy limit), seeds a realistic Velero
bucket (a week of daily backups over four PVCs in three namespaces, native and CSI, one
PartiallyFailed, one corrupt, one in flight, decoys) with matching source snapshots, then
runs the real `snapd` CLI against it: `sync --dry-run`, `sync`, `list`, `status`, and ends
with what happened and what to try next. A DR location (a bucket in the destination
region) fills up as backups are fully replicated, and `snapd dr-manifests` prints what a DR
cluster's Velero would apply.

`make demo-world` (`--keep-running`) builds the same world plus a fake Kubernetes API,
replicates it once, writes `.demo-world.env` (endpoint, fake credentials, settings,
KUBECONFIG) for another shell to `source`, and keeps running until Ctrl-C, so an operator
can try `snapd list`, `status` and `restore` by hand.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import boto3

from simworld.ec2sim import Ec2Simulator
from simworld.fake_kube import fake_kube_server
from simworld.moto_server import moto_server
from simworld.velero_bucket import SeededWorld, seed_realistic_world

BUCKET = "velero-backups"
DR_BUCKET = "velero-dr"
DR_PREFIX = "snapd"
SOURCE_REGION = "eu-west-1"
DESTINATION_REGION = "eu-central-1"
COPY_SECONDS = 4.0


def _snapd(*args: str, env: dict[str, str]) -> int:
    command = [str(Path(sys.executable).with_name("snapd")), *args]
    print(f"\n$ snapd {' '.join(args)}", flush=True)
    return subprocess.run(command, env=env, check=False, timeout=300).returncode


def demo_env(endpoint_env: dict[str, str]) -> dict[str, str]:
    """The settings an operator would put in the ConfigMap, pointed at the local world."""
    quiet = "warning" if sys.stderr.isatty() else "info"
    return {
        **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TERM")},
        **endpoint_env,
        "SNAPD_VELERO_BUCKET": BUCKET,
        "SNAPD_SCHEDULES": "daily",
        "SNAPD_SOURCE_REGION": SOURCE_REGION,
        "SNAPD_DESTINATION_REGION": DESTINATION_REGION,
        "SNAPD_MAX_IN_FLIGHT": "6",
        "SNAPD_POLL_INTERVAL": "0.5",
        "SNAPD_LOG_FORMAT": "console",
        "SNAPD_LOG_LEVEL": quiet,
        "SNAPD_DR_BUCKET": DR_BUCKET,
        "SNAPD_DR_PREFIX": DR_PREFIX,
    }


def _dr_bucket(url: str) -> Any:
    """The DR location's bucket in the destination region, and a client to look into it."""
    import botocore.session

    client = botocore.session.get_session().create_client(
        "s3", region_name=DESTINATION_REGION, endpoint_url=url
    )
    client.create_bucket(
        Bucket=DR_BUCKET, CreateBucketConfiguration={"LocationConstraint": DESTINATION_REGION}
    )
    return client


def _show_dr(client: Any) -> None:
    """How full the DR location is: backups whose velero-backup.json exists."""
    keys = [
        item["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=DR_BUCKET, Prefix=f"{DR_PREFIX}/backups/"
        )
        for item in page.get("Contents") or ()
    ]
    published = sorted(k.split("/")[-2] for k in keys if k.endswith("/velero-backup.json"))
    print(
        f"\nDR location s3://{DR_BUCKET}/{DR_PREFIX} ({DESTINATION_REGION}): "
        f"{len(published)} backups published, {len(keys)} objects",
        flush=True,
    )
    for name in published:
        print(f"  {name}", flush=True)


def _newest_restorable(seeded: SeededWorld) -> str:
    """The newest Completed `daily` backup: the restore example the demo suggests."""
    done = [b for b in seeded.backups.values() if b.schedule == "daily" and b.phase == "Completed"]
    return max(done, key=lambda b: b.start).name


def _replica_count(url: str) -> int:
    ec2 = boto3.client("ec2", region_name=DESTINATION_REGION, endpoint_url=url)
    return len(ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"])


def _next_commands(backup: str, snapd: str = "snapd") -> list[str]:
    return [
        f"  {snapd} list -n shop",
        f"  {snapd} status -o yaml",
        f"  {snapd} restore {backup} postgres-data -n shop --dry-run",
        f"  {snapd} restore {backup} postgres-data -n shop --target-pvc postgres-restored "
        "--pvc-file postgres-restored.yaml",
    ]


def _snapd_path() -> str:
    """The CLI as the reader can type it from here (`.venv/bin/snapd` in the checkout)."""
    path = Path(sys.executable).with_name("snapd")
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def _bullets(*items: str) -> list[str]:
    return [
        textwrap.fill(item, 92, initial_indent="  - ", subsequent_indent="    ") for item in items
    ]


def _summary(seeded: SeededWorld, replicas: int, codes: list[int], seconds: float) -> str:
    failed = sum(1 for code in codes if code)
    lines = [
        "",
        f"Demo finished in {seconds:.0f}s"
        + (f"; {failed} command(s) failed (see above)." if failed else "."),
        "",
        "What happened:",
        *_bullets(
            f"`sync --dry-run` read {len(seeded.backups)} Velero backups in s3://{BUCKET} and "
            "planned a copy for every snapshot of schedule `daily`, saying why it skips the "
            "rest (a backup still in flight, a failed snapshot) and which backups it cannot read;",
            f"`sync` copied them to {DESTINATION_REGION} ({replicas} replicas now), waiting "
            "for each copy as EC2 would, and pruned nothing (all within retention);",
            "`list` and `status` read the replicas back from their tags alone;",
            f"every fully replicated backup was published to the DR location "
            f"s3://{DR_BUCKET}/{DR_PREFIX}, rewritten to name its replicas; `dr-manifests` "
            "printed the ReadOnly BSL, VSL and VolumeSnapshotClass a DR cluster applies;",
            "the last `sync --dry-run` found nothing left to copy.",
        ),
        "",
        "Next: keep a demo world running and try the commands yourself:",
        "  make demo-world     # prints how to point another shell at it, then:",
        *_next_commands(_newest_restorable(seeded), _snapd_path()),
    ]
    return "\n".join(lines)


def _seed(url: str) -> SeededWorld:
    seeded = seed_realistic_world(bucket=BUCKET, region=SOURCE_REGION, endpoint_url=url)
    print(
        f"Seeded s3://{BUCKET}: {len(seeded.backups)} Velero backups with "
        f"{len(seeded.expected_snapshot_ids)} snapshots to replicate in {SOURCE_REGION} "
        f"(moto at {url})",
        flush=True,
    )
    return seeded


def run_demo(copy_seconds: float) -> int:
    """`make demo`: seed, run the CLI, say what happened and what to try next."""
    started = time.monotonic()
    with moto_server() as world:
        simulator = Ec2Simulator.install()
        simulator.copy_duration = copy_seconds
        try:
            seeded = _seed(world.url)
            env = demo_env(world.env())
            dr = _dr_bucket(world.url)
            _show_dr(dr)
            codes = [
                _snapd("sync", "--dry-run", env=env),
                _snapd("sync", env=env),
            ]
            _show_dr(dr)
            codes += [
                _snapd("list", env=env),
                _snapd("status", env=env),
                _snapd("sync", "--dry-run", env=env),
                _snapd("dr-manifests", env=env),
            ]
            replicas = _replica_count(world.url)
        finally:
            simulator.uninstall()
    print(_summary(seeded, replicas, codes, time.monotonic() - started), flush=True)
    return max(codes)


def world_env_file(env: dict[str, str], path: Path) -> None:
    """`export K=V` lines a shell can `source`: AWS endpoint, fake credentials, settings."""
    wanted = {k: v for k, v in env.items() if k not in ("PATH", "HOME", "LANG", "TERM")}
    path.write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(wanted.items())))


def run_world(copy_seconds: float, env_file: Path) -> int:
    """`make demo-world`: the demo's world, replicated once, kept running until Ctrl-C."""
    with (
        moto_server() as world,
        tempfile.TemporaryDirectory(prefix="snapd-demo-kube-") as kube_dir,
        fake_kube_server(kube_dir) as kube,
    ):
        simulator = Ec2Simulator.install()
        simulator.copy_duration = copy_seconds
        try:
            seeded = _seed(world.url)
            env = {**demo_env(world.env()), **kube.env(), "SNAPD_LOG_LEVEL": "warning"}
            _dr_bucket(world.url)
            code = _snapd("sync", env=env)
            world_env_file(env, env_file)
            snapd = _snapd_path()
            print(
                "\n".join(
                    [
                        "",
                        f"The demo world is running: moto at {world.url} (S3 and EC2, "
                        f"{SOURCE_REGION} → {DESTINATION_REGION}), a Kubernetes API at "
                        f"{kube.url}, {_replica_count(world.url)} replicas. Ctrl-C stops it.",
                        "In another shell:",
                        f"  source {env_file}",
                        *_next_commands(_newest_restorable(seeded), snapd),
                        f"  kubectl --kubeconfig {kube.kubeconfig_path} get pv  # with kubectl",
                    ]
                ),
                flush=True,
            )
            _wait_for_stop()
        finally:
            simulator.uninstall()
            env_file.unlink(missing_ok=True)
    print("Demo world stopped.", flush=True)
    return code


def _wait_for_stop() -> None:
    """Until Ctrl-C or SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(3600):
            pass
    except KeyboardInterrupt:
        return


def main(argv: list[str] | None = None) -> int:
    """`make demo` (the default) or `make demo-world` (`--keep-running`)."""
    parser = argparse.ArgumentParser(prog="python -m simworld.demo", description=__doc__)
    parser.add_argument(
        "--keep-running", action="store_true", help="replicate once, then keep the world up"
    )
    parser.add_argument("--copy-seconds", type=float, default=COPY_SECONDS)
    parser.add_argument("--env-file", type=Path, default=Path(".demo-world.env"))
    args = parser.parse_args(argv)
    if args.keep_running:
        return run_world(args.copy_seconds, args.env_file.resolve())
    return run_demo(args.copy_seconds)


if __name__ == "__main__":
    sys.exit(main())
