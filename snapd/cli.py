"""argv → Settings → command → exit code. Nothing else lives here.

Exit codes (every command): 0 done; 1 the work failed (an AWS/S3/Kubernetes call after
retries, a copy, prune or restore step, `sync --timeout`, a held-back prune pass); 2 usage
or configuration error, found before any change. stdout carries only the command's output;
logs and progress go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TextIO

import structlog

from snapd import __version__, dr, inventory, locks, render
from snapd.aws import AwsClients
from snapd.completion import SHELLS
from snapd.completion import read_parser as read_completion
from snapd.completion import script as completion_script
from snapd.config import (
    ConfigFile,
    Settings,
    build_settings,
    parse_duration,
    read_config_file,
    settings_view,
)
from snapd.copier import Tracked
from snapd.errors import AwsError, ConfigError, SnapdError, UsageError
from snapd.logs import configure_logging, settings_field
from snapd.restore import cmd_restore
from snapd.service import (
    CycleResult,
    Engine,
    SyncOutcome,
    run_daemon,
    status_report,
    sync_holding_lease,
)
from snapd.velero import BucketLocation

log = structlog.get_logger("snapd.cli")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


SETTINGS_POINTER = (
    "Settings (bucket, regions, schedules, limits…) come from SNAPD_* environment variables, "
    "a --config FILE, or --kebab-case flags before or after the command; `snapd settings` "
    "lists every one with its value and where it came from."
)


class _Formatter(argparse.HelpFormatter):
    """Wraps prose to the terminal; keeps indented lines (the examples) exactly as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        lines: list[str] = []
        for line in text.splitlines():
            if line.startswith(" ") or not line:
                lines.append(indent + line)
            else:
                lines.append(
                    textwrap.fill(line, width, initial_indent=indent, subsequent_indent=indent)
                )
        return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so usage errors are one line and exit 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see `{self.prog} --help`)")


def _unrecognized(parser: argparse.ArgumentParser, command: str, extra: Sequence[str]) -> NoReturn:
    """One line for arguments the command does not take, with the flag it likely meant."""
    prog = f"{parser.prog} {command}"
    known = [
        option
        for sub in read_completion(parser)[1]
        if sub.name == command
        for o in sub.options
        for option in o.names
    ]
    hint = ""
    flag = next((e.split("=")[0] for e in extra if e.startswith("--")), None)
    close = difflib.get_close_matches(flag, known, n=1) if flag else []
    if close:
        hint = f"; did you mean {close[0]}?"
    raise UsageError(
        f"{prog}: unrecognized arguments: {' '.join(extra)}{hint} (see `{prog} --help`)"
    )


def _settings_options() -> _Parser:
    """Every setting as `--kebab-name`, accepted before or after the subcommand.

    Their help is hidden from each command's `--help` (it would bury the command's own
    flags under every setting); `snapd settings` and the README list them in one place.
    """
    common = _Parser(add_help=False)
    common.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="YAML file of settings (keys as in SNAPD_* without the prefix, lower-case)",
    )
    for name, info in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        if info.annotation is bool:
            common.add_argument(
                flag,
                dest=f"setting__{name}",
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=argparse.SUPPRESS,
            )
        else:
            common.add_argument(
                flag,
                dest=f"setting__{name}",
                metavar="VALUE",
                default=argparse.SUPPRESS,
                help=argparse.SUPPRESS,
            )
    return common


