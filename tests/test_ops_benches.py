"""The operations benchmarks run end to end and report what they measured (no speed asserts)."""

from __future__ import annotations

import argparse
import json

import pytest

from tests.support import run_cli


@pytest.mark.slow
def test_bench_writes_writes_every_photo_and_reports_per_connection_count(pg_server) -> None:
    """bench writes commits every generated photo (warm-up plus one run per connection
    count) and reports rows/s for each count, bytes per photo and the embedding read rate."""
    out = run_cli(
        "bench",
        "writes",
        "--photos=40",
        "--batch-size=8",
        "--connections=1,2",
        "--marginal-photos=40",
        "--json",
        env={"DATABASE_URL": pg_server.get_uri()},
    )
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["rows_stored"] == 40 * 5  # warm-up, both paths on one connection, 1 and 2
    assert r["rows_per_s_per_connection"] > 0 and r["previous_rows_per_s_per_connection"] > 0
    assert r["ratio"] == pytest.approx(
        r["rows_per_s_per_connection"] / r["previous_rows_per_s_per_connection"], rel=0.02
    )
    assert [run["connections"] for run in r["runs"]] == [1, 2]
    for run in r["runs"]:
        # 5 batches of 8: at least 3 take the median or longer, spread over the connections,
        # so the rate cannot exceed 40 rows / (3 * median / connections).
        bound = 40 / (3 * run["batch_ms_median"] / 1000 / run["connections"])
        assert run["rows_per_s"] <= bound * 1.01, run
    # A 512-d half-precision embedding alone is 1 KiB: a stored photo cannot be smaller.
    assert r["bytes_per_photo"] > 1024 and r["embedding_read_rows_per_s"] > 0
    # 40 more photos for the marginal figure, not counted in rows_stored; the warm-up's
    # VACUUMed space is filled by then, so they need new pages of their own.
    assert r["marginal_photos"] == 40 and r["bytes_per_photo_marginal"] > 1024
    assert "paired" not in r  # only when asked


@pytest.mark.slow
def test_bench_writes_paired_with_an_earlier_migration(pg_server) -> None:
    """--paired-with writes the same batches into a database at that migration and one at
    the head, and reports both rates and their ratio; an unknown migration is one line."""
    env = {"DATABASE_URL": pg_server.get_uri()}
    common = ("bench", "writes", "--photos=16", "--batch-size=4", "--connections=1")
    out = run_cli(*common, "--marginal-photos=8", "--paired-with=0024", "--paired-rounds=3",
                  "--owner-ids=uuid", "--json", env=env)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["owner_ids"] == "uuid"
    p = json.loads(out.stdout)["paired"]
    assert (p["against"], p["batch_size"], p["rounds"]) == ("0024", 4, 3)
    assert set(p["rows_per_s"]) == {"0024", "head"} and min(p["rows_per_s"].values()) > 0
    low, high = p["head_ratio_range"]
    assert 0 < low <= p["head_ratio"] <= high
    for bad in ("0999", "0024_nonsense"):
        out = run_cli(*common, f"--paired-with={bad}", env=env)
        assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert "--paired-with takes a migration number, 0001.." in out.stderr
    # A schema from before today's staged write: refused, not a comparison of two paths.
    out = run_cli(*common, "--paired-with=0013", env=env)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "0013 schema's staged write refused the batch" in out.stderr, out.stderr


@pytest.mark.slow
def test_bench_match_sweep_in_memory_and_pgvector(pg_server) -> None:
    """bench match --sweep times each centroid count in memory and, with --hnsw, an exact
    scan (always right on top 1) against an HNSW index."""
    out = run_cli(
        "bench",
        "match",
        "--sweep=50,200",
        "--dim=16",
        "--repeat=2",
        "--queries=5",
        "--hnsw",
        "--json",
        env={"DATABASE_URL": pg_server.get_uri()},
    )
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert [m["centroids"] for m in r["in_memory"]] == [50, 200]
    assert [p["centroids"] for p in r["pgvector"]] == [50, 200]
    assert all(p["exact_top1_correct"] == 1.0 for p in r["pgvector"])
    # A recall over 5 queries is a count of hits over 5.
    assert all((p["hnsw_top1_recall"] * 5) == pytest.approx(round(p["hnsw_top1_recall"] * 5))
               for p in r["pgvector"])  # fmt: skip


