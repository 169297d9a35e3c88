"""`make demo`: snapd's main job on a local world — no AWS account, no network.

Starts moto in server mode on loopback with the EC2 simulator (copies stay pending for a
few seconds, with rising progress, under the 20-copy limit), seeds a realistic Velero
bucket (a week of daily backups over four PVCs in three namespaces, native and CSI, one
PartiallyFailed, one corrupt, one in flight, decoys) with matching source snapshots, then
runs the real `snapd` CLI against it: `sync --dry-run`, `sync`, `list`, `status`. A DR
location (a bucket in the destination region) fills up as backups are fully replicated, and
`snapd dr-manifests` ends the demo with what a DR cluster's Velero would apply.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from simworld.ec2sim import Ec2Simulator
from simworld.moto_server import moto_server
from simworld.velero_bucket import seed_realistic_world

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


def main() -> int:
    """Seed the world, then run the CLI against it; exit non-zero if a step failed."""
    started = time.monotonic()
    with moto_server() as world:
        simulator = Ec2Simulator.install()
        simulator.copy_duration = COPY_SECONDS
        try:
            seeded = seed_realistic_world(
                bucket=BUCKET, region=SOURCE_REGION, endpoint_url=world.url
            )
            print(
                f"Seeded s3://{BUCKET}: {len(seeded.backups)} Velero backups with "
                f"{len(seeded.expected_snapshot_ids)} snapshots to replicate in {SOURCE_REGION} "
                f"(moto at {world.url}; copies take {COPY_SECONDS:.0f}s each)",
                flush=True,
            )
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
        finally:
            simulator.uninstall()
    print(f"\nDemo finished in {time.monotonic() - started:.0f}s.", flush=True)
    return max(codes)


if __name__ == "__main__":
    sys.exit(main())
