"""argv → Settings → a typed request → the command → exit code. Nothing else lives here.

Exit codes (every command): 0 done; 1 the work failed (an AWS/S3/Kubernetes call after
retries, a copy, prune or restore step, `sync --timeout`, a held-back prune pass); 2 usage
or configuration error, found before any change. stdout carries only the command's output;
logs and progress go to stderr.

The command line ends here: each command gets a frozen request (`snapd.requests`,
`restore_plan.RestoreRequest`), never the `argparse.Namespace`. A command's module is
imported only when it runs (`_run_command`): `version`, `--help`, `completion` and
`settings` load neither aioboto3 nor kubernetes_asyncio, and only `restore` (and the Lease
of leader election) loads kubernetes_asyncio — the CLI starts in a fraction of the time.
"""

from __future__ import annotations

import argparse
import difflib
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeAlias

from snapd import __version__
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
from snapd.errors import AwsError, ConfigError, SnapdError, UsageError
from snapd.requests import (
    DrManifestsRequest,
    ListRequest,
    RunRequest,
    StatusRequest,
    SyncRequest,
)

if TYPE_CHECKING:
    # Loaded when a restore is asked for (tags, models and YAML are not needed before).
    from snapd.restore_plan import RestoreRequest

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

#: What a command line becomes: one typed request per command.
Request: TypeAlias = (
    "RunRequest | SyncRequest | ListRequest | StatusRequest | RestoreRequest | DrManifestsRequest"
)


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


# --------------------------------------------------------------------------- flag shapes
# The flags several commands share, one shape each, so their spelling, metavar and help
# read the same everywhere (and completion offers them the same way).


def _add_output(parser: _Parser, default: str, *others: str) -> None:
    """`-o/--output FORMAT`: the first format is the default."""
    parser.add_argument(
        "-o",
        "--output",
        choices=(default, *others),
        default=default,
        help=f"output format (default: {default})",
    )


def _add_namespace(parser: _Parser, help_text: str) -> None:
    """`-n/--namespace NAMESPACE`, kubectl's spelling."""
    parser.add_argument("-n", "--namespace", metavar="NAMESPACE", help=help_text)


def _add_context(parser: _Parser, help_text: str) -> None:
    """`--context CONTEXT`: a kubeconfig context, kubectl's spelling."""
    parser.add_argument("--context", metavar="CONTEXT", help=help_text)


def _add_name(parser: _Parser, flag: str, help_text: str) -> None:
    """`--FLAG NAME`: a filter on one name (backup, PVC, schedule)."""
    parser.add_argument(flag, metavar="NAME", help=help_text)


