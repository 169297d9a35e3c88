"""The benchmark's pure parts: the bounds it judges against and the table it prints.

The benchmark itself (`make bench`) runs for minutes against moto and is never run here.
"""

from __future__ import annotations

import itertools

import pytest

from simworld import bench
from simworld.bench import Figure


@pytest.mark.parametrize(
    ("count", "limit", "duration", "foreign", "expected"),
    [
        pytest.param(200, 20, 3.0, 0, 30.0, id="whole-rounds"),
        pytest.param(201, 20, 3.0, 0, 33.0, id="one-more-copy-costs-a-round"),
        pytest.param(200, 20, 3.0, 5, 42.0, id="foreign-copies-take-slots"),
        pytest.param(1, 20, 2.5, 0, 2.5, id="single-copy"),
        pytest.param(0, 20, 3.0, 0, 0.0, id="nothing-to-copy"),
    ],
)
def test_copy_bound_is_rounds_times_duration(
    count: int, limit: int, duration: float, foreign: int, expected: float
) -> None:
    """The best makespan is ⌈N/(L−F)⌉·D."""
    assert bench.copy_bound(count, limit, duration, foreign) == pytest.approx(expected)


def test_copy_bound_refuses_when_no_slot_is_left() -> None:
    """Foreign copies holding every slot leave no bound to speak of."""
    with pytest.raises(ValueError, match="no copy slot"):
        bench.copy_bound(10, 20, 3.0, foreign=20)


@pytest.mark.parametrize(
    ("objects", "pages"),
    [
        pytest.param(0, 1, id="empty-bucket-still-lists"),
        pytest.param(999, 1, id="under-a-page"),
        pytest.param(1000, 1, id="exactly-a-page"),
        pytest.param(1001, 2, id="a-page-and-one"),
        pytest.param(10_000, 10, id="ten-thousand"),
    ],
)
def test_warm_cycle_lists_one_page_per_thousand_objects(objects: int, pages: int) -> None:
    """A warm cycle's ListObjectsV2 target is ⌈objects under backups/ / 1000⌉."""
    assert bench.warm_list_calls(objects) == pages


@pytest.mark.parametrize(
    ("cost_a", "cost_b", "exponent"),
    [
        pytest.param(10.0, 100.0, 1.0, id="linear"),
        pytest.param(10.0, 1000.0, 2.0, id="quadratic"),
        pytest.param(10.0, 10.0, 0.0, id="flat"),
    ],
)
def test_growth_exponent(cost_a: float, cost_b: float, exponent: float) -> None:
    """Cost ∝ size^k between 1,000 and 10,000 backups gives k."""
    assert bench.growth_exponent(1000, cost_a, 10_000, cost_b) == pytest.approx(exponent)


def test_busy_share_weights_by_time_and_clips_to_the_window() -> None:
    """Two slots, one busy all window, one busy half of it (part outside): 75 %."""
    intervals = [(0.0, 10.0), (5.0, 20.0)]
    assert bench.busy_share(intervals, 0.0, 10.0, capacity=2) == pytest.approx(0.75)
    assert bench.busy_share([], 0.0, 10.0, capacity=2) == 0.0
    assert bench.busy_share(intervals, 5.0, 5.0, capacity=2) == 0.0


@pytest.mark.parametrize(
    ("figure", "verdict"),
    [
        pytest.param(
            Figure("copy", "makespan", 32.0, "s", bound=30.0, target=1.10), "PASS", id="ratio-in"
        ),
        pytest.param(
            Figure("copy", "makespan", 34.0, "s", bound=30.0, target=1.10), "FAIL", id="ratio-out"
        ),
        pytest.param(
            Figure("copy", "slot use", 0.95, target=0.90, compare=">="), "PASS", id="at-least-in"
        ),
        pytest.param(
            Figure("copy", "slot use", 0.85, target=0.90, compare=">="), "FAIL", id="at-least-out"
        ),
        pytest.param(Figure("disc", "GetObject", 0, target=0), "PASS", id="zero-is-zero"),
        pytest.param(Figure("disc", "RSS", 120.0, "MB"), "-", id="no-target-no-verdict"),
        pytest.param(Figure("disc", "cycle", None, target=0), "FAIL", id="not-measured-fails"),
    ],
)
def test_verdicts(figure: Figure, verdict: str) -> None:
    """A figure passes on its ratio when it has a bound, on its value otherwise."""
    assert figure.verdict == verdict