@pytest.mark.slow
def test_bench_bad_sizes_are_one_line_errors() -> None:
    """Unreadable sizes give one clear line and status 2, before any database work."""
    out = run_cli("bench", "match", "--sweep=ten")
    assert out.returncode == 2
    assert out.stderr.strip() == "sightline: error: --sweep takes comma-separated integers"
    out = run_cli("bench", "writes", "--connections=0")
    assert out.returncode == 2
    assert "must be positive" in out.stderr and len(out.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_bench_publish_counts_what_reached_redis_and_cleans_up(redis_url) -> None:
    """bench publish sends through the handler's publisher to a private queue, reports how
    many arrived, and leaves no message behind."""
    import redis

    out = run_cli(
        "bench", "publish", f"--broker={redis_url}", "--tasks=30", "--per-call=7", "--json"
    )
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert (r["tasks"], r["queued"]) == (30, 31)  # plus the one sent before the clock
    client = redis.Redis.from_url(redis_url)
    assert [k for k in client.keys("sightline-bench-*")] == []


@pytest.mark.slow
def test_bench_albums_fills_and_reports_every_figure(pg_server) -> None:
    """bench albums fills the library by SQL, reads the large owner's albums from summaries
    (every album present, the rarest one found) and times writes with and without them."""
    out = run_cli(
        "bench",
        "albums",
        "--photos=3000",
        "--owner-photos=300",
        "--albums=12",
        "--writes=20",
        "--repeat=1",
        "--json",
        env={"DATABASE_URL": pg_server.get_uri()},
    )
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["scene_albums"] == 12 and 0 < r["rare_album_photos"] < 300 / 12
    for key in (
        "scene_albums_ms",
        "landmark_albums_ms",
        "album_photos_rare_ms",
        "album_photos_empty_ms",
        "status_ms",
        "status_report_ms",
        "write_rows_per_s_with_summaries",
        "write_rows_per_s_without_summaries",
    ):
        assert r[key] > 0, key


@pytest.mark.slow
def test_bench_backfill_reports_every_rate(pg_server, redis_url) -> None:
    """bench backfill publishes every inventory row and listed key, skips every no-op task
    and waits for every tagged photo, and reports each rate from what it counted."""
    env = {
        "DATABASE_URL": pg_server.get_uri(),
        "CELERY_BROKER_URL": redis_url,
        "SIGHTLINE_ARCH": "tiny",
        "SIGHTLINE_ALLOW_UNTRAINED": "1",
    }
    out = run_cli(
        "bench",
        "backfill",
        "--inventory-rows=2500",
        "--list-keys=120",
        "--noop-photos=80",
        "--tagged-photos=6",
        "--page-size=500",
        "--json",
        env=env,
    )
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert (r["inventory"]["tasks"], r["inventory"]["pages"]) == (2500, 6)
    assert r["list"]["tasks"] == 120 and r["noop"]["tasks"] == 80 - 16
    assert r["tagged"]["photos"] == 6
    for name, part, count in (
        ("inventory_rows_to_tasks_per_s", "inventory", "tasks"),
        ("list_to_tasks_per_s", "list", "tasks"),
        ("noop_per_s", "noop", "tasks"),
        ("tagged_per_s", "tagged", "photos"),
    ):
        assert r[name] == pytest.approx(r[part][count] / r[part]["seconds"], rel=0.02), name
    import redis

    assert redis.Redis.from_url(redis_url).keys("sightline-bench-*") == []


@pytest.mark.parametrize("bench", ["model-switch", "retag"])
def test_bench_options_have_help(bench) -> None:
    """Every option of these benches says what it sets in --help."""
    import argparse

    from sightline.cli import build_parser

    def choices(parser: argparse.ArgumentParser) -> dict:
        return next(a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction))

    sub = choices(choices(build_parser())["bench"])[bench]
    options = [a for a in sub._actions if a.option_strings and a.dest != "help"]
    assert options
    assert [a.option_strings[0] for a in options if not a.help] == []


def test_retag_bench_fill_writes_photos_in_small_transactions(db) -> None:
    """The retag benches' fill (200,000 photos by default) stays linear: no transaction
    writes more than FILL_ROWS_PER_TRANSACTION photos (one big one is quadratic in the
    status-count trigger), every photo is stored once and the status counters agree."""
    import numpy as np

    from sightline.benches._synthetic import random_release
    from sightline.benches.retag import FILL_ROWS_PER_TRANSACTION, _fill
    from workers.releases import import_release

    rng = np.random.default_rng(0)
    release = random_release(rng, centroids=20, dim=8)
    import_release(db, release)
    n = 2 * FILL_ROWS_PER_TRANSACTION + 7
    _fill(db, rng, release, n)
    with db, db.cursor() as cur:
        cur.execute("SELECT count(*), count(DISTINCT id), min(id), max(id) FROM photos")
        assert cur.fetchone() == (n, n, 1, n)
        cur.execute("SELECT max(c), count(*) FROM (SELECT count(*) AS c FROM photos "
                    "GROUP BY xmin::text) t")  # fmt: skip
        biggest, transactions = cur.fetchone()
        assert biggest <= FILL_ROWS_PER_TRANSACTION and transactions >= 3
        cur.execute("SELECT sum(photos) FROM photo_status_counts WHERE status = 'tagged'")
        assert cur.fetchone()[0] == n


