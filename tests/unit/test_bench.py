"""The benchmark's pure parts: the bounds it judges against and the table it prints.

The benchmark itself (`make bench`) runs for minutes against moto and is never run here.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from simworld import bench
from simworld.bench import Figure
from snapd.models import Discovery


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


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        pytest.param(
            {
                "HTTP_AUTHORIZATION": "AWS4-HMAC-SHA256 Credential=testing/20261123/"
                "eu-west-1/s3/aws4_request, SignedHeaders=host, Signature=abc",
                "HTTP_HOST": "127.0.0.1:5000",
                "PATH_INFO": "/velero-backups/backups/daily-1/velero-backup.json",
            },
            ("eu-west-1", "velero-backups"),
            id="s3-path-style",
        ),
        pytest.param(
            {
                "HTTP_AUTHORIZATION": "AWS4-HMAC-SHA256 Credential=testing/20261123/"
                "eu-central-1/s3/aws4_request, SignedHeaders=host, Signature=abc",
                "HTTP_HOST": "snapd-dr.s3.amazonaws.com",
                "PATH_INFO": "/velero/dr/backups/",
            },
            ("eu-central-1", "snapd-dr"),
            id="s3-virtual-hosted",
        ),
        pytest.param(
            {
                "HTTP_AUTHORIZATION": "AWS4-HMAC-SHA256 Credential=testing/20261123/"
                "eu-central-1/ec2/aws4_request, SignedHeaders=host, Signature=abc",
                "HTTP_HOST": "127.0.0.1:5000",
                "PATH_INFO": "/",
            },
            ("eu-central-1", ""),
            id="ec2-has-no-bucket",
        ),
        pytest.param({"PATH_INFO": "/moto-api/reset"}, ("", ""), id="unsigned"),
    ],
)
def test_requests_know_their_region_and_bucket(
    environ: dict[str, str], expected: tuple[str, str]
) -> None:
    """The steady targets count per region (source vs destination DescribeSnapshots) and
    per bucket (the Velero bucket's listing vs the DR location's)."""
    assert bench.request_scope(environ) == expected


@pytest.mark.parametrize(
    ("count", "expected"), [(0, 1), (500, 1), (1000, 1), (1001, 2), (5000, 5), (10_001, 11)]
)
def test_pages_of_a_listing(count: int, expected: int) -> None:
    """⌈count/1000⌉, at least one: an empty answer is a request too."""
    assert bench.pages(count) == expected


def _request(operation: str, *, region: str = "", bucket: str = "") -> bench.Request:
    service = "s3" if bucket else "ec2"
    return bench.Request(0.0, service, operation, 0.0, 0.0, region, bucket)


def test_steady_counts_tell_regions_and_buckets_apart() -> None:
    """Source and destination DescribeSnapshots, Velero and DR listings counted apart."""
    requests = [
        _request("ListObjectsV2", region=bench.SOURCE_REGION, bucket=bench.BUCKET),
        _request("ListObjectsV2", region=bench.SOURCE_REGION, bucket=bench.BUCKET),
        _request("ListObjectsV2", region=bench.DESTINATION_REGION, bucket=bench.DR_BUCKET),
        _request("DescribeSnapshots", region=bench.DESTINATION_REGION),
        _request("DescribeSnapshots", region=bench.SOURCE_REGION),
        _request("DescribeLockedSnapshots", region=bench.DESTINATION_REGION),
    ]
    counts = bench.steady_counts(requests)
    assert counts == {
        "velero_list": 2,
        "get_object": 0,
        "inventory_pages": 1,
        "source_describe": 1,
        "source_volumes": 0,
        "dr_list": 1,
        "locked_pages": 1,
    }


def _steady_run(variant: str, **warm_counts: int) -> dict[str, object]:
    counts = {
        "velero_list": 10,
        "get_object": 0,
        "inventory_pages": 5,
        "source_describe": 0,
        "source_volumes": 0,
        "dr_list": 1,
        "locked_pages": 5,
        **warm_counts,
    }
    return {
        "backups": 10_000,
        "replicas": 5000,
        "objects": 60_000,
        "variant": variant,
        "published": 1000,
        "dr_objects": 5000,
        "cold": {"seconds": 100.0, "snapd_cpu_seconds": 50.0},
        "warm": {
            "seconds": 2.0,
            "snapd_cpu_seconds": 0.5,
            "moto_cpu_total": 3.0,
            "copies_planned": 0,
            "by_operation": {"s3:ListObjectsV2": 11, "ec2:DescribeSnapshots": 5},
            "steady": counts,
        },
    }


def test_steady_figures_judge_every_target_of_the_steady_state() -> None:
    """⌈B/1000⌉ Velero listing pages, no GET, ⌈R/1000⌉ inventory pages, no source
    DescribeSnapshots, warm CPU ≤ 2 % of cold; with DR + locks also ⌈published/1000⌉ DR
    pages and ⌈R/1000⌉ DescribeLockedSnapshots pages."""
    figures = bench.steady_figures(
        [_steady_run("replicated"), _steady_run("DR + locks", source_describe=3, dr_list=5)]
    )
    verdicts = {(f.section, f.name): f.verdict for f in figures}
    plain, dr = "steady 10,000", "steady 10,000, DR + locks"
    assert verdicts[plain, "warm: ListObjectsV2 of the Velero bucket"] == "PASS"
    assert verdicts[plain, "warm: replica inventory DescribeSnapshots pages"] == "PASS"
    assert verdicts[plain, "warm: source DescribeSnapshots"] == "PASS"
    assert verdicts[plain, "warm: snapd CPU"] == "PASS"  # 0.5 / 50 = 1 %
    assert (plain, "warm: ListObjectsV2 of the DR location") not in verdicts
    assert verdicts[dr, "warm: source DescribeSnapshots"] == "FAIL"
    assert verdicts[dr, "warm: ListObjectsV2 of the DR location"] == "FAIL"
    assert verdicts[dr, "warm: DescribeLockedSnapshots pages"] == "PASS"


async def test_memory_bucket_serves_snapd_discovery_exactly() -> None:
    """Discovery over the builder's files in memory finds exactly the snapshots the
    builder made: the steady part seeds replicas of what snapd will discover."""
    from simworld.velero_bucket import CSI, NATIVE, VeleroBucket, Volume
    from snapd.velero import VeleroReader

    bucket = VeleroBucket(bench.BUCKET, region=bench.SOURCE_REGION, mode="memory")
    volumes = [Volume("shop", "db", 20, "eu-west-1a", NATIVE), Volume("shop", "log", 5, None, CSI)]
    for day in range(1, 4):
        bucket.backup(f"daily-2024010{day}020000", schedule="daily", volumes=volumes)
    bucket.backup("weekly-20240101020000", schedule="weekly", volumes=volumes)
    reader = VeleroReader()

    async def discover() -> Discovery:
        return await reader.discover(
            bench.MemoryBucket(bucket.files),
            bucket=bench.BUCKET,
            prefix="",
            region=bench.SOURCE_REGION,
            schedules=("daily",),
            copy_failed_backups=False,
        )

    def expected() -> set[str]:
        return {
            sid
            for name, built in bucket.backups.items()
            if name.startswith("daily")
            for sid in built.snapshot_ids
        }

    found = await discover()
    assert found.errors == ()
    assert {s.snapshot_id for s in found.snapshots} == expected()
    assert len(expected()) == 6
    # The steady part grows its world between sizes: the same reader's names listing (a
    # delimited listing the in-memory bucket must fold as S3 does) finds the new backups.
    bucket.backup("daily-20240104020000", schedule="daily", volumes=volumes)
    grown = await discover()
    assert {s.snapshot_id for s in grown.snapshots} == expected()
    assert len(expected()) == 8


def test_headline_keeps_the_steady_targets_of_the_largest_size_only() -> None:
    """The README's short table: the steady state's main targets, at its largest size."""
    small = _steady_run("replicated")
    small["backups"] = 1000
    figures = bench.steady_figures([small, _steady_run("replicated"), _steady_run("DR + locks")])
    chosen = {(f.section, f.name) for f in bench.headline(figures)}
    assert ("steady 10,000", "warm: snapd CPU") in chosen
    assert ("steady 10,000, DR + locks", "warm: DescribeLockedSnapshots pages") in chosen
    assert not any(section == "steady 1,000" for section, _ in chosen)
    assert ("steady 10,000", "warm: moto CPU") not in chosen


def test_a_warm_cycle_counts_its_dr_pass_but_not_a_prune_pass_after_it() -> None:
    """After the `cycle.completed` line only the DR bucket's requests are the cycle's (its
    DR pass); a prune pass planning in the same gap lists the Velero bucket and the
    replicas, and those are not."""
    log = bench.RequestLog()
    log.records += [
        bench.Request(10.0, "s3", "ListObjectsV2", 0.0, 0.1, bench.SOURCE_REGION, bench.BUCKET),
        bench.Request(10.5, "ec2", "DescribeSnapshots", 0.0, 0.1, bench.DESTINATION_REGION),
        # after cycle.completed at 11.0: the DR pass, and a prune pass's plan
        bench.Request(11.2, "s3", "ListObjectsV2", 0.0, 0.3, bench.DESTINATION_REGION, "snapd-dr"),
        bench.Request(11.4, "s3", "ListObjectsV2", 0.0, 0.1, bench.SOURCE_REGION, bench.BUCKET),
        bench.Request(11.6, "ec2", "DescribeSnapshots", 0.0, 0.1, bench.DESTINATION_REGION),
    ]
    window = {"begin": 9.9, "logged_end": 11.0, "end": 11.5}
    counted = bench.cycle_requests(log, window, bench.DR_BUCKET)
    assert [(r.operation, r.bucket) for r in counted] == [
        ("ListObjectsV2", bench.BUCKET),
        ("DescribeSnapshots", ""),
        ("ListObjectsV2", "snapd-dr"),
    ]
    assert bench.cycle_requests(log, window) == counted[:2]  # no tail bucket, no tail


#: A small real run saved as it was written (`--parts copy,discovery,steady,restore
#: --sizes 200,400 --copies 45`), and the RESULTS.md rendered from it. A deliberate change
#: to RESULTS.md's wording rewrites the expected file: run `render_markdown` on the saved
#: run and read the diff before committing it.
SAVED_RUN = Path(__file__).parent / "data" / "bench-results.json"
SAVED_MARKDOWN = Path(__file__).parent / "data" / "bench-RESULTS.md"


def _saved_run() -> dict[str, Any]:
    results: dict[str, Any] = json.loads(SAVED_RUN.read_text())
    return results


def test_results_markdown_of_a_saved_run_is_unchanged() -> None:
    """RESULTS.md from a saved results.json is byte for byte the expected document: the
    heading, what is measured, the tables and every note of every part."""
    rendered = bench.render_markdown(_saved_run())
    assert rendered == SAVED_MARKDOWN.read_text()


def test_figures_of_a_saved_run_are_rebuilt_from_its_raw_runs() -> None:
    """Each part's figure builder turns the saved raw runs back into the saved figures, in
    order and equal field for field (a figure added since may sit between them)."""
    results = _saved_run()
    parts = results["parts"]
    rebuilt: list[Figure] = []
    for run in parts["copy"]["runs"]:
        rebuilt += bench.copy_figures(run, run["label"], judged="sensitivity" not in run["label"])
    fraction = parts["discovery"]["config"]["watched_fraction"]
    rebuilt += bench.discovery_figures(parts["discovery"]["runs"], fraction)
    rebuilt += bench.steady_figures(parts["steady"]["runs"])
    restore = bench.RestoreConfig(**parts["restore"]["config"])
    rebuilt += bench.restore_figures(parts["restore"]["runs"], restore)
    records = iter(f.as_dict() for f in rebuilt)
    missing = [saved for saved in results["figures"] if saved not in records]
    assert not missing, f"saved figures not rebuilt in order: {missing[:3]}"
    assert len(results["figures"]) > 100


def test_results_markdown_says_n_a_for_what_a_run_could_not_measure() -> None:
    """A copy run of one round refills no slot and a failed restore starts no copy-back:
    their notes say `n/a` instead of the renderer failing after the whole bench ran."""
    results = _saved_run()
    base = next(r for r in results["parts"]["copy"]["runs"] if r["label"] == "F=0")
    base["refill_mean"] = None
    results["parts"]["restore"]["runs"][0]["before_copy"] = None
    rendered = bench.render_markdown(results)
    assert "its slot is refilled n/a s after that" in rendered
    assert "n/a s the look-ups before the copy-back starts" in rendered