def test_ratio_is_value_over_bound() -> None:
    """The ratio column is value ÷ bound, absent without a bound."""
    assert Figure("c", "m", 33.0, bound=30.0).ratio == pytest.approx(1.1)
    assert Figure("c", "m", 33.0).ratio is None
    assert Figure("c", "m", None, bound=30.0).ratio is None


def test_table_shows_value_bound_ratio_target_and_result() -> None:
    """One Markdown row per figure: value with unit, bound, ratio, target, PASS/FAIL."""
    table = bench.render_table(
        [
            Figure("copy F=0", "makespan", 34.28, "s", bound=30.0, target=1.10),
            Figure("discovery 10,000", "peak RSS", 166.8, "MB", target=300.0),
            Figure("discovery 10,000", "cold: S3 requests", 14844),
        ]
    )
    lines = table.splitlines()
    assert lines[0] == "| section | figure | value | bound | ratio | target | result |"
    assert lines[1].startswith("| --- |")
    assert lines[2] == "| copy F=0 | makespan | 34.3 s | 30 s | 1.14 | ratio <= 1.10 | FAIL |"
    assert lines[3] == "| discovery 10,000 | peak RSS | 167 MB |  |  | <= 300 MB | PASS |"
    assert lines[4] == "| discovery 10,000 | cold: S3 requests | 14844 |  |  |  | - |"


def test_summary_counts_and_names_the_failures() -> None:
    """The last line says how many targets passed and which failed."""
    figures = [
        Figure("copy", "makespan", 34.0, bound=30.0, target=1.10),
        Figure("copy", "calls", 1.7, target=3.0),
        Figure("copy", "refusals", 17),
    ]
    assert bench.summary_line(figures) == "1 PASS, 1 FAIL (copy: makespan)"


def test_results_round_trip_through_json_records() -> None:
    """results.json's figure records rebuild the same figures (RESULTS.md is made from them)."""
    figures = [Figure("copy", "makespan", 34.0, "s", bound=30.0, target=1.10, note="n")]
    rebuilt = bench.figures_from({"figures": [f.as_dict() for f in figures]})
    assert rebuilt == figures


@pytest.mark.parametrize(
    ("environ", "body", "expected"),
    [
        pytest.param(
            {
                "REQUEST_METHOD": "GET",
                "QUERY_STRING": "list-type=2&prefix=backups%2F&delimiter=%2F",
                "HTTP_AUTHORIZATION": "AWS4-HMAC-SHA256 Credential=testing/20261123/"
                "eu-west-1/s3/aws4_request, SignedHeaders=host, Signature=abc",
            },
            b"",
            ("s3", "ListObjectsV2"),
            id="s3-list",
        ),
        pytest.param(
            {
                "REQUEST_METHOD": "GET",
                "QUERY_STRING": "",
                "HTTP_AUTHORIZATION": "AWS4-HMAC-SHA256 Credential=testing/20261123/"
                "eu-west-1/s3/aws4_request, SignedHeaders=host, Signature=abc",
            },
            b"",
            ("s3", "GetObject"),
            id="s3-get",
        ),
        pytest.param(
            {
                "REQUEST_METHOD": "POST",
                "HTTP_AUTHORIZATION": "AWS4-HMAC-SHA256 Credential=testing/20261123/"
                "eu-central-1/ec2/aws4_request, SignedHeaders=host, Signature=abc",
            },
            b"Action=DescribeSnapshots&Version=2016-11-15&OwnerId.1=self",
            ("ec2", "DescribeSnapshots"),
            id="ec2-action",
        ),
        pytest.param({"REQUEST_METHOD": "POST"}, b"", ("other", "POST"), id="moto-api-reset"),
    ],
)
def test_requests_to_moto_are_classified(
    environ: dict[str, str], body: bytes, expected: tuple[str, str]
) -> None:
    """The request log tells S3 from EC2 by the signing scope, and names the operation."""
    assert bench.classify(environ, body) == expected


def test_watched_backups_are_spread_evenly() -> None:
    """A 10 % watched share picks every tenth backup, 1,000 of 10,000."""
    watched = [i for i in range(10_000) if bench._is_watched(i, 0.1)]
    assert len(watched) == 1000
    assert all(b - a == 10 for a, b in itertools.pairwise(watched))
    assert sum(bench._is_watched(i, 0.25) for i in range(1000)) == 250


def _run(backups: int, cpu: float, s3: int) -> dict[str, object]:
    """A discovery run record with only what the CPU figures read."""
    cycle = {
        "seconds": 10.0,
        "sources": 0,
        "errors": 0,
        "snapd_cpu_seconds": cpu,
        "moto_cpu_total": 1.0,
        "by_service": {"s3": s3},
        "by_operation": {},
    }
    return {"backups": backups, "cold": cycle, "warm": cycle, "peak_rss_mb": 100.0}