@pytest.mark.slow
def test_bench_retag_fleet_reports_both_worker_counts_and_the_limits(pg_server, redis_url) -> None:
    """bench retag --workers 1,2 re-tags every photo with each worker count (both workers
    used with two: 31 short chunks, so that a second worker still joining when the first
    takes its chunks gets some), and prints the rates, the scaling between them and the
    matrix-product limits, each from what it measured."""
    out = run_cli(
        "bench", "retag", "--workers", "1,2", "--photos", "3000", "--centroids", "300",
        "--dim", "64", "--chunk-size", "100", "--batch-size", "1000", "--json",
        env={"DATABASE_URL": pg_server.get_uri(), "CELERY_BROKER_URL": redis_url},
        timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert set(r["photos_per_s_by_workers"]) == {"1", "2"}
    for n in ("1", "2"):
        run = r["runs"][n]
        assert run["photos"] == 3000 and run["chunks"] == 31
        # seconds is printed to 0.01 s: the rate lies between photos / (seconds ± 0.005)
        lo, hi = run["seconds"] - 0.005, run["seconds"] + 0.005
        assert run["photos"] / hi - 0.1 <= run["photos_per_s"] <= run["photos"] / lo + 0.1
        assert r["photos_per_s_by_workers"][n] == run["photos_per_s"]
    assert r["runs"]["2"]["workers_used"] == 2
    rates = r["photos_per_s_by_workers"]
    assert r["scaling"] == pytest.approx(rates["2"] / rates["1"], abs=0.01)
    u = r["unrestricted_process"]
    assert u["photos_per_s"] > 0 and u["matmul_limit_photos_per_s"] > 0
    assert u["share_of_limit"] == pytest.approx(
        u["photos_per_s"] / u["matmul_limit_photos_per_s"], abs=0.01
    )
    assert r["matmul_limit_one_thread_photos_per_s"] > 0


def test_bench_writes_owner_ids_are_fixed_and_of_their_kind() -> None:
    """--owner-ids uuid gives the bench 97 distinct 36-character UUIDs, the same every run
    (so two runs store the same strings), and their photos' keys carry them."""
    import uuid

    from sightline.benches.writes import _items, _owners

    ids = _owners("uuid")
    assert len(set(ids)) == 97 and ids == _owners("uuid")
    assert all(len(i) == 36 and str(uuid.UUID(i)) == i for i in ids)
    assert _owners("short")[12] == "user12"
    item = _items(98, "p", 8, 365, seed=1, owner_ids="uuid")[97]
    assert item["owner"] == ids[0] and item["key"] == f"p/users/{ids[0]}/000000097.jpg"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        # never returned: the matmul peak loop's NaN deadline was never passed
        (["worker", "--peak-seconds", "nan"], "--peak-seconds: must be a finite number above 0"),
        (
            ["worker", "--batches", "-1"],
            "--batches: must be a whole number >= 1",
        ),  # ZeroDivisionError
        (["worker", "--width", "0"], "--width: must be a whole number >= 1"),
        (["worker", "--width", "100000000", "--height", "100000000"], "past SIGHTLINE_MAX_PIXELS"),
        (["match", "--centroids", "0"], "--centroids: must be a whole number >= 1"),
        (["match", "--dim", "-1"], "--dim: must be a whole number >= 1"),  # negative dimensions
        (["writes", "--classes", "0"], "--classes: must be a whole number >= 1"),  # IndexError
        (["soak", "--corrupt", "2"], "--corrupt: must be from 0 to 1"),
        (["soak", "--corrupt", "nan"], "--corrupt: must be from 0 to 1"),
        (["soak", "--workers", "1000"], "--workers: must be a whole number from 1 to 64"),
        (["publish", "--broker", "http://x"], "--broker: unknown scheme 'http'"),  # KeyError
    ],
)
def test_bench_arguments_no_run_can_use_are_one_line(capsys, argv, message) -> None:
    from sightline.cli import main

    try:
        code = main(["bench", *argv])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(("corrupt", "deleted"), [(0.02, 0.02), (0.6, 0.0), (0.3, 0.3), (1.0, 0.0)])
def test_the_soak_plans_exactly_its_shares_of_bad_photos(corrupt, deleted) -> None:
    """Above a half, the modulo spacing marked none (--corrupt 0.6: 0 failed of 1,000)."""
    from collections import Counter

    from sightline.benches.soak import _plan_keys

    args = argparse.Namespace(events=1000, repeated=0.0, corrupt=corrupt, deleted=deleted)
    keys, _ = _plan_keys(args)
    got = Counter(status for _, status in keys)
    assert (got["failed"], got["gone"]) == (round(1000 * corrupt), round(1000 * deleted))
    assert len({k for k, _ in keys}) == 1000


def test_the_soak_refuses_a_redis_url_without_its_database(capsys) -> None:
    """It empties its database: redis://host:6379 emptied database 0."""
    from sightline.cli import main

    assert main(["bench", "soak", "--broker-url", "redis://127.0.0.1:6379"]) == 2
    assert "name it in the URL (redis://HOST:PORT/N)" in capsys.readouterr().err