def _command(
    commands: Any, name: str, common: _Parser, *, summary: str, description: str, examples: str
) -> _Parser:
    """A subcommand whose --help has its own flags, a few examples and the settings pointer."""
    parser: _Parser = commands.add_parser(
        name,
        parents=[common],
        help=summary,
        description=description,
        epilog=f"examples:\n{examples}\n\n{SETTINGS_POINTER}",
    )
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: every subcommand, its flags, and the settings flags."""
    common = _settings_options()
    parser = _Parser(
        prog="snapd",
        parents=[common],
        description="Cross-region DR copies of Velero's EBS snapshots, and restores from them.",
        epilog=f"{SETTINGS_POINTER}\nRun `snapd COMMAND --help` for a command's own flags.",
    )
    parser.add_argument("--version", action="version", version=f"snapd {__version__}")
    commands = parser.add_subparsers(
        dest="command", required=True, parser_class=_Parser, metavar="COMMAND"
    )
    _command(
        commands,
        "run",
        common,
        summary="the daemon: copy and prune continuously, serve metrics",
        description=(
            "The daemon: a cycle every sync_interval (discover → plan → copy), a prune pass "
            "every prune_interval, /metrics /healthz /readyz on metrics_port. With "
            "leader_election on, it works only while it holds the Lease. SIGTERM or SIGINT "
            "stop new work, let running calls finish within drain_timeout, and exit 0; "
            "copies keep running inside AWS and the next start adopts them."
        ),
        examples="  snapd run --config /etc/snapd/snapd.yaml\n  SNAPD_LOG_FORMAT=json snapd run",
    )
    _add_sync(commands, common)
    _add_list(commands, common)
    _add_status(commands, common)
    _add_restore(commands, common)
    _add_dr_manifests(commands, common)
    settings = _command(
        commands,
        "settings",
        common,
        summary="every setting, its value and where it comes from",
        description=(
            "Every setting: its environment variable, flag, default, the value snapd would "
            "use now and where that value comes from (flag, environment, --config file or "
            "default). Needs no setting itself."
        ),
        examples="  snapd settings\n  snapd settings --config snapd.yaml -o yaml",
    )
    settings.add_argument(
        "-o",
        "--output",
        choices=("table", "json", "yaml"),
        default="table",
        help="output format (default: table)",
    )
    _command(
        commands,
        "version",
        common,
        summary="print snapd's version",
        description="Print snapd's version (also `snapd --version`).",
        examples="  snapd version",
    )
    completion = _command(
        commands,
        "completion",
        common,
        summary="print a shell completion script (bash, zsh)",
        description="Print a completion script for bash or zsh, generated from this parser.",
        examples=(
            "  source <(snapd completion bash)                      # bash, this shell\n"
            "  snapd completion bash > ~/.local/share/bash-completion/completions/snapd\n"
            '  snapd completion zsh > "${fpath[1]}/_snapd"            # zsh'
        ),
    )
    completion.add_argument("shell", choices=SHELLS, help="the shell: bash or zsh")
    return parser


def _add_sync(commands: Any, common: _Parser) -> None:
    sync = _command(
        commands,
        "sync",
        common,
        summary="one cycle now: copy what is missing, wait, prune",
        description=(
            "One cycle now: discover Velero's snapshots, copy what has no replica, wait until "
            "every pending copy of the scope completes (bounded by --timeout), then prune. "
            "Exit 0 done, 1 a copy or prune failed or --timeout hit, 2 bad configuration. "
            "Ctrl-C exits 130; copies already started continue inside AWS and the next sync "
            "or run adopts them."
        ),
        examples=(
            "  snapd sync --dry-run                     # what would be copied, pruned, skipped\n"
            "  snapd sync --dry-run -o json | jq '.copy | length'\n"
            "  snapd sync --timeout 2h -o yaml"
        ),
    )
    sync.add_argument(
        "--dry-run", action="store_true", help="discover and plan only; change nothing"
    )
    sync.add_argument(
        "--force",
        action="store_true",
        help="prune even when the prune guard would hold the pass back",
    )
    sync.add_argument(
        "--timeout",
        default="12h",
        metavar="DURATION",
        help="longest wait for the copies, e.g. 90m, 2h (default: 12h)",
    )
    sync.add_argument(
        "-o",
        "--output",
        choices=("text", "json", "yaml"),
        default="text",
        help="output format (default: text)",
    )


def _add_list(commands: Any, common: _Parser) -> None:
    lister = _command(
        commands,
        "list",
        common,
        summary="the replicas, from their tags (no S3 read)",
        description=(
            "The replicas in the destination region, read from their tags alone (the Velero "
            "bucket is not read, so this works with the source region down). Needs "
            "destination_region and the scope (cluster, or velero_bucket)."
        ),
        examples=(
            "  snapd list -n shop\n"
            "  snapd list --backup daily-20250101020000 -o wide\n"
            "  snapd list --pvc db -o json | jq -r '.[].snapshot_id'"
        ),
    )
    lister.add_argument(
        "-o",
        "--output",
        choices=("table", "wide", "json", "yaml"),
        default="table",
        help="output format (default: table)",
    )
    lister.add_argument("--backup", metavar="NAME", help="only replicas of this Velero backup")
    lister.add_argument(
        "-n", "--namespace", metavar="NAMESPACE", help="only PVCs of this namespace"
    )
    lister.add_argument("--pvc", metavar="NAME", help="only replicas of this PVC")
    lister.add_argument("--schedule", metavar="NAME", help="only replicas of this Velero schedule")


def _add_status(commands: Any, common: _Parser) -> None:
    status = _command(
        commands,
        "status",
        common,
        summary="are we covered? per schedule and per PVC",
        description=(
            "Are we covered? Per watched schedule: its newest backup and how many of its "
            "volumes have a completed replica; per PVC: the recovery point (backup time of "
            "its newest completed replica) and its age; copies in flight and the backlog. "
            "Warns about watched schedules that have no backup in the bucket."
        ),
        examples="  snapd status\n  snapd status -n shop\n  snapd status -o json | jq '.pvcs'",
    )
    status.add_argument(
        "-o",
        "--output",
        choices=("text", "json", "yaml"),
        default="text",
        help="output format (default: text)",
    )
    status.add_argument(
        "-n", "--namespace", metavar="NAMESPACE", help="only PVCs of this namespace"
    )


def _add_dr_manifests(commands: Any, common: _Parser) -> None:
    manifests = _command(
        commands,
        "dr-manifests",
        common,
        summary="the DR cluster's ReadOnly BSL, VSLs and VolumeSnapshotClasses",
        description=(
            "Print, as a YAML stream for `kubectl apply -f -`, what a Velero in the "
            "destination region needs to restore from the DR location: a ReadOnly "
            "BackupStorageLocation, the VolumeSnapshotLocations and VolumeSnapshotClasses the "
            "published backups name. Reads only the DR bucket (works with the source region "
            "down). Needs dr_bucket and destination_region."
        ),
        examples=(
            "  snapd dr-manifests | kubectl apply -f -\n"
            "  snapd dr-manifests --velero-namespace velero --bsl-name snapd-dr > dr.yaml"
        ),
    )
    manifests.add_argument(
        "--velero-namespace", default="velero", help="Velero's namespace (default: velero)"
    )
    manifests.add_argument(
        "--bsl-name",
        default="snapd-dr",
        help="name of the BackupStorageLocation (default: snapd-dr)",
    )


def _add_restore(commands: Any, common: _Parser) -> None:
    restore = _command(
        commands,
        "restore",
        common,
        summary="a replica back as an EBS volume, a PV and a proposed PVC",
        description=(
            "Bring a replica back: copy it back to the target region (the source region by "
            "default), create the EBS volume, create a PersistentVolume claimed by the target "
            "PVC in the current kube context (printed first), and write the proposed PVC to "
            "--pvc-file. Re-running a restore reuses what it made. Exit 0 done or already "
            "restored, 1 a PVC failed, 2 bad arguments. Ctrl-C exits 130; a copy-back already "
            "started continues inside AWS and the same restore picks it up."
        ),
        examples=(
            "  snapd restore daily-20250101020000 db -n shop --dry-run\n"
            "  snapd restore daily-20250101020000 db -n shop --target-pvc db-restored "
            "--pvc-file db-restored.yaml\n"
            "  snapd restore daily-20250101020000 --all --target-region eu-central-1 "
            "--context dr-cluster"
        ),
    )
    restore.add_argument("backup", metavar="BACKUP", help="Velero backup name (see `snapd list`)")
    restore.add_argument(
        "pvc", nargs="?", metavar="PVC", help="PVC to restore (omit it with --all)"
    )
    restore.add_argument("--all", action="store_true", help="every PVC of the backup")
    restore.add_argument(
        "-n",
        "--namespace",
        metavar="NAMESPACE",
        help="namespace of the PVC (needed when several namespaces have a PVC of that name)",
    )
    restore.add_argument(
        "--target-region",
        metavar="REGION",
        help="source region (default; the replica is copied back) or the destination "
        "region (restore there, no copy)",
    )
    restore.add_argument(
        "--availability-zone",
        metavar="ZONE",
        help="zone of the new volume (default: the recorded zone, or its letter in the "
        "destination region)",
    )
    restore.add_argument(
        "--target-namespace",
        metavar="NAMESPACE",
        help="namespace of the PVC to create (default: the original)",
    )
    restore.add_argument(
        "--target-pvc",
        metavar="NAME",
        help="name of the PVC to create (default: the original; use another to restore beside it)",
    )
    restore.add_argument(
        "--kms-key-id", metavar="KEY", help="KMS key for the copy-back (default: AWS's default key)"
    )
    restore.add_argument(
        "--completion-duration",
        metavar="DURATION",
        help="time-based copy-back: 15m to 48h in 15-minute steps (default: a standard copy)",
    )
    restore.add_argument(
        "--keep-snapshot",
        action="store_true",
        help="keep the copy-back snapshot once the volume exists (default: delete it)",
    )
    restore.add_argument(
        "--context",
        metavar="CONTEXT",
        help="kubeconfig context to create the PV in (default: the current context)",
    )
    restore.add_argument(
        "--pvc-file",
        "--output",
        dest="output",
        metavar="FILE",
        default="pvc.yaml",
        help="where to write the proposed PVC (default: pvc.yaml; never overwritten "
        "without --force)",
    )
    restore.add_argument("--force", action="store_true", help="overwrite the PVC file")
    restore.add_argument(
        "--dry-run",
        action="store_true",
        help="print what would be made, and the manifests; change nothing",
    )


@dataclass(frozen=True)
class Invocation:
    """The parsed command line, the effective settings, and what they came from."""

    args: argparse.Namespace
    settings: Settings
    flags: dict[str, Any]
    config: ConfigFile | None


def parse_invocation(argv: Sequence[str]) -> Invocation:
    """Arguments, effective settings and their origins, or ConfigError."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        _unrecognized(parser, args.command, extra)
    flags = {
        k.removeprefix("setting__"): v for k, v in vars(args).items() if k.startswith("setting__")
    }
    path = getattr(args, "config", None)
    config = read_config_file(Path(path)) if path else None
    return Invocation(args, build_settings(flags, config), flags, config)


