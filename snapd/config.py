"""Settings: every knob of the contract, from flags, the environment, a YAML file, defaults.

Strongest first: command flags, `SNAPD_…` environment, the `--config` YAML file, defaults.
The YAML key is the environment name without `SNAPD_`, lower-case; the flag is that key in
kebab-case. Every problem becomes one `ConfigError` line that names the setting, where it
can be set, and what is expected, so `snapd` exits 2 before touching anything.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import BeforeValidator, Field, ValidationError, ValidationInfo, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from snapd.errors import ConfigError

ENV_PREFIX = "SNAPD_"

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_ZONE = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}[a-z](-[a-z0-9-]+)?$")
_SCHEDULE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
#: A scope is an EC2 tag value matched by a tag *filter*, where `*` and `?` are wildcards
#: (and `\` escapes them): so only AWS's portable tag characters, which hold none of them.
_SCOPE_CHARS = re.compile(r"[\w .:/=+\-@]")
SCOPE_HELP = "letters, digits, spaces and _ . : / = + - @ (no * ? or \\)"
#: EC2 tag values hold at most 256 characters.
SCOPE_MAX_LENGTH = 256
#: Characters a BSL prefix must not hold: EC2 filter wildcards and escapes, control codes.
_PREFIX_FORBIDDEN = re.compile(r"[*?\\\x00-\x1f\x7f]")

#: EC2's time-based copy (CompletionDurationMinutes): 15 minutes to 48 hours in 15-minute steps.
COMPLETION_STEP_MINUTES, COMPLETION_MIN_MINUTES, COMPLETION_MAX_MINUTES = 15, 15, 48 * 60

DURATION_HELP = "a duration: seconds (90, 0.5) or units ms s m h d combined (500ms, 5m, 1h30m, 30d)"


def parse_duration(value: object) -> timedelta:
    """`90`, `0.5`, `500ms`, `1h30m`, `30d` → timedelta; anything else is a ValueError."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(f"expected {DURATION_HELP}")  # noqa: TRY004 - pydantic wants ValueError
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        seconds = _parse_duration_text(text)
    if seconds < 0:
        raise ValueError(f"expected {DURATION_HELP}, not a negative value")
    return timedelta(seconds=seconds)


