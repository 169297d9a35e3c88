"""Everything a command prints: plans, tables, JSON/YAML, progress lines and summaries.

Pure: records in, strings or JSON-ready dicts out — no stream is written here, the
commands write what these return (stdout carries only their output; progress and warnings
go to stderr). One place, so a format change is one edit and the CLI tests pin it. Tables
never cut backup, namespace or PVC names (the contract), so columns are sized to their
longest value. Records owned by upper layers (a sync's outcome, a cycle's result) are read
through the small protocols below, so this module imports no I/O layer.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import PurePath
from typing import Any, Protocol

import yaml

from snapd.config import Settings, format_duration
from snapd.locking import unlocked
from snapd.models import (
    GOOD_PHASES,
    CopyAction,
    Discovery,
    DiscoveryError,
    KeptAction,
    Plan,
    PruneAction,
    Replica,
)
from snapd.planner import in_future, recovery_points
from snapd.restore_plan import (
    IOPS_TYPES,
    PLACEHOLDER_VOLUME,
    THROUGHPUT_TYPES,
    Found,
    Outcome,
    Refusal,
    RestorePlan,
    RestoreRequest,
    VolumeRecord,
    beside_name,
    blocker,
    build_client_token,
    build_manifests,
)
from snapd.tags import format_time


class SettingsWarningView(Protocol):
    """A settings warning as the service reports it."""

    def as_dict(self) -> Mapping[str, str | None]: ...


class CycleView(Protocol):
    """What `status` reads of a planned cycle (`service.CycleResult`)."""

    @property
    def plan(self) -> Plan: ...
    @property
    def discovery(self) -> Discovery: ...
    @property
    def replicas(self) -> Sequence[Replica]: ...
    @property
    def warnings(self) -> Sequence[SettingsWarningView]: ...
    @property
    def locks_known(self) -> bool: ...


class CopyView(Protocol):
    """A copy in flight as the copier tracks it (`copier.Tracked`)."""

    @property
    def label(self) -> str: ...
    @property
    def progress(self) -> int: ...


class UnfinishedView(Protocol):
    """A source a sync left without a completed replica (`copier.Unfinished`)."""

    @property
    def source_id(self) -> str: ...
    @property
    def label(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def replica_id(self) -> str | None: ...


class PruneView(Protocol):
    """What a prune pass did (`pruner.PruneReport`)."""

    @property
    def deleted(self) -> Sequence[str]: ...
    @property
    def failed(self) -> Mapping[str, str]: ...
    @property
    def held_back(self) -> int: ...
    @property
    def locked(self) -> Mapping[str, str]: ...


class SyncView(Protocol):
    """What `sync` reports of its run (`service.SyncOutcome`)."""

    @property
    def plan(self) -> Plan: ...
    @property
    def copies_started(self) -> int: ...
    @property
    def copies_completed(self) -> int: ...
    @property
    def unprotected(self) -> Sequence[UnfinishedView]: ...
    @property
    def timed_out(self) -> bool: ...
    @property
    def prune(self) -> PruneView | None: ...
    @property
    def failed(self) -> Sequence[str]: ...
    @property
    def dr_failed(self) -> Mapping[str, str]: ...
    @property
    def dr_published(self) -> Sequence[str]: ...
    @property
    def dr_removed(self) -> Mapping[str, str]: ...
    @property
    def ok(self) -> bool: ...


def _time(value: datetime | None) -> str | None:
    return format_time(value) if value else None


def copy_item(action: CopyAction) -> dict[str, Any]:
    s = action.source
    return {
        "source_snapshot_id": s.snapshot_id,
        "backup": s.backup,
        "schedule": s.schedule,
        "backup_time": _time(s.backup_time),
        "namespace": s.volume.namespace,
        "pvc": s.volume.pvc,
        "pv": s.volume.pv,
        "method": s.method.value,
        "size_gib": s.volume.size_gib,
        "availability_zone": s.volume.availability_zone,
        "reason": action.reason,
    }


def prune_item(action: PruneAction) -> dict[str, Any]:
    r = action.replica
    return {
        "snapshot_id": r.snapshot_id,
        "source_snapshot_id": r.source_snapshot_id,
        "backup": r.backup,
        "backup_time": _time(r.backup_time),
        "namespace": r.volume.namespace,
        "pvc": r.volume.pvc,
        "state": r.state,
        "kind": action.kind.value,
        "reason": action.reason,
    }


def kept_item(action: KeptAction) -> dict[str, Any]:
    """A replica due for deletion that a lock keeps (`reason`: `locked until <RFC3339>`)."""
    r = action.replica
    return {
        "snapshot_id": r.snapshot_id,
        "source_snapshot_id": r.source_snapshot_id,
        "backup": r.backup,
        "namespace": r.volume.namespace,
        "pvc": r.volume.pvc,
        "kind": action.kind.value,
        "lock_state": r.lock_state,
        "reason": action.reason,
    }


def plan_json(plan: Plan) -> dict[str, Any]:
    """The contract's `sync --dry-run -o json` object."""
    return {
        "copy": [copy_item(c) for c in plan.copies],
        "prune": [prune_item(p) for p in plan.prunes],
        "skipped": [
            {"backup": s.backup, "reason": s.reason, "source_snapshot_id": s.source_snapshot_id}
            for s in plan.skipped
        ],
        "errors": [
            {"backup": e.backup, "error": e.error, "source_snapshot_id": e.source_snapshot_id}
            for e in plan.errors
        ],
        "warnings": [
            {"backup": w.backup, "error": w.error, "source_snapshot_id": w.source_snapshot_id}
            for w in plan.warnings
        ],
        "kept": [kept_item(k) for k in plan.kept],
        "prune_guard": {
            "tripped": plan.guard_tripped,
            "retention_prunes": len(plan.retention_prunes),
            "completed_replicas": plan.completed_replicas,
        },
    }


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A plain aligned table; no value is ever cut."""
    cells = [[("-" if v is None else str(v)) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(v)) for w, v in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines)


def _volume(namespace: str | None, pvc: str | None, pv: str | None = None) -> str:
    if pvc:
        return f"{namespace or '-'}/{pvc}"
    return f"(pv {pv})" if pv else "-"


def _section(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """A titled, indented table followed by a blank line; nothing when there are no rows."""
    if not rows:
        return []
    return [title, *("  " + line for line in table(headers, rows).splitlines()), ""]


def plan_text(plan: Plan, *, destination_region: str) -> str:
    """The dry-run plan for people: copies grouped by backup, then prunes, skips, errors."""
    out = [
        f"Plan for {destination_region}: {len(plan.copies)} to copy, {len(plan.prunes)} to "
        f"prune, {len(plan.skipped)} skipped, {len(plan.errors)} unreadable"
        + (f", {len(plan.warnings)} warnings" if plan.warnings else ""),
        "",
    ]
    by_backup: dict[str, list[CopyAction]] = defaultdict(list)
    for action in plan.copies:
        by_backup[action.source.backup].append(action)
    for backup, actions in sorted(by_backup.items(), key=lambda i: i[1][0].source.backup_time):
        first = actions[0].source
        title = f"backup {backup}  (schedule {first.schedule}, {_time(first.backup_time)})"
        rows = [
            (
                "copy",
                a.source.snapshot_id,
                _volume(a.source.volume.namespace, a.source.volume.pvc, a.source.volume.pv),
                a.source.method.value,
                a.reason,
            )
            for a in actions
        ]
        out += _section(title, ("", "SNAPSHOT", "VOLUME", "KIND", "REASON"), rows)
    held = "  (HELD BACK by the prune guard unless --force)" if plan.guard_tripped else ""
    prune_rows = [
        (
            p.replica.snapshot_id,
            p.replica.backup,
            _volume(p.replica.volume.namespace, p.replica.volume.pvc),
            p.kind.value,
            p.reason,
        )
        for p in plan.prunes
    ]
    out += _section("prune" + held, ("REPLICA", "BACKUP", "VOLUME", "KIND", "REASON"), prune_rows)
    kept_rows = [
        (
            k.replica.snapshot_id,
            k.replica.backup,
            _volume(k.replica.volume.namespace, k.replica.volume.pvc),
            k.reason,
        )
        for k in plan.kept
    ]
    out += _section(
        "kept (due for deletion, locked)", ("REPLICA", "BACKUP", "VOLUME", "REASON"), kept_rows
    )
    skip_rows = [(s.backup, s.source_snapshot_id, s.reason) for s in plan.skipped]
    out += _section("skipped", ("BACKUP", "SNAPSHOT", "REASON"), skip_rows)
    error_rows = [(e.backup, e.source_snapshot_id, e.error) for e in plan.errors]
    out += _section(
        "errors (these backups could not be read; every other backup proceeds)",
        ("BACKUP", "SNAPSHOT", "ERROR"),
        error_rows,
    )
    warning_rows = [(w.backup, w.source_snapshot_id, w.error) for w in plan.warnings]
    out += _section(
        "warnings (snapshots are still handled as planned above)",
        ("BACKUP", "SNAPSHOT", "WARNING"),
        warning_rows,
    )
    if not (
        plan.copies or plan.prunes or plan.skipped or plan.errors or plan.warnings or plan.kept
    ):
        out.append("Nothing to do: every watched snapshot has a replica.")
    return "\n".join(out).rstrip() + "\n"


def replica_item(r: Replica) -> dict[str, Any]:
    """One `snapd list -o json` item (the contract's keys and a few more)."""
    return {
        "snapshot_id": r.snapshot_id,
        "source_snapshot_id": r.source_snapshot_id,
        "source_region": r.source_region,
        "region": r.region,
        "backup": r.backup,
        "schedule": r.schedule,
        "backup_time": _time(r.backup_time),
        "namespace": r.volume.namespace,
        "pvc": r.volume.pvc,
        "pv": r.volume.pv,
        "availability_zone": r.volume.availability_zone,
        "volume_type": r.volume.volume_type,
        "iops": r.volume.iops,
        "throughput": r.volume.throughput,
        "size_gib": r.volume.size_gib,
        "state": r.state,
        "progress": r.progress,
        "encrypted": r.encrypted,
        "kms_key_id": r.kms_key_id,
        "storage_class": r.volume.storage_class,
        "source_volume_id": r.volume.volume_id,
        "state_message": r.state_message,
        "lock_state": r.lock_state,
        "lock_expires": _time(r.lock_expires),
    }


def replicas_output(replicas: Sequence[Replica], fmt: str) -> str:
    """`snapd list` in table, wide, json or yaml."""
    if fmt == "json":
        return json.dumps([replica_item(r) for r in replicas], indent=2) + "\n"
    if fmt == "yaml":
        return yaml.safe_dump([replica_item(r) for r in replicas], sort_keys=False)
    headers = ["BACKUP TIME", "BACKUP", "NAMESPACE", "PVC", "SIZE", "STATE", "REPLICA"]
    if fmt == "wide":
        headers += ["SOURCE SNAPSHOT", "SCHEDULE", "AZ", "TYPE", "ENCRYPTED", "LOCK"]
    rows = []
    for r in replicas:
        state = r.state if r.state != "pending" else f"pending {r.progress}%"
        row: list[object] = [
            _time(r.backup_time),
            r.backup,
            r.volume.namespace,
            r.volume.pvc,
            f"{r.volume.size_gib}Gi" if r.volume.size_gib else None,
            state,
            r.snapshot_id,
        ]
        if fmt == "wide":
            row += [
                r.source_snapshot_id,
                r.schedule,
                r.volume.availability_zone,
                r.volume.volume_type,
                "yes" if r.encrypted else "no",
                _lock(r),
            ]
        rows.append(row)
    if not rows:
        return "No replicas found.\n"
    return table(headers, rows) + "\n"


def _lock(r: Replica) -> str | None:
    """The wide table's LOCK cell: `compliance until 2026-01-31T00:00:00Z`, or `-`."""
    if not r.lock_state:
        return None
    return f"{r.lock_state} until {_time(r.lock_expires)}" if r.lock_expires else r.lock_state


def status_text(status: Mapping[str, Any]) -> str:
    """`snapd status` for people: the one-look answer to "are we covered?"."""
    out = [
        f"scope {status['scope']}  ({status['source_region']} → {status['destination_region']})",
        f"in flight: {status['in_flight']}   backlog: {status['backlog']}   "
        f"unreadable backups: {status['unreadable_backups']}"
        + (f"   warnings: {len(status['warnings'])}" if status.get("warnings") else ""),
        *_locks_lines(status),
        "",
    ]
    out[2:2] = _overdue_lines(status)
    rows = [
        (
            s["name"],
            s["newest_backup"],
            s["newest_backup_time"],
            f"{s['replicated']}/{s['volumes']}",
        )
        for s in status["schedules"]
    ]
    out.append(table(("SCHEDULE", "NEWEST BACKUP", "BACKUP TIME", "REPLICATED"), rows))
    out += warning_lines(status.get("settings_warnings") or ())
    out.append("")
    rows = [
        (p["namespace"], p["pvc"], p["recovery_point"], _age(p["age_seconds"]))
        for p in status["pvcs"]
    ]
    out.append(
        table(("NAMESPACE", "PVC", "RECOVERY POINT", "AGE"), rows)
        if rows
        else "No completed replicas yet."
    )
    for warning in status.get("warnings", []):
        out.append(f"warning: backup {warning['backup']}: {warning['error']}")
    out.extend(_dr_text(status.get("dr")))
    return "\n".join(out) + "\n"


def _dr_text(dr: Mapping[str, Any] | None) -> list[str]:
    """The DR location section of `snapd status` (nothing when it is off)."""
    if not dr:
        return []
    rows = [
        (s["name"], s["newest_published_backup"] or "-", s["recovery_point"] or "-")
        for s in dr["schedules"]
    ]
    return [
        "",
        f"DR location {dr['location']}: {dr['published']} backups published",
        table(("SCHEDULE", "NEWEST PUBLISHED", "DR RECOVERY POINT"), rows),
    ]


#: libyaml's emitter when PyYAML was built with it: the same text as `yaml.safe_dump_all`
#: (tests/unit/test_render_yaml.py compares them) at a fraction of the CPU — the PVC file
#: is written while a person waits for the restore's summary.
_SAFE_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def yaml_stream(documents: Sequence[Mapping[str, Any]]) -> str:
    """A `---`-separated YAML stream, keys in the order given (for `kubectl apply -f -`)."""
    return yaml.dump_all(
        [dict(d) for d in documents], Dumper=_SAFE_DUMPER, sort_keys=False, explicit_start=True
    )


def _overdue_lines(status: Mapping[str, Any]) -> list[str]:
    """Time-based copies past their promise: a line each (AWS keeps copying them)."""
    overdue = status.get("overdue_copies") or []
    if not status.get("copy_completion_duration") and not overdue:
        return []
    lines = [
        f"time-based copies: {status.get('copy_completion_duration') or 'off'}   "
        f"overdue: {len(overdue)}"
    ]
    lines += [
        f"  overdue {_age(c['overdue_seconds'])}: {c['snapshot_id']} "
        f"({c['namespace'] or '-'}/{c['pvc'] or '-'} {c['backup'] or '-'}) "
        f"{c['progress']}%, promised by {c['promised_by']}"
        for c in overdue
    ]
    return lines


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes = int(seconds // 60)
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    return f"{days}d{hours}h" if days else (f"{hours}h{mins}m" if hours else f"{mins}m")


def structured(value: Any, fmt: str) -> str:
    """`-o json` or `-o yaml` of any JSON-ready value, ending in a newline."""
    if fmt == "yaml":
        return yaml.safe_dump(value, sort_keys=False, allow_unicode=True)
    return json.dumps(value, indent=2) + "\n"


def warning_lines(warnings: Iterable[Mapping[str, Any]]) -> list[str]:
    """`warning: …` lines for the settings warnings a text output ends with."""
    return [f"warning: {w['warning']}" for w in warnings]


def _setting_value(value: object) -> str | None:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value) or None
    return None if value in (None, "") else str(value)


def settings_output(rows: Sequence[Mapping[str, Any]], fmt: str) -> str:
    """`snapd settings`: each setting's value and origin; env and flag follow from the name."""
    if fmt in ("json", "yaml"):
        return structured(list(rows), fmt)
    lines = [
        "Each setting NAME is SNAPD_NAME in the environment (upper-case), --name as a flag "
        "(kebab-case), and name: in a --config YAML file.",
        "",
        table(
            ("SETTING", "VALUE", "FROM", "DEFAULT", "MEANING"),
            (
                (
                    r["name"],
                    _setting_value(r["value"]),
                    r["source"],
                    r["default"],
                    r["description"],
                )
                for r in rows
            ),
        ),
    ]
    return "\n".join(lines) + "\n"


def _locks_lines(status: Mapping[str, Any]) -> list[str]:
    """`status` lines on snapshot locks and the Recycle Bin; none while locking is off."""
    locks = status.get("locks") or {}
    if locks.get("mode", "off") == "off":
        return []
    if locks.get("locked") is None:
        counts = "locks unknown (DescribeLockedSnapshots failed; see the log)"
    else:
        counts = (
            f"locked: {locks['locked']}   unlocked: {locks['unlocked']}   "
            f"should be locked: {locks['should_be_locked']}"
        )
    protected = status.get("recycle_bin_protected")
    bin_text = "unknown (ListRules failed)" if protected is None else ("yes" if protected else "NO")
    return [
        f"lock mode {locks['mode']}   {counts}",
        f"Recycle Bin rule covers replicas: {bin_text}",
    ]


# --------------------------------------------------------------------------- snapd sync


def plan_output(
    plan: Plan, warnings: Sequence[Mapping[str, Any]], fmt: str, destination_region: str
) -> str:
    """`sync --dry-run`: the plan and the settings warnings, as text, JSON or YAML."""
    if fmt in ("json", "yaml"):
        document = {**plan_json(plan), "settings_warnings": list(warnings)}
        return structured(document, fmt)
    text = plan_text(plan, destination_region=destination_region)
    return text + "".join(f"{line}\n" for line in warning_lines(warnings))


def sync_output(outcome: SyncView, warnings: Sequence[Mapping[str, Any]], fmt: str) -> str:
    """`sync`: what it did, as text, JSON (the plan, the warnings and the result) or YAML."""
    if fmt in ("json", "yaml"):
        document = {
            **plan_json(outcome.plan),
            "settings_warnings": list(warnings),
            "result": sync_result_json(outcome),
        }
        return structured(document, fmt)
    lines = warning_lines(warnings)
    return "\n".join(lines) + ("\n" if lines else "") + sync_result_text(outcome)


def sync_result_json(outcome: SyncView) -> dict[str, Any]:
    """The `result` object of `sync -o json`."""
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


def sync_result_text(outcome: SyncView) -> str:
    """`sync`'s summary for people: copies, what is not protected, prunes, the DR location."""
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


def copy_progress_line(done: int, total: int, event: str, copy: CopyView) -> str:
    """One stderr line of `sync`'s copy progress: `[done/total] event label [n%]`."""
    detail = f" {copy.progress}%" if event == "progress" else ""
    return f"[{done}/{total}] {event} {copy.label}{detail}\n"


# --------------------------------------------------------------------------- snapd status


def status_report(
    result: CycleView,
    settings: Settings,
    now: datetime,
    *,
    recycle_bin_protected: bool | None = None,
    dr_status: dict[str, Any] | None = None,
    dr_errors: tuple[DiscoveryError, ...] = (),
) -> dict[str, Any]:
    """The contract's `status -o json` object: per schedule, per PVC, in flight, backlog."""
    completed_sources = {
        r.source_snapshot_id for r in result.replicas if r.completed and r.source_snapshot_id
    }
    schedules = []
    for name in settings.schedules:
        good = [
            b
            for b in result.discovery.backups
            if b.schedule == name
            and b.phase in GOOD_PHASES
            and b.start_time
            and not in_future(b.start_time, now)
        ]
        newest = max(good, key=lambda b: b.start_time or now, default=None)
        volumes = [s for s in result.discovery.snapshots if newest and s.backup == newest.name]
        schedules.append(
            {
                "name": name,
                "newest_backup": newest.name if newest else None,
                "newest_backup_time": format_time(newest.start_time)
                if newest and newest.start_time
                else None,
                "volumes": len(volumes),
                "replicated": sum(1 for s in volumes if s.snapshot_id in completed_sources),
                "backups": sum(1 for b in result.discovery.backups if b.schedule == name),
            }
        )
    pvcs = []
    for (namespace, pvc), stamp in sorted(recovery_points(result.replicas, now).items()):
        point = datetime.fromtimestamp(stamp, UTC)
        pvcs.append(
            {
                "namespace": namespace,
                "pvc": pvc,
                "recovery_point": format_time(point),
                "age_seconds": int((now - point).total_seconds()),
            }
        )
    return {
        "scope": settings.scope,
        "source_region": settings.source_region,
        "destination_region": settings.destination_region,
        "locks": lock_status(result, settings),
        "recycle_bin_protected": recycle_bin_protected,
        "schedules": schedules,
        "pvcs": pvcs,
        "in_flight": sum(1 for r in result.replicas if r.pending),
        "backlog": len(result.plan.copies),
        "copy_completion_duration": format_duration(settings.copy_completion_duration)
        if settings.copy_completion_duration
        else None,
        "overdue_copies": overdue_copies(result.replicas, now),
        "unreadable_backups": result.discovery.unreadable_backups,
        "errors": [
            {"backup": e.backup, "error": e.error} for e in (*result.plan.errors, *dr_errors)
        ],
        "warnings": [
            {"backup": w.backup, "error": w.error, "source_snapshot_id": w.source_snapshot_id}
            for w in result.plan.warnings
        ],
        "settings_warnings": [w.as_dict() for w in result.warnings],
        "dr": dr_status,
    }


def lock_status(result: CycleView, settings: Settings) -> dict[str, Any]:
    """`status`' lock counts: completed replicas locked, unlocked, and unlocked but due one.

    With locking off, or when the locks could not be read, the counts are null (unknown).
    """
    completed = [r for r in result.replicas if r.completed]
    known = settings.lock_mode != "off" and result.locks_known
    return {
        "mode": settings.lock_mode,
        "locked": sum(1 for r in completed if r.locked) if known else None,
        "unlocked": sum(1 for r in completed if not r.locked) if known else None,
        "should_be_locked": len(unlocked(result.replicas, result.plan)) if known else None,
        "kept_by_lock": len(result.plan.kept),
    }


def overdue_copies(replicas: Iterable[Replica], now: datetime) -> list[dict[str, Any]]:
    """Time-based copies still pending past their promise, most overdue first."""
    late = sorted(
        (r for r in replicas if r.overdue(now) and r.promised_by),
        key=lambda r: r.promised_by or now,
    )
    return [
        {
            "snapshot_id": r.snapshot_id,
            "source_snapshot_id": r.source_snapshot_id,
            "backup": r.backup,
            "namespace": r.volume.namespace,
            "pvc": r.volume.pvc,
            "progress": r.progress,
            "completion_minutes": r.completion_minutes,
            "promised_by": format_time(r.promised_by) if r.promised_by else None,
            "overdue_seconds": int((now - r.promised_by).total_seconds()) if r.promised_by else 0,
        }
        for r in late
    ]


# --------------------------------------------------------------------------- snapd dr-manifests


def dr_manifests_alone(dr_root: str | None) -> str:
    """`dr-manifests`' stderr note when nothing is published yet."""
    return (
        f"snapd dr-manifests: no published backup in {dr_root} yet; "
        "the BackupStorageLocation alone is printed\n"
    )


# --------------------------------------------------------------------------- snapd restore


def build_next_steps(
    outcomes: Sequence[Outcome],
    output: PurePath,
    backup: str,
    pvc_exists: Mapping[str, bool | None],
) -> list[str]:
    """The operator's next steps with real names: replace the PVC, or restore beside it."""
    done = [o for o in outcomes if o.ok]
    if not done:
        return []
    file = str(output)
    lines = [f"Next steps ({file} holds the PVC{'s' if len(done) > 1 else ''} to create):"]
    targets = [o.plan for o in done]
    bound = [
        o.plan.target_label
        for o in done
        if ((o.found.pvc or {}).get("spec") or {}).get("volumeName") == o.plan.pv_name
    ]
    if bound and len(bound) == len(done):
        return [f"PVC {', '.join(bound)} already bound to the restored PV: nothing left to do."]
    lines.append("  To replace the existing PVC with the restored data:")
    lines.append("    1. stop the pods that use it (scale their Deployment/StatefulSet to 0)")
    lines += [
        f"    2. kubectl delete pvc {p.target_pvc} -n {p.target_namespace}"
        if i == 0
        else f"       kubectl delete pvc {p.target_pvc} -n {p.target_namespace}"
        for i, p in enumerate(targets)
    ]
    lines += [
        f"    3. wait until `kubectl get pvc {p.target_pvc} -n {p.target_namespace}` "
        "no longer finds it"
        if i == 0
        else f"       and `kubectl get pvc {p.target_pvc} -n {p.target_namespace}`"
        for i, p in enumerate(targets)
    ]
    lines.append(f"    4. kubectl create -f {file}")
    lines.append("    5. start the pods again")
    missing = [p.target_label for p in targets if pvc_exists.get(p.target_label) is False]
    if missing:
        lines.append(f"     (PVC {', '.join(missing)} does not exist now: step 4 alone is enough)")
    no_namespace = sorted(
        {o.plan.target_namespace for o in done if o.found.namespace_exists is False}
    )
    if no_namespace:
        lines.append(
            f"     (namespace {', '.join(no_namespace)} does not exist yet: before step 4, "
            + "; ".join(f"kubectl create namespace {n}" for n in no_namespace)
            + ")"
        )
    for outcome in done:
        spec = ((outcome.found.bound_pv or {}).get("spec")) or {}
        name = (outcome.found.bound_pv or {}).get("metadata", {}).get("name")
        if name and spec.get("persistentVolumeReclaimPolicy") == "Delete":
            lines.append(
                f"     Careful: PVC {outcome.plan.target_label} is bound to PV {name} whose "
                "reclaim policy is Delete — deleting the PVC deletes its EBS volume. To keep "
                f"it: kubectl patch pv {name} -p "
                '\'{"spec":{"persistentVolumeReclaimPolicy":"Retain"}}\''
            )
    originals = [p for p in targets if not p.beside]
    if originals:
        lines.append("  To restore beside it instead (the existing PVC stays as it is):")
        if len(originals) == 1:
            p = originals[0]
            name = beside_name(p.source_pvc)
            beside = f"{name}.yaml"
            lines.append(
                f"    snapd restore {backup} {p.source_pvc} -n {p.source_namespace} "
                f"--target-pvc {name} [--target-namespace NAMESPACE] --output {beside}"
            )
        else:
            beside = "pvc-restored.yaml"
            lines.append(
                f"    snapd restore {backup} --all --target-namespace NAMESPACE --output {beside}"
            )
        lines.append(f"    kubectl create -f {beside}")
    return lines


def render_pvc_file(outcomes: Sequence[Outcome], scope: str) -> str:
    """pvc.yaml: one PVC document per restored PVC, with a comment saying where they came from."""
    docs = [build_manifests(o.plan, _volume_id(o), scope, _size(o))[1] for o in outcomes]
    backup = outcomes[0].plan.backup if outcomes else ""
    header = (
        f"# PersistentVolumeClaims proposed by `snapd restore` of backup {backup}.\n"
        "# Each binds its restored PersistentVolume (spec.volumeName); create with\n"
        "# `kubectl create -f` once the PVC of the same name is gone.\n"
    )
    return header + yaml_stream(docs)


def _volume_id(outcome: Outcome) -> str:
    return outcome.volume.volume_id if outcome.volume else PLACEHOLDER_VOLUME


def _size(outcome: Outcome) -> int | None:
    return outcome.volume.size_gib if outcome.volume else None


def _describe_volume(plan: RestorePlan) -> str:
    """The volume a real run would ask CreateVolume for."""
    parts = [plan.volume_type or "EC2's default type (gp2)", f"{plan.size_gib} GiB"]
    if plan.volume_type in IOPS_TYPES and plan.iops:
        parts.append(f"{plan.iops} IOPS")
    if plan.volume_type in THROUGHPUT_TYPES and plan.throughput:
        parts.append(f"{plan.throughput} MiB/s")
    if plan.kms_key_id:
        parts.append(f"encrypted with {plan.kms_key_id}")
    elif plan.encrypted:
        parts.append("encrypted")
    return ", ".join(parts)


def _describe_actual(volume: VolumeRecord) -> str:
    """The volume as EC2 shows it (a reused one may differ from what this run would ask)."""
    parts = [volume.volume_type or "unknown type", f"{volume.size_gib} GiB"]
    if volume.volume_type in IOPS_TYPES and volume.iops:
        parts.append(f"{volume.iops} IOPS")
    if volume.volume_type in THROUGHPUT_TYPES and volume.throughput:
        parts.append(f"{volume.throughput} MiB/s")
    if volume.encrypted:
        parts.append(f"encrypted with {volume.kms_key_id}" if volume.kms_key_id else "encrypted")
    else:
        parts.append("not encrypted")
    return ", ".join(parts)


def _dry_run_steps(plan: RestorePlan, state: Found, request: RestoreRequest) -> list[str]:
    """The numbered steps a real run would take for one PVC, given what already exists."""
    replica = plan.replica
    lines = [
        f"# {plan.label} from backup {plan.backup}: replica {replica.snapshot_id} "
        f"({replica.region}, {replica.volume.size_gib} GiB) → PVC {plan.target_label} "
        f"in {plan.zone}"
    ]
    if plan.zone_note:
        lines.append(f"#   {plan.zone_note}")
    steps: list[str] = []
    volume = state.volume
    snapshot = replica.snapshot_id
    if plan.copy_back and volume is None:
        usable = [c for c in state.copy_backs if c.state in ("completed", "pending")]
        if usable:
            snapshot = usable[0].snapshot_id
            steps.append(
                f"reuse copy-back {snapshot} in {plan.region} "
                f"({usable[0].state}, {usable[0].progress}%)"
            )
        else:
            timed = (
                f", CompletionDurationMinutes={request.completion_minutes}"
                if request.completion_minutes
                else ""
            )
            steps.append(
                f"CopySnapshot {replica.snapshot_id} from {replica.region} back to "
                f"{plan.region}{timed}; wait until completed"
            )
            snapshot = "the copy-back"
    if volume is not None:
        steps.append(f"reuse volume {volume.volume_id} ({volume.state})")
    else:
        token = build_client_token(plan.key, state.failed_volumes)
        steps.append(
            f"CreateVolume from {snapshot} in {plan.zone}: {_describe_volume(plan)}; "
            f"ClientToken {token}; wait until available"
        )
    conflict = blocker(plan, state, request)
    if conflict:
        steps.append(f"would fail: {conflict}")
    elif state.pv is not None:
        steps.append(f"PersistentVolume {plan.pv_name} exists: nothing to do")
    else:
        steps.append(f"create PersistentVolume {plan.pv_name} (claimRef {plan.target_label})")
    if plan.copy_back:
        leftovers = ", ".join(c.snapshot_id for c in state.copy_backs)
        what = f"the copy-backs of this restore ({leftovers})" if leftovers else "the copy-back"
        steps.append(
            "once the PV exists, "
            + (f"keep {what} (--keep-snapshot)" if request.keep_snapshot else f"delete {what}")
        )
    lines += [f"#   {number}. {step}" for number, step in enumerate(steps, 1)]
    if not state.kube_checked:
        lines.append("#      (Kubernetes not reachable: existing PVs were not checked)")
    return lines


def render_dry_run(
    plans: Sequence[RestorePlan],
    found: Mapping[str, Found],
    request: RestoreRequest,
    refused: Sequence[Refusal],
    *,
    output_exists: bool,
) -> str:
    """What a real run would do, as YAML comments, then the PV and PVC manifests (YAML).

    The whole text is a valid multi-document YAML stream, so it can be read back.
    `output_exists`: whether the PVC file is there now (the caller looked).
    """
    lines = ["# snapd restore --dry-run: nothing is changed in AWS, Kubernetes or on disk"]
    docs: list[dict[str, Any]] = []
    for plan in plans:
        state = found.get(plan.key, Found())
        lines += _dry_run_steps(plan, state, request)
        volume_id = state.volume.volume_id if state.volume else PLACEHOLDER_VOLUME
        docs += build_manifests(plan, volume_id, request.scope)
    lines += [f"# would fail: {r.label}: {r.reason}" for r in refused]
    if any(found.get(p.key, Found()).volume is None for p in plans):
        lines.append(
            f"# {PLACEHOLDER_VOLUME} below is a placeholder: a real run puts the id of the "
            "volume it creates there"
        )
    if plans:
        if output_exists and not request.force:
            lines.append(
                f"# {request.output} exists: a real run leaves it alone if everything is "
                "already restored, and otherwise refuses without --force"
            )
        else:
            lines.append(f"# a real run writes {request.output} with the PVC documents below")
    text = "\n".join(lines) + "\n"
    if docs:
        text += yaml_stream(docs)
    return text


def summarize(outcome: Outcome) -> list[str]:
    """The stdout lines about one PVC: what was made or found, with names."""
    plan = outcome.plan
    if not outcome.ok:
        return [f"failed {plan.label}: {outcome.error}"]
    head = "already restored" if outcome.already else "restored"
    lines = [f"{head} {plan.label} from backup {plan.backup} → PVC {plan.target_label}"]
    if plan.zone_note:
        lines.append(f"  {plan.zone_note}")
    if plan.copy_back:
        left = {snapshot_id for snapshot_id, _ in outcome.left_behind}
        if outcome.copy_back_kept:
            state = "kept (--keep-snapshot)"
        elif outcome.copy_back_id in left:
            state = "NOT deleted (see the warning)"
        else:
            state = "deleted"
        lines.append(f"  copy-back  {outcome.copy_back_id or '-'} in {plan.region}, {state}")
        lines += [
            f"  left behind: copy-back {snapshot_id} in {plan.region} ({why}); delete it with "
            f"`aws ec2 delete-snapshot --region {plan.region} --snapshot-id {snapshot_id}`"
            for snapshot_id, why in outcome.left_behind
        ]
    else:
        lines.append(f"  snapshot   {plan.replica.snapshot_id} in {plan.region} (no copy)")
    volume = outcome.volume
    if volume is not None:
        lines.append(
            f"  volume     {volume.volume_id} in {volume.zone}: {_describe_actual(volume)}"
            f" ({volume.state})"
        )
    lines.append(f"  PV         {plan.pv_name} → claim {plan.target_label}")
    return lines


def restore_report(
    outcomes: Sequence[Outcome],
    refused: Sequence[Refusal],
    request: RestoreRequest,
    *,
    target: str,
    wrote: bool,
    stale_file: str | None,
) -> tuple[str, str]:
    """A real restore's report: (stdout, stderr).

    stdout: where the PVs went, each PVC's summary, the PVC file, the next steps. stderr:
    one line per failed or refused PVC and per copy-back left behind, and a warning when
    the existing PVC file is another restore's (`stale_file`: why; then no next steps).
    """
    done = [o for o in outcomes if o.ok]
    lines: list[str] = [f"PersistentVolumes in {target}"]
    for outcome in outcomes:
        lines += summarize(outcome)
    lines += [f"failed {r.label}: {r.reason}" for r in refused]
    if done:
        if wrote:
            lines.append(
                f"wrote {request.output}: PVC {', '.join(o.plan.target_label for o in done)}"
            )
        elif stale_file is None:
            lines.append(
                f"{request.output} exists and binds these PVs, left untouched (--force rewrites it)"
            )
        else:
            lines.append(
                f"{request.output} exists but is not this restore's: {stale_file}; it was "
                "left untouched — write this restore's PVCs with --force or --output FILE"
            )
        exists = {
            o.plan.target_label: (o.found.pvc is not None if o.found.kube_checked else None)
            for o in done
        }
        if stale_file is None:
            lines += build_next_steps(done, request.output, request.backup, exists)
    errors = [restore_line(f"{o.plan.label}: {o.error}") for o in outcomes if not o.ok]
    errors += [restore_line(f"{r.label}: {r.reason}") for r in refused]
    for outcome in done:
        errors += [
            restore_line(
                f"warning: {outcome.plan.label}: copy-back {snapshot_id} in "
                f"{outcome.plan.region} is left behind ({why}); the restore itself is done. "
                f"Delete it with `aws ec2 delete-snapshot --region {outcome.plan.region} "
                f"--snapshot-id {snapshot_id}` (or keep it on purpose with --keep-snapshot)"
            )
            for snapshot_id, why in outcome.left_behind
        ]
    if stale_file is not None:
        # The restore is done (exit 0 as for any completed re-run); only the file is not
        # offered: `kubectl create -f` on it would create another restore's PVC.
        errors.append(
            restore_line(
                f"warning: {request.output} exists but is not this restore's "
                f"({stale_file}); do not create it — run again with --force to rewrite it or "
                "--output FILE to write another"
            )
        )
    return "\n".join(lines) + "\n", "".join(errors)


def restore_line(message: str) -> str:
    """One stderr line of `snapd restore` (a refusal, a warning, a notice)."""
    return f"snapd restore: {message}\n"


def dry_run_output(
    plans: Sequence[RestorePlan],
    found: Mapping[str, Found],
    request: RestoreRequest,
    refused: Sequence[Refusal],
    *,
    target: str,
    output_exists: bool,
) -> str:
    """`restore --dry-run`'s stdout: where the PVs would go, then `render_dry_run`."""
    return f"# PersistentVolumes would go to {target}\n" + render_dry_run(
        plans, found, request, refused, output_exists=output_exists
    )


def copy_back_progress_line(label: str, replica: Replica) -> str:
    """One stderr line each time a copy-back's state or EC2 `Progress` moves."""
    return f"copy-back {replica.snapshot_id} of {label}: {replica.state} {replica.progress}%\n"


def copy_slots_taken_line(label: str, region: str, delay: float) -> str:
    """The stderr line while every copy slot of the target region is taken."""
    return (
        f"copy-back of {label}: every copy slot in {region} is taken; "
        f"trying again in {delay:.0f}s\n"
    )
