"""The small tree of errors snapd raises; every library error is translated into one of these.

The class decides what happens next: `ConfigError` exits 2 before any change,
`TransientError` is retried (by botocore, then by the next cycle), `PermanentError` is
reported and the work moves on to the next item. Nothing here imports a library.
"""

from __future__ import annotations


class SnapdError(Exception):
    """Base of every error snapd raises on purpose."""


class ConfigError(SnapdError):
    """A setting or a command-line argument is missing or wrong (exit 2, nothing changed)."""


class UsageError(ConfigError):
    """The command line itself is wrong (exit 2)."""


class AwsError(SnapdError):
    """An AWS call failed after botocore's retries.

    `operation` is botocore's operation name (`CopySnapshot`) and `code` the AWS error code
    (`ResourceLimitExceeded`), so callers and metrics can branch on them without botocore.
    """

    def __init__(self, operation: str, code: str, message: str) -> None:
        super().__init__(f"{operation} failed: {code}: {message}")
        self.operation = operation
        self.code = code
        self.message = message


class TransientError(AwsError):
    """Worth retrying later: throttling, 5xx, timeouts, connection errors, copy limit."""


class PermanentError(AwsError):
    """Retrying the same request will not help: access denied, invalid parameter, not found."""


class BackupReadError(SnapdError):
    """One Velero backup in the bucket could not be read or understood.

    Raised by the pure parsers with a reason an operator can act on; discovery turns it into
    an `errors` entry for that backup alone and carries on with the others.
    """


class KubeError(SnapdError):
    """A Kubernetes API call failed; `status` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class WorkFailedError(SnapdError):
    """The command ran but its work failed (exit 1): a copy, a prune, a restore step, a timeout."""


def first_error(group: ExceptionGroup[Exception]) -> Exception:
    """The first snapd error of a task group (so callers see `AwsError`, not a group)."""
    matched = group.subgroup(lambda e: isinstance(e, SnapdError))
    leaf: BaseException = matched if matched is not None else group
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    return leaf if isinstance(leaf, Exception) else group