def _parse_duration_text(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    position, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if not text or position != len(text):
        raise ValueError(f"expected {DURATION_HELP}, got {text!r}")
    return total


def format_duration(value: timedelta) -> str:
    """The shortest readable form, for logs and the README (`1h30m`, `15s`, `500ms`)."""
    seconds = value.total_seconds()
    if seconds < 1 and seconds != int(seconds):
        return f"{round(seconds * 1000)}ms"
    parts = []
    remaining = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def _split_list(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _split_map(value: object) -> object:
    """`src-az=dr-az,…` → {"src-az": "dr-az"}; a malformed entry is a ValueError."""
    if not isinstance(value, str):
        return value
    mapping: dict[str, str] = {}
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        source, sep, target = (side.strip() for side in item.partition("="))
        if not sep or not source or not target:
            raise ValueError(f"expected source-zone=dr-zone pairs, comma-separated, got {item!r}")
        mapping[source] = target
    return mapping


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def _optional_duration(value: object) -> timedelta | None:
    """Like `parse_duration`, with unset (None or an empty string) meaning none."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return parse_duration(value)


OptionalDuration = Annotated[timedelta | None, BeforeValidator(_optional_duration)]
CommaList = Annotated[list[str], NoDecode, BeforeValidator(_split_list)]
ZoneMap = Annotated[dict[str, str], NoDecode, BeforeValidator(_split_map)]


class _YamlSource(PydanticBaseSettingsSource):
    """The `--config FILE` YAML mapping; keys are the setting names (`velero_bucket`)."""

    def __init__(self, settings_cls: type[BaseSettings], data: Mapping[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = dict(data)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._data.items() if k in self.settings_cls.model_fields}


class Settings(BaseSettings):
    """Every setting of the contract; descriptions feed `--help` and the README table."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", validate_default=True, frozen=True
    )
    #: The `--config` file's values (set on a subclass by `load_settings`), weakest source.
    _file_values: ClassVar[dict[str, Any]] = {}

    velero_bucket: str | None = Field(None, description="S3 bucket of the Velero BSL.")
    velero_prefix: str = Field("", description="BSL `objectStorage.prefix` inside the bucket.")
    schedules: CommaList = Field(
        default_factory=list, description="Velero schedules to replicate (comma-separated)."
    )
    source_region: str | None = Field(None, description="Region where Velero's snapshots live.")
    destination_region: str | None = Field(None, description="Region that holds the replicas.")
    cluster: str | None = Field(
        None, description="Scope tag value; default the bucket, or bucket/prefix."
    )
    max_in_flight: int = Field(
        5, ge=1, le=20, description="Most pending copies of ours at once (AWS allows 20)."
    )
    destination_kms_key_id: str | None = Field(
        None, description="KMS key in the destination region for the copies (default AWS key)."
    )
    copy_failed_backups: bool = Field(False, description="Also copy snapshots of Failed backups.")
    upload_grace: Duration = Field(
        timedelta(hours=1),
        description="How long after a backup completed its files may still be arriving.",
    )
    copy_retries: int = Field(
        3, ge=1, le=20, description="Tries of one copy that ends in `error`, per source."
    )
    copy_completion_duration: Duration | None = Field(
        None,
        description="Time-based copy: each copy promises to complete within this "
        "(15m to 48h in 15-minute steps; costs extra, see README); unset = standard copy.",
    )
    retention_max_age: Duration = Field(
        timedelta(days=30), description="Replicas whose backup is older than this are pruned."
    )
    retention_keep_last: int = Field(
        1, ge=1, description="Newest completed replicas always kept per PVC."
    )
    prune_max_fraction: float = Field(
        0.5, gt=0, le=1, description="Most of the completed replicas one prune pass may delete."
    )
    lock_mode: Literal["off", "governance", "compliance"] = Field(
        "off", description="EBS snapshot lock on kept replicas: off, governance or compliance."
    )
    lock_cool_off: OptionalDuration = Field(
        None, description="Compliance cooling-off period, whole hours 1h-72h (default none)."
    )
    lock_margin: Duration = Field(
        timedelta(days=1), description="How long a lock outlasts the replica's retention."
    )
    sync_interval: Duration = Field(timedelta(minutes=5), description="Time between cycles.")
    prune_interval: Duration = Field(timedelta(hours=1), description="Time between prune passes.")
    poll_interval: Duration = Field(
        timedelta(seconds=15), description="Time between polls of pending copies."
    )
    drain_timeout: Duration = Field(
        timedelta(seconds=20), description="How long SIGTERM waits for running API calls."
    )
    leader_election: bool = Field(False, description="Work only while holding the Lease.")
    lease_name: str = Field("snapd", description="Name of the coordination.k8s.io Lease.")
    lease_namespace: str = Field(
        default_factory=lambda: os.environ.get("POD_NAMESPACE") or "default",
        description="Namespace of the Lease (default $POD_NAMESPACE, else `default`).",
    )
    lease_duration: Duration = Field(
        timedelta(seconds=15), description="How long a Lease holds without renewal."
    )
    metrics_port: int = Field(
        8080, ge=0, le=65535, description="Port of /metrics, /healthz, /readyz."
    )
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="auto = console on a terminal, JSON otherwise."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Lowest level logged."
    )
    dr_bucket: str | None = Field(
        None,
        description="S3 bucket in the destination region for the DR location (unset = off).",
    )
    dr_prefix: str = Field("", description="Prefix of the DR location inside dr_bucket.")
    dr_zones: ZoneMap = Field(
        default_factory=dict,
        description="DR zone per source zone, `src-az=dr-az,…` (default: the same letter).",
    )

    @field_validator("velero_bucket", "dr_bucket")
    @classmethod
    def _bucket(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        value = value.strip("/")
        if not (_BUCKET.match(value) or value.startswith("arn:aws:s3:")):
            prefix = str(info.field_name).replace("bucket", "prefix")
            raise ValueError(
                "expected an S3 bucket name: 3-63 lowercase letters, digits, dots and "
                f"hyphens, no '/' (put folders in {prefix}), got {value!r}"
            )
        return value

    @field_validator("velero_prefix", "dr_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        value = value.strip("/")
        bad = _PREFIX_FORBIDDEN.search(value)
        if bad:
            raise ValueError(
                f"expected a BSL prefix without {bad.group()!r} (the prefix is part of the "
                "default scope, matched as an EC2 tag filter where * and ? are wildcards), "
                f"got {value!r}"
            )
        return value

    @field_validator("cluster")
    @classmethod
    def _cluster(cls, value: str | None, info: ValidationInfo) -> str | None:
        """The scope, given or derived from bucket/prefix, must be an exact EC2 tag value:
        a wildcard would make the inventory list — and the pruner judge — other scopes'
        replicas, and a value over 256 characters would fail only at the first copy."""
        if value:
            _check_scope(value)
            return value
        bucket, prefix = info.data.get("velero_bucket"), info.data.get("velero_prefix")
        if bucket:
            default = "/".join(p for p in (bucket.strip("/"), (prefix or "").strip("/")) if p)
            _check_scope(default, default=True)
        return value

    @field_validator("source_region", "destination_region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is not None and not _REGION.match(value):
            raise ValueError(f"expected an AWS region name like eu-west-1, got {value!r}")
        return value

    @field_validator("schedules")
    @classmethod
    def _schedules(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _SCHEDULE.match(name):
                raise ValueError(f"expected Velero schedule names (DNS-1123), got {name!r}")
        return value

    @field_validator("dr_zones")
    @classmethod
    def _zones(cls, value: dict[str, str]) -> dict[str, str]:
        for zone in (*value, *value.values()):
            if not _ZONE.match(zone):
                raise ValueError(f"expected availability zone names like eu-west-1a, got {zone!r}")
        return value

    @field_validator("copy_completion_duration")
    @classmethod
    def _completion(cls, value: timedelta | None) -> timedelta | None:
        if value is None:
            return None
        minutes = value.total_seconds() / 60
        if (
            minutes != int(minutes)
            or int(minutes) % COMPLETION_STEP_MINUTES
            or not COMPLETION_MIN_MINUTES <= minutes <= COMPLETION_MAX_MINUTES
        ):
            raise ValueError(
                "expected a multiple of 15 minutes from 15m to 48h, as EC2's time-based copy "
                f"takes (e.g. 15m, 1h30m, 48h), got {format_duration(value)}"
            )
        return value

    @field_validator("poll_interval", "sync_interval", "prune_interval", "lease_duration")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError(f"expected a positive {DURATION_HELP}")
        return value

    @field_validator("lock_cool_off")
    @classmethod
    def _cool_off(cls, value: timedelta | None, info: ValidationInfo) -> timedelta | None:
        if value is None:
            return None
        hours = value.total_seconds() / 3600
        if not (hours.is_integer() and 1 <= hours <= 72):
            raise ValueError(f"expected whole hours from 1h to 72h (AWS's range), got {value}")
        if info.data.get("lock_mode") != "compliance":
            raise ValueError("a cooling-off period applies only with lock_mode compliance")
        return value

    @field_validator("lock_margin")
    @classmethod
    def _margin(cls, value: timedelta) -> timedelta:
        if value < timedelta(hours=1):
            raise ValueError(f"expected at least 1h ({DURATION_HELP})")
        return value

    @property
    def scope(self) -> str | None:
        """The `snapd.io/cluster` value: `cluster`, else bucket or bucket/prefix."""
        if self.cluster:
            return self.cluster
        if not self.velero_bucket:
            return None
        parts = [self.velero_bucket.strip("/"), self.velero_prefix.strip("/")]
        return "/".join(p for p in parts if p)

    @property
    def dr_root(self) -> str | None:
        """`s3://bucket/prefix` of the DR location, or None when it is off."""
        if not self.dr_bucket:
            return None
        return (
            f"s3://{self.dr_bucket}/{self.dr_prefix}"
            if self.dr_prefix
            else f"s3://{self.dr_bucket}"
        )

    def check_dr_location(self) -> None:
        """ConfigError when the DR root is the source location or nested with it.

        Velero marks a BSL invalid when its root holds any folder other than its own, so a
        DR root inside the source root (or around it) would break both locations.
        """
        if not self.dr_bucket or self.dr_bucket != self.velero_bucket:
            return
        source, dr = self.velero_prefix, self.dr_prefix
        if (
            source == dr
            or not source
            or not dr
            or dr.startswith(source + "/")
            or source.startswith(dr + "/")
        ):
            raise ConfigError(
                f"invalid setting {describe('dr_bucket')}: the DR location {self.dr_root} must "
                f"differ from (and not contain or sit inside) the Velero location "
                f"s3://{self.velero_bucket}/{source}; use another bucket or prefix"
            )

    @property
    def completion_minutes(self) -> int | None:
        """CompletionDurationMinutes for replication copies; None for a standard copy."""
        if self.copy_completion_duration is None:
            return None
        return int(self.copy_completion_duration.total_seconds() // 60)

    @property
    def backups_prefix(self) -> str:
        """The S3 key prefix of the backups folder: `<prefix>/backups/` or `backups/`."""
        return f"{self.velero_prefix}/backups/" if self.velero_prefix else "backups/"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Flags arrive as init kwargs; `load_settings` gives a subclass its YAML file's values.
        return (init_settings, env_settings, _YamlSource(settings_cls, cls._file_values))

    def require(self, *names: str) -> None:
        """Raise ConfigError for the first of `names` that is unset (per-command needs)."""
        for name in names:
            value = getattr(self, name)
            if value in (None, "", []):
                raise ConfigError(f"missing setting {describe(name)}: {_expected(name)}")

    def public_view(self) -> dict[str, object]:
        """The effective settings for the start-up log line; nothing here is a secret."""
        view: dict[str, object] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            view[name] = format_duration(value) if isinstance(value, timedelta) else value
        view["scope"] = self.scope
        return view


def _check_scope(scope: str, *, default: bool = False) -> None:
    """ValueError unless `scope` fits an EC2 tag value and holds no filter wildcard."""
    what = f"the default scope {scope[:72]!r} (bucket/prefix)" if default else "the scope"
    set_cluster = "; set cluster to a scope that " if default else ""
    if len(scope) > SCOPE_MAX_LENGTH:
        raise ValueError(
            f"expected {what} to fit an EC2 tag value ({SCOPE_MAX_LENGTH} characters), got "
            f"{len(scope)} characters" + (set_cluster + "does" if default else "")
        )
    bad = next((c for c in scope if not _SCOPE_CHARS.fullmatch(c)), None)
    if bad is not None:
        raise ValueError(
            f"expected {what} to hold {SCOPE_HELP} only, got {scope[:72]!r} with {bad!r}"
            + (set_cluster + "does" if default else "")
        )
    if scope != scope.strip():
        raise ValueError(f"expected {what} without leading or trailing spaces, got {scope!r}")


def _with_yaml_file(data: Mapping[str, Any]) -> type[Settings]:
    """Settings whose weakest source (after flags and environment) is the YAML mapping."""
    return type("SettingsFromFile", (Settings,), {"_file_values": dict(data)})


def describe(name: str) -> str:
    """`max_in_flight (SNAPD_MAX_IN_FLIGHT, --max-in-flight)`: every place a setting comes from."""
    return f"{name} ({ENV_PREFIX}{name.upper()}, --{name.replace('_', '-')})"


def _expected(name: str) -> str:
    field = Settings.model_fields[name]
    return field.description or "a value"


@dataclass(frozen=True)
class ConfigFile:
    """The `--config` YAML file: its mapping and the line each key sits on (for blame)."""

    path: Path
    data: dict[str, Any] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)

    def where(self, name: str) -> str:
        """`config file snapd.yaml line 3`: where a key of this file is."""
        line = self.lines.get(name)
        return f"config file {self.path}" + (f" line {line}" if line else "")


def read_config_file(path: Path) -> ConfigFile:
    """The `--config` file with the line of each key; any problem is one ConfigError line.

    A YAML error names the file, line and column; an unknown key names its line and the
    setting it most likely meant.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = " ".join(str(part) for part in (exc.context, exc.problem) if part)
        raise ConfigError(f"config file {path}{where}: not valid YAML: {problem}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if data is None:
        return ConfigFile(path)
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must be a mapping of setting: value")
    lines = {
        str(key.value): key.start_mark.line + 1
        for key, _ in (root.value if isinstance(root, yaml.MappingNode) else [])
    }
    config = ConfigFile(path, data, lines)
    for key in data:
        if key not in Settings.model_fields:
            raise ConfigError(f"{config.where(str(key))}: {unknown_setting(str(key))}")
    return config


def unknown_setting(name: str) -> str:
    """`unknown setting 'velero_bukket'; did you mean 'velero_bucket'?`"""
    close = difflib.get_close_matches(name.lower(), list(Settings.model_fields), n=1)
    hint = f"did you mean {close[0]!r}?" if close else "`snapd settings` lists every setting"
    return f"unknown setting {name!r}; {hint}"


def _in_environment(name: str) -> bool:
    """Whether `SNAPD_<NAME>` is set (pydantic-settings reads the environment case-blind)."""
    wanted = f"{ENV_PREFIX}{name}".lower()
    return any(key.lower() == wanted for key in os.environ)


def origin(name: str, flags: Mapping[str, Any], config: ConfigFile | None) -> str:
    """Where the effective value of a setting comes from: flag, environment, file, default."""
    if name in flags:
        return f"--{name.replace('_', '-')}"
    if _in_environment(name):
        return f"{ENV_PREFIX}{name.upper()}"
    if config is not None and name in config.data:
        return config.where(name)
    return "default"


def load_settings(flags: Mapping[str, Any], config_file: Path | None = None) -> Settings:
    """Settings from flags > environment > YAML file > defaults, or one ConfigError line."""
    return build_settings(flags, read_config_file(config_file) if config_file else None)


def build_settings(flags: Mapping[str, Any], config: ConfigFile | None) -> Settings:
    """Settings from flags > environment > the read `--config` file > defaults."""
    model = _with_yaml_file(config.data) if config else Settings
    try:
        settings = model(**dict(flags))
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, flags, config)) from exc
    _check_regions_differ(settings, flags, config)
    return settings


def _check_regions_differ(
    settings: Settings, flags: Mapping[str, Any], config: ConfigFile | None
) -> None:
    """Copies inside the source region are no disaster recovery: refuse them (exit 2)."""
    region = settings.destination_region
    if region is None or region != settings.source_region:
        return
    source = origin("destination_region", flags, config)
    blamed = f" (from {source})" if source.startswith("config file") else ""
    raise ConfigError(
        f"invalid setting {describe('destination_region')}{blamed}: {region} is also the "
        "source region, and copies in the same region are no disaster recovery; choose "
        "another region for the replicas"
    )


def _one_line(
    exc: ValidationError, flags: Mapping[str, Any] | None = None, config: ConfigFile | None = None
) -> str:
    error = exc.errors()[0]
    name = str(error["loc"][0]) if error["loc"] else "settings"
    message = str(error["msg"]).removeprefix("Value error, ")
    if name not in Settings.model_fields:
        return f"unknown setting {name!r}: {message}"
    given = error.get("input")
    shown = "" if isinstance(given, dict) or given is None else f" (got {given!r})"
    if "got" in message:
        shown = ""
    source = origin(name, flags or {}, config)
    if source.startswith("config file"):
        return f"invalid setting {name} in {source}: {message}{shown}"
    return f"invalid setting {describe(name)}: {message}{shown}"


def _default_text(name: str, info: FieldInfo) -> str | None:
    """A setting's default as the README and `snapd settings` show it (None: no default)."""
    if info.default_factory is not None:
        return "$POD_NAMESPACE or default" if name == "lease_namespace" else None
    if info.default is None:
        return None
    if isinstance(info.default, timedelta):
        return format_duration(info.default)
    if isinstance(info.default, bool):
        return str(info.default).lower()
    return '""' if info.default == "" else str(info.default)


def settings_table() -> str:
    """The README's configuration table, generated from the model (a test keeps them equal)."""
    rows = ["| setting | environment | flag | default | meaning |", "|---|---|---|---|---|"]
    for name, info in Settings.model_fields.items():
        text = _default_text(name, info)
        if text is None:
            default = "—"
        elif name == "lease_namespace":
            default = "`$POD_NAMESPACE` or `default`"
        else:
            default = f"`{text}`"
        rows.append(
            f"| `{name}` | `{ENV_PREFIX}{name.upper()}` | `--{name.replace('_', '-')}` "
            f"| {default} | {info.description} |"
        )
    return "\n".join(rows)


def settings_view(
    settings: Settings, flags: Mapping[str, Any], config: ConfigFile | None
) -> list[dict[str, Any]]:
    """`snapd settings`: every setting, its effective value and where that value came from."""
    rows = []
    for name, info in Settings.model_fields.items():
        value = getattr(settings, name)
        if isinstance(value, timedelta):
            value = format_duration(value)
        rows.append(
            {
                "name": name,
                "env": f"{ENV_PREFIX}{name.upper()}",
                "flag": f"--{name.replace('_', '-')}",
                "default": _default_text(name, info),
                "value": value,
                "source": origin(name, flags, config),
                "description": info.description,
            }
        )
    return rows
