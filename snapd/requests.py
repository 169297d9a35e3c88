"""What each command was asked to do: typed, frozen, checked records built by the CLI.

The command line ends in `cli.py`: it turns argv into one of these (or `RestoreRequest`,
which lives with the restore decisions in `restore_plan.py`) and the commands take them.
Nothing below the CLI sees an `argparse.Namespace`, so a command can be called — and
tested — with plain values, and a flag renamed on the command line changes one place.

Pure: data only (docs/architecture.md#pure-and-io).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from snapd.models import Replica

#: The output formats of each command's `-o`, as the contract names them.
TextFormat = Literal["text", "json", "yaml"]
TableFormat = Literal["table", "wide", "json", "yaml"]


@dataclass(frozen=True, slots=True)
class RunRequest:
    """`snapd run`: the daemon takes nothing but the settings."""


@dataclass(frozen=True, slots=True)
class SyncRequest:
    """`snapd sync`: one cycle now, then wait for the copies at most `timeout_seconds`."""

    dry_run: bool
    force: bool
    timeout_seconds: float
    output: TextFormat


@dataclass(frozen=True, slots=True)
class ListRequest:
    """`snapd list`: the replicas, filtered by backup, namespace, PVC and schedule."""

    output: TableFormat
    backup: str | None = None
    namespace: str | None = None
    pvc: str | None = None
    schedule: str | None = None

    def matches(self, replica: Replica) -> bool:
        """Whether a replica passes every filter given (an unset filter passes all)."""
        return all(
            wanted is None or wanted == value
            for wanted, value in (
                (self.backup, replica.backup),
                (self.namespace, replica.volume.namespace),
                (self.pvc, replica.volume.pvc),
                (self.schedule, replica.schedule),
            )
        )


@dataclass(frozen=True, slots=True)
class StatusRequest:
    """`snapd status`: coverage per schedule and per PVC, optionally of one namespace."""

    output: TextFormat
    namespace: str | None = None


@dataclass(frozen=True, slots=True)
class DrManifestsRequest:
    """`snapd dr-manifests`: the DR cluster's Velero objects, named as asked."""

    velero_namespace: str
    bsl_name: str
