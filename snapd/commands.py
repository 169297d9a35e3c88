"""The AWS-side commands: `sync`, `list`, `status`, `dr-manifests`, from typed requests.

`cli.py` imports this module only when one of these commands runs (it pulls in aioboto3
and the service); each handler takes its request from `snapd.requests`, does the work
through the lower layers, and writes what `render.py` makes of the result: stdout carries
only that output, progress goes to stderr. `restore` lives in `restore.py`, `run` in
`service.py`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

from snapd import dr, inventory, locks, render
from snapd.aws import AwsClients
from snapd.config import Settings
from snapd.copier import Tracked
from snapd.requests import DrManifestsRequest, ListRequest, StatusRequest, SyncRequest
from snapd.service import Engine, start_up_clients, sync_holding_lease
from snapd.velero import BucketLocation

EXIT_OK, EXIT_FAILED = 0, 1


class CopyProgress:
    """Copy progress for a person on a terminal's stderr; off a terminal the logs suffice.

    One line per change of a copy — started, each quarter of EC2's `Progress` passed,
    completed, failed — never one per poll. The `[done/total]` counter only moves forward:
    the total is the most copies known at once (completed + queued + pending).
    """

    STEPS = (25, 50, 75)

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.backlog: Callable[[], int] = lambda: 0
        self.done = 0
        self.total = 0
        self._shown: dict[str, int] = {}

    def copy_event(self, event: str, copy: Tracked) -> None:
        self.done += event == "completed"
        self.total = max(self.total, self.done + self.backlog())
        if event == "progress":
            step = max((s for s in self.STEPS if copy.progress >= s), default=0)
            if step <= self._shown.get(copy.replica_id, 0):
                return
            self._shown[copy.replica_id] = step
        if self.tty:
            line = render.copy_progress_line(self.done, self.total, event, copy)
            self.stream.write(line)
            self.stream.flush()


async def cmd_sync(request: SyncRequest, settings: Settings) -> int:
    async with AwsClients() as aws:
        progress = CopyProgress()
        engine = Engine(settings, aws, events=progress)
        progress.backlog = lambda: engine.copier.backlog
        await engine.check_dr()
        await aws.settle(start_up_clients(settings))
        if request.dry_run:
            result = await engine.plan_cycle()
            warnings = [w.as_dict() for w in result.warnings]
            region = settings.destination_region or ""
            sys.stdout.write(render.plan_output(result.plan, warnings, request.output, region))
            return EXIT_OK
        outcome = await sync_holding_lease(
            engine, force=request.force, wait_seconds=request.timeout_seconds
        )
    warnings = [w.as_dict() for w in outcome.warnings]
    sys.stdout.write(render.sync_output(outcome, warnings, request.output))
    return EXIT_OK if outcome.ok else EXIT_FAILED


async def cmd_list(request: ListRequest, settings: Settings) -> int:
    async with AwsClients() as aws:
        region = settings.destination_region or ""
        replicas = await inventory.list_replicas(aws, region, settings.scope or "")
        if settings.lock_mode != "off":  # lock look-ups only with locking on
            found = await locks.read_locks(aws, region, [r.snapshot_id for r in replicas])
            replicas = locks.with_locks(replicas, found)
    selected = [r for r in replicas if request.matches(r)]
    selected.sort(
        key=lambda r: (
            r.backup_time or datetime.min.replace(tzinfo=UTC),
            r.volume.namespace or "",
            r.volume.pvc or "",
            r.snapshot_id,
        )
    )
    sys.stdout.write(render.replicas_output(selected, request.output))
    return EXIT_OK


async def cmd_status(request: StatusRequest, settings: Settings) -> int:
    async with AwsClients() as aws:
        engine = Engine(settings, aws)
        result = await engine.plan_cycle()
        protected = await engine.recycle_bin.check() if engine.locks.enabled else None
        dr_status: dict[str, Any] | None = None
        if engine.dr is not None:
            await engine.dr.survey(result.discovery, result.replicas, result.plan)
            dr_status = engine.dr.status(settings.schedules)
    dr_errors = engine.dr.errors if engine.dr is not None else ()
    status = render.status_report(
        result,
        settings,
        datetime.now(UTC),
        recycle_bin_protected=protected,
        dr_status=dr_status,
        dr_errors=dr_errors,
    )
    if request.namespace:
        status["pvcs"] = [p for p in status["pvcs"] if p["namespace"] == request.namespace]
    if request.output in ("json", "yaml"):
        sys.stdout.write(render.structured(status, request.output))
    else:
        sys.stdout.write(render.status_text(status))
    return EXIT_OK


async def cmd_dr_manifests(request: DrManifestsRequest, settings: Settings) -> int:
    """Print what the DR cluster needs, from the DR bucket alone (the source may be gone)."""
    region = settings.destination_region or ""
    location = BucketLocation(settings.dr_bucket or "", settings.dr_prefix, region)
    async with AwsClients() as aws:
        published = await dr.read_published(aws, location)
    manifests = dr.dr_manifests(
        published,
        bucket=location.bucket,
        prefix=location.prefix,
        region=region,
        namespace=request.velero_namespace,
        bsl_name=request.bsl_name,
    )
    sys.stdout.write(render.yaml_stream(manifests))
    if not published:
        sys.stderr.write(render.dr_manifests_alone(settings.dr_root))
    return EXIT_OK