def parse(argv: Sequence[str]) -> tuple[argparse.Namespace, Settings]:
    """Arguments and effective settings, or ConfigError."""
    invocation = parse_invocation(argv)
    return invocation.args, invocation.settings


REQUIRED = {
    "run": ("velero_bucket", "schedules", "source_region", "destination_region"),
    "sync": ("velero_bucket", "schedules", "source_region", "destination_region"),
    "status": ("velero_bucket", "schedules", "source_region", "destination_region"),
    "list": ("destination_region",),
    "restore": ("source_region", "destination_region"),
    "dr-manifests": ("destination_region", "dr_bucket"),
}

#: Said when Ctrl-C stops a command that may have started work inside AWS.
INTERRUPTED = {
    "sync": (
        "interrupted; copies already started continue inside AWS, and the next `snapd sync` "
        "or `snapd run` adopts them (nothing is copied twice)"
    ),
    "restore": (
        "interrupted; a copy-back or volume already started continues inside AWS, and "
        "running the same restore again picks it up where it is"
    ),
}
EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = None
    try:
        invocation = parse_invocation(argv)
        args, settings = invocation.args, invocation.settings
        command = args.command
        local = _local_command(invocation)
        if local is not None:
            return local
        settings.require(*REQUIRED[args.command])
        settings.check_dr_location()
        if not settings.scope and args.command != "dr-manifests":
            raise ConfigError(
                "missing setting cluster (SNAPD_CLUSTER, --cluster) or velero_bucket: "
                "the scope of the replicas is needed"
            )
        configure_logging(settings.log_format, settings.log_level)
        code = asyncio.run(dispatch(args, settings))
    except UsageError as error:
        print(error, file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as error:
        print(f"snapd{' ' + command if command else ''}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        if command == "run":  # the daemon's contract: SIGINT is a normal stop
            return EXIT_OK
        prog = f"snapd {command}" if command else "snapd"
        said = INTERRUPTED.get(command or "", "interrupted")
        print(f"\n{prog}: {said}", file=sys.stderr)
        return EXIT_INTERRUPTED
    return code


def _local_command(invocation: Invocation) -> int | None:
    """Commands that need no AWS and no setting: settings, version, completion."""
    args = invocation.args
    if args.command == "version":
        print(f"snapd {__version__}")
        return EXIT_OK
    if args.command == "completion":
        sys.stdout.write(completion_script(build_parser(), args.shell))
        return EXIT_OK
    if args.command == "settings":
        rows = settings_view(invocation.settings, invocation.flags, invocation.config)
        sys.stdout.write(render.settings_output(rows, args.output))
        return EXIT_OK
    return None


async def dispatch(args: argparse.Namespace, settings: Settings) -> int:
    """Run one command; typed errors become exit codes with one clear line."""
    log.info(
        "command.started",
        command=args.command,
        version=__version__,
        **settings_field(settings.public_view()),
    )
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
            detail = f" {copy.progress}%" if event == "progress" else ""
            print(
                f"[{self.done}/{self.total}] {event} {copy.label}{detail}",
                file=self.stream,
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
        progress.backlog = lambda: engine.copier.backlog
        await engine.check_dr()
        if args.dry_run:
            result = await engine.plan_cycle()
            _print_plan(result, args.output, settings)
            return EXIT_OK
        outcome = await sync_holding_lease(engine, force=args.force, wait_seconds=timeout)
    warnings = [w.as_dict() for w in outcome.warnings]
    if args.output in ("json", "yaml"):
        document = {
            **render.plan_json(outcome.plan),
            "settings_warnings": warnings,
            "result": _outcome_json(outcome),
        }
        sys.stdout.write(render.structured(document, args.output))
    else:
        lines = render.warning_lines(warnings)
        sys.stdout.write("\n".join(lines) + ("\n" if lines else "") + _outcome_text(outcome))
    return EXIT_OK if outcome.ok else EXIT_FAILED


def _outcome_json(outcome: SyncOutcome) -> dict[str, Any]:
    report = outcome.prune
    return {
        "copies_started": outcome.copies_started,
        "copies_completed": outcome.copies_completed,
        "copies_failed": outcome.failed,
        "copies_timed_out": [
            u.replica_id for u in outcome.unprotected if outcome.timed_out and u.state == "pending"
        ],
        "unprotected": [
            {
                "source_snapshot_id": u.source_id,
                "label": u.label,
                "state": u.state,
                "replica_id": u.replica_id,
                "reason": u.reason,
            }
            for u in outcome.unprotected
        ],
        "pruned": report.deleted if report else [],
        "prune_failed": report.failed if report else {},
        "prune_held_back": report.held_back if report else 0,
        "prune_refused_locked": report.locked if report else {},
        "dr_published": outcome.dr_published,
        "dr_removed": outcome.dr_removed,
        "dr_failed": outcome.dr_failed,
        "ok": outcome.ok,
    }


def _outcome_text(outcome: SyncOutcome) -> str:
    report = outcome.prune
    lines = [f"copies: {outcome.copies_completed} completed of {outcome.copies_started} started"]
    if outcome.timed_out:
        lines.append("--timeout reached before every copy completed")
    lines += [f"not protected: {u.label} ({u.source_id}): {u.reason}" for u in outcome.unprotected]
    if outcome.timed_out:
        lines.append("prune skipped: copies were still pending")
    if report is not None:
        lines.append(f"pruned: {len(report.deleted)}")
        lines += [f"prune failed: {sid}: {reason}" for sid, reason in report.failed.items()]
        lines += [f"prune refused, locked: {sid}: {why}" for sid, why in report.locked.items()]
        if outcome.plan.kept:
            lines.append(f"kept under a lock: {len(outcome.plan.kept)} (pruned once it expires)")
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


def _print_plan(result: CycleResult, fmt: str, settings: Settings) -> None:
    warnings = [w.as_dict() for w in result.warnings]
    if fmt in ("json", "yaml"):
        document = {**render.plan_json(result.plan), "settings_warnings": warnings}
        sys.stdout.write(render.structured(document, fmt))
    else:
        region = settings.destination_region or ""
        sys.stdout.write(render.plan_text(result.plan, destination_region=region))
        for line in render.warning_lines(warnings):
            print(line)


async def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    async with AwsClients() as aws:
        region = settings.destination_region or ""
        replicas = await inventory.list_replicas(aws, region, settings.scope or "")
        if settings.lock_mode != "off":  # lock look-ups only with locking on
            found = await locks.read_locks(aws, region, [r.snapshot_id for r in replicas])
            replicas = locks.with_locks(replicas, found)
    selected = [
        r
        for r in replicas
        if all(
            wanted is None or wanted == value
            for wanted, value in (
                (args.backup, r.backup),
                (args.namespace, r.volume.namespace),
                (args.pvc, r.volume.pvc),
                (args.schedule, r.schedule),
            )
        )
    ]
    selected.sort(
        key=lambda r: (
            r.backup_time or datetime.min.replace(tzinfo=UTC),
            r.volume.namespace or "",
            r.volume.pvc or "",
            r.snapshot_id,
        )
    )
    sys.stdout.write(render.replicas_output(selected, args.output))
    return EXIT_OK


async def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    async with AwsClients() as aws:
        engine = Engine(settings, aws)
        result = await engine.plan_cycle()
        protected = await engine.recycle_bin.check() if engine.locks.enabled else None
        dr_status: dict[str, Any] | None = None
        if engine.dr is not None:
            await engine.dr.survey(result.discovery, result.replicas, result.plan)
            dr_status = engine.dr.status(settings.schedules)
    dr_errors = engine.dr.errors if engine.dr is not None else ()
    status = status_report(
        result,
        settings,
        datetime.now(UTC),
        recycle_bin_protected=protected,
        dr_status=dr_status,
        dr_errors=dr_errors,
    )
    if args.namespace:
        status["pvcs"] = [p for p in status["pvcs"] if p["namespace"] == args.namespace]
    if args.output in ("json", "yaml"):
        sys.stdout.write(render.structured(status, args.output))
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
