"""Turning records into what a command prints: the plan, the replica list, the status.

Pure: records in, strings or JSON-ready dicts out. stdout carries only these; logs go to
stderr. Tables never cut backup, namespace or PVC names (the contract), so columns are
sized to their longest value.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import yaml

from snapd.models import CopyAction, KeptAction, Plan, PruneAction, Replica
from snapd.tags import format_time


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


def yaml_stream(documents: Sequence[Mapping[str, Any]]) -> str:
    """A `---`-separated YAML stream, keys in the order given (for `kubectl apply -f -`)."""
    return yaml.safe_dump_all([dict(d) for d in documents], sort_keys=False, explicit_start=True)


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
