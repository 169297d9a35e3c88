"""Settings: sources and their order, validation, and one-line errors."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from snapd.config import format_duration, load_settings, parse_duration
from snapd.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("0.5", 0.5),
        ("500ms", 0.5),
        ("90s", 90),
        ("5m", 300),
        ("1h30m", 5400),
        ("30d", 2592000),
        (15, 15),
    ],
    ids=["seconds", "fraction", "ms", "s", "m", "h-m", "d", "int"],
)
def test_durations(text: str | int, seconds: float) -> None:
    """Every duration form of the contract parses to the right length."""
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "text",
    ["", "5x", "m5", "1h 30m", "-5", "1.2.3s"],
    ids=["empty", "unit", "order", "space", "negative", "number"],
)
def test_bad_durations(text: str) -> None:
    """A malformed duration is refused with what is expected."""
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_format_duration() -> None:
    """Durations log in their shortest readable form."""
    assert format_duration(timedelta(hours=1, minutes=30)) == "1h30m"
    assert format_duration(timedelta(milliseconds=500)) == "500ms"


def test_flag_beats_env_beats_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Flags override the environment, which overrides the YAML file."""
    config = tmp_path / "snapd.yaml"
    config.write_text("max_in_flight: 3\nretention_keep_last: 4\npoll_interval: 1m\n")
    monkeypatch.setenv("SNAPD_MAX_IN_FLIGHT", "7")
    monkeypatch.setenv("SNAPD_RETENTION_KEEP_LAST", "5")
    settings = load_settings({"max_in_flight": "9"}, config)
    assert settings.max_in_flight == 9
    assert settings.retention_keep_last == 5
    assert settings.poll_interval == timedelta(minutes=1)


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        ({"max_in_flight": "21"}, "max_in_flight (SNAPD_MAX_IN_FLIGHT, --max-in-flight)"),
        ({"max_in_flight": "0"}, "max_in_flight"),
        ({"prune_max_fraction": "0"}, "prune_max_fraction"),
        ({"prune_max_fraction": "1.5"}, "prune_max_fraction"),
        ({"source_region": "europe"}, "source_region"),
        ({"retention_max_age": "a month"}, "retention_max_age"),
        ({"retention_keep_last": "0"}, "retention_keep_last"),
        ({"velero_bucket": "a/b"}, "velero_bucket"),
        ({"log_format": "xml"}, "log_format"),
    ],
    ids=[
        "in-flight-high",
        "in-flight-zero",
        "fraction-zero",
        "fraction-high",
        "region",
        "age",
        "keep-last",
        "bucket",
        "log-format",
    ],
)
def test_bad_values_name_the_setting(flags: dict[str, str], named: str) -> None:
    """A bad value is one line naming the setting and where it is set."""
    with pytest.raises(ConfigError) as caught:
        load_settings(flags)
    message = str(caught.value)
    assert named in message
    assert "\n" not in message


def test_unknown_yaml_key(tmp_path: Path) -> None:
    """A typo in the YAML file is refused, not silently ignored."""
    config = tmp_path / "snapd.yaml"
    config.write_text("velero_bukket: x\n")
    with pytest.raises(ConfigError, match="velero_bukket"):
        load_settings({}, config)


def test_scope_defaults() -> None:
    """The scope is the bucket, or bucket/prefix, with slashes stripped at the ends."""
    assert load_settings({"velero_bucket": "bkt"}).scope == "bkt"
    assert load_settings({"velero_bucket": "bkt", "velero_prefix": "/velero/prod/"}).scope == (
        "bkt/velero/prod"
    )
    assert load_settings({"velero_bucket": "bkt", "cluster": "prod"}).scope == "prod"


def test_schedules_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lists are comma-separated in the environment."""
    monkeypatch.setenv("SNAPD_SCHEDULES", "daily, weekly")
    assert load_settings({}).schedules == ["daily", "weekly"]


def test_require_names_missing_setting() -> None:
    """A command's missing setting is one line that says what to set."""
    with pytest.raises(ConfigError, match="SNAPD_VELERO_BUCKET"):
        load_settings({}).require("velero_bucket")


@pytest.mark.parametrize(
    ("text", "minutes"),
    [("15m", 15), ("1h30m", 90), ("48h", 2880), ("2700", 45), ("1d", 1440)],
    ids=["least", "h-m", "most", "seconds", "day"],
)
def test_copy_completion_duration_in_15_minute_steps(text: str, minutes: int) -> None:
    """A time-based copy's duration becomes EC2's CompletionDurationMinutes."""
    settings = load_settings({"copy_completion_duration": text})
    assert settings.completion_minutes == minutes


def test_copy_completion_duration_unset_is_a_standard_copy() -> None:
    """Unset: no CompletionDurationMinutes at all."""
    assert load_settings({}).completion_minutes is None


@pytest.mark.parametrize(
    "text",
    ["10m", "20m", "48h15m", "0", "15m30s", "soon"],
    ids=["below", "off-step", "over-48h", "zero", "seconds", "garbage"],
)
def test_bad_copy_completion_duration_names_the_setting(text: str) -> None:
    """A value EC2 would refuse is one ConfigError line naming the setting and the rule."""
    with pytest.raises(ConfigError) as caught:
        load_settings({"copy_completion_duration": text})
    message = str(caught.value)
    assert "SNAPD_COPY_COMPLETION_DURATION" in message
    assert "\n" not in message
    assert "15 minutes" in message or "duration" in message
