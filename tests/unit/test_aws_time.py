"""`snapd.aws.fast_timestamp`: AWS's timestamps read as botocore reads them, only faster."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from botocore.utils import parse_timestamp

from snapd.aws import fast_timestamp


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(
            "2024-01-01T02:00:00.000Z", datetime(2024, 1, 1, 2, tzinfo=UTC), id="s3-listing"
        ),
        pytest.param("2024-01-01T02:00:00Z", datetime(2024, 1, 1, 2, tzinfo=UTC), id="no-millis"),
        pytest.param(
            "2024-01-01T02:00:00.123456789Z",
            datetime(2024, 1, 1, 2, 0, 0, 123456, tzinfo=UTC),
            id="nanoseconds-truncated",
        ),
        pytest.param(
            "2024-01-01T03:00:00+01:00",
            datetime(2024, 1, 1, 3, tzinfo=timezone(timedelta(hours=1))),
            id="offset",
        ),
        pytest.param(
            "Tue, 02 Jan 2024 02:00:00 GMT",
            datetime(2024, 1, 2, 2, tzinfo=UTC),
            id="http-date-header",
        ),
        pytest.param("1704074400", datetime(2024, 1, 1, 2, tzinfo=UTC), id="epoch-seconds"),
    ],
)
def test_reads_every_form_as_botocore_does(value: str, expected: datetime) -> None:
    """The same instant as botocore's own parser, for ISO 8601 and every other form."""
    assert fast_timestamp(value) == expected
    assert fast_timestamp(value) == parse_timestamp(value)
    assert fast_timestamp(value).tzinfo is not None


def test_a_malformed_iso_time_falls_back_to_botocore() -> None:
    """Not valid ISO 8601 after all: botocore's parser decides (and raises as it would)."""
    with pytest.raises(ValueError, match="Invalid timestamp"):
        fast_timestamp("2024-13-45T99:00:00Z")
    with pytest.raises(ValueError, match="Invalid timestamp"):
        parse_timestamp("2024-13-45T99:00:00Z")