def test_cold_cpu_targets_per_request_at_every_size_and_whole_cycle_at_ten_thousand() -> None:
    """≤ 2 ms of snapd CPU per S3 request on every cold cycle; ≤ 60 s for the cold cycle
    itself only at 10,000 backups."""
    figures = bench.discovery_figures([_run(1000, 2.5, 1000), _run(10_000, 59.0, 30_000)], 0.1)
    per_request = {f.section: f for f in figures if f.name == "cold: snapd CPU per S3 request"}
    assert per_request["discovery 1,000"].value == pytest.approx(2.5)
    assert per_request["discovery 1,000"].verdict == "FAIL"
    assert per_request["discovery 10,000"].verdict == "PASS"
    whole = {f.section: f for f in figures if f.name == "cold: snapd CPU"}
    assert whole["discovery 1,000"].verdict == "-"
    assert whole["discovery 10,000"].verdict == "PASS"
    assert whole["discovery 10,000"].target == 60.0


@pytest.mark.parametrize(
    ("key", "label", "package"),
    [
        pytest.param(
            ("/x/.venv/lib/python3.11/site-packages/botocore/parsers.py", 343, "_parse_shape"),
            "botocore/parsers.py:_parse_shape",
            "botocore",
            id="site-package",
        ),
        pytest.param(
            ("/usr/lib/python3.11/asyncio/base_events.py", 1845, "_run_once"),
            "asyncio/base_events.py:_run_once",
            "asyncio",
            id="stdlib-package",
        ),
        pytest.param(
            ("/usr/lib/python3.11/inspect.py", 449, "isawaitable"),
            "inspect.py:isawaitable",
            "inspect",
            id="stdlib-module",
        ),
        pytest.param(
            ("~", 0, "<built-in method builtins.isinstance>"),
            "<built-in method builtins.isinstance>",
            "C",
            id="built-in",
        ),
    ],
)
def test_profile_frames_are_named_by_package(
    key: tuple[str, int, str], label: str, package: str
) -> None:
    """Frames read as `package/module.py:function`; built-ins by their own name."""
    assert bench.frame_label(key) == label
    assert bench.frame_package(key) == package


def test_profile_summary_charges_built_ins_to_their_callers() -> None:
    """A C function's time goes to the Python packages that called it, in proportion; the
    phases are the cumulative time of their frames."""
    parse = ("/v/site-packages/aiobotocore/parsers.py", 40, "parse")
    shape = ("/v/site-packages/botocore/parsers.py", 343, "_parse_shape")
    loop = ("/usr/lib/python3.11/asyncio/base_events.py", 1845, "_run_once")
    builtin = ("~", 0, "<method 'get' of 'dict' objects>")
    stats = {
        parse: (10, 10, 0.5, 3.0, {loop: (10, 10, 0.5, 3.0)}),
        shape: (100, 100, 1.5, 2.5, {parse: (100, 100, 1.5, 2.5)}),
        loop: (1, 1, 0.2, 3.5, {}),
        builtin: (50, 50, 1.0, 1.0, {shape: (40, 40, 0.75, 0.75), loop: (10, 10, 0.25, 0.25)}),
    }
    summary = bench.summarize_profile(stats, frames=2)
    assert summary["profiled_seconds"] == pytest.approx(3.2)
    assert summary["by_package"] == {"botocore": 2.25, "aiobotocore": 0.5}
    assert [row["frame"] for row in summary["top_self"]] == [
        "botocore/parsers.py:_parse_shape",
        "<method 'get' of 'dict' objects>",
    ]
    assert summary["phases"]["response parsing"] == 3.0
    assert summary["phases"]["signing"] == 0


def test_profile_notes_show_before_and_now() -> None:
    """RESULTS.md's profile note names each phase's share before the tuning and now, and
    the top frames of both; no profile, no note."""
    profile = {
        "backups": 1000,
        "process_cpu_seconds": 30.0,
        **{k: v for k, v in bench.PROFILE_BEFORE.items() if k != "commit"},
    }
    (note,) = bench.profile_notes(profile)
    assert "endpoint resolution 18% → 18%" in note
    assert "dateutil/parser/_parser.py:get_token" in note
    assert bench.PROFILE_BEFORE["commit"] in note
    assert bench.profile_notes(None) == []