def _add_switch(parser: _Parser, flag: str, help_text: str) -> None:
    """`--FLAG`: off unless given (`--dry-run`, `--force`, `--all`)."""
    parser.add_argument(flag, action="store_true", help=help_text)


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
    _add_output(settings, "table", "json", "yaml")
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
    _add_switch(sync, "--dry-run", "discover and plan only; change nothing")
    _add_switch(sync, "--force", "prune even when the prune guard would hold the pass back")
    sync.add_argument(
        "--timeout",
        default="12h",
        metavar="DURATION",
        help="longest wait for the copies, e.g. 90m, 2h (default: 12h)",
    )
    _add_output(sync, "text", "json", "yaml")


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
    _add_output(lister, "table", "wide", "json", "yaml")
    _add_name(lister, "--backup", "only replicas of this Velero backup")
    _add_namespace(lister, "only PVCs of this namespace")
    _add_name(lister, "--pvc", "only replicas of this PVC")
    _add_name(lister, "--schedule", "only replicas of this Velero schedule")


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
    _add_output(status, "text", "json", "yaml")
    _add_namespace(status, "only PVCs of this namespace")


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
    _add_switch(restore, "--all", "every PVC of the backup")
    _add_namespace(
        restore, "namespace of the PVC (needed when several namespaces have a PVC of that name)"
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
    _add_name(
        restore,
        "--target-pvc",
        "name of the PVC to create (default: the original; use another to restore beside it)",
    )
    restore.add_argument(
        "--kms-key-id", metavar="KEY", help="KMS key for the copy-back (default: AWS's default key)"
    )
    restore.add_argument(
        "--completion-duration",
        metavar="DURATION",
        help="time-based copy-back: 15m to 48h in 15-minute steps (default: a standard copy)",
    )
    _add_switch(
        restore,
        "--keep-snapshot",
        "keep the copy-back snapshot once the volume exists (default: delete it)",
    )
    _add_context(restore, "kubeconfig context to create the PV in (default: the current context)")
    restore.add_argument(
        "--pvc-file",
        "--output",
        dest="output",
        metavar="FILE",
        default="pvc.yaml",
        help="where to write the proposed PVC (default: pvc.yaml; never overwritten "
        "without --force)",
    )
    _add_switch(restore, "--force", "overwrite the PVC file")
    _add_switch(restore, "--dry-run", "print what would be made, and the manifests; change nothing")


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
        import asyncio

        from snapd.logs import configure_logging

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
        from snapd import render

        rows = settings_view(invocation.settings, invocation.flags, invocation.config)
        sys.stdout.write(render.settings_output(rows, args.output))
        return EXIT_OK
    return None


async def dispatch(args: argparse.Namespace, settings: Settings) -> int:
    """Run one command; typed errors become exit codes with one clear line."""
    import structlog

    from snapd.logs import settings_field

    log = structlog.get_logger("snapd.cli")
    log.info(
        "command.started",
        command=args.command,
        version=__version__,
        **settings_field(settings.public_view()),
    )
    try:
        return await _run_command(build_request(args, settings), settings)
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


async def _run_command(request: Request, settings: Settings) -> int:
    """The command's handler, imported now: only what this command needs is loaded."""
    from snapd.restore_plan import RestoreRequest

    if isinstance(request, RunRequest):
        from snapd.service import run_daemon

        await run_daemon(settings)
        return EXIT_OK
    if isinstance(request, RestoreRequest):
        from snapd.restore import cmd_restore

        return await cmd_restore(request)
    from snapd import commands

    if isinstance(request, SyncRequest):
        return await commands.cmd_sync(request, settings)
    if isinstance(request, ListRequest):
        return await commands.cmd_list(request, settings)
    if isinstance(request, StatusRequest):
        return await commands.cmd_status(request, settings)
    return await commands.cmd_dr_manifests(request, settings)


# --------------------------------------------------------------------------- typed requests


def build_request(args: argparse.Namespace, settings: Settings) -> Request:
    """The command line of `args.command` as its typed request (ConfigError → exit 2)."""
    command = args.command
    if command == "run":
        return RunRequest()
    if command == "sync":
        return sync_request(args)
    if command == "list":
        return ListRequest(
            output=args.output,
            backup=args.backup,
            namespace=args.namespace,
            pvc=args.pvc,
            schedule=args.schedule,
        )
    if command == "status":
        return StatusRequest(output=args.output, namespace=args.namespace)
    if command == "restore":
        return restore_request(args, settings)
    if command == "dr-manifests":
        return DrManifestsRequest(velero_namespace=args.velero_namespace, bsl_name=args.bsl_name)
    raise ConfigError(f"unknown command {command}")


def sync_request(args: argparse.Namespace) -> SyncRequest:
    """`snapd sync`'s flags; a `--timeout` that is no duration is a usage error."""
    try:
        timeout = parse_duration(args.timeout).total_seconds()
    except ValueError as error:
        raise ConfigError(f"invalid --timeout: {error}") from error
    return SyncRequest(
        dry_run=args.dry_run, force=args.force, timeout_seconds=timeout, output=args.output
    )


def restore_request(args: argparse.Namespace, settings: Settings) -> RestoreRequest:
    """The `restore` command line and settings, validated (ConfigError → exit 2).

    Names are checked here, before they become tag filters, file names or Kubernetes
    objects (docs/contract.md#safety-rules, "Names are checked").
    """
    from snapd.manifests import validate_dns1123_label, validate_dns1123_subdomain
    from snapd.restore_plan import RestoreRequest, parse_completion_minutes

    source = settings.source_region or ""
    destination = settings.destination_region or ""
    backup = validate_dns1123_subdomain(str(args.backup), "backup name")
    pvc = getattr(args, "pvc", None)
    restore_all = bool(getattr(args, "all", False))
    target_pvc = getattr(args, "target_pvc", None)
    if restore_all and pvc:
        raise ConfigError("give a PVC name or --all, not both")
    if not restore_all and not pvc:
        raise ConfigError("give the PVC to restore, or --all for every PVC of the backup")
    if restore_all and target_pvc:
        raise ConfigError("--target-pvc names one PVC; it cannot be used with --all")
    if pvc:
        validate_dns1123_subdomain(pvc, "PVC name")
    namespace = getattr(args, "namespace", None)
    if namespace:
        validate_dns1123_label(namespace, "namespace")
    target_namespace = getattr(args, "target_namespace", None)
    if target_namespace:
        validate_dns1123_label(target_namespace, "target namespace")
    if target_pvc:
        validate_dns1123_subdomain(target_pvc, "target PVC name")
    target_region = getattr(args, "target_region", None) or source
    if target_region not in (source, destination):
        raise ConfigError(
            f"invalid --target-region {target_region!r}: a restore goes to the source region "
            f"{source} (the replica is copied back) or to the destination region "
            f"{destination} (no copy)"
        )
    zone = getattr(args, "availability_zone", None)
    if zone is not None and not zone.startswith(target_region):
        raise ConfigError(
            f"invalid --availability-zone {zone!r}: it is not a zone of the target region "
            f"{target_region}"
        )
    output = Path(getattr(args, "output", None) or "pvc.yaml")
    if not output.parent.is_dir():
        raise ConfigError(f"invalid --output {output}: directory {output.parent} does not exist")
    if output.is_dir():
        raise ConfigError(f"invalid --output {output}: it is a directory")
    return RestoreRequest(
        backup=backup,
        pvc=pvc,
        namespace=namespace,
        restore_all=restore_all,
        target_region=target_region,
        availability_zone=zone,
        target_namespace=target_namespace,
        target_pvc=target_pvc,
        kms_key_id=getattr(args, "kms_key_id", None) or None,
        completion_minutes=parse_completion_minutes(getattr(args, "completion_duration", None)),
        keep_snapshot=bool(getattr(args, "keep_snapshot", False)),
        context=getattr(args, "context", None),
        output=output,
        force=bool(getattr(args, "force", False)),
        dry_run=bool(getattr(args, "dry_run", False)),
        scope=settings.scope or "",
        source_region=source,
        destination_region=destination,
        poll_interval=settings.poll_interval.total_seconds(),
        concurrency=settings.max_in_flight,
    )
