"""Settings: every knob of the contract, from flags, the environment, a YAML file, defaults.

Strongest first: command flags, `SNAPD_…` environment, the `--config` YAML file, defaults.
The YAML key is the environment name without `SNAPD_`, lower-case; the flag is that key in
kebab-case. Every problem becomes one `ConfigError` line that names the setting, where it
can be set, and what is expected, so `snapd` exits 2 before touching anything.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
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
    copy_retries: int = Field(
        3, ge=1, le=20, description="Tries of one copy that ends in `error`, per source."
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
        return value.strip("/")

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

    @field_validator("poll_interval", "sync_interval", "prune_interval", "lease_duration")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError(f"expected a positive {DURATION_HELP}")
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
    def dr_enabled(self) -> bool:
        return bool(self.dr_bucket)

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


def _with_yaml_file(data: Mapping[str, Any]) -> type[Settings]:
    """Settings whose weakest source (after flags and environment) is the YAML mapping."""
    return type("SettingsFromFile", (Settings,), {"_file_values": dict(data)})


def describe(name: str) -> str:
    """`max_in_flight (SNAPD_MAX_IN_FLIGHT, --max-in-flight)`: every place a setting comes from."""
    return f"{name} ({ENV_PREFIX}{name.upper()}, --{name.replace('_', '-')})"


def _expected(name: str) -> str:
    field = Settings.model_fields[name]
    return field.description or "a value"


def read_yaml_file(path: Path) -> dict[str, Any]:
    """The `--config` file as a mapping; any problem is one ConfigError line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must be a mapping of setting: value")
    unknown = sorted(set(data) - set(Settings.model_fields))
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown setting {unknown[0]!r}; "
            f"known settings: {', '.join(Settings.model_fields)}"
        )
    return data


def load_settings(flags: Mapping[str, Any], config_file: Path | None = None) -> Settings:
    """Settings from flags > environment > YAML file > defaults, or one ConfigError line."""
    model = _with_yaml_file(read_yaml_file(config_file)) if config_file else Settings
    try:
        return model(**dict(flags))
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from exc


def _one_line(exc: ValidationError) -> str:
    error = exc.errors()[0]
    name = str(error["loc"][0]) if error["loc"] else "settings"
    message = str(error["msg"]).removeprefix("Value error, ")
    if name not in Settings.model_fields:
        return f"unknown setting {name!r}: {message}"
    given = error.get("input")
    shown = "" if isinstance(given, dict) or given is None else f" (got {given!r})"
    if "got" in message:
        shown = ""
    return f"invalid setting {describe(name)}: {message}{shown}"


def settings_table() -> str:
    """The README's configuration table, generated from the model (a test keeps them equal)."""
    rows = ["| setting | environment | flag | default | meaning |", "|---|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        if field.default_factory is not None:
            default = "`$POD_NAMESPACE` or `default`" if name == "lease_namespace" else "—"
        elif field.default is None:
            default = "—"
        elif isinstance(field.default, timedelta):
            default = f"`{format_duration(field.default)}`"
        elif isinstance(field.default, bool):
            default = f"`{str(field.default).lower()}`"
        else:
            default = f"`{field.default!s}`" if field.default != "" else '`""`'
        rows.append(
            f"| `{name}` | `{ENV_PREFIX}{name.upper()}` | `--{name.replace('_', '-')}` "
            f"| {default} | {field.description} |"
        )
    return "\n".join(rows)
