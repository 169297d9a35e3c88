"""argv → Settings → command → exit code. Nothing else lives here.

Exit codes (every command): 0 done; 1 the work failed (an AWS/S3/Kubernetes call after
retries, a copy, prune or restore step, `sync --timeout`, a held-back prune pass); 2 usage
or configuration error, found before any change. stdout carries only the command's output;
logs and progress go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from snapd import __version__, dr, inventory, render
from snapd.aws import AwsClients
from snapd.config import Settings, load_settings, parse_duration
from snapd.copier import Tracked
from snapd.errors import AwsError, ConfigError, SnapdError
from snapd.logs import configure_logging
from snapd.models import Plan
from snapd.restore import cmd_restore
from snapd.service import Engine, SyncOutcome, run_daemon, status_report, sync_holding_lease
from snapd.velero import BucketLocation

log = structlog.get_logger("snapd.cli")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so usage errors are one line and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(f"{self.prog}: {message}")


def _settings_options() -> _Parser:
    """Every setting as `--kebab-name`, accepted before or after the subcommand."""
    common = _Parser(add_help=False)
    common.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="YAML file of settings (keys as in SNAPD_* without the prefix)",
    )
    group = common.add_argument_group("settings (also SNAPD_* environment, --config YAML)")
    for name, field in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        if field.annotation is bool:
            group.add_argument(
                flag,
                dest=f"setting__{name}",
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=field.description,
            )
        else:
            group.add_argument(
                flag,
                dest=f"setting__{name}",
                metavar="VALUE",
                default=argparse.SUPPRESS,
                help=field.description,
            )
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _settings_options()
    parser = _Parser(
        prog="snapd",
        parents=[common],
        description="Cross-region DR copies of Velero's EBS snapshots, and restores.",
    )
    parser.add_argument("--version", action="version", version=f"snapd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    commands.add_parser("run", parents=[common], help="the daemon")

    sync = commands.add_parser("sync", parents=[common], help="one cycle, wait for copies, prune")
    sync.add_argument("--dry-run", action="store_true", help="plan only; change nothing")
    sync.add_argument("--force", action="store_true", help="prune even when the guard holds back")
    sync.add_argument("--timeout", default="12h", help="longest wait for copies (default 12h)")
    sync.add_argument("-o", "--output", choices=("text", "json"), default="text")

    lister = commands.add_parser("list", parents=[common], help="the replicas, from their tags")
    lister.add_argument(
        "-o", "--output", choices=("table", "wide", "json", "yaml"), default="table"
    )
    lister.add_argument("--backup")
    lister.add_argument("--namespace")
    lister.add_argument("--pvc")
    lister.add_argument("--schedule")

    status = commands.add_parser("status", parents=[common], help="are we covered?")
    status.add_argument("-o", "--output", choices=("text", "json"), default="text")

    restore = commands.add_parser(
        "restore", parents=[common], help="replica → EBS volume → PersistentVolume → pvc.yaml"
    )
    restore.add_argument("backup")
    restore.add_argument("pvc", nargs="?")
    restore.add_argument("--all", action="store_true", help="every PVC of the backup")
    restore.add_argument("-n", "--namespace")
    restore.add_argument("--target-region")
    restore.add_argument("--availability-zone")
    restore.add_argument("--target-namespace")
    restore.add_argument("--target-pvc")
    restore.add_argument("--kms-key-id")
    restore.add_argument("--completion-duration", help="time-based copy-back, e.g. 15m, 2h")
    restore.add_argument("--keep-snapshot", action="store_true")
    restore.add_argument("--context", help="kubeconfig context")
    restore.add_argument("--output", default="pvc.yaml", help="where to write the proposed PVC")
    restore.add_argument("--force", action="store_true", help="overwrite the output file")
    restore.add_argument("--dry-run", action="store_true")

    manifests = commands.add_parser(
        "dr-manifests",
        parents=[common],
        help="the DR cluster's ReadOnly BSL, VSLs and VolumeSnapshotClasses (reads the DR bucket)",
    )
    manifests.add_argument("--velero-namespace", default="velero")
    manifests.add_argument("--bsl-name", default="snapd-dr")
    return parser


def parse(argv: Sequence[str]) -> tuple[argparse.Namespace, Settings]:
    """Arguments and effective settings, or ConfigError."""
    args = build_parser().parse_args(argv)
    flags = {
        k.removeprefix("setting__"): v for k, v in vars(args).items() if k.startswith("setting__")
    }
    config = getattr(args, "config", None)
    settings = load_settings(flags, Path(config) if config else None)
    return args, settings


REQUIRED = {
    "run": ("velero_bucket", "schedules", "source_region", "destination_region"),
    "sync": ("velero_bucket", "schedules", "source_region", "destination_region"),
    "status": ("velero_bucket", "schedules", "source_region", "destination_region"),
    "list": ("destination_region",),
    "restore": ("source_region", "destination_region"),
    "dr-manifests": ("destination_region", "dr_bucket"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args, settings = parse(argv)
        settings.require(*REQUIRED[args.command])
        settings.check_dr_location()
        if not settings.scope and args.command != "dr-manifests":
            raise ConfigError(
                "missing setting cluster (SNAPD_CLUSTER, --cluster) or velero_bucket: "
                "the scope of the replicas is needed"
            )
        configure_logging(settings.log_format, settings.log_level)
        code = asyncio.run(dispatch(args, settings))
    except ConfigError as error:
        print(f"snapd: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_FAILED
    return code


async def dispatch(args: argparse.Namespace, settings: Settings) -> int:
    """Run one command; typed errors become exit codes with one clear line."""
    log.info("command.started", command=args.command, settings=settings.public_view())
    try:
        if args.command == "run":
            await run_daemon(settings)
            return EXIT_OK
        if args.command == "sync":
            return await cmd_sync(args, settings)
        if args.command == "list":
            return await cmd_list(args, settings)
        if args.command == "status":
            return await cmd_status(args, settings)
        if args.command == "restore":
            return await cmd_restore(args, settings)
        if args.command == "dr-manifests":
            return await cmd_dr_manifests(args, settings)
    except ConfigError:
        raise
    except AwsError as error:
        log.error(
            "command.failed",
            command=args.command,
            operation=error.operation,
            code=error.code,
            error=error.message,
        )
        print(f"snapd {args.command}: {error}", file=sys.stderr)
        return EXIT_FAILED
    except SnapdError as error:
        print(f"snapd {args.command}: {error}", file=sys.stderr)
        return EXIT_FAILED
    raise ConfigError(f"unknown command {args.command}")


class _Progress:
    """Copy progress on a terminal's stderr; off a terminal the copier's log lines suffice.

    Each line shows copies done of the total known so far (completed + queued + pending),
    and for a pending copy EC2's own `Progress` percentage.
    """

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.total: Callable[[], int] = lambda: 0
        self.done = 0

    def copy_event(self, event: str, copy: Tracked) -> None:
        self.done += event == "completed"
        if self.tty:
            detail = f" {copy.progress}%" if event == "progress" else ""
            print(
                f"[{self.done}/{self.total()}] {event} {copy.label}{detail}",
                file=sys.stderr,
                flush=True,
            )


async def cmd_sync(args: argparse.Namespace, settings: Settings) -> int:
    try:
        timeout = parse_duration(args.timeout).total_seconds()
    except ValueError as error:
        raise ConfigError(f"invalid --timeout: {error}") from error
    async with AwsClients() as aws:
        progress = _Progress()
        engine = Engine(settings, aws, events=progress)
        progress.total = lambda: progress.done + engine.copier.backlog
        await engine.check_dr()
        if args.dry_run:
            result = await engine.plan_cycle()
            _print_plan(result.plan, args.output, settings)
            return EXIT_OK
        outcome = await sync_holding_lease(engine, force=args.force, wait_seconds=timeout)
    if args.output == "json":
        print(
            json.dumps(
                {**render.plan_json(outcome.plan), "result": _outcome_json(outcome)}, indent=2
            )
        )
    else:
        sys.stdout.write(_outcome_text(outcome))
    return EXIT_OK if outcome.ok else EXIT_FAILED


def _outcome_json(outcome: SyncOutcome) -> dict[str, Any]:
    report = outcome.prune
    return {
        "copies_started": outcome.copies_started,
        "copies_completed": outcome.copies_completed,
        "copies_failed": outcome.failed,
        "copies_timed_out": [t.replica_id for t in outcome.timed_out],
        "pruned": report.deleted if report else [],
        "prune_failed": report.failed if report else {},
        "prune_held_back": report.held_back if report else 0,
        "dr_published": outcome.dr_published,
        "dr_removed": outcome.dr_removed,
        "dr_failed": outcome.dr_failed,
        "ok": outcome.ok,
    }


def _outcome_text(outcome: SyncOutcome) -> str:
    report = outcome.prune
    lines = [f"copies: {outcome.copies_completed} completed of {outcome.copies_started} started"]
    lines += [f"copy failed: {line}" for line in outcome.failed]
    lines += [
        f"copy still pending at --timeout: {t.label} ({t.replica_id}, {t.progress}%)"
        for t in outcome.timed_out
    ]
    if outcome.timed_out:
        lines.append("prune skipped: copies were still pending")
    if report is not None:
        lines.append(f"pruned: {len(report.deleted)}")
        lines += [f"prune failed: {sid}: {reason}" for sid, reason in report.failed.items()]
        if report.held_back:
            lines.append(
                f"prune held back: {report.held_back} replicas would be deleted, more than "
                "prune_max_fraction allows; check retention settings and Velero, then rerun "
                "with --force"
            )
    if outcome.dr_published or outcome.dr_removed or outcome.dr_failed:
        lines.append(
            f"DR location: {len(outcome.dr_published)} published, {len(outcome.dr_removed)} removed"
        )
    lines += [f"DR write failed: {name}: {reason}" for name, reason in outcome.dr_failed.items()]
    return "\n".join(lines) + "\n"


def _print_plan(plan: Plan, fmt: str, settings: Settings) -> None:
    if fmt == "json":
        print(json.dumps(render.plan_json(plan), indent=2))
    else:
        region = settings.destination_region or ""
        sys.stdout.write(render.plan_text(plan, destination_region=region))


async def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    async with AwsClients() as aws:
        replicas = await inventory.list_replicas(
            aws, settings.destination_region or "", settings.scope or ""
        )
    wanted = {
        "backup": args.backup,
        "namespace": args.namespace,
        "pvc": args.pvc,
        "schedule": args.schedule,
    }
    selected = [
        r for r in replicas if all(v is None or getattr(r, k) == v for k, v in wanted.items())
    ]
    selected.sort(
        key=lambda r: (
            r.backup_time or datetime.min.replace(tzinfo=UTC),
            r.namespace or "",
            r.pvc or "",
            r.snapshot_id,
        )
    )
    sys.stdout.write(render.replicas_output(selected, args.output))
    return EXIT_OK


async def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    async with AwsClients() as aws:
        engine = Engine(settings, aws)
        result = await engine.plan_cycle()
        dr_status: dict[str, Any] | None = None
        if engine.dr is not None:
            await engine.dr.survey(result.discovery, result.replicas, result.plan)
            dr_status = engine.dr.status(settings.schedules)
    dr_errors = engine.dr.errors if engine.dr is not None else ()
    status = status_report(result, settings, datetime.now(UTC), dr_status, dr_errors)
    if args.output == "json":
        print(json.dumps(status, indent=2))
    else:
        sys.stdout.write(render.status_text(status))
    return EXIT_OK


async def cmd_dr_manifests(args: argparse.Namespace, settings: Settings) -> int:
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
        namespace=args.velero_namespace,
        bsl_name=args.bsl_name,
    )
    sys.stdout.write(render.yaml_stream(manifests))
    if not published:
        print(
            f"snapd dr-manifests: no published backup in {settings.dr_root} yet; "
            "the BackupStorageLocation alone is printed",
            file=sys.stderr,
        )
    return EXIT_OK
